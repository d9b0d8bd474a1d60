/**
 * rx_dev=DEV (server-module/devhook.c, issue 20's BMC design): reads that
 * arrive on the device are answered in its receive handler, before the IP
 * and UDP layers, in the request's own frame. Here the device is the lab's
 * eth0, where this machine's datagrams arrive (through QEMU's user network):
 * every reply byte-exact on both protocols, changes made there too, a
 * sender's order kept when one of its requests goes to a thread, the table
 * matching a model under concurrent writers, unload prompt under a flood,
 * eth0 removed while the handler is on it, and the parameter's errors. What only a second guest can send (a bad
 * checksum, a forged source) is in two-hosts.test.ts.
 */
import type { ExecutionContext } from 'ava';
import { createSocket } from 'node:dgram';
import { once } from 'node:events';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { execa } from 'execa';
import { lastLogSequence, load } from '../../src/lifecycle.js';
import { PROJECT_ROOT } from '../../src/modules.js';
import { freePort } from '../../src/lab/free-port.js';
import {
	assertPromptUnload,
	guest,
	type LabContext,
	labTest,
	loadServer,
	pipelined,
	timedRmmod,
	useLab,
	waitForLog,
	writersMatchModel,
} from '../helpers/lab.js';

useLab(import.meta.url);

type T = ExecutionContext<LabContext>;

const MEMCACHED_PORT = 11311;

/**
 * Sends each payload and waits for its reply (1 s at most), one after the
 * other: reply text → how many times it came.
 */
async function ask(port: number, payload: Buffer, count: number): Promise<Map<string, number>> {
	const socket = createSocket('udp4');
	const seen = new Map<string, number>();
	try {
		for (let i = 0; i < count; i++) {
			const reply = once(socket, 'message', { signal: AbortSignal.timeout(1000) }).then(
				([message]) => (message as Buffer).toString('latin1'),
				() => '(no reply)',
			);
			socket.send(payload, port, '127.0.0.1');
			const text = await reply;
			seen.set(text, (seen.get(text) ?? 0) + 1);
		}
	} finally {
		socket.close();
	}
	return seen;
}

/**
 * Runs `perf stat` on the udp_server:send tracepoint in the guest while
 * `work` runs on this machine: the reply datagrams by how they were sent.
 */
async function sendsDuring(t: T, work: () => Promise<void>): Promise<{ all: number; newSkb: number; reused: number; device: number }> {
	await guest(t, 'rm -f /run/kudp-perf-go /run/kudp-perf-done');
	const events = ['', 'how == 1', 'how == 2', 'how == 3'].flatMap(filter => [
		'-e',
		'udp_server:send',
		...(filter ? ['--filter', filter] : []),
	]);
	const perf = t.context.target.exec(
		[
			'perf',
			'stat',
			'-x,',
			'-a',
			...events,
			'--',
			'sh',
			'-c',
			'touch /run/kudp-perf-go; while [ ! -e /run/kudp-perf-done ]; do sleep 0.1; done',
		],
		{ timeoutMs: 300_000 },
	);
	await guest(t, 'for i in $(seq 600); do [ -e /run/kudp-perf-go ] && exit 0; sleep 0.1; done; exit 1');
	try {
		await work();
	} finally {
		await guest(t, 'touch /run/kudp-perf-done');
	}
	const result = await perf;
	t.is(result.exitCode, 0, result.stderr);
	const [all, newSkb, reused, device] = result.stderr
		.split('\n')
		.filter(line => line.split(',')[2]?.startsWith('udp_server:'))
		.map(line => Number(line.split(',')[0]));
	return { all: all!, newSkb: newSkb!, reused: reused!, device: device! };
}

const frame = (id: number, text: string) =>
	Buffer.concat([Buffer.from([id >> 8, id & 0xff, 0, 0, 0, 1, 0, 0]), Buffer.from(text, 'latin1')]);

labTest(
	"rx_dev=eth0: reads from this machine are answered in eth0's receive handler, byte-exact on both protocols, and so are changes",
	async t => {
		const server = await loadServer(t, [`memcached_port=${MEMCACHED_PORT}`, 'softirq=1', 'threads=2', 'len=2048', 'rx_dev=eth0']);
		const mcPort = await freePort('udp');
		await t.context.target.exposeUdp(mcPort, MEMCACHED_PORT);
		const long = 'w'.repeat(1000);
		await guest(t, `echo 'insert dog baileys' > /proc/ht; echo 'insert long ${long}' > /proc/ht`);

		let text = new Map<string, number>();
		let mc = new Map<string, number>();
		let longReplies = new Map<string, number>();
		const changes = new Map<string, number>();
		const sends = await sendsDuring(t, async () => {
			text = await ask(server.port, Buffer.from('lookup dog'), 200);
			mc = await ask(mcPort, frame(7, 'get dog\r\n'), 200);
			// Padded to a third of its reply: a sender off the guest must (PROTOCOL.md, "Reflection").
			longReplies = await ask(server.port, Buffer.from(`lookup long${' '.repeat(340)}`), 50);
			for (let i = 0; i < 20; i++) {
				for (const [reply, n] of await ask(server.port, Buffer.from(`insert cat${i} tom`), 1)) {
					changes.set(reply, (changes.get(reply) ?? 0) + n);
				}
			}
		});
		t.log(`reply datagrams ${sends.all}: device ${sends.device}, reused_skb ${sends.reused}, new_skb ${sends.newSkb}`);
		t.deepEqual([...text], [['OK baileys\n', 200]]);
		t.deepEqual([...mc], [['\x00\x07\x00\x00\x00\x01\x00\x00VALUE dog 0 7\r\nbaileys\r\nEND\r\n', 200]]);
		t.deepEqual([...longReplies], [[`OK ${long}\n`, 50]]);
		t.deepEqual([...changes], [['OK\n', 20]]);
		t.is(sends.all, 470, 'one reply datagram per request');
		t.is(sends.device, 420, "every short read and every insert answered by the handler, in the request's own skb");
		t.is(sends.newSkb, 50, 'a reply longer than the room of the request gets an skb of its own');
		t.is(sends.reused, 0, 'nothing left to the encap_rcv hook');
		t.regex(await guest(t, 'cat /proc/hashtable'), /^cat19 tom$/m);
	},
);

labTest("rx_dev=eth0: a sender's replies keep its order when one of its requests goes to a thread", async t => {
	const server = await loadServer(t, ['softirq=1', 'threads=2', 'len=256', 'rx_dev=eth0']);
	await guest(t, `echo 'insert dog baileys' > /proc/ht`);
	// Over len: the hook leaves it to the thread, and the lookup behind it must wait its turn.
	const tooLong = Buffer.from(`insert k ${'v'.repeat(300)}`);
	const payloads = Array.from({ length: 20 }, () => [tooLong, Buffer.from('lookup dog')]).flat();
	const replies = await pipelined(server.port, payloads);
	t.log(`first replies: ${JSON.stringify(replies.slice(0, 2))}`);
	t.is(replies.length, 40);
	t.deepEqual(
		replies.map(reply => (reply === 'OK baileys\n' ? 'lookup' : 'thread')),
		payloads.map((_, i) => (i % 2 ? 'lookup' : 'thread')),
	);
});

labTest('rx_dev=eth0: 8 concurrent clients match a model, and unload stays prompt under a flood on eth0, twice', async t => {
	const server = await loadServer(t, ['softirq=1', 'threads=2', 'rx_dev=eth0']);
	await writersMatchModel(t, server.port);
	await guest(t, 'rmmod udp_server');
	const tool = path.join(PROJECT_ROOT, 'test/fixtures/udp_tool.py');
	for (let cycle = 1; cycle <= 2; cycle++) {
		const { port } = await loadServer(t, ['softirq=1', 'threads=2', 'rx_dev=eth0']);
		await guest(t, `echo 'insert k v' > /proc/ht`);
		const listen = await freePort('udp');
		const flood = execa('python3', [
			tool,
			'flood',
			'127.0.0.1',
			String(port),
			Buffer.from('lookup k').toString('hex'),
			'8',
			String(listen),
		]);
		await sleep(2000);
		const times = await timedRmmod(t, 'udp_server');
		t.log(`cycle ${cycle}: module_exit ${times.exitMs.toFixed(1)} ms, rmmod ${times.commandMs} ms`);
		assertPromptUnload(t, times, `rmmod under a flood on eth0, cycle ${cycle}`);
		const { stdout } = await flood;
		t.log(`cycle ${cycle}: ${stdout.trim()}`);
		t.regex(stdout, /received [1-9]/, 'the flood was answered before the unload');
	}
	// eth0 works without the handler: the guest agent's connection crosses it.
	t.is((await guest(t, 'echo alive')).trim(), 'alive');
});

labTest('rx_dev=eth0: eth0 removed while attached takes the handler with it; the server goes on through the stack and unloads', async t => {
	const server = await loadServer(t, ['softirq=1', 'rx_dev=eth0']);
	await guest(t, `echo 'insert dog baileys' > /proc/ht`);
	let before = new Map<string, number>();
	const attached = await sendsDuring(t, async () => {
		before = await ask(server.port, Buffer.from('lookup dog'), 10);
	});
	t.deepEqual([...before], [['OK baileys\n', 10]]);
	t.is(attached.device, 10, 'answered by the handler while eth0 is there');

	// Unbinding its virtio driver unregisters eth0, as unplugging the card
	// would; the handler must go with it (the module holds a reference to
	// eth0: kept, the unregister would wait for it forever). Bound again, it
	// comes back as a new eth0, without our handler, configured as the lab's
	// init does (src/lab/guest-init.sh).
	const since = await lastLogSequence(t.context.target);
	await guest(
		t,
		[
			'set -e',
			'dev=$(basename "$(readlink -f /sys/class/net/eth0/device)")',
			'echo "$dev" > /sys/bus/virtio/drivers/virtio_net/unbind',
			'echo "$dev" > /sys/bus/virtio/drivers/virtio_net/bind',
			'for i in $(seq 100); do [ -e /sys/class/net/eth0 ] && break; sleep 0.1; done',
			'ip link set eth0 up',
			'ip addr add 10.0.2.15/32 dev eth0',
			'ip route add 10.0.2.2/32 dev eth0',
		].join('\n'),
	);
	await waitForLog(t.context.target, since, /^udp_server: rx_dev=eth0 is going away: its requests now take the stack$/);
	let after = new Map<string, number>();
	const detached = await sendsDuring(t, async () => {
		after = await ask(server.port, Buffer.from('lookup dog'), 10);
	});
	t.deepEqual([...after], [['OK baileys\n', 10]], 'still answered');
	t.is(detached.device, 0, 'no handler on the new eth0');
	t.is(detached.reused, 10, "answered by the socket's encap_rcv hook instead");
	assertPromptUnload(t, await timedRmmod(t, 'udp_server'), 'rmmod after eth0 went away');
});

labTest(
	'rx_dev: a device that is missing, not Ethernet, or without softirq=1 fails the load with the reason; the next load works',
	async t => {
		const tries: [string[], RegExp][] = [
			[['softirq=1', 'rx_dev=nosuch0'], /rx_dev=nosuch0: no such device/],
			[['softirq=1', 'rx_dev=lo'], /rx_dev=lo is not an Ethernet device/],
			[['rx_dev=eth0'], /rx_dev=eth0 needs softirq=1/],
		];
		for (const [params, reason] of tries) {
			const error = await t.throwsAsync<Error & { hint?: string }>(
				load(t.context.target, t.context.server, { name: 'udp_server', params, daemon: false, hostPort: await freePort('udp') }),
			);
			// The module's own log lines come as the error's hint.
			t.regex(`${error?.message}\n${error?.hint}`, reason, params.join(' '));
		}
		const server = await loadServer(t, ['softirq=1', 'rx_dev=eth0']);
		const replies = await ask(server.port, Buffer.from('HELLO'), 3);
		t.deepEqual([...replies], [['GOT IT\n', 3]]);
		await guest(t, 'rmmod udp_server');
	},
);
