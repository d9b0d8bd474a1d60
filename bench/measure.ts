/**
 * Measuring: one row of each kind (a closed-loop loadgen row, an open-loop
 * point, a memaslap row, the closed-loop latency table), and a phase, the
 * rows of one workload at one thread count, repeated with the servers taking
 * turns. kv-bench.ts decides which phases run; two-labs.ts adds the rows
 * whose generator is in a second lab.
 */
import path from 'node:path';
import { log } from '../src/log.js';
import { type BenchGuest, type Protocol, wireOf } from './guest.js';
import { parseMemaslap } from './memaslap.js';
import { CACHE } from './programs.js';
import { type LatencyPoint, type OpenPoint, perSecond, placementOf, type Row, type Workload, workloadArgs, workloadMix } from './rows.js';
import { inPlaceOf, type Server } from './servers.js';

export interface BenchOptions {
	/** Seconds, few requests, every row: the smoke test. */
	quick?: boolean;
	/** The lab guest of the servers (default "bench"); the generator's second lab is NAME-b. */
	lab?: string;
	/** Seconds per row and repetition (default 2; 0.5 with --quick). */
	seconds?: number;
	/** Repetitions of every row (default 5; 1 with --quick). */
	reps?: number;
	/** Leave the labs running afterwards. */
	keep?: boolean;
}

/** The open loop's sockets (on min(8, vCPUs) threads). */
const OPEN_LOOP_CLIENTS = 8;

/** The rows: what one measurement of each kind runs, and the row it makes. */
export class Bench {
	readonly seconds: number;
	readonly clients: number[];
	readonly window: number;
	readonly reps: number;
	memaslapConfig = path.join(CACHE, 'memaslap.cfg');

	constructor(
		readonly guest: BenchGuest,
		readonly options: BenchOptions,
	) {
		this.seconds = options.seconds ?? (options.quick ? 0.5 : 2);
		this.reps = options.reps ?? (options.quick ? 1 : 5);
		this.clients = options.quick ? [1, 8] : [1, 4, 8];
		this.window = options.quick ? 4 : 16;
	}

	/** loadgen's closed-loop arguments of a row. */
	rowArgs(server: Server, protocol: Protocol, clients: number, workload: Workload): (string | number)[] {
		return [
			...workloadArgs(workload),
			server.ports[protocol]!,
			wireOf(protocol),
			workloadMix(workload),
			clients,
			this.window,
			this.seconds,
		];
	}

	async run(server: Server, protocol: Protocol, clients: number, workload: Workload): Promise<Row> {
		const measured = await this.guest.loadgen_(this.rowArgs(server, protocol, clients, workload), this.seconds, server.comm);
		const row = this.loadgenRow(measured, server, protocol, clients, workload);
		logRow(row);
		return row;
	}

	/** A row of loadgen's figures: what was measured, and against what. */
	loadgenRow(
		measured: Awaited<ReturnType<BenchGuest['loadgen_']>>,
		server: Server,
		protocol: Protocol,
		clients: number,
		workload: Workload,
	): Row {
		return {
			...measured,
			workload: workload.name,
			server: server.name,
			protocol: protocol === 'memcached' ? 'memcached' : 'text',
			threads: server.threads,
			clients,
			generator: 'loadgen',
			window: this.window,
		};
	}

	/**
	 * One open-loop point: loadgen -r, Poisson arrivals at `offered` requests
	 * a second over OPEN_LOOP_CLIENTS sockets, on the memcached protocol (its
	 * request IDs match every reply to its request, even with losses).
	 */
	async openLoop(server: Server, offered: number, fraction: number, workload: Workload): Promise<OpenPoint> {
		const measured = await this.guest.loadgen_(
			['-r', offered, ...workloadArgs(workload), server.ports.memcached!, 'mc', workloadMix(workload), OPEN_LOOP_CLIENTS, 1, this.seconds],
			this.seconds + 2,
			server.comm,
		);
		const point: OpenPoint = {
			...measured,
			workload: workload.name,
			server: server.name,
			protocol: 'memcached',
			threads: server.threads,
			offered,
			fraction,
		};
		log.info(`open loop: ${server.name} (${server.threads} thr) offered ${offered} req/s: p99 ${point.p99_us} µs, ${measured.lost} lost`);
		return point;
	}

	/** memaslap, 50/50 set/get of 16-byte keys and values, `clients` UDP connections (in the mixed workload's table). */
	async memaslap(server: Server, clients: number): Promise<Row> {
		const seconds = Math.max(1, Math.round(this.seconds));
		const threads = Math.min(clients, 2);
		const out = await this.guest.run(
			[
				...['env', `LOADGEN_SERVER=${server.comm}`, this.guest.loadgen, 'exec', 'memcaslap', '-s', `127.0.0.1:${server.ports.memcached!}`],
				...['-U', '-T', String(threads), '-c', String(clients), '-t', `${seconds}s`, '-S', `${seconds}s`, '-F', this.memaslapConfig],
			],
			(seconds + 120) * 1000,
		);
		const { perSecond: tps, ...measured } = parseMemaslap(out);
		log.info(`memaslap → ${server.name} (${server.threads} thr) ${clients} clients: ${tps} req/s`);
		return {
			...measured,
			workload: 'mixed',
			server: server.name,
			protocol: 'memcached',
			threads: server.threads,
			clients,
			generator: 'memaslap',
			window: 1,
			p99Bound: true,
		};
	}

	/**
	 * Mean latency for 1-10 closed-loop processes, one request at a time (the
	 * original moddb table), the servers taking turns; every repetition kept.
	 */
	async latencyTable(...servers: Array<[Server, 'text' | 'memcached']>): Promise<LatencyPoint[]> {
		const seconds = this.options.quick ? 0.3 : Math.min(this.seconds, 2);
		const points = new Map<string, LatencyPoint>();
		for (let rep = 0; rep < this.reps; rep++) {
			for (const [mix, code] of [
				['read', 'r'],
				['write', 'w'],
				['read/write', 'rw'],
			] as const) {
				for (const processes of this.options.quick ? [1, 10] : [1, 2, 4, 6, 8, 10]) {
					for (const [server, protocol] of servers) {
						const measured = await this.guest.loadgen_(
							[server.ports[protocol]!, wireOf(protocol), code, processes, 1, seconds, processes],
							seconds,
						);
						const key = `${server.name} ${mix} ${processes}`;
						const point = points.get(key) ?? { server: server.name, mix, processes, means_us: [], lost: 0 };
						point.means_us.push(measured.mean_us);
						point.lost += measured.lost;
						points.set(key, point);
					}
				}
			}
		}
		return [...points.values()].sort(
			(x, y) => servers.findIndex(([s]) => s.name === x.server) - servers.findIndex(([s]) => s.name === y.server),
		);
	}
}

export function logRow(row: Row): void {
	const from = placementOf(row) === 'lab b' ? ' from lab b' : '';
	log.info(
		`${row.workload}: ${row.server} (${row.protocol}, ${row.threads} thr) ${row.clients} clients${from}: ${perSecond(row).toFixed(0)} req/s${row.refused ? `, ${row.refused} errors` : ''}`,
	);
}

/** A copy of the module with other parameters, loaded in the place of `kernel` for its rows. */
export interface Variant {
	server: Server;
	jobs: Array<() => Promise<Row>>;
}

/**
 * The rows of one workload at one thread count. Every server of it runs at
 * once, on its own port (idle, each waits in recvmsg), and each repetition
 * goes through all the rows in turn: the machine's noise then falls on every
 * server alike; the report shows each figure's median over the repetitions
 * and its range. The variants' rows (softirq=1, rx_dev) follow in each
 * repetition, each copy of the module loaded in the place of `kernel` in
 * turn. `after` runs before the servers stop.
 */
export async function phase(
	reps: number,
	servers: Server[],
	kernel: Server,
	jobs: Array<() => Promise<Row>>,
	variants: Variant[],
	after?: () => Promise<void>,
): Promise<Row[]> {
	for (const one of servers) await one.start();
	const all = [jobs, ...variants.map(variant => variant.jobs)];
	const results: Row[][][] = all.map(list => list.map(() => []));
	for (let rep = 0; rep < reps; rep++) {
		for (const [i, job] of jobs.entries()) results[0]![i]!.push(await job());
		for (const [v, variant] of variants.entries()) {
			await inPlaceOf(kernel, variant.server, async () => {
				for (const [i, job] of variant.jobs.entries()) results[v + 1]![i]!.push(await job());
			});
		}
	}
	await after?.();
	for (const one of servers) await one.stop();
	return results.flat(2);
}
