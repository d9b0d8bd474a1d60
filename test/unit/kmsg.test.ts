import test from 'ava';
import { formatKmsg, isProblem, parseKmsg } from '../../src/kmsg.js';

test('a /dev/kmsg record is parsed and printed like dmesg', t => {
	const record = parseKmsg('6,1234,5678901,-;udp_server: received HELLO from 127.0.0.1:40312');
	t.deepEqual(record, { priority: 6, sequence: 1234, usec: 5678901, text: 'udp_server: received HELLO from 127.0.0.1:40312' });
	t.is(formatKmsg(record!), '[    5.678901] udp_server: received HELLO from 127.0.0.1:40312');
	t.is(parseKmsg(' SUBSYSTEM=virtio'), undefined);
});

test('kernel trouble is recognised, ordinary lines are not', t => {
	for (const line of [
		'BUG: unable to handle page fault for address: ffff',
		'WARNING: CPU: 0 PID: 1 at net/core/sock.c:123 sk_free+0x1/0x2',
		'Oops: 0000 [#1] PREEMPT SMP',
		'INFO: task rmmod:123 blocked for more than 120 seconds.',
		'WARNING: possible circular locking dependency detected',
		'watchdog: BUG: soft lockup - CPU#0 stuck for 22s!',
		'general protection fault, probably for non-canonical address',
	]) {
		t.true(isProblem(line), line);
	}
	for (const line of ['udp_server: received HELLO from 127.0.0.1:1', 'udp_client: no reply from 127.0.0.1:3000 after 4 tries']) {
		t.false(isProblem(line), line);
	}
});
