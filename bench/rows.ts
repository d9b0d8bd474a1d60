/**
 * What a benchmark run measures: a row per server, protocol, threads and
 * clients (throughput, latency, CPU), the latency points of the closed-loop
 * table, and the arithmetic on them that the run and the report share.
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

export interface Row extends Measured {
	server: string;
	protocol: 'text' | 'memcached';
	threads: number;
	clients: number;
	generator: 'loadgen' | 'memaslap';
	/** memaslap: p99 is only known as the upper edge of its log2 bucket. */
	p99Bound?: boolean;
	/** The lowest and highest req/s of the repetitions. */
	spread?: [number, number];
	/**
	 * Answered in the receive softirq (udp_server softirq=1): that work runs
	 * in whichever task is on the CPU, mostly the generator, so no CPU figure
	 * can be told apart from the generator's.
	 */
	softirq?: boolean;
}

export interface LatencyPoint {
	server: string;
	mix: 'read' | 'write' | 'read/write';
	processes: number;
	mean_us: number;
	lost: number;
}

export function median(values: number[]): number {
	const sorted = [...values].sort((a, b) => a - b);
	const middle = Math.floor(sorted.length / 2);
	return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/** The repetition with the median throughput, with the range of all of them. */
export function medianRow(reps: Row[]): Row {
	const sorted = [...reps].sort((a, b) => perSecond(a) - perSecond(b));
	return { ...sorted[Math.floor((sorted.length - 1) / 2)]!, spread: [perSecond(sorted[0]!), perSecond(sorted.at(-1)!)] };
}

export function perSecond(row: Measured): number {
	return row.answered / row.seconds;
}

/** CPU microseconds per request served, the generator's own time left out. */
export function cpuPerRequest(row: Measured): number {
	return ((row.guest_busy_s - row.gen_cpu_s) / row.answered) * 1e6;
}

/** CPU microseconds of the server's own threads per request served. */
export function serverCpuPerRequest(row: Measured): number {
	return (row.server_cpu_s / row.answered) * 1e6;
}
