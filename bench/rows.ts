/**
 * What a benchmark run measures: a row per server, protocol, threads and
 * clients and repetition (throughput, latency, CPU), the latency points of
 * the closed-loop table, and the arithmetic on them that the run and the
 * report share.
 */

/** What loadgen run (or loadgen exec around memaslap) prints. */
export interface Measured {
	answered: number;
	lost: number;
	refused: number;
	seconds: number;
	mean_us: number;
	p50_us?: number;
	p99_us?: number;
	p999_us?: number;
	gen_cpu_s: number;
	guest_busy_s: number;
	guest_total_s: number;
	/** CPU seconds of the server's own threads (loadgen's LOADGEN_SERVER). */
	server_cpu_s: number;
}

/**
 * What `loadgen watch` saw in the server's guest while a generator in
 * another guest ran a row: over the span in which datagrams arrived on its
 * NIC, the guest's busy and total CPU seconds, watch's own CPU seconds, the
 * server threads' CPU seconds, and the datagrams received and sent.
 */
export interface ServerSide {
	busy_s: number;
	total_s: number;
	watch_cpu_s: number;
	server_cpu_s: number;
	rx: number;
	tx: number;
	/** Datagrams were arriving when watch started: its figures miss the start. */
	late: boolean;
}

/** Where the generator ran: in the servers' guest (over 127.0.0.1), or in a second lab over the labs' network. */
export type Placement = 'same guest' | 'lab b';

/**
 * What the clients ask for. `mixed`: today's, 50/50 insert/lookup of 1 000
 * keys drawn uniformly, 9-byte values. `get-heavy`: 90/10 lookup/insert,
 * keys drawn by Zipf(0.99) rank, each key's value 32-1 000 bytes long
 * (always the same for one key).
 */
export interface Workload {
	name: 'mixed' | 'get-heavy';
	keys: number;
	/** Zipf's exponent; 0: uniform. */
	theta: number;
	/** Shortest and longest value; none: 9-byte values. */
	values?: [number, number];
	/** Percent of requests that are lookups (get). */
	readPercent: number;
}

/** loadgen's WORKLOAD options (bench/loadgen.c). */
export function workloadArgs(workload: Workload): string[] {
	return [
		'-k',
		String(workload.keys),
		'-z',
		String(workload.theta),
		...(workload.values ? ['-v', `${workload.values[0]}-${workload.values[1]}`] : []),
	];
}

/** loadgen's MIX for a workload. */
export function workloadMix(workload: Workload): string {
	return workload.readPercent === 50 ? 'rw' : `r${workload.readPercent}`;
}

/** One line that says what a workload is. */
export function describeWorkload(workload: Workload): string {
	const keys = workload.keys.toLocaleString('en-US').replace(/,/g, ' ');
	const draw = workload.theta ? `drawn by Zipf(${workload.theta}) rank` : 'drawn uniformly';
	const values = workload.values ? `values of ${workload.values[0]}–${workload.values[1]} bytes (fixed per key)` : '9-byte values';
	return `${workload.readPercent}/${100 - workload.readPercent} lookup/insert (get/set) of ${keys} keys ${draw}, ${values}, all inserted before the clock starts`;
}

/** One repetition of one row. */
export interface Row extends Measured {
	workload: Workload['name'];
	server: string;
	protocol: 'text' | 'memcached';
	threads: number;
	clients: number;
	generator: 'loadgen' | 'memaslap';
	/** Requests each client keeps in flight (memaslap: 1). */
	window: number;
	/** memaslap: p99 is only known as the upper edge of its log2 bucket. */
	p99Bound?: boolean;
	/**
	 * Answered in the receive softirq (udp_server softirq=1): that work runs
	 * in whichever task is on the CPU, mostly the generator, so no CPU figure
	 * can be told apart from the generator's.
	 */
	softirq?: boolean;
	/** Absent: 'same guest' (the results of runs before the second lab). */
	placement?: Placement;
	/** With the generator in lab b: the servers' guest's side of the row, which its CPU figures come from. */
	serverSide?: ServerSide;
}

export function placementOf(row: Row): Placement {
	return row.placement ?? 'same guest';
}

export interface LatencyPoint {
	server: string;
	mix: 'read' | 'write' | 'read/write';
	processes: number;
	/** The mean latency of each repetition. */
	means_us: number[];
	lost: number;
}

/** A figure over the repetitions: the median and the lowest and highest value. */
export interface Spread {
	median: number;
	min: number;
	max: number;
}

export function median(values: number[]): number {
	const sorted = [...values].sort((a, b) => a - b);
	const middle = Math.floor(sorted.length / 2);
	return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/** The median and range of some numbers (NaN for none). */
export function spread(values: number[]): Spread {
	const known = values.filter(value => !Number.isNaN(value));
	if (!known.length) return { median: Number.NaN, min: Number.NaN, max: Number.NaN };
	return { median: median(known), min: Math.min(...known), max: Math.max(...known) };
}

export function perSecond(row: Measured): number {
	return row.answered / row.seconds;
}

/**
 * The requests a row's CPU time is divided by: those the generator counted
 * answered; with the generator in lab b, the replies lab a sent over the
 * span its CPU time covers (those to requests still in flight when loadgen
 * stopped counting are in that span too).
 */
function served(row: Measured & { serverSide?: ServerSide }): number {
	return row.serverSide?.tx || row.answered;
}

/**
 * CPU microseconds per request served: the busy time of the servers' guest
 * less the generator's own (in the same guest) or less watch's own (the
 * generator in lab b), over the requests answered.
 */
export function cpuPerRequest(row: Measured & { serverSide?: ServerSide }): number {
	const side = row.serverSide;
	return ((side ? side.busy_s - side.watch_cpu_s : row.guest_busy_s - row.gen_cpu_s) / served(row)) * 1e6;
}

/** CPU microseconds of the server's own threads per request served. */
export function serverCpuPerRequest(row: Measured & { serverSide?: ServerSide }): number {
	return ((row.serverSide?.server_cpu_s ?? row.server_cpu_s) / served(row)) * 1e6;
}

/** The share of the servers' guest that was busy during the row. */
export function serverGuestBusy(row: Measured & { serverSide?: ServerSide }): number {
	const side = row.serverSide;
	return side ? side.busy_s / side.total_s : row.guest_busy_s / row.guest_total_s;
}

/**
 * Little's law: throughput × mean latency is the mean number of requests in
 * flight. For a closed loop that is clients × window, so a latency clock that
 * starts late or stops early shows up as a product well below it.
 */
export function inFlight(row: Measured): number {
	return perSecond(row) * (row.mean_us / 1e6);
}

/** What names a row: every repetition of it has the same key. */
export function rowKey(row: Row): string {
	return [placementOf(row), row.workload, row.generator, row.server, row.protocol, row.threads, row.clients].join('\u0000');
}

/** The repetitions of one row, in the order the rows were first measured. */
export function groupRows(rows: Row[]): Row[][] {
	const groups = new Map<string, Row[]>();
	for (const row of rows) {
		const key = rowKey(row);
		groups.set(key, [...(groups.get(key) ?? []), row]);
	}
	return [...groups.values()];
}

/**
 * The baseline of a row: of the memcached rows with the same workload,
 * generator, placement and clients (any thread count), the one with the highest median req/s in this
 * run. memcached's UDP workers share one socket, so more threads can be
 * slower; comparing with the same thread count would flatter us.
 */
export function bestMemcached(groups: Row[][], row: Row): Row[] | undefined {
	let best: Row[] | undefined;
	let bestRate = -1;
	for (const reps of groups) {
		const other = reps[0]!;
		if (
			other.server !== 'memcached' ||
			other.workload !== row.workload ||
			other.generator !== row.generator ||
			placementOf(other) !== placementOf(row) ||
			other.clients !== row.clients
		)
			continue;
		const rate = median(reps.map(perSecond));
		if (rate > bestRate) {
			best = reps;
			bestRate = rate;
		}
	}
	return best;
}

/** One repetition of one open-loop point: loadgen -r, Poisson arrivals at an offered rate. */
export interface OpenPoint extends Measured {
	workload: Workload['name'];
	server: string;
	protocol: 'text' | 'memcached';
	threads: number;
	/** Requests a second loadgen was asked to send. */
	offered: number;
	/** `offered` as a share of memcached's closed-loop saturation. */
	fraction: number;
}

/**
 * memcached's closed-loop saturation in a workload: the highest median
 * req/s of any of its loadgen rows (any threads, any clients).
 */
export function memcachedSaturation(rows: Row[], workload: Workload['name']): { perSecond: number; threads: number } | undefined {
	let best: { perSecond: number; threads: number } | undefined;
	for (const reps of groupRows(rows)) {
		const row = reps[0]!;
		if (row.server !== 'memcached' || row.generator !== 'loadgen' || placementOf(row) !== 'same guest' || row.workload !== workload)
			continue;
		const rate = median(reps.map(perSecond));
		if (!best || rate > best.perSecond) best = { perSecond: rate, threads: row.threads };
	}
	return best;
}

/**
 * What a server's table of one workload takes, measured once its keys were
 * inserted: its own count (udp_server's stats `bytes=`, what max_bytes
 * charges; memcached's stats `bytes`) and what the guest lost to it
 * (udp_server: the growth of the kernel's Slab and VmallocUsed in
 * /proc/meminfo; memcached: its RSS growth), from before the keys to after.
 */
export interface MemoryPoint {
	workload: Workload['name'];
	server: string;
	threads: number;
	/** Entries the server says it holds. */
	entries: number;
	/** The server's own count of bytes for them. */
	statsBytes: number;
	/** What the guest lost to them, in bytes, and how that was read. */
	grownBytes: number;
	grownHow: string;
}
