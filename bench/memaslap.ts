/**
 * memaslap's output (Debian's memcaslap, run under `loadgen exec`), read into
 * the figures of a row: its run time and operations, its mean latency, and
 * percentiles from its log2 histogram (upper bounds only).
 */
import type { Measured } from './rows.js';

/** The memaslap config of the mixed table's rows: 16-byte keys and values, 50/50 set/get. */
export const MEMASLAP_CONFIG = 'key\n16 16 1\nvalue\n16 16 1\ncmd\n0 0.5\n1 0.5\n';

/** What one memaslap run under `loadgen exec` measured; throws when it printed no results. */
export function parseMemaslap(out: string): Measured & { perSecond: number } {
	const wrapper = JSON.parse(/^LOADGEN (.*)$/m.exec(out)?.[1] ?? 'null') as Measured | null;
	const run = /^Run time: ([\d.]+)s Ops: (\d+) TPS: (\d+)/m.exec(out);
	const total = /Total Statistics \(\d+ events\)([\s\S]*?)(?:\n\n|$)/.exec(out)?.[1] ?? '';
	const avg = Number(/Avg:\s+(\d+)/.exec(total)?.[1]);
	if (!wrapper || !run || Number.isNaN(avg)) throw new Error(`memaslap printed no results:\n${out}`);
	return {
		answered: Number(run[2]),
		lost: Number(/^udp_timeout: (\d+)$/m.exec(out)?.[1] ?? 0),
		refused: 0,
		seconds: Number(run[1]),
		mean_us: avg,
		...log2Percentiles(total),
		gen_cpu_s: wrapper.gen_cpu_s,
		guest_busy_s: wrapper.guest_busy_s,
		guest_total_s: wrapper.guest_total_s,
		server_cpu_s: wrapper.server_cpu_s,
		perSecond: Number(run[3]),
	};
}

/**
 * Percentiles from memaslap's "Log2 Dist" (rows "4: a b c d" count the
 * latencies in [2^4, 2^5), [2^5, 2^6) ... µs): the upper edge of the bucket.
 */
function log2Percentiles(total: string): { p50_us: number; p99_us: number; p999_us: number } {
	const buckets: Array<[number, number]> = [];
	for (const [, start, counts] of total.matchAll(/^\s+(\d+):\s+([\d\s]+)$/gm)) {
		for (const [i, count] of counts!.trim().split(/\s+/).entries()) buckets.push([2 ** (Number(start) + i + 1), Number(count)]);
	}
	const all = buckets.reduce((sum, [, count]) => sum + count, 0);
	const at = (fraction: number) => {
		let seen = 0;
		for (const [edge, count] of buckets) {
			seen += count;
			if (seen >= all * fraction) return edge;
		}
		return Number.NaN;
	};
	return { p50_us: at(0.5), p99_us: at(0.99), p999_us: at(0.999) };
}
