/**
 * Two hosts, as the original pair was meant to run: the client module on one
 * machine says HELLO to the server module on another. Here the machines are
 * two lab guests, a (useLab's) and b (booted below), on the labs' private
 * network 10.0.9.0/24 (src/lab/network.ts), which must reach nothing off this
 * machine.
 */
import type { ExecutionContext } from 'ava';
import { execa } from 'execa';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { formatKmsg } from '../../src/kmsg.js';
import { hubOf } from '../../src/lab/network.js';
import { lastLogSequence, load } from '../../src/lifecycle.js';
import { PROJECT_ROOT } from '../../src/modules.js';
import { chooseTarget, LabTarget } from '../../src/targets.js';
import { guest, kernelProblems, type LabContext, labTest, loadServer, markTestStart, test, useLab, waitForLog } from '../helpers/lab.js';

useLab(import.meta.url);

type T = ExecutionContext<LabContext>;

const B_NAME = `test-two-hosts-b-${process.pid}`;
let peer: LabTarget | undefined;

// The second host, booted after useLab's; stopped whatever happens.
test.before(async () => {
	const target = await chooseTarget({ target: 'lab', lab: B_NAME });
	if (!(target instanceof LabTarget)) {
		throw new Error('expected the lab target');
	}
	peer = target;
	await target.prepare();
});

test.after.always(async () => {
	await peer?.lab.down();
});

function labB(): LabTarget {
	if (!peer) {
		throw new Error('lab b did not boot');
	}
	return peer;
}

async function addressOf(target: LabTarget): Promise<string> {
	const address = (await target.lab.state())?.network?.address;
	if (!address) {
		throw new Error(`the lab "${target.lab.name}" has no address on the labs' network`);
	}
	return address;
}

/** Runs a shell command in lab b; fails on a non-zero exit. */
async function inB(script: string, timeoutMs = 60_000): Promise<string> {
	const result = await labB().exec(['sh', '-c', script], { timeoutMs });
	if (result.exitCode !== 0) {
		throw new Error(`command in lab b failed (${result.exitCode ?? result.signal}): ${script}\n${result.stderr}`);
	}
	return result.stdout;
}

/** A regular expression matching exactly `text`. */
function literal(text: string): string {
	return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * A test that uses both labs: labTest's kernel-problem gate covers lab a;
 * lab b gets the same gate here. `sinceB` is lab b's last kernel log record
 * before the test.
 */
function twoHostTest(title: string, implementation: (t: T, since: number, sinceB: number) => Promise<void>): void {
	labTest(title, async (t, since) => {
		const b = labB();
		const sinceB = await lastLogSequence(b);
		const start = await markTestStart(b);
		await implementation(t, since, sinceB);
		const problems = await kernelProblems(b, start);
		t.deepEqual(
			problems.map(record => formatKmsg(record)),
			[],
			'the kernel of lab b logged a problem during this test',
		);
	});
}

/** The devices on which this machine has joined the multicast group `group` (/proc/net/igmp). */
async function devicesJoined(group: string): Promise<string[]> {
	// /proc/net/igmp prints a group as the hex of its bytes in host (little-endian) order.
	const hex = Buffer.from(group.split('.').map(Number).reverse()).toString('hex').toUpperCase();
	const devices: string[] = [];
	let device = '';
	for (const line of (await readFile('/proc/net/igmp', 'utf8')).split('\n').slice(1)) {
		const header = /^\d+\s+(\S+)\s*:/.exec(line);
		if (header) {
			device = header[1]!;
		} else if (line.trim().split(/\s+/)[0] === hex) {
			devices.push(device);
		}
	}
	return devices;
}

twoHostTest('each guest has its own address on 10.0.9.0/24, and the network reaches nothing off this machine', async t => {
	const a = t.context.target;
	const b = labB();
	const [addressA, addressB] = [await addressOf(a), await addressOf(b)];
	t.regex(addressA, /^10\.0\.9\.\d+$/);
	t.regex(addressB, /^10\.0\.9\.\d+$/);
	t.not(addressA, addressB);
	t.not((await a.lab.state())?.network?.mac, (await b.lab.state())?.network?.mac);

	// ./run status shows it, as text and as JSON.
	const run = path.join(PROJECT_ROOT, 'run');
	const json = JSON.parse((await execa(run, ['status', '--json', '--lab', b.lab.name])).stdout) as {
		lab?: { network?: { address: string; prefixLength: number } };
	};
	t.like(json.lab?.network, { address: addressB, prefixLength: 24 });
	t.regex((await execa(run, ['status', '--lab', b.lab.name])).stdout, new RegExp(`labs' network: ${literal(addressB)}/24 on eth1`));

	// In the guest: eth1 holds the /24, and nothing routes off this machine.
	t.regex(await inB('ip -4 -o addr show dev eth1'), new RegExp(`inet ${literal(addressB)}/24 `));
	t.is(await inB('ip route show default'), '', 'no default route');
	t.regex(await inB(`ip route get ${addressA}`), /dev eth1/);
	const outside = await b.exec(['ip', 'route', 'get', '1.1.1.1'], { timeoutMs: 10_000 });
	t.not(outside.exitCode, 0, `ip route get 1.1.1.1 found a route: ${outside.stdout}`);
	t.regex(outside.stderr, /unreachable/i);
	t.regex(await inB(`busybox ping -c 1 -W 10 ${addressA}`), /1 packets received/, 'b reaches a over the labs network');

	// On this machine: no 10.0.9.x address, and the frames' multicast group is joined on lo only.
	const hostAddresses = (await execa('ip', ['-4', '-o', 'addr'])).stdout;
	t.notRegex(hostAddresses, /inet 10\.0\.9\./);
	const { group } = hubOf(path.join(PROJECT_ROOT, '.lab'));
	t.deepEqual([...new Set(await devicesJoined(group))], ['lo'], `the group ${group} must be joined on lo only`);
});

twoHostTest('the client module in lab b says HELLO to the server module in lab a', async (t, since, sinceB) => {
	const b = labB();
	const [addressA, addressB] = [await addressOf(t.context.target), await addressOf(b)];
	await loadServer(t, ['port=3000']);
	await load(b, t.context.client, { name: 'udp_client', params: [`destip=${addressA}`, 'port=3000'] });
	await waitForLog(t.context.target, since, new RegExp(`^udp_server: received HELLO from ${literal(addressB)}:\\d+$`));
	await waitForLog(t.context.target, since, new RegExp(`^udp_server: sent GOT IT to ${literal(addressB)}:\\d+$`));
	await waitForLog(b, sinceB, new RegExp(`^udp_client: got GOT IT from ${literal(addressA)}:3000$`));
	await inB('rmmod udp_client');
	await guest(t, 'rmmod udp_server');
});

twoHostTest('kvclient in lab b gets GOT IT from the server in lab a and works with its table', async (t, since) => {
	const b = labB();
	const [addressA, addressB] = [await addressOf(t.context.target), await addressOf(b)];
	await loadServer(t, ['port=3000', 'len=1024']);
	// A value whose reply is more than 3× the request: a sender off the
	// server's host must pad the lookup (PROTOCOL.md "Reflection"), which kvclient does.
	const long = 'l'.repeat(150);
	await guest(t, `echo "insert dog ${long}" > /proc/ht`);
	// Node straight, not bin/kvclient: its bootstrap would check (and maybe compile) the TypeScript under emulation.
	const kvclient = `'${process.execPath}' '${path.join(PROJECT_ROOT, 'dist/user-client/kvclient.js')}' --host ${addressA} --timeout 5000`;
	const out = await inB(`${kvclient} send HELLO && ${kvclient} insert cat tom the cat && ${kvclient} lookup dog`, 180_000);
	t.is(out, `GOT IT\nOK\n${long}\n`);
	t.regex(await guest(t, 'cat /proc/hashtable'), /^cat tom the cat$/m, 'the insert from lab b is in the table of lab a');
	await waitForLog(t.context.target, since, new RegExp(`^udp_server: received HELLO from ${literal(addressB)}:\\d+$`));
	await guest(t, 'rmmod udp_server');
});

const TOOL = path.join(PROJECT_ROOT, 'test/fixtures/udp_tool.py');
const hex = (text: string) => Buffer.from(text).toString('hex');

/** The server's request counter, asked inside its own guest. */
async function requestsIn(run: (script: string) => Promise<string>): Promise<number> {
	return Number(/requests=(\d+)/.exec(await run('echo stats | nc -u -w1 127.0.0.1 3000'))?.[1]);
}

/** With these parameters too: served in eth1's receive handler, before the IP and UDP layers. */
const RX_DEV = ['softirq=1', 'rx_dev=eth1'];

for (const extra of [[], RX_DEV]) {
	const how = extra.length ? ` (${extra.join(' ')})` : '';
	twoHostTest(`one forged datagram between the servers of lab a and lab b does not bounce (Loop DoS)${how}`, async t => {
		const b = labB();
		const [addressA, addressB] = [await addressOf(t.context.target), await addressOf(b)];
		await loadServer(t, ['port=3000', 'len=200', ...extra]);
		await load(b, t.context.server, { name: 'udp_server', params: ['port=3000', 'len=200', ...extra] });
		for (const payload of ['ERR unknown command\n', 'fetch dog\n', 'OK\n']) {
			const [beforeA, beforeB] = [await requestsIn(script => guest(t, script)), await requestsIn(inB)];
			// From lab b's text port (its own address: no raw trick needed on the way out) to lab a's.
			await inB(`python3 ${TOOL} forge ${addressB} 3000 ${addressA} 3000 ${hex(payload)}`);
			await sleep(3000);
			const [seenA, seenB] = [(await requestsIn(script => guest(t, script))) - beforeA, (await requestsIn(inB)) - beforeB];
			t.log(`${JSON.stringify(payload)}: lab a saw ${seenA} requests, lab b ${seenB}, in 3 s`);
			// The forged datagram (or its one answer) and the stats request itself.
			t.true(seenA <= 2 && seenB <= 2, `${JSON.stringify(payload)} bounced: a ${seenA}, b ${seenB}`);
		}
		await inB('rmmod udp_server');
		await guest(t, 'rmmod udp_server');
	});
}

for (const extra of [[], RX_DEV]) {
	const how = extra.length ? ` (${extra.join(' ')})` : '';
	twoHostTest(
		`a flood from lab b draws at most reply_rate KiB/s of replies on either port, measured in bytes on the wire${how}`,
		async t => {
			const addressA = await addressOf(t.context.target);
			const seconds = 5;
			await loadServer(t, ['port=3000', 'len=4200', 'memcached_port=11211', 'reply_rate=64', ...extra]);
			const value = 'v'.repeat(4096);
			await guest(t, `echo "insert big ${value}" > /proc/ht`);
			// Padded to a third of the reply, so that the reflection bound lets the whole reply through.
			const lookup = `lookup big${' '.repeat(1367 - 10)}`;
			const text = await inB(`python3 ${TOOL} flood ${addressA} 3000 ${hex(lookup)} ${seconds} 40000`, 120_000);
			const [sent, received, bytes] = (/sent (\d+) received (\d+) bytes (\d+)/.exec(text) ?? []).slice(1).map(Number);
			// 64 KiB a second, and a first burst of one longest datagram (65 507 bytes); the flood ran `seconds` (+1 to drain).
			const bound = 64 * 1024 * (seconds + 1) + 65_507;
			t.log(
				`text port: lab b sent ${sent} lookups (${sent! * lookup.length} bytes), got ${received} replies, ${bytes} bytes; bound ${bound}`,
			);
			t.true(received! > 0, 'some replies come back');
			t.true(bytes! <= bound, `${bytes} bytes of replies in ${seconds} s`);
			t.true(sent! * 4101 > 2 * bound, 'the flood asked for far more than the bound, or the test proves nothing');

			// The memcached port: the same 4 KiB value, with a get padded to a third of its reply (three datagrams).
			const frame = Buffer.from([0, 1, 0, 0, 0, 1, 0, 0]);
			await guest(t, `printf 'set big 0 0 4096\r\n${value}\r\n' > /tmp/set.txt`);
			await guest(
				t,
				`python3 -c "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.sendto(bytes.fromhex('${frame.toString('hex')}') + open('/tmp/set.txt', 'rb').read(), ('127.0.0.1', 11211)); s.settimeout(5); s.recv(100)"`,
			);
			const get = Buffer.concat([frame, Buffer.from(`get big${' '.repeat(1381 - 8 - 9)}\r\n`)]);
			const mc = await inB(`python3 ${TOOL} flood ${addressA} 11211 ${get.toString('hex')} ${seconds} 40001`, 120_000);
			const [mcSent, mcReceived, mcBytes] = (/sent (\d+) received (\d+) bytes (\d+)/.exec(mc) ?? []).slice(1).map(Number);
			t.log(
				`memcached port: lab b sent ${mcSent} gets (${mcSent! * get.length} bytes), got ${mcReceived} datagrams, ${mcBytes} bytes; bound ${bound}`,
			);
			t.true(mcReceived! > 0, 'some replies come back');
			t.true(mcBytes! <= bound, `${mcBytes} bytes of replies in ${seconds} s`);
			t.true(mcSent! * 4143 > 2 * bound, 'the flood asked for far more than the bound');
			await guest(t, 'rmmod udp_server');
		},
	);
}

twoHostTest('memaslap in lab b against lab a’s memcached port: the limits let a real client through (0 verify_failed)', async t => {
	const addressA = await addressOf(t.context.target);
	await loadServer(t, ['port=3000', 'memcached_port=11211']);
	const out = await inB(`timeout 300 memcaslap -s ${addressA}:11211 -U -x 3000 -T 1 -c 4 --verify=0.2 2>&1`, 320_000);
	const stat = (name: string) => Number(new RegExp(`^${name}: (\\d+)$`, 'm').exec(out)?.[1]);
	t.log(
		out
			.split('\n')
			.filter(line => /^(cmd_get|cmd_set|get_misses|verify_misses|verify_failed|expired_get|unexpired_unget|Run time|TPS)/.test(line))
			.join('\n'),
	);
	t.true(stat('cmd_get') > 0 && stat('cmd_set') > 0, 'memaslap ran gets and sets');
	t.is(stat('verify_failed'), 0, 'values read back wrong');
	await guest(t, 'rmmod udp_server');
});

twoHostTest('a datagram from lab b forging lab a’s own address is not taken for this host’s (accept_local=1)', async t => {
	const addressA = await addressOf(t.context.target);
	await loadServer(t, ['port=3000', 'len=4200']);
	await guest(t, `echo "insert big ${'v'.repeat(4096)}" > /proc/ht`);
	await guest(t, 'sysctl -qw net.ipv4.conf.eth1.accept_local=1 net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.eth1.rp_filter=0');
	try {
		// The reply goes to lab a's own port 5555: count it there.
		const listening = guest(t, `python3 ${TOOL} listen 5555 4`);
		await sleep(1000);
		await inB(`python3 ${TOOL} forge ${addressA} 5555 ${addressA} 3000 ${hex('lookup big')}`);
		const [received, bytes] = (/received (\d+) bytes (\d+)/.exec(await listening) ?? []).slice(1).map(Number);
		t.log(`the forged 10-byte lookup drew ${received} replies, ${bytes} bytes`);
		t.is(received, 1);
		t.true(bytes! <= 32, `${bytes} bytes: a sender that is not on lab a's loopback gets the bounded reply`);
	} finally {
		await guest(t, 'sysctl -qw net.ipv4.conf.eth1.accept_local=0');
	}
	await guest(t, 'rmmod udp_server');
});

twoHostTest('rx_dev=eth1: a datagram from lab b with a bad UDP checksum is left to the stack, which drops and counts it', async t => {
	const b = labB();
	const [addressA, addressB] = [await addressOf(t.context.target), await addressOf(b)];
	await loadServer(t, ['port=3000', ...RX_DEV]);
	await guest(t, "echo 'insert dog baileys' > /proc/ht");
	const csumErrors = async () => Number(/^Udp: (?:\d+ ){6}(\d+)/m.exec(await guest(t, 'cat /proc/net/snmp'))?.[1]);
	const before = await csumErrors();
	// From lab b's own address, so that a reply would come back to its port 5556: count there.
	const send = async (checksum: string) => {
		const listening = inB(`python3 ${TOOL} listen 5556 4`);
		await sleep(1000);
		await inB(`python3 ${TOOL} forge ${addressB} 5556 ${addressA} 3000 ${hex('lookup dog')} 1 ${checksum}`);
		return Number(/received (\d+)/.exec(await listening)?.[1]);
	};
	t.is(await send('0x1234'), 0, 'a lookup with a wrong checksum gets no reply');
	t.is((await csumErrors()) - before, 1, 'the UDP layer counted it in InCsumErrors');
	t.is(await send('0'), 1, 'the same lookup without a checksum gets its reply');
	await guest(t, 'rmmod udp_server');
});
