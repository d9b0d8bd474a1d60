/**
 * softirq=1 (server-module/fastpath.c, issue 12): reads are answered in the
 * receive softirq without waking a thread; changes still go to the threads;
 * a sender's replies keep the order of its requests; the table matches a
 * model under concurrent clients; unload stays prompt under a flood; a load
 * that fails under a flood leaves nothing behind (issue 17); the UDP stack's
 * checks and counters apply to the datagrams the hook takes.
 */
import type { ExecutionContext } from 'ava';
import { createSocket } from 'node:dgram';
import { once } from 'node:events';
import path from 'node:path';
import { PROJECT_ROOT } from '../../src/modules.js';
import { KvClient, request } from '../../user-client/client.js';
import {
	assertPromptUnload,
	guest,
	labTest,
	loadServer,
	serverThreadWakeups,
	timedRmmod,
	useLab,
	writersMatchModel,
	type LabContext,
} from '../helpers/lab.js';

useLab(import.meta.url);

type T = ExecutionContext<LabContext>;

async function send(port: number, message: string): Promise<string> {
	return (await request(message, { host: '127.0.0.1', port, timeoutMs: 3000, retries: 3 })).toString();
}

/** The CPU time the server's threads have run, in ns (schedstat). */
async function threadRuntime(t: T): Promise<number> {
	const out = await guest(
		t,
		`for p in $(pgrep '^udp_server/'); do cut -d' ' -f1 /proc/$p/schedstat; done | awk '{ s += $1 } END { printf "%d", s }'`,
	);
	return Number(out.trim());
}

labTest('softirq=1 answers lookups, inserts and deletes without waking a thread', async t => {
	const server = await loadServer(t, ['softirq=1', 'threads=2']);
	t.is(await send(server.port, 'insert dog baileys'), 'OK\n');
	const before = await serverThreadWakeups(t);
	for (let i = 0; i < 300; i++) {
		t.is(await send(server.port, i % 2 ? 'lookup dog' : 'lookup cat'), i % 2 ? 'OK baileys\n' : 'NOT FOUND\n');
	}
	t.is(await send(server.port, 'HELLO'), 'GOT IT\n');
	t.is(await send(server.port, 'bogus'), 'ERR unknown command\n');
	const reads = (await serverThreadWakeups(t)) - before;
	t.log(`302 reads woke the server threads ${reads} times`);
	t.true(reads < 30, `the threads woke ${reads} times for 302 reads`);

	const beforeWrites = await serverThreadWakeups(t);
	for (let i = 0; i < 100; i++) t.is(await send(server.port, `insert k${i} v${i}`), 'OK\n');
	t.is(await send(server.port, 'delete dog'), 'OK\n');
	t.is(await send(server.port, 'lookup dog'), 'NOT FOUND\n');
	const writes = (await serverThreadWakeups(t)) - beforeWrites;
	t.log(`102 changes and a read woke the server threads ${writes} times`);
	t.true(writes < 30, `the threads woke ${writes} times for 102 changes`);
	t.is((await guest(t, 'grep -c . /proc/hashtable')).trim(), '100');
	t.is((await guest(t, 'grep -c . /proc/ht')).trim(), '102', 'the history has the changes, not the reads');
	t.is((await guest(t, 'tail -n 2 /proc/ht')).trim(), 'insert k99 v99\ndelete dog', 'in the order they were made');
});

labTest('softirq=1 with kvd: changes made in softirq reach the backup in their order', async t => {
	const backup = '/var/tmp/softirq-kvd.txt';
	const server = await loadServer(t, ['softirq=1', 'threads=2'], { daemon: true, backup });
	for (let i = 0; i < 50; i++) t.is(await send(server.port, `insert s${i} v${i}`), 'OK\n');
	t.is(await send(server.port, 'insert s7 again'), 'OK\n');
	t.is(await send(server.port, 'delete s8'), 'OK\n');
	// kvd appends each group commit to BACKUP.log ("+ KEY VALUE", "- KEY"), in the order of the changes.
	let saved = '';
	for (let tries = 0; tries < 50 && !saved.includes('- s8'); tries++) {
		await new Promise(resolve => setTimeout(resolve, 200));
		saved = await guest(t, `cat ${backup}.log 2>/dev/null || true`);
	}
	const changes = saved.split('\n').filter(line => /^[+-] s\d+/.test(line));
	t.is(changes.length, 52, saved);
	t.deepEqual(changes.slice(-2), ['+ s7 again', '- s8']);
});

labTest('softirq=1 durable=1: changes wait for kvd, so the threads make them; reads stay in softirq', async t => {
	const server = await loadServer(t, ['softirq=1', 'threads=2', 'durable=1'], { daemon: true, backup: '/var/tmp/softirq-durable.txt' });
	const before = await threadRuntime(t);
	for (let i = 0; i < 20; i++) t.is(await send(server.port, `insert d${i} v${i}`), 'OK\n');
	t.true((await threadRuntime(t)) > before, 'durable changes are made by the threads');
	const reads = await serverThreadWakeups(t);
	for (let i = 0; i < 50; i++) t.is(await send(server.port, `lookup d${i % 20}`), `OK v${i % 20}\n`);
	const woke = (await serverThreadWakeups(t)) - reads;
	t.true(woke < 15, `the threads woke ${woke} times for 50 reads`);
});

labTest('softirq=1: a reply longer than the MTU of the way back arrives whole (fragmented)', async t => {
	// From this machine the reply leaves the guest by eth0 (MTU 1500); kvclient pads its lookup as asked.
	const server = await loadServer(t, ['softirq=1', 'len=8192']);
	const value = 'v'.repeat(4000);
	t.is(await send(server.port, `insert big ${value}`), 'OK\n');
	const client = new KvClient({ host: '127.0.0.1', port: server.port, timeoutMs: 3000, retries: 3 });
	t.is(await client.lookup('big'), value);
});

labTest('softirq=1: a pipelining client reads its own writes, in order', async t => {
	const server = await loadServer(t, ['softirq=1', 'threads=2']);
	const socket = createSocket('udp4');
	socket.connect(server.port, '127.0.0.1');
	await once(socket, 'connect');
	const replies: string[] = [];
	socket.on('message', message => replies.push(message.toString()));
	// 40 rounds of 10 pairs sent back to back: "insert pK vI" then "lookup pK".
	// A lookup answered ahead of its insert would say NOT FOUND or an older value.
	const expected: string[] = [];
	for (let round = 0; round < 40; round++) {
		const start = replies.length;
		for (let pair = 0; pair < 10; pair++) {
			const i = round * 10 + pair;
			socket.send(`insert p${pair} v${i}`);
			socket.send(`lookup p${pair}`);
			expected.push('OK\n', `OK v${i}\n`);
		}
		const deadline = Date.now() + 5000;
		while (replies.length < start + 20 && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 5));
		if (replies.length < start + 20) break; // a lost datagram: compare what came
	}
	socket.close();
	t.true(replies.length >= 700, `${replies.length} of 800 replies arrived`);
	const complete = Math.floor(replies.length / 20) * 20;
	t.deepEqual(replies.slice(0, complete), expected.slice(0, complete));
});

labTest('softirq=1 with four threads: 8 concurrent clients match a model, and unload stays prompt under a flood', async t => {
	const server = await loadServer(t, ['softirq=1', 'threads=4']);
	await writersMatchModel(t, server.port);

	// Floods of lookups (answered in softirq) and inserts (threads) from inside the guest, then rmmod.
	await guest(
		t,
		[
			`(timeout 20 sh -c 'while :; do echo "lookup c0k1" ; done' | nc -u 127.0.0.1 3000 >/dev/null 2>&1 &)`,
			`(timeout 20 sh -c 'while :; do echo "insert f x" ; done' | nc -u 127.0.0.1 3000 >/dev/null 2>&1 &)`,
			'sleep 2',
		].join('\n'),
	);
	assertPromptUnload(t, await timedRmmod(t, 'udp_server'), 'rmmod with softirq=1 under a flood');
	await guest(t, 'pkill -x nc || true');
});

labTest('softirq=1: 10 load/unload cycles under a flood of lookups, each unload prompt', async t => {
	for (let cycle = 0; cycle < 10; cycle++) {
		await loadServer(t, ['softirq=1', 'port=3000']);
		await guest(t, `(timeout 5 sh -c 'while :; do echo "lookup k" ; done' | nc -u 127.0.0.1 3000 >/dev/null 2>&1 &); sleep 0.5`);
		assertPromptUnload(t, await timedRmmod(t, 'udp_server'), `cycle ${cycle + 1}`);
		await guest(t, 'pkill -x nc || true');
	}
	t.is((await guest(t, 'grep -c "^udp_server " /proc/modules || true')).trim(), '0');
});

labTest('softirq=1: a load that fails (memcached_port busy) under a flood on the text port leaves nothing behind, 10 times', async t => {
	const ko = t.context.server.ko;
	const out = await guest(
		t,
		[
			// Something else holds the memcached port, so the load fails after the text port's sockets are hooked.
			// (A plain socket: netcat sets SO_REUSEPORT, which the server's shared sockets would join.)
			// Both stay until the end (killed there), not for a set time: on the debug kernel the
			// 10 loads took longer than the 40 s the squatter once had, and the last 5 succeeded.
			`(timeout 280 python3 -c 'import socket, time; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", 11211)); time.sleep(300)' & echo $! >/run/squatter.pid)`,
			`(timeout 280 sh -c 'while :; do echo "lookup k"; done' | nc -u 127.0.0.1 3000 >/dev/null 2>&1 &)`,
			// Until it is bound (python3's first start in the guest takes seconds): 11211 is 2BCB in /proc/net/udp.
			'for i in $(seq 100); do grep -qi ":2BCB " /proc/net/udp && break; sleep 0.2; done',
			'failed=0',
			'for i in 1 2 3 4 5 6 7 8 9 10; do',
			`  if insmod '${ko}' softirq=1 threads=2 port=3000 memcached_port=11211 2>/dev/null; then rmmod udp_server; else failed=$((failed + 1)); fi`,
			'done',
			'echo "failed $failed"',
			'pkill -x nc || true',
			// By its PID (timeout passes the TERM on): a pkill -f pattern also matches this script's own shell.
			'kill $(cat /run/squatter.pid) || true',
		].join('\n'),
		300_000,
	);
	t.regex(out, /^failed 10$/m, 'every load fails: the port is busy');
	t.is((await guest(t, 'grep -c "^udp_server " /proc/modules || true')).trim(), '0');
	// The gate (labTest) fails the test on a KASAN report or a warning; the debug kernel sees a use-after-free.
});

labTest('softirq=1: datagrams dropped on a full queue are counted in the UDP MIB, as the stack counts them', async t => {
	await loadServer(t, ['softirq=1', 'threads=1', 'port=3000', 'len=200']);
	const snmp = async () => {
		const [names, values] = (await guest(t, 'cat /proc/net/snmp')).split('\n').filter(line => line.startsWith('Udp:'));
		const index = (name: string) => names!.split(' ').indexOf(name);
		return (name: string) => Number(values!.split(' ')[index(name)]);
	};
	const stats = async () => Number(/drops=(\d+)/.exec(await guest(t, 'echo stats | nc -u -w1 127.0.0.1 3000'))?.[1]);
	const before = await snmp();
	const dropsBefore = await stats();
	// 20 000 datagrams at once that the hook leaves to the thread (longer than len), faster than one
	// thread takes them; the replies go to a closed port.
	const tool = path.join(PROJECT_ROOT, 'test/fixtures/udp_tool.py');
	const tooLong = Buffer.from(`insert k ${'v'.repeat(200)}`).toString('hex');
	await guest(t, `python3 ${tool} forge 127.0.0.1 9 127.0.0.1 3000 ${tooLong} 20000`, 120_000);
	await new Promise(resolve => setTimeout(resolve, 2000));
	const after = await snmp();
	const drops = (await stats()) - dropsBefore;
	const rcvbuf = after('RcvbufErrors') - before('RcvbufErrors');
	t.log(`server drops ${drops}; Udp RcvbufErrors +${rcvbuf}, InErrors +${after('InErrors') - before('InErrors')}`);
	t.true(rcvbuf > 0, 'the full queue was counted as RcvbufErrors');
	t.true(after('InErrors') - before('InErrors') >= rcvbuf, 'and as InErrors');
	t.true(drops >= rcvbuf, 'the server counts them in its drops too');
	await guest(t, 'rmmod udp_server');
});

/** `perf stat -x,` output → the count of each event, in the order the events were given. */
function perfCounts(csv: string): number[] {
	return csv
		.split('\n')
		.filter(line => line.split(',')[2]?.startsWith('udp_server:'))
		.map(line => Number(line.split(',')[0]));
}

/** Reply payload → how many times it came, from udp_tool.py's `ask`. */
function replies(out: string): Map<string, number> {
	return new Map(
		out
			.trim()
			.split('\n')
			.map(line => line.split(' '))
			.map(([hex, n]) => [hex === '-' ? '' : Buffer.from(hex!, 'hex').toString('latin1'), Number(n)]),
	);
}

labTest(
	"softirq=1: reads on both protocols are answered byte-exact in the request's own skb; one that lacks the room gets an skb of its own",
	async t => {
		await loadServer(t, ['port=3000', 'memcached_port=11311', 'softirq=1', 'threads=2', 'len=2048']);
		const long = 'w'.repeat(1000);
		await guest(t, `printf 'insert dog baileys' | nc -u -w1 127.0.0.1 3000; printf 'insert long ${long}' | nc -u -w1 127.0.0.1 3000`);
		const tool = path.join(PROJECT_ROOT, 'test/fixtures/udp_tool.py');
		const hex = (text: string) => Buffer.from(text, 'latin1').toString('hex');
		const mcGet = '\x00\x07\x00\x00\x00\x01\x00\x00get dog\r\n';
		const ask = [
			`python3 ${tool} ask 127.0.0.1 3000 ${hex('lookup dog')} 200`,
			`python3 ${tool} ask 127.0.0.1 11311 ${hex(mcGet)} 200`,
			`python3 ${tool} ask 127.0.0.1 3000 ${hex('lookup long')} 50`,
		].join('; ');
		// The same event three times: every reply datagram, those built in the request's skb (how=2), those in new ones (how=1).
		const perf = await t.context.target.exec(
			[
				'perf',
				'stat',
				'-x,',
				'-a',
				'-e',
				'udp_server:send',
				'-e',
				'udp_server:send',
				'--filter',
				'how == 2',
				'-e',
				'udp_server:send',
				'--filter',
				'how == 1',
				'--',
				'sh',
				'-c',
				ask,
			],
			{ timeoutMs: 180_000 },
		);
		t.is(perf.exitCode, 0, perf.stderr);
		const [all, reused, fresh] = perfCounts(perf.stderr);
		t.log(`reply datagrams: ${all}; in the request's own skb: ${reused}; in a new skb: ${fresh}`);
		const got = replies(perf.stdout.split('\n').slice(0, 1).join('\n'));
		t.deepEqual([...got], [['OK baileys\n', 200]]);
		const mc = replies(perf.stdout.split('\n').slice(1, 2).join('\n'));
		t.deepEqual([...mc], [['\x00\x07\x00\x00\x00\x01\x00\x00VALUE dog 0 7\r\nbaileys\r\nEND\r\n', 200]]);
		const longReplies = replies(perf.stdout.split('\n').slice(2, 3).join('\n'));
		t.deepEqual([...longReplies], [[`OK ${long}\n`, 50]]);
		t.is(all, 450, 'one reply datagram per request, none from the threads');
		t.is(reused, 400, 'every short read answered in its own skb: nothing allocated');
		t.is(fresh, 50, 'a reply longer than the room of the request gets an skb of its own');
	},
);
