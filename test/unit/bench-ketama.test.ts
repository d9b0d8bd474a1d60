/**
 * loadgen's pool mode (bench/loadgen.c, -s HOST:PORT,...): its own MD5 and
 * ketama must place every key where user-client/ketama.ts (checked against
 * libmemcached itself) does, key by key; and a run against three real
 * memcached on this machine's loopback must reach each one with its own
 * keys only.
 *
 * The second part needs Debian's memcached (SYSTEM_PACKAGES). Nothing
 * leaves loopback; it runs for about 3 s.
 */
import test, { type ExecutionContext } from 'ava';
import { execa } from 'execa';
import { setTimeout as sleep } from 'node:timers/promises';
import { compileLoadgen } from '../../bench/programs.js';
import { freePort } from '../../src/lab/free-port.js';
import { Continuum, type PoolServer } from '../../user-client/ketama.js';

const list = (servers: PoolServer[]): string => servers.map(s => `${s.host}:${s.port}`).join(',');

/**
 * Keys of several shapes: loadgen's own, lengths around MD5's block edges
 * (55, 56, 64 and 119 bytes and more: one, two and three blocks), UTF-8.
 */
function keys(count: number): string[] {
	return Array.from({ length: count }, (_, i) => {
		if (i % 10 === 7) return `ключ-${i}`;
		if (i % 10 === 3) return `user:${i}:${'x'.repeat(i % 137)}`;
		return `key${String(i).padStart(5, '0')}`;
	});
}

/** The server index loadgen's `ketama` subcommand gives each key. */
async function loadgenPlaces(servers: PoolServer[], keyList: string[]): Promise<number[]> {
	const loadgen = await compileLoadgen();
	const { stdout } = await execa(loadgen, ['ketama', list(servers)], { input: `${keyList.join('\n')}\n` });
	return stdout.split('\n').map(Number);
}

async function samePlacement(t: ExecutionContext, servers: PoolServer[], keyList: string[]): Promise<void> {
	const continuum = new Continuum(servers);
	const placed = await loadgenPlaces(servers, keyList);
	t.is(placed.length, keyList.length);
	const differing = keyList.filter((key, i) => continuum.indexFor(key) !== placed[i]);
	t.deepEqual(differing.slice(0, 10), [], `${differing.length} of ${keyList.length} keys differ`);
	const counts = servers.map((_, index) => placed.filter(p => p === index).length);
	t.true(
		counts.every(n => n > 0),
		`every server holds keys: ${counts.join(' ')}`,
	);
}

const pool = (count: number, port = 3000): PoolServer[] => Array.from({ length: count }, (_, i) => ({ host: `10.0.9.${2 + i}`, port }));

test('3 servers, 3 000 keys: loadgen places each key where ketama.ts does', async t => {
	await samePlacement(t, pool(3), keys(3000));
});

test('25 servers (156 points each, libmemcached’s floats), 3 000 keys: the same, key by key', async t => {
	t.deepEqual(new Set(new Continuum(pool(25)).pointCounts), new Set([156]));
	await samePlacement(t, pool(25), keys(3000));
});

test('port 11211 ("HOST-N" hashed), 3 000 keys: the same, key by key', async t => {
	await samePlacement(t, pool(3, 11211), keys(3000));
});

test('one server holds every key; a bad list is refused', async t => {
	t.deepEqual(new Set(await loadgenPlaces(pool(1), keys(100))), new Set([0]));
	const loadgen = await compileLoadgen();
	for (const bad of ['', '10.0.9.2', '10.0.9.2:0', '10.0.9.2:3000,', '10.0.9.2:3000,10.0.9.2:3000']) {
		const result = await execa(loadgen, ['ketama', bad], { input: 'key\n', reject: false });
		t.is(result.exitCode, 2, `"${bad}": ${result.stderr}`);
	}
});

/** One memcached on UDP 127.0.0.1:port (no TCP), stopped when the test ends. */
function startMemcached(t: ExecutionContext, port: number): void {
	// -u: memcached refuses to run as root without it (and ignores it otherwise).
	const server = execa('memcached', ['-U', String(port), '-p', '0', '-l', '127.0.0.1', '-t', '1', '-u', 'nobody', '-m', '16'], {
		reject: false,
	});
	t.teardown(() => {
		server.kill();
	});
}

/** memcached's STAT lines, as loadgen stats -s prints them: one record per server. */
function parseStats(text: string): Array<Record<string, number>> {
	const all: Array<Record<string, number>> = [];
	for (const line of text.split(/\r?\n/)) {
		if (line.startsWith('server ')) all.push({});
		const match = /^STAT (\S+) (\d+)$/.exec(line);
		if (match && all.length > 0) all[all.length - 1]![match[1]!] = Number(match[2]);
	}
	return all;
}

interface Measured {
	answered: number;
	sent: number;
	lost: number;
	refused: number;
	misses: number;
}

test.serial('three memcached on loopback: preload puts each key on its ketama server; runs reach all three in their shares', async t => {
	t.timeout(60_000);
	const loadgen = await compileLoadgen();
	const servers: PoolServer[] = [];
	while (servers.length < 3) {
		const port = await freePort('udp');
		if (!servers.some(s => s.port === port)) servers.push({ host: '127.0.0.1', port });
	}
	for (const server of servers) startMemcached(t, server.port);
	const spec = list(servers);
	await execa(loadgen, ['probe', '-s', spec, 'mc', '5']);

	// 1 000 keys, each inserted on the server ketama gives it: each server holds exactly its share.
	await execa(loadgen, ['preload', '-k', '1000', '-s', spec, 'mc']);
	const continuum = new Continuum(servers);
	const expected = servers.map(() => 0);
	for (let key = 0; key < 1000; key++) expected[continuum.indexFor(`key${String(key).padStart(5, '0')}`)]!++;
	const before = parseStats((await execa(loadgen, ['stats', '-s', spec, 'mc'])).stdout);
	t.deepEqual(
		before.map(s => s.curr_items),
		expected,
	);

	// Lookups only: a key asked of the wrong server would be a miss.
	const closed = JSON.parse((await execa(loadgen, ['run', '-k', '1000', '-s', spec, 'mc', 'r', '4', '8', '1', '2'])).stdout) as Measured;
	t.log(`closed loop: ${closed.answered} answered, ${closed.lost} lost, ${closed.misses} misses`);
	t.true(closed.answered > 1000);
	t.is(closed.misses, 0);
	t.is(closed.refused, 0);
	// Open loop, a 50/50 mix, 2 000 requests a second.
	const open = JSON.parse(
		(await execa(loadgen, ['run', '-r', '2000', '-k', '1000', '-s', spec, 'mc', 'rw', '2', '1', '0.5', '1'])).stdout,
	) as Measured;
	t.log(`open loop: ${open.sent} sent, ${open.answered} answered, ${open.lost} lost, ${open.misses} misses`);
	// 2 000/s for 0.5 s is 1 000 sends on schedule; on a loaded host the generator falls behind (467 seen
	// in CI beside the debug kernel's lab): what matters here is that they reach the servers, not the rate.
	t.true(open.answered > 100, `${open.answered} answered`);
	t.is(open.misses, 0);
	await sleep(50);

	const after = parseStats((await execa(loadgen, ['stats', '-s', spec, 'mc'])).stdout);
	const requests = after.map((s, i) => s.cmd_get! + s.cmd_set! - before[i]!.cmd_get! - before[i]!.cmd_set!);
	const total = requests.reduce((a, b) => a + b, 0);
	t.log(`requests per server: ${requests.join(' / ')}; ketama's key shares: ${expected.map(n => `${(n / 10).toFixed(1)}%`).join(' / ')}`);
	t.is(
		after.reduce((sum, s) => sum + s.get_misses!, 0),
		before.reduce((sum, s) => sum + s.get_misses!, 0),
		'no lookup missed',
	);
	// Every answered request reached a server; none came from elsewhere (some sent may have been dropped).
	t.true(total >= closed.answered + open.answered && total <= closed.sent + open.sent, `${total} requests`);
	for (const [i, n] of requests.entries()) {
		t.true(Math.abs(n / total - expected[i]! / 1000) < 0.05, `server ${i}: ${n} of ${total} requests, ${expected[i]} of 1000 keys`);
	}
});
