/**
 * What a hostile network can make the server do (issue 17), in one guest:
 * a reply is never answered (so one forged datagram cannot bounce between
 * the two ports for ever, the "Loop DoS" class), error replies to a sender
 * off this host are rate-limited, nothing is sent to port 0, and a short
 * memcached multi-get cannot draw a long reply onto a forged source.
 * Datagrams are forged with a raw socket in the guest (test/fixtures/udp_tool.py);
 * requests from this machine reach the guest through QEMU's port forward, so
 * the server sees them as another host's.
 */
import type { ExecutionContext } from 'ava';
import { createSocket } from 'node:dgram';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort } from '../../src/lab/free-port.js';
import { PROJECT_ROOT } from '../../src/modules.js';
import { request } from '../../user-client/client.js';
import { guest, type LabContext, labTest, loadServer, useLab } from '../helpers/lab.js';

useLab(import.meta.url);

type T = ExecutionContext<LabContext>;

const TEXT_PORT = 3000;
const MC_PORT = 11211;
const TOOL = path.join(PROJECT_ROOT, 'test/fixtures/udp_tool.py');

const hex = (data: string | Buffer) => Buffer.from(data).toString('hex');

/** memcached's 8-byte frame header: request 1, datagram 0 of 1. */
const MC_FRAME = Buffer.from([0, 1, 0, 0, 0, 1, 0, 0]);

/** The server's counters, asked from inside the guest (this host: every reply whole). */
async function stats(t: T): Promise<Record<string, number>> {
	const line = await guest(t, `echo stats | nc -u -w1 127.0.0.1 ${TEXT_PORT}`);
	return Object.fromEntries([...line.matchAll(/(\w+)=(\d+)/g)].map(([, name, value]) => [name!, Number(value)]));
}

/** Sends one datagram from a socket of its own in the guest; what came back within 0.5 s (hex), or ''. */
async function answerInGuest(t: T, port: number, payload: Buffer): Promise<string> {
	const script = [
		'import socket, sys',
		's = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)',
		's.settimeout(0.5)',
		`s.sendto(bytes.fromhex('${payload.toString('hex')}'), ('127.0.0.1', ${port}))`,
		'try:',
		'    print(s.recv(65536).hex())',
		'except socket.timeout:',
		"    print('')",
	].join('\n');
	const result = await t.context.target.exec(['python3', '-c', script], { timeoutMs: 30_000 });
	if (result.exitCode !== 0) throw new Error(`python3 in the guest failed:\n${result.stderr}`);
	return result.stdout.trim();
}

/** Sends `count` datagrams at once from one socket in the guest; how many replies came back within 1 s. */
async function burstInGuest(t: T, port: number, payload: Buffer, count: number): Promise<number> {
	const script = [
		'import socket, time',
		's = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)',
		's.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)',
		`for _ in range(${count}): s.sendto(bytes.fromhex('${payload.toString('hex')}'), ('127.0.0.1', ${port}))`,
		's.settimeout(1.0)',
		'n = 0',
		'try:',
		'    while True:',
		'        s.recv(65536)',
		'        n += 1',
		'except socket.timeout:',
		'    print(n)',
	].join('\n');
	const result = await t.context.target.exec(['python3', '-c', script], { timeoutMs: 60_000 });
	if (result.exitCode !== 0) throw new Error(`python3 in the guest failed:\n${result.stderr}`);
	return Number(result.stdout.trim());
}

/** One counter of the Udp lines of /proc/net/snmp (a line of names, then one of values). */
function udpCounter(snmp: string, name: string): number {
	const [names, values] = snmp.split('\n').filter(line => line.startsWith('Udp:'));
	const index = names?.split(' ').indexOf(name) ?? -1;
	if (index < 0) throw new Error(`no Udp counter ${name} in /proc/net/snmp`);
	return Number(values?.split(' ')[index]);
}

/** Every reply each protocol can send. */
const TEXT_REPLIES = ['OK\n', 'OK baileys\n', 'NOT FOUND\n', 'GOT IT\n', 'ERR unknown command\n', 'ERR pad to 40\n'];
const MC_REPLIES = [
	'VALUE k 0 1\r\nv\r\nEND\r\n',
	'END\r\n',
	'STORED\r\n',
	'NOT_STORED\r\n',
	'DELETED\r\n',
	'NOT_FOUND\r\n',
	'ERROR\r\n',
	'CLIENT_ERROR bad command line format\r\n',
	'SERVER_ERROR out of memory storing object\r\n',
	'VERSION kernel-udp\r\n',
];

labTest('a reply of either protocol, sent to either port, with or without a frame header, gets nothing back', async t => {
	await loadServer(t, [`port=${TEXT_PORT}`, `memcached_port=${MC_PORT}`, 'len=200']);
	const before = await stats(t);
	const replies = [...TEXT_REPLIES, ...MC_REPLIES];
	const answered: string[] = [];
	for (const reply of replies) {
		for (const payload of [Buffer.from(reply), Buffer.concat([MC_FRAME, Buffer.from(reply)])]) {
			for (const port of [TEXT_PORT, MC_PORT]) {
				const answer = await answerInGuest(t, port, payload);
				if (answer) answered.push(`${JSON.stringify(payload.toString('latin1'))} to ${port}: ${Buffer.from(answer, 'hex')}`);
			}
		}
	}
	t.deepEqual(answered, [], 'replies that were answered');
	const after = await stats(t);
	t.true(after['drops']! - before['drops']! >= replies.length * 4, `drops counts them: ${before['drops']} → ${after['drops']}`);
	// Requests still get their answers.
	t.is(Buffer.from(await answerInGuest(t, TEXT_PORT, Buffer.from('HELLO\n')), 'hex').toString(), 'GOT IT\n');
	t.is(
		Buffer.from(await answerInGuest(t, MC_PORT, Buffer.concat([MC_FRAME, Buffer.from('version\r\n')])), 'hex').toString(),
		`${MC_FRAME.toString('latin1')}VERSION kernel-udp\r\n`,
	);
	await guest(t, 'rmmod udp_server');
});

for (const softirq of [0, 1]) {
	labTest(`softirq=${softirq}: one forged datagram between the memcached port and the text port does not loop`, async t => {
		await loadServer(t, [`port=${TEXT_PORT}`, `memcached_port=${MC_PORT}`, 'len=200', `softirq=${softirq}`]);
		const forged = [
			// From the memcached port to the text port: today's loop of issue 17.
			`127.0.0.1 ${MC_PORT} 127.0.0.1 ${TEXT_PORT} ${hex('ERR unknown command\n')}`,
			// A malformed request whose error reply would go back to the text port itself.
			`127.0.0.1 ${TEXT_PORT} 127.0.0.1 ${TEXT_PORT} ${hex('fetch dog\n')}`,
			// A memcached request "from" the text port: ERROR lands on the text port.
			`127.0.0.1 ${TEXT_PORT} 127.0.0.1 ${MC_PORT} ${hex(Buffer.concat([MC_FRAME, Buffer.from('bogus\r\n')]))}`,
		];
		for (const args of forged) {
			const before = await stats(t);
			await guest(t, `python3 ${TOOL} forge ${args}`);
			await sleep(3000);
			const after = await stats(t);
			// The forged datagram, at most one answer bounced back, and the stats request itself.
			const seen = after['requests']! - before['requests']!;
			t.true(seen <= 3, `${args.split(' ').slice(0, 4).join(' ')}: ${seen} requests in 3 s after one forged datagram`);
		}
		await guest(t, 'rmmod udp_server');
	});
}

labTest('softirq=1: nothing is sent to source port 0', async t => {
	await loadServer(t, [`port=${TEXT_PORT}`, 'len=200', 'softirq=1']);
	const noPorts = async () => udpCounter(await guest(t, 'cat /proc/net/snmp'), 'NoPorts');
	const before = await noPorts();
	const dropsBefore = (await stats(t))['drops']!;
	await guest(t, `python3 ${TOOL} forge 127.0.0.1 0 127.0.0.1 ${TEXT_PORT} ${hex('HELLO\n')} 5`);
	await sleep(500);
	t.is((await noPorts()) - before, 0, 'datagrams sent to 127.0.0.1:0 (Udp NoPorts)');
	t.true((await stats(t))['drops']! - dropsBefore >= 5, 'the five are counted as drops');
	await guest(t, 'rmmod udp_server');
});

/** Sends `count` datagrams at once from one socket on this machine; the replies that came back within `waitMs`. */
async function burst(port: number, payload: Buffer, count: number, waitMs: number): Promise<Buffer[]> {
	const socket = createSocket('udp4');
	const replies: Buffer[] = [];
	socket.on('message', message => replies.push(message));
	await new Promise<void>(resolve => socket.bind(0, '127.0.0.1', resolve));
	for (let i = 0; i < count; i++) {
		await new Promise<void>((resolve, reject) => socket.send(payload, port, '127.0.0.1', error => (error ? reject(error) : resolve())));
	}
	await sleep(waitMs);
	socket.close();
	return replies;
}

for (const softirq of [false, true]) {
	labTest(
		`error replies to a sender off this host: at most a burst of 50, then 20 a second; this host gets them all${softirq ? ' (softirq=1)' : ''}`,
		async t => {
			const server = await loadServer(t, [`port=${TEXT_PORT}`, ...(softirq ? ['softirq=1'] : [])]);
			const started = Date.now();
			const remote = await burst(server.port, Buffer.from('fetch dog\n'), 300, 1000);
			const seconds = (Date.now() - started) / 1000;
			t.log(`from this machine (through the port forward): ${remote.length} of 300 error replies in ${seconds.toFixed(1)} s`);
			t.true(remote.length >= 50, 'the burst gets through');
			t.true(remote.length <= 50 + 20 * Math.ceil(seconds), `${remote.length} error replies in ${seconds.toFixed(1)} s`);
			t.true(
				remote.every(reply => reply.toString() === 'ERR unknown command\n'),
				'the replies sent are whole',
			);
			// Well-formed requests are not limited, and this host's senders get every error.
			t.is((await request('HELLO', { host: '127.0.0.1', port: server.port, timeoutMs: 2000, retries: 2 })).toString(), 'GOT IT\n');
			const local = await burstInGuest(t, TEXT_PORT, Buffer.from('fetch dog\n'), 100);
			t.is(local, 100, 'error replies inside the guest');
			await guest(t, 'rmmod udp_server');
		},
	);

	labTest(
		`memcached port: a short multi-get from off this host cannot draw a long reply (at most 3× or one datagram)${softirq ? ' (softirq=1)' : ''}`,
		async t => {
			await loadServer(t, [`port=${TEXT_PORT}`, `memcached_port=${MC_PORT}`, ...(softirq ? ['softirq=1'] : [])]);
			const mcHostPort = await freePort('udp');
			await t.context.target.exposeUdp(mcHostPort, MC_PORT);
			// One 4 KiB value, set from inside the guest.
			const value = 'v'.repeat(4096);
			t.is(
				Buffer.from(
					await answerInGuest(t, MC_PORT, Buffer.concat([MC_FRAME, Buffer.from(`set a 0 0 ${value.length}\r\n${value}\r\n`)])),
					'hex',
				)
					.subarray(8)
					.toString(),
				'STORED\r\n',
			);
			const get = Buffer.concat([MC_FRAME, Buffer.from(`get${' a'.repeat(63)}\r\n`)]);
			t.is(get.length, 139);
			const replies = await burst(mcHostPort, get, 1, 1500);
			const bytes = replies.reduce((sum, reply) => sum + reply.length, 0);
			t.log(`a ${get.length}-byte get of 63 keys drew ${replies.length} datagrams, ${bytes} bytes`);
			t.true(bytes <= Math.max(3 * get.length, 1400), `${bytes} bytes for a ${get.length}-byte request`);
			t.regex(replies[0]?.subarray(8).toString() ?? '', /^SERVER_ERROR reply too long/);
			// One key, as memcached clients ask: answered whole (one datagram of 4 KiB is over 1 400: padded).
			const single = await burst(mcHostPort, Buffer.concat([MC_FRAME, Buffer.from('get a\r\n')]), 1, 1500);
			t.regex(single[0]?.subarray(8).toString() ?? '', /^SERVER_ERROR reply too long: pad to \d+\r\n$/);
			const pad = Number(/pad to (\d+)/.exec(single[0]!.subarray(8).toString())![1]);
			const padded = Buffer.concat([MC_FRAME, Buffer.from(`get a${' '.repeat(pad - 8 - 7)}\r\n`)]);
			const whole = await burst(mcHostPort, padded, 1, 1500);
			t.is(Buffer.concat(whole.map(reply => reply.subarray(8))).toString(), `VALUE a 0 4096\r\n${value}\r\nEND\r\n`);
			await t.context.target.unexposeUdp(mcHostPort);
			await guest(t, 'rmmod udp_server');
		},
	);
}
