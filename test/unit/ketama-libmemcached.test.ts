/**
 * user-client/ketama.ts against the real thing: keys stored through
 * libmemcached (Debian's python3-pylibmc, with libmemcached11) over a pool
 * of real memcached servers on this machine's loopback, then each server
 * asked on its own which keys it holds (test/fixtures/ketama_reference.py).
 * Our placement must name the same server for every key.
 *
 * Needs memcached and python3-pylibmc (SYSTEM_PACKAGES: ./run test and
 * ./run setup install them). Nothing leaves loopback.
 */
import test, { type ExecutionContext } from 'ava';
import { execa } from 'execa';
import { randomInt } from 'node:crypto';
import net from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort } from '../../src/lab/free-port.js';
import { PROJECT_ROOT } from '../../src/modules.js';
import { formatAddress } from '../../user-client/client.js';
import { Continuum, type PoolServer } from '../../user-client/ketama.js';
import { parseServers } from '../../user-client/pool.js';

const REFERENCE = path.join(PROJECT_ROOT, 'test/fixtures/ketama_reference.py');
const PYTHON = '/usr/bin/python3'; // Debian's, which has python3-pylibmc (not a pyenv one on PATH)

/** Keys of several shapes: memaslap-like, long, UTF-8. */
function keys(count: number): string[] {
	return Array.from({ length: count }, (_, i) => {
		if (i % 10 === 7) return `ключ-${i}`;
		if (i % 10 === 3) return `user:${i}:profile:${'x'.repeat(i % 50)}`;
		return `key${String(i).padStart(5, '0')}`;
	});
}

async function accepts(host: string, port: number): Promise<boolean> {
	return new Promise(resolve => {
		const socket = net.connect({ host, port }, () => {
			socket.destroy();
			resolve(true);
		});
		socket.on('error', () => resolve(false));
	});
}

/**
 * Starts one memcached (TCP only) on host:port, stopped at the test's end;
 * resolves true once it accepts connections, false if it could not start.
 */
async function startMemcached(t: ExecutionContext, host: string, port: number): Promise<boolean> {
	// -u: memcached refuses to run as root without it (and ignores it otherwise).
	const server = execa('memcached', ['-U', '0', '-p', String(port), '-l', host, '-u', 'nobody', '-m', '16'], { reject: false });
	t.teardown(() => {
		server.kill();
	});
	for (let i = 0; i < 100; i++) {
		if (server.exitCode !== null) return false;
		if (await accepts(host, port)) return true;
		await sleep(20);
	}
	return false;
}

/** Where libmemcached puts each key: key → index in `servers`. */
async function libmemcachedPlacement(
	t: ExecutionContext,
	servers: PoolServer[],
	keyList: string[],
	behaviors: Record<string, unknown>,
): Promise<Map<string, number>> {
	const specs = servers.map(s => `${formatAddress(s.host, s.port)}${s.weight === undefined ? '' : `:${s.weight}`}`);
	const result = await execa(PYTHON, [REFERENCE, JSON.stringify(behaviors), specs.join(',')], { input: `${keyList.join('\n')}\n` });
	const held = JSON.parse(result.stdout) as Record<string, string[]>;
	const placement = new Map<string, number>();
	specs.forEach((spec, index) => {
		for (const key of held[spec] ?? []) {
			t.false(placement.has(key), `${key} is on two servers`);
			placement.set(key, index);
		}
	});
	t.is(placement.size, keyList.length, 'libmemcached stored every key on exactly one server');
	return placement;
}

/** Servers on `host` (127.0.0.1 or ::1), each on a free port, running. */
async function loopbackPool(t: ExecutionContext, count: number, weights?: number[], host = '127.0.0.1'): Promise<PoolServer[]> {
	const servers: PoolServer[] = [];
	while (servers.length < count) {
		const port = await freePort('tcp');
		if (servers.some(s => s.port === port)) continue;
		if (!(await startMemcached(t, host, port))) continue;
		const weight = weights?.[servers.length];
		servers.push(weight === undefined ? { host, port } : { host, port, weight });
	}
	return servers;
}

function mismatches(continuum: Continuum, placement: Map<string, number>): string[] {
	return [...placement].filter(([key, index]) => continuum.indexFor(key) !== index).map(([key]) => key);
}

test.before(async () => {
	const probe = await execa(PYTHON, ['-c', 'import pylibmc'], { reject: false });
	if (probe.exitCode !== 0) {
		throw new Error(`python3-pylibmc is missing (apt-get install python3-pylibmc; ./run setup installs it): ${probe.stderr}`);
	}
});

test.serial('3 servers on 127.0.0.1, 3 000 keys: every key on the server libmemcached picks (ketama_weighted)', async t => {
	const servers = await loopbackPool(t, 3);
	const keyList = keys(3000);
	const placement = await libmemcachedPlacement(t, servers, keyList, { ketama_weighted: true });
	const continuum = new Continuum(servers);
	t.deepEqual(mismatches(continuum, placement).slice(0, 10), []);
	const shares = servers.map((_, i) => [...placement.values()].filter(index => index === i).length);
	t.log(`libmemcached put ${shares.join(' / ')} keys on the 3 servers; we agree on all ${keyList.length}`);
});

test.serial('port 11211 is left out of the hashed strings ("HOST-N"): servers on 127.0.0.X:11211 agree too', async t => {
	// Three loopback addresses of 127/8 with memcached's default port, where free.
	const servers: PoolServer[] = [];
	for (let tries = 0; servers.length < 3 && tries < 30; tries++) {
		const host = `127.0.${randomInt(1, 255)}.${randomInt(2, 255)}`;
		if (servers.some(s => s.host === host)) continue;
		if (await startMemcached(t, host, 11211)) servers.push({ host, port: 11211 });
	}
	t.is(servers.length, 3, 'could not start three memcached on port 11211 of 127/8 addresses');
	const placement = await libmemcachedPlacement(t, servers, keys(1000), { ketama_weighted: true });
	t.deepEqual(mismatches(new Continuum(servers), placement).slice(0, 10), []);
	// With the port in the strings, the placement would differ: the test can tell.
	const withPort = new Continuum(servers.map(s => ({ ...s, port: 11212 })));
	t.true(mismatches(withPort, placement).length > 100);
});

test.serial('25 servers: libmemcached gives each 156 points, not 160 (its float arithmetic), and so do we', async t => {
	t.timeout(120_000);
	const servers = await loopbackPool(t, 25);
	const continuum = new Continuum(servers);
	t.deepEqual(new Set(continuum.pointCounts), new Set([156]));
	const placement = await libmemcachedPlacement(t, servers, keys(3000), { ketama_weighted: true });
	t.deepEqual(mismatches(continuum, placement).slice(0, 10), []);
});

test.serial('weights 1, 2, 3 (HOST:PORT:WEIGHT in pylibmc): the same placement', async t => {
	const servers = await loopbackPool(t, 3, [1, 2, 3]);
	const continuum = new Continuum(servers);
	t.deepEqual(continuum.pointCounts, [80, 160, 240]);
	const placement = await libmemcachedPlacement(t, servers, keys(2000), { ketama_weighted: true });
	t.deepEqual(mismatches(continuum, placement).slice(0, 10), []);
});

test.serial('IPv6: [::1]:PORT in the list, ::1:PORT-N hashed, as libmemcached keeps the host without brackets', async t => {
	const servers = await loopbackPool(t, 3, undefined, '::1');
	const list = servers.map(s => formatAddress(s.host, s.port)).join(',');
	t.deepEqual(parseServers(list), servers, 'kvclient reads the list the same way');
	const placement = await libmemcachedPlacement(t, servers, keys(1000), { ketama_weighted: true });
	t.deepEqual(mismatches(new Continuum(parseServers(list)), placement).slice(0, 10), []);
});

test.serial("plain 'ketama' (one-at-a-time hash, 100 points) is another placement, which this comparison tells apart", async t => {
	const servers = await loopbackPool(t, 3);
	const placement = await libmemcachedPlacement(t, servers, keys(1000), { ketama: true });
	const differing = mismatches(new Continuum(servers), placement).length;
	t.log(`${differing} of 1000 keys placed differently`);
	t.true(differing > 200);
});
