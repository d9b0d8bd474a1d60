import test from 'ava';
import { execFileSync } from 'node:child_process';
import { mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { followKmsg, formatKmsg, isProblem, parseKmsg, readKmsg, type KmsgFile, type KmsgRecord } from '../../src/kmsg.js';

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

test("the debug kernel's checkers are recognised; kmemleak's summary line is left to the leak check", t => {
	for (const line of [
		'BUG: KASAN: slab-use-after-free in kudp_exit+0x2a/0x60 [udp_server]',
		'BUG: KASAN: use-after-free in kv_lookup+0x41/0x120 [udp_server]',
		'UBSAN: array-index-out-of-bounds in server-module/kv.c:120:9',
		'UBSAN: shift-out-of-bounds in server-module/cmd.c:88:20',
		'WARNING: possible circular locking dependency detected',
		'WARNING: possible recursive locking detected',
		'WARNING: inconsistent lock state',
		'WARNING: suspicious RCU usage',
		'server-module/kv.c:77 suspicious rcu_dereference_check() usage!',
		'BUG: sleeping function called from invalid context at include/linux/sched/mm.h:274',
		'ODEBUG: free active (active state 0) object: 00000000b0d4a1f2 object type: timer_list hint: kudp_tick+0x0/0x40 [udp_server]',
	]) {
		t.true(isProblem(line), line);
	}
	for (const line of [
		'kmemleak: 2 new suspected memory leaks (see /sys/kernel/debug/kmemleak)',
		'kmemleak: Kernel memory leak detector initialized (mem pool available: 15681)',
		'KernelAddressSanitizer initialized (generic)',
		'Lock dependency validator: Copyright (c) 2006 Red Hat, Inc., Ingo Molnar',
	]) {
		t.false(isProblem(line), line);
	}
});

const errno = (code: string) => Object.assign(new Error(`${code}: from the fake device`), { code });

/**
 * A fake /dev/kmsg: each read returns the next step, one whole record (with
 * its dictionary lines) or an error, and EAGAIN once the steps run out.
 */
function fakeDevice(steps: Array<string | Error>): { open: () => Promise<KmsgFile>; reads: number; closed: boolean } {
	const device = {
		reads: 0,
		closed: false,
		open: async (): Promise<KmsgFile> => ({
			read: async (buffer: Buffer) => {
				device.reads++;
				const step = steps.shift() ?? errno('EAGAIN');
				if (step instanceof Error) {
					throw step;
				}
				return { bytesRead: buffer.write(step) };
			},
			close: async () => {
				device.closed = true;
			},
		}),
	};
	return device;
}

test('a snapshot reads record by record up to EAGAIN, and reads on past overwritten records (EPIPE)', async t => {
	const device = fakeDevice([
		'6,10,100,-;udp_server: listening on 127.0.0.1:3000\n SUBSYSTEM=net\n',
		errno('EPIPE'),
		'4,15,200,-;udp_server: stopped in 12 us\n',
	]);
	const records = await readKmsg({ open: device.open });
	t.deepEqual(
		records.map(record => [record.sequence, record.text]),
		[
			[10, 'udp_server: listening on 127.0.0.1:3000'],
			[15, 'udp_server: stopped in 12 us'],
		],
	);
	t.is(device.reads, 4);
	t.true(device.closed);
});

test('any other read error is an error, and the device is closed', async t => {
	const device = fakeDevice(['6,1,1,-;one\n', errno('EIO')]);
	await t.throwsAsync(readKmsg({ open: device.open }), { message: /EIO/ });
	t.true(device.closed);
});

test('the follower skips what was there, delivers what comes after, and survives EPIPE', async t => {
	const steps: Array<string | Error> = ['6,1,1,-;udp_server: old news\n'];
	const device = fakeDevice(steps);
	const stop = new AbortController();
	const seen: string[] = [];
	const following = followKmsg(record => seen.push(record.text), stop.signal, { open: device.open, pollMs: 5 });
	await new Promise(resolve => setTimeout(resolve, 30));
	steps.push('6,2,2,-;udp_server: listening on 127.0.0.1:3000\n', errno('EPIPE'), '6,9,9,-;udp_server: received HELLO\n');
	while (seen.length < 2) {
		await new Promise(resolve => setTimeout(resolve, 5));
	}
	stop.abort();
	await following;
	t.deepEqual(seen, ['udp_server: listening on 127.0.0.1:3000', 'udp_server: received HELLO']);
	t.true(device.closed);
});

test('the follower starts after `since` when given one', async t => {
	const device = fakeDevice(['6,1,1,-;before\n', '6,2,2,-;udp_server: loading\n', '6,3,3,-;udp_server: listening\n']);
	const stop = new AbortController();
	const seen: KmsgRecord[] = [];
	const following = followKmsg(record => seen.push(record), stop.signal, { open: device.open, since: 1, pollMs: 5 });
	while (seen.length < 2) {
		await new Promise(resolve => setTimeout(resolve, 5));
	}
	stop.abort();
	await following;
	t.deepEqual(
		seen.map(record => record.sequence),
		[2, 3],
	);
});

test('the follower delivers records from a FIFO and returns promptly once aborted', async t => {
	const dir = await mkdtemp(path.join(os.tmpdir(), 'kmsg-'));
	const fifo = path.join(dir, 'kmsg');
	execFileSync('mkfifo', [fifo]);
	const stop = new AbortController();
	const seen: string[] = [];
	let arrived = () => {};
	const first = new Promise<void>(resolve => (arrived = resolve));
	const following = followKmsg(
		record => {
			seen.push(record.text);
			arrived();
		},
		stop.signal,
		{ path: fifo },
	);
	const writer = await open(fifo, 'w');
	try {
		// Written in two pieces: a FIFO, unlike /dev/kmsg, may split a record.
		await writer.write('6,1,100,-;udp_server: listening on ');
		await new Promise(resolve => setTimeout(resolve, 100));
		await writer.write('127.0.0.1:3000\n');
		await first;
		const started = performance.now();
		stop.abort();
		const outcome = await Promise.race([
			following.then(() => 'returned'),
			new Promise(resolve => setTimeout(resolve, 2000, 'still waiting')),
		]);
		t.is(outcome, 'returned', 'the follower must end soon after the abort, with its writer still open');
		t.true(performance.now() - started < 1000);
		t.deepEqual(seen, ['udp_server: listening on 127.0.0.1:3000']);
	} finally {
		await writer.close();
		await rm(dir, { recursive: true });
	}
});

test('a snapshot of a file is every record in it', async t => {
	const dir = await mkdtemp(path.join(os.tmpdir(), 'kmsg-'));
	const file = path.join(dir, 'kmsg');
	await writeFile(file, '6,1,1,-;one\n6,2,2,-;two\n');
	try {
		t.deepEqual(
			(await readKmsg({ path: file })).map(record => record.text),
			['one', 'two'],
		);
	} finally {
		await rm(dir, { recursive: true });
	}
});
