/**
 * A pool of three real servers, one per lab (./run pool up 3), on the labs'
 * network: 3 000 keys stored through kvclient --servers run in one of the
 * guests land on their ketama servers (read back from each server's
 * /proc/hashtable), memaslap verifies over the three memcached ports, a
 * fourth server takes about a quarter of the keys and no others, and with
 * one lab down the keys of the other two still answer while its own fail
 * with an error naming it.
 *
 * The three labs boot at once (one emulated CPU each); the wall time of
 * each step is logged.
 */
import anyTest, { type ExecutionContext, type TestFn } from 'ava';
import { execa } from 'execa';
import { rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { formatKmsg } from '../../src/kmsg.js';
import { PROJECT_ROOT } from '../../src/modules.js';
import { chooseTarget, type Target } from '../../src/targets.js';
import { Continuum } from '../../user-client/ketama.js';
import { parseServers } from '../../user-client/pool.js';
import { kernelProblems, markTestStart } from '../helpers/lab.js';

const test = anyTest as TestFn<unknown>;

const PREFIX = `test-pool-${process.pid}-s`;
const RUN = path.join(PROJECT_ROOT, 'run');
const KVCLIENT = path.join(PROJECT_ROOT, 'dist/user-client/kvclient.js');
/** Where the guests read the keys from: this machine's files, which every lab sees. */
const KEY_FILE = path.join(PROJECT_ROOT, '.lab', `${PREFIX}keys.txt`);
const KEYS = Array.from({ length: 3000 }, (_, i) => `key${String(i).padStart(5, '0')}`);
const valueFor = (key: string) => `value-of-${key}`;
/** A sample for the lookups (Node in an emulated guest is slow): every 5th key. */
const SAMPLE = KEYS.filter((_, i) => i % 5 === 0);

interface Member {
	lab: string;
	running: boolean;
	address?: string;
	answers: boolean;
	entries?: number;
}

const labs = new Map<string, Target>();
const timings: string[] = [];

async function timed<T>(what: string, step: () => Promise<T>): Promise<T> {
	const started = Date.now();
	try {
		return await step();
	} finally {
		timings.push(`${what}: ${((Date.now() - started) / 1000).toFixed(1)} s`);
	}
}

async function run(args: string[], timeoutMs = 600_000) {
	return execa(RUN, args, { reject: false, timeout: timeoutMs, all: true });
}

async function status(): Promise<{ members: Member[]; servers: string }> {
	const result = await run(['pool', 'status', '--json', '--prefix', PREFIX], 120_000);
	if (result.exitCode !== 0) throw new Error(`./run pool status failed: ${result.all}`);
	return JSON.parse(result.stdout) as { members: Member[]; servers: string };
}

async function lab(number: number): Promise<Target> {
	const name = `${PREFIX}${number}`;
	let target = labs.get(name);
	if (!target) {
		target = await chooseTarget({ target: 'lab', lab: name });
		labs.set(name, target);
	}
	return target;
}

/** Runs a shell command in lab `number`; resolves with its result whatever the exit code. */
async function inLab(number: number, script: string, timeoutMs = 300_000) {
	return (await lab(number)).exec(['sh', '-c', script], { timeoutMs });
}

/** kvclient in lab 1 (Node, not the bin wrapper: no TypeScript check under emulation). */
function kvclient(servers: string, args: string): string {
	return `'${process.execPath}' '${KVCLIENT}' --servers ${servers} --timeout 3000 ${args}`;
}

/** The keys in a guest's table. */
async function tableOf(number: number): Promise<string[]> {
	const result = await inLab(number, 'cat /proc/hashtable', 60_000);
	if (result.exitCode !== 0) throw new Error(`cat /proc/hashtable in lab ${number}: ${result.stderr}`);
	return result.stdout
		.split('\n')
		.filter(Boolean)
		.map(line => line.split(' ')[0]!);
}

/** A test over the pool's running labs, failed when any of their kernels logged a problem meanwhile. */
function poolTest(title: string, implementation: (t: ExecutionContext) => Promise<void>): void {
	test.serial(title, async t => {
		t.timeout(900_000);
		const running: Target[] = [];
		for (const target of labs.values()) if (await target.isUp()) running.push(target);
		const starts = await Promise.all(running.map(target => markTestStart(target)));
		await implementation(t);
		for (const [index, target] of running.entries()) {
			if (!(await target.isUp())) continue; // stopped by the test itself
			const problems = await kernelProblems(target, starts[index]!);
			t.deepEqual(
				problems.map(record => formatKmsg(record)),
				[],
				`the kernel of ${target.place} logged a problem`,
			);
		}
	});
}

let servers = '';

test.before(async () => {
	await writeFile(KEY_FILE, `${KEYS.map(key => `${key} ${valueFor(key)}`).join('\n')}\n`);
	const up = await timed('./run pool up 3 (three labs booting at once, udp_server loaded)', () =>
		run(['pool', 'up', '3', '--prefix', PREFIX]),
	);
	if (up.exitCode !== 0) throw new Error(`./run pool up 3 failed (${up.exitCode}):\n${up.all}`);
	for (const number of [1, 2, 3]) await lab(number);
	servers = /kvclient --servers (\S+)/.exec(up.stdout)?.[1] ?? '';
});

test.after.always(async t => {
	const down = await run(['pool', 'down', '--prefix', PREFIX], 300_000);
	await rm(KEY_FILE, { force: true });
	// Their directories too, once down: a lab's address on 10.0.9.0/24 is kept while its directory exists.
	if (down.exitCode === 0) {
		for (const name of labs.keys()) await rm(path.join(PROJECT_ROOT, '.lab', name), { recursive: true, force: true });
	}
	t.log(`./run pool down: ${down.stdout.trim()}`);
	t.log(`wall times:\n  ${timings.join('\n  ')}`);
});

poolTest('pool up prints the --servers list; status shows three labs on 10.0.9.0/24 whose servers answer', async t => {
	const { members, servers: listed } = await status();
	t.is(members.length, 3);
	for (const member of members) {
		t.like(member, { running: true, answers: true, entries: 0 }, member.lab);
		t.regex(member.address ?? '', /^10\.0\.9\.\d+$/);
	}
	t.is(new Set(members.map(member => member.address)).size, 3, 'three addresses');
	t.is(servers, members.map(member => `${member.address}:3000`).join(','), 'pool up printed the same list');
	t.is(listed, servers);
	const text = await run(['pool', 'status', '--prefix', PREFIX]);
	t.regex(text.stdout, new RegExp(`^${PREFIX}1 +10\\.0\\.9\\.\\d+ +udp_server text 3000, memcached 11211; answers \\(0 entries\\)`, 'm'));
});

poolTest('3 000 keys through kvclient --servers: each server holds 20-45% of them, each key once, where ketama puts it', async t => {
	const load = await timed('kvclient --servers load (3 000 keys, in lab 1)', () =>
		inLab(1, kvclient(servers, `load '${KEY_FILE}'`), 600_000),
	);
	t.is(load.exitCode, 0, load.stderr);
	t.log(load.stdout.trim());
	const continuum = new Continuum(parseServers(servers));
	const tables = await Promise.all([1, 2, 3].map(tableOf));
	const holders = new Map<string, number[]>();
	tables.forEach((keys, index) => {
		for (const key of keys) holders.set(key, [...(holders.get(key) ?? []), index]);
	});
	t.deepEqual([...holders].filter(([, where]) => where.length > 1).slice(0, 5), [], 'keys on two servers');
	t.deepEqual([...holders.keys()].sort(), KEYS, 'every key is on a server, and nothing else is');
	const misplaced = KEYS.filter(key => holders.get(key)?.[0] !== continuum.indexFor(key));
	t.deepEqual(misplaced.slice(0, 5), [], `${misplaced.length} keys are not on their ketama server`);
	tables.forEach((keys, index) => {
		const share = keys.length / KEYS.length;
		t.true(share >= 0.2 && share <= 0.45, `server ${index + 1} holds ${(100 * share).toFixed(1)}%`);
		t.regex(load.stdout, new RegExp(`^${parseServers(servers)[index]!.host.replace(/\./g, '\\.')}:3000: ${keys.length} stored$`, 'm'));
	});
	t.log(`shares: ${tables.map(keys => `${((100 * keys.length) / KEYS.length).toFixed(1)}%`).join(' / ')}`);
});

poolTest('a fourth server takes about a quarter of the keys, and no key moves between the other three', async t => {
	const three = new Continuum(parseServers(servers));
	const up = await timed('./run pool up 4 (one more lab; the three kept, with their tables)', () =>
		run(['pool', 'up', '4', '--prefix', PREFIX]),
	);
	t.is(up.exitCode, 0, up.all);
	await lab(4);
	t.regex(up.stderr, /udp_server was already serving; kept it/);
	const four = /kvclient --servers (\S+)/.exec(up.stdout)?.[1] ?? '';
	t.true(four.startsWith(`${servers},`), `${four} extends ${servers}`);
	const continuum = new Continuum(parseServers(four));
	// From the mapping: which keys move, and where to.
	const moved = KEYS.filter(key => continuum.indexFor(key) !== three.indexFor(key));
	t.deepEqual(
		moved.filter(key => continuum.indexFor(key) !== 3),
		[],
		'a key moved between two of the old servers',
	);
	t.log(`${moved.length} of ${KEYS.length} keys (${((100 * moved.length) / KEYS.length).toFixed(1)}%) move to the fourth server`);
	t.true(moved.length > 0.15 * KEYS.length && moved.length < 0.35 * KEYS.length);
	// Live: through the four, a key that stays is found where it was; one that moved is not on the new, empty server.
	const read = await timed(`kvclient --servers (4) lookup of ${SAMPLE.length} keys`, () =>
		inLab(1, kvclient(four, `lookup ${SAMPLE.join(' ')}`), 600_000),
	);
	t.is(read.exitCode, 1, `exit 1: some keys are not found (${read.stderr.slice(0, 500)})`);
	const found = read.stdout
		.split('\n')
		.filter(Boolean)
		.map(line => line.split(' ')[0]!);
	t.deepEqual(
		found,
		SAMPLE.filter(key => continuum.indexFor(key) !== 3),
	);
	const missing = [...read.stderr.matchAll(/^kvclient: (\S+): not found$/gm)].map(match => match[1]);
	t.deepEqual(
		missing,
		SAMPLE.filter(key => continuum.indexFor(key) === 3),
	);
	const stop = await run(['down', '--lab', `${PREFIX}4`], 300_000);
	t.is(stop.exitCode, 0, stop.all);
});

poolTest('memaslap over the three memcached ports (-U, --verify): 0 verify_failed, every server used', async t => {
	const memcached = servers.replace(/:3000/g, ':11211');
	const before = await Promise.all([1, 2, 3].map(tableOf));
	const out = await timed('memaslap, 3 servers, 3 000 ops', () =>
		// memaslap gives each of its threads one server (thread i, server i): three threads for three.
		inLab(1, `timeout 300 memcaslap -s ${memcached} -U -x 3000 -T 3 -c 6 --verify=0.2 2>&1`, 320_000),
	);
	const stat = (name: string) => Number(new RegExp(`^${name}: (\\d+)$`, 'm').exec(out.stdout)?.[1]);
	t.log(
		out.stdout
			.split('\n')
			.filter(line => /^(cmd_get|cmd_set|get_misses|verify_misses|verify_failed|Run time|TPS)/.test(line))
			.join('\n'),
	);
	t.true(stat('cmd_get') > 0 && stat('cmd_set') > 0, `memaslap ran gets and sets:\n${out.stdout.slice(0, 2000)}`);
	t.is(stat('verify_failed'), 0, 'values read back wrong');
	const after = await Promise.all([1, 2, 3].map(tableOf));
	for (const [index, keys] of after.entries()) {
		t.true(keys.length > before[index]!.length, `memaslap stored nothing on server ${index + 1}`);
	}
});

poolTest('one lab down: the keys of the other two still answer, its own fail with an error naming its server', async t => {
	const continuum = new Continuum(parseServers(servers));
	const gone = parseServers(servers)[2]!;
	const stop = await timed('./run down of lab 3', () => run(['down', '--lab', `${PREFIX}3`], 300_000));
	t.is(stop.exitCode, 0, stop.all);
	const read = await timed(`kvclient --servers lookup of ${SAMPLE.length} keys, one server down`, () =>
		inLab(1, kvclient(servers, `--retries 1 lookup ${SAMPLE.join(' ')}`), 600_000),
	);
	t.is(read.exitCode, 3, 'exit 3: a server did not answer');
	const alive = SAMPLE.filter(key => continuum.indexFor(key) !== 2);
	const lost = SAMPLE.filter(key => continuum.indexFor(key) === 2);
	t.true(lost.length > 0 && alive.length > 0);
	t.is(read.stdout, alive.map(key => `${key} ${valueFor(key)}\n`).join(''), 'every key of the two others, with its value');
	const failed = read.stderr.split('\n').filter(Boolean);
	t.is(failed.length, lost.length + 1, 'one line per lost key, and a summary');
	for (const [index, key] of lost.entries()) {
		t.regex(
			failed[index]!,
			new RegExp(
				`^kvclient: ${key}: key ${key} is on ${gone.host.replace(/\./g, '\\.')}:3000 \\(server 3 of 3 in --servers\\), which does not answer`,
			),
		);
	}
	const { members } = await status();
	t.like(
		members.find(member => member.lab === `${PREFIX}3`),
		{ running: false, answers: false },
	);
	t.regex((await run(['pool', 'status', '--prefix', PREFIX])).stdout, new RegExp(`^${PREFIX}3 +not running$`, 'm'));
});
