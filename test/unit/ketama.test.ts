/**
 * user-client/ketama.ts on its own: the strings and hashes it is made of,
 * and the properties consistent hashing is for (an even spread, and a
 * server added or removed moving only its share of the keys).
 * ketama-libmemcached.test.ts compares it with the real library.
 */
import test from 'ava';
import { createHash } from 'node:crypto';
import { Continuum, keyHash, MEMCACHED_DEFAULT_PORT, type PoolServer, pointKey, pointsFor } from '../../user-client/ketama.js';

const pool = (count: number, base = 2): PoolServer[] =>
	Array.from({ length: count }, (_, i) => ({ host: `10.0.9.${base + i}`, port: 3000 }));
const keys = Array.from({ length: 30_000 }, (_, i) => `key${i}`);

test('the hashed strings: "HOST:PORT-N", and "HOST-N" on port 11211', t => {
	t.is(pointKey({ host: '10.0.9.2', port: 3000 }, 0), '10.0.9.2:3000-0');
	t.is(pointKey({ host: 'cache-a', port: 3000 }, 39), 'cache-a:3000-39');
	t.is(pointKey({ host: '10.0.9.2', port: MEMCACHED_DEFAULT_PORT }, 7), '10.0.9.2-7');
});

test("a key's hash is the first 4 bytes of its MD5, little-endian", t => {
	t.is(keyHash(''), 0xd98c1dd4); // MD5("") = d41d8cd9...
	t.is(keyHash('dog'), createHash('md5').update('dog').digest().readUInt32LE(0));
	t.is(keyHash('ключ'), keyHash(Buffer.from('ключ', 'utf8')), 'a string is hashed as its UTF-8 bytes');
});

test('160 points a server, 4 per digest; shares by weight; 156 where libmemcached’s floats say so', t => {
	t.deepEqual(new Continuum(pool(3)).pointCounts, [160, 160, 160]);
	t.deepEqual(new Continuum(pool(1)).pointCounts, [160]);
	t.is(pointsFor(1, 25, 25), 156);
	t.is(pointsFor(1, 24, 24), 160);
	t.deepEqual(
		new Continuum([
			{ host: 'a', port: 1, weight: 1 },
			{ host: 'b', port: 1, weight: 3 },
		]).pointCounts,
		[80, 240],
	);
});

test('the binary search agrees with walking the circle point by point, wrapping past the last', t => {
	const servers = pool(3);
	const continuum = new Continuum(servers);
	const points = servers
		.flatMap((server, index) =>
			Array.from({ length: 40 }, (_, n) => {
				const digest = createHash('md5').update(pointKey(server, n)).digest();
				return [0, 1, 2, 3].map(group => ({ value: digest.readUInt32LE(group * 4), index }));
			}).flat(),
		)
		.sort((a, b) => a.value - b.value || a.index - b.index);
	let wrapped = 0;
	for (const key of keys.slice(0, 5000)) {
		const hash = keyHash(key);
		let owner = points.find(point => point.value >= hash);
		if (!owner) {
			wrapped++;
			owner = points[0]!;
		}
		t.is(continuum.indexFor(key), owner.index, key);
	}
	t.log(`${wrapped} of 5000 keys hashed past the last point`);
	t.true(wrapped > 0, 'no key took the wrap-around: try more keys');
});

test('3 servers share 30 000 keys evenly (each 25-42%), and every key has one server', t => {
	const continuum = new Continuum(pool(3));
	const counts = [0, 0, 0];
	for (const key of keys) counts[continuum.indexFor(key)]!++;
	t.log(`shares: ${counts.map(n => `${((100 * n) / keys.length).toFixed(1)}%`).join(' ')}`);
	for (const count of counts) t.true(count > 0.25 * keys.length && count < 0.42 * keys.length, `${count}`);
});

test('a fourth server takes about a quarter of the keys, all of them from the others; the rest stay put', t => {
	const three = new Continuum(pool(3));
	const four = new Continuum(pool(4));
	let moved = 0;
	for (const key of keys) {
		const before = three.serverFor(key);
		const after = four.serverFor(key);
		if (after !== before && after.host !== before.host) {
			moved++;
			t.is(after.host, '10.0.9.5', `${key} moved between two old servers`);
		}
	}
	const share = moved / keys.length;
	t.log(`${(100 * share).toFixed(1)}% of the keys moved`);
	t.true(share > 0.15 && share < 0.35);
});

test('a server taken out gives away only its own keys', t => {
	const servers = pool(4);
	const all = new Continuum(servers);
	const without = new Continuum(servers.filter((_, i) => i !== 1));
	for (const key of keys) {
		const before = all.serverFor(key);
		if (before !== servers[1]) t.is(without.serverFor(key), before);
	}
	t.pass();
});

test('the order of the list does not move keys (points are hashed from the names)', t => {
	const servers = pool(5);
	const forward = new Continuum(servers);
	const backward = new Continuum([...servers].reverse());
	t.true(keys.slice(0, 5000).every(key => forward.serverFor(key) === backward.serverFor(key)));
});

test('no servers is an error; one server holds every key', t => {
	t.throws(() => new Continuum([]), { message: /at least one server/ });
	const one = new Continuum(pool(1));
	t.true(keys.slice(0, 100).every(key => one.indexFor(key) === 0));
});
