/**
 * Consistent hashing over a pool of servers, exactly as libmemcached places
 * keys with MEMCACHED_BEHAVIOR_KETAMA_WEIGHTED (pylibmc's
 * `behaviors={'ketama_weighted': True}`, the ketama of last.fm's libketama):
 * a client given the same server list puts every key on the same server as
 * libmemcached does. test/unit/ketama-libmemcached.test.ts checks that
 * against the real library, through pylibmc and memcached on loopback.
 *
 * From libmemcached 1.x, src/libmemcached/hosts.cc (update_continuum) and
 * hash.cc (dispatch_host):
 *
 * - Each server gets 160 points on a circle of 2^32 (fewer or more by its
 *   share of the total weight, computed in single-precision floats). They
 *   come 4 at a time from the MD5 digest of "HOST:PORT-N", N from 0, or of
 *   "HOST-N" when PORT is memcached's default 11211: digest bytes 4i..4i+3,
 *   little-endian, are point i. HOST is the host as written in the list.
 * - A key's hash is the first 4 bytes of the MD5 of its bytes,
 *   little-endian; its server is the one owning the first point at or after
 *   the hash, wrapping to the first point. Points of equal value are ordered
 *   by the server's place in the list.
 *
 * (Plain MEMCACHED_BEHAVIOR_KETAMA is another placement: 100 points a
 * server, one per hash of the same strings with the library's default hash,
 * one-at-a-time. Memcached clients that say "ketama" mean the weighted one.)
 */
import { createHash } from 'node:crypto';

/** memcached's port: libmemcached leaves it out of the strings it hashes. */
export const MEMCACHED_DEFAULT_PORT = 11211;
/** MEMCACHED_POINTS_PER_SERVER_KETAMA. */
export const POINTS_PER_SERVER = 160;
/** One MD5 digest makes 4 points of 4 bytes. */
const POINTS_PER_HASH = 4;

export interface PoolServer {
	/** As written in the server list: it is part of what is hashed. */
	host: string;
	port: number;
	/** Relative share of the keys; default 1. */
	weight?: number;
}

interface Point {
	value: number;
	server: number;
}

/** MD5 of `bytes`, 4-byte group `group` (0-3) as a little-endian 32-bit number. */
function md5Word(bytes: string | Uint8Array, group: number): number {
	return createHash('md5')
		.update(bytes)
		.digest()
		.readUInt32LE(group * 4);
}

/** The hash libmemcached gives a key in ketama mode: MD5, first 4 bytes little-endian. */
export function keyHash(key: string | Uint8Array): number {
	return md5Word(key, 0);
}

/** The string hashed for a server's points, digest number `index` (from 0). */
export function pointKey(server: PoolServer, index: number): string {
	return server.port === MEMCACHED_DEFAULT_PORT ? `${server.host}-${index}` : `${server.host}:${server.port}-${index}`;
}

/**
 * How many points a server gets: libmemcached computes its share in C
 * floats, `floor(pct * 160 / 4 * live + 1e-10f) * 4`, each step rounded to
 * single precision (Math.fround), so an equal share can come out a few
 * points short of 160.
 */
export function pointsFor(weight: number, totalWeight: number, servers: number): number {
	const f = Math.fround;
	const pct = f(f(weight) / f(totalWeight));
	const share = f(f(f(f(pct * POINTS_PER_SERVER) / 4) * f(servers)) + f(1e-10));
	return Math.floor(share) * POINTS_PER_HASH;
}

/** The ketama circle of a pool: which server each key goes to. */
export class Continuum {
	private readonly points: Point[];

	constructor(readonly servers: readonly PoolServer[]) {
		if (servers.length === 0) {
			throw new RangeError('a pool needs at least one server');
		}
		const total = servers.reduce((sum, server) => sum + (server.weight ?? 1), 0);
		this.points = [];
		servers.forEach((server, index) => {
			const digests = pointsFor(server.weight ?? 1, total, servers.length) / POINTS_PER_HASH;
			for (let digest = 0; digest < digests; digest++) {
				const bytes = createHash('md5').update(pointKey(server, digest)).digest();
				for (let group = 0; group < POINTS_PER_HASH; group++) {
					this.points.push({ value: bytes.readUInt32LE(group * 4), server: index });
				}
			}
		});
		this.points.sort((a, b) => a.value - b.value || a.server - b.server);
	}

	/** How many points each server has on the circle. */
	get pointCounts(): number[] {
		const counts = this.servers.map(() => 0);
		for (const point of this.points) counts[point.server]!++;
		return counts;
	}

	/** The index in `servers` of the server that holds `key` (its UTF-8 bytes when a string). */
	indexFor(key: string | Uint8Array): number {
		if (this.servers.length === 1) return 0;
		const hash = keyHash(key);
		// The first point at or after the hash (dispatch_host's binary search), else the first.
		let left = 0;
		let right = this.points.length;
		while (left < right) {
			const middle = (left + right) >>> 1;
			if (this.points[middle]!.value < hash) left = middle + 1;
			else right = middle;
		}
		return (this.points[right] ?? this.points[0]!).server;
	}

	/** The server that holds `key`. */
	serverFor(key: string | Uint8Array): PoolServer {
		return this.servers[this.indexFor(key)]!;
	}
}
