/**
 * The arithmetic of the benchmark's tables (bench/rows.ts): medians and
 * ranges over repetitions, Little's law, rows grouped by what names them.
 */
import test from 'ava';
import {
	bestMemcached,
	cpuPerRequest,
	groupRows,
	inFlight,
	median,
	memcachedSaturation,
	placementOf,
	type Row,
	serverCpuPerRequest,
	serverGuestBusy,
	spread,
} from '../../bench/rows.js';

function row(server: string, clients: number, answered: number, mean_us = 100): Row {
	return {
		answered,
		lost: 0,
		refused: 0,
		seconds: 1,
		mean_us,
		gen_cpu_s: 0.5,
		guest_busy_s: 1.5,
		guest_total_s: 2,
		server_cpu_s: 0.4,
		workload: 'mixed',
		server,
		protocol: 'text',
		threads: 1,
		clients,
		generator: 'loadgen',
		window: 16,
	};
}

test('median: the middle value, or the mean of the two middle ones', t => {
	t.is(median([5, 1, 3]), 3);
	t.is(median([4, 1, 3, 2]), 2.5);
	t.is(median([7]), 7);
});

test('spread: the median with the lowest and highest value, NaN left out', t => {
	t.deepEqual(spread([30, 10, 20, 50, 40]), { median: 30, min: 10, max: 50 });
	t.deepEqual(spread([2, Number.NaN, 4]), { median: 3, min: 2, max: 4 });
	t.true(Number.isNaN(spread([]).median));
});

test("inFlight: Little's law, req/s × mean latency", t => {
	// 10 000 req/s at 1.6 ms: 16 requests in flight.
	t.is(Math.round(inFlight(row('s', 1, 10_000, 1600)) * 1000) / 1000, 16);
});

test('groupRows: the repetitions of each row together, in the order the rows first came', t => {
	const reps = [row('a', 1, 1), row('b', 1, 2), row('a', 4, 3), row('a', 1, 4), row('b', 1, 5)];
	t.deepEqual(
		groupRows(reps).map(group => group.map(one => one.answered)),
		[[1, 4], [2, 5], [3]],
	);
});

test('bestMemcached: the memcached setting with the higher median req/s at those clients, whatever its threads', t => {
	const mc = (threads: number, clients: number, answered: number[]) =>
		answered.map(count => ({ ...row('memcached', clients, count), protocol: 'memcached' as const, threads }));
	const rows = [
		...mc(1, 8, [20_000, 21_000, 19_000]),
		...mc(2, 8, [11_000, 30_000, 12_000]),
		...mc(1, 1, [5_000]),
		...mc(2, 1, [6_000]),
		{ ...row('udp_server', 8, 40_000), threads: 2 },
	];
	const groups = groupRows(rows);
	const ours = groups.at(-1)![0]!;
	// -t 2 had the fastest single repetition, but -t 1 the higher median.
	t.is(bestMemcached(groups, ours)?.[0]?.threads, 1);
	t.is(bestMemcached(groups, { ...ours, clients: 1 })?.[0]?.threads, 2);
	t.is(bestMemcached(groups, { ...ours, clients: 4 }), undefined);
	t.is(bestMemcached(groups, { ...ours, generator: 'memaslap' }), undefined);
	t.is(bestMemcached(groups, { ...ours, workload: 'get-heavy' }), undefined);
});

test("memcachedSaturation: memcached's highest median closed-loop req/s in that workload, and its threads", t => {
	const mc = (threads: number, clients: number, answered: number[], workload: Row['workload'] = 'get-heavy') =>
		answered.map(count => ({ ...row('memcached', clients, count), protocol: 'memcached' as const, threads, workload }));
	const rows = [
		...mc(1, 1, [9000, 9500, 9100]),
		...mc(1, 8, [15_000, 16_000, 14_000]),
		...mc(2, 8, [12_000, 40_000, 11_000]),
		...mc(2, 8, [90_000], 'mixed'),
		{ ...row('udp_server', 8, 50_000), workload: 'get-heavy' as const },
	];
	t.deepEqual(memcachedSaturation(rows, 'get-heavy'), { perSecond: 15_000, threads: 1 });
	t.deepEqual(memcachedSaturation(rows, 'mixed'), { perSecond: 90_000, threads: 2 });
	t.is(memcachedSaturation([], 'mixed'), undefined);
});

test("the two-lab rows: CPU from the servers' guest (less the sampler), grouped and compared apart from the same-guest rows", t => {
	const serverSide = { busy_s: 0.9, total_s: 2, watch_cpu_s: 0.03, server_cpu_s: 0.3, rx: 6100, tx: 6000, late: false };
	const remote: Row = { ...row('udp_server', 8, 6000), placement: 'lab b', serverSide };
	// (0.9 − 0.03) s over the 6 000 replies lab a sent; the generator's own guest (gen_cpu_s, guest_busy_s) plays no part.
	t.is(Math.round(cpuPerRequest(remote) * 10) / 10, 145);
	t.is(Math.round(serverCpuPerRequest(remote) * 10) / 10, 50);
	t.is(serverGuestBusy(remote), 0.45);
	// The same row in the same guest: (1.5 − 0.5) s over 6 000.
	t.is(Math.round(cpuPerRequest(row('udp_server', 8, 6000)) * 10) / 10, 166.7);
	t.is(placementOf(row('udp_server', 8, 1)), 'same guest');
	const mc = (answered: number, placement?: 'lab b') => ({ ...row('memcached', 8, answered), protocol: 'memcached' as const, placement });
	const rows = [row('udp_server', 8, 1), remote, mc(9000), mc(3000, 'lab b')];
	const groups = groupRows(rows);
	t.is(groups.length, 4);
	t.is(bestMemcached(groups, remote)?.[0]?.answered, 3000);
	t.is(bestMemcached(groups, row('udp_server', 8, 1))?.[0]?.answered, 9000);
	// The open loop's offered loads come from the same-guest rows only.
	t.deepEqual(memcachedSaturation([mc(3000, 'lab b')], 'mixed'), undefined);
});

test("the two-lab rows divide by the replies lab a sent over the span of its CPU time, not by loadgen's count", t => {
	const serverSide = { busy_s: 1, total_s: 2, watch_cpu_s: 0, server_cpu_s: 0.5, rx: 1000, tx: 1000, late: false };
	// loadgen counted 900: 100 answers came after it stopped counting, but lab a's CPU time covers them.
	const remote: Row = { ...row('udp_server', 8, 900), placement: 'lab b', serverSide };
	t.is(cpuPerRequest(remote), 1000);
	t.is(serverCpuPerRequest(remote), 500);
});
