/**
 * `./run bench`: udp_server against memcached, the Node reference server and
 * a bare in-kernel UDP echo, all inside one lab guest of their own, loaded
 * by bench/loadgen.c (a C generator compiled here, run in the guest over the
 * shared filesystem) and by memaslap. BENCHMARKS.md explains the tables.
 *
 * Absolute numbers on a shared machine under QEMU's software emulation are
 * noisy: compare the rows of one run with each other.
 *
 * This file runs the rows and writes the results (bench/results.json, or
 * .lab/ for --quick); rows.ts says what a row is; render.ts draws the
 * tables and plots from the results alone.
 */
import { createHash, randomUUID } from 'node:crypto';
import { copyFile, mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ifMissing, UserError } from '../src/errors.js';
import { build } from '../src/lifecycle.js';
import { log } from '../src/log.js';
import { kbuildPath, PROJECT_ROOT } from '../src/modules.js';
import { runProgram } from '../src/programs.js';
import { applySettings } from '../src/settings.js';
import { chooseTarget, type Target } from '../src/targets.js';
import { type GuestFacts, QUICK_RESULTS_PATH, RESULTS_PATH, type Results, render } from './render.js';
import {
	type LatencyPoint,
	type Measured,
	memcachedSaturation,
	type OpenPoint,
	perSecond,
	type Row,
	type Workload,
	workloadArgs,
	workloadMix,
} from './rows.js';

export interface BenchOptions {
	/** Seconds, few requests, every row: the smoke test. */
	quick?: boolean;
	/** The lab guest to use (default "bench"). */
	lab?: string;
	/** Seconds per row and repetition (default 2; 0.5 with --quick). */
	seconds?: number;
	/** Repetitions of every row (default 5; 1 with --quick). */
	reps?: number;
	/** Leave the lab running afterwards. */
	keep?: boolean;
}

const CACHE = path.join(PROJECT_ROOT, '.lab/cache/bench');
const ECHO_DIR = path.join(PROJECT_ROOT, 'bench/echo-module');
const CLOCKSOURCE = '/sys/devices/system/clocksource/clocksource0/current_clocksource';

/** The open loop's sockets (on min(8, vCPUs) threads). */
const OPEN_LOOP_CLIENTS = 8;
/** The open loop's offered loads, as shares of memcached's closed-loop saturation. */
const OPEN_LOOP_FRACTIONS = [0.1, 0.3, 0.5, 0.7, 0.9, 1.2];
const QUICK_OPEN_LOOP_FRACTIONS = [0.5, 1.2];

const TEXT_PORT = 3000;
const MC_PORT = 11311;
const MEMCACHED_PORT = 11211;
const NODE_PORT = 3001;
const ECHO_PORT = 3400;

interface Server {
	name: string;
	/** What its processes are called (kernel threads: "udp_server/0"...): loadgen measures their CPU time. */
	comm: string;
	threads: number;
	/** The protocols it answers, on which port. */
	ports: Partial<Record<'text' | 'memcached' | 'echo', number>>;
	start(): Promise<void>;
	stop(): Promise<void>;
}

type Protocol = 'text' | 'memcached' | 'echo';

function wireOf(protocol: Protocol): string {
	return protocol === 'memcached' ? 'mc' : protocol;
}

/** Today's load: 50/50, 1 000 keys, uniform, 9-byte values. */
const MIXED: Workload = { name: 'mixed', keys: 1000, theta: 0, readPercent: 50 };

/** The get-heavy load caches are judged on (BMC's): 90/10, Zipf 0.99 over 100 000 keys, values 32-1 000 bytes. */
function getHeavy(quick: boolean): Workload {
	return { name: 'get-heavy', keys: quick ? 10_000 : 100_000, theta: 0.99, values: [32, 1000], readPercent: 90 };
}

/**
 * udp_server's settings for a workload: the longest request and reply
 * (`len`: a 1 000-byte value and its framing), and a table that holds every
 * key (`max_bytes`: about 1 KB of slab per entry of these sizes; `max_entries`).
 */
function serverParams(workload: Workload): string[] {
	return workload.values ? ['len=1200', `max_bytes=${512 << 20}`, `max_entries=${Math.max(131_072, workload.keys * 2)}`] : [];
}

class Bench {
	readonly seconds: number;
	readonly clients: number[];
	readonly window: number;
	readonly reps: number;
	loadgen = '';
	memaslapConfig = path.join(CACHE, 'memaslap.cfg');

	constructor(
		readonly target: Target,
		readonly options: BenchOptions,
	) {
		this.seconds = options.seconds ?? (options.quick ? 0.5 : 2);
		this.reps = options.reps ?? (options.quick ? 1 : 5);
		this.clients = options.quick ? [1, 8] : [1, 4, 8];
		this.window = options.quick ? 4 : 16;
	}

	async guest(argv: string[], timeoutMs = 60_000): Promise<string> {
		const result = await this.target.exec(argv, { timeoutMs });
		if (result.exitCode !== 0 || result.timedOut) {
			throw new Error(
				`in the bench guest, \`${argv.join(' ')}\` failed (${result.timedOut ? 'timed out' : `exit ${result.exitCode}`}):\n${result.stderr}${result.stdout}`,
			);
		}
		return result.stdout;
	}

	/** Waits until the server answers on each of its ports (Node starts slowly), then inserts the workload's keys through the `preload` ones. */
	async ready(ports: Server['ports'], workload: Workload, preload: Protocol[], seconds = 60): Promise<void> {
		for (const [protocol, port] of Object.entries(ports) as Array<[Protocol, number]>) {
			await this.guest([this.loadgen, 'probe', String(port), wireOf(protocol), String(seconds)], (seconds + 10) * 1000);
			if (preload.includes(protocol)) {
				await this.guest([this.loadgen, 'preload', ...workloadArgs(workload), String(port), wireOf(protocol)], 300_000);
			}
		}
	}

	async loadgen_(args: (string | number)[], seconds: number, comm = ''): Promise<Measured> {
		const out = await this.guest(['env', `LOADGEN_SERVER=${comm}`, this.loadgen, 'run', ...args.map(String)], (seconds + 60) * 1000);
		return JSON.parse(out.trim().split('\n').at(-1) ?? '') as Measured;
	}

	async run(server: Server, protocol: Protocol, clients: number, workload: Workload): Promise<Row> {
		const port = server.ports[protocol]!;
		const measured = await this.loadgen_(
			[...workloadArgs(workload), port, wireOf(protocol), workloadMix(workload), clients, this.window, this.seconds],
			this.seconds,
			server.comm,
		);
		const row: Row = {
			...measured,
			workload: workload.name,
			server: server.name,
			protocol: protocol === 'memcached' ? 'memcached' : 'text',
			threads: server.threads,
			clients,
			generator: 'loadgen',
			window: this.window,
		};
		log.info(
			`${workload.name}: ${server.name} (${row.protocol}, ${server.threads} thr) ${clients} clients: ${perSecond(row).toFixed(0)} req/s`,
		);
		return row;
	}

	/**
	 * One open-loop point: loadgen -r, Poisson arrivals at `offered` requests
	 * a second over OPEN_LOOP_CLIENTS sockets, on the memcached protocol (its
	 * request IDs match every reply to its request, even with losses).
	 */
	async openLoop(server: Server, offered: number, fraction: number, workload: Workload): Promise<OpenPoint> {
		const measured = await this.loadgen_(
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
		const port = server.ports.memcached!;
		const seconds = Math.max(1, Math.round(this.seconds));
		const threads = Math.min(clients, 2);
		const out = await this.guest(
			[
				'env',
				`LOADGEN_SERVER=${server.comm}`,
				this.loadgen,
				'exec',
				'memcaslap',
				'-s',
				`127.0.0.1:${port}`,
				'-U',
				'-T',
				String(threads),
				'-c',
				String(clients),
				'-t',
				`${seconds}s`,
				'-S',
				`${seconds}s`,
				'-F',
				this.memaslapConfig,
			],
			(seconds + 120) * 1000,
		);
		const wrapper = JSON.parse(/^LOADGEN (.*)$/m.exec(out)?.[1] ?? 'null') as Measured | null;
		const run = /^Run time: ([\d.]+)s Ops: (\d+) TPS: (\d+)/m.exec(out);
		const total = /Total Statistics \(\d+ events\)([\s\S]*?)(?:\n\n|$)/.exec(out)?.[1] ?? '';
		const avg = Number(/Avg:\s+(\d+)/.exec(total)?.[1]);
		if (!wrapper || !run || Number.isNaN(avg)) throw new Error(`memaslap printed no results:\n${out}`);
		const ops = Number(run[2]);
		const timeouts = Number(/^udp_timeout: (\d+)$/m.exec(out)?.[1] ?? 0);
		const row: Row = {
			answered: ops,
			lost: timeouts,
			refused: 0,
			seconds: Number(run[1]),
			mean_us: avg,
			...log2Percentiles(total),
			gen_cpu_s: wrapper.gen_cpu_s,
			guest_busy_s: wrapper.guest_busy_s,
			guest_total_s: wrapper.guest_total_s,
			server_cpu_s: wrapper.server_cpu_s,
			workload: MIXED.name,
			server: server.name,
			protocol: 'memcached',
			threads: server.threads,
			clients,
			generator: 'memaslap',
			window: 1,
			p99Bound: true,
		};
		log.info(`memaslap → ${server.name} (${server.threads} thr) ${clients} clients: ${Number(run[3])} req/s`);
		return row;
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
						const measured = await this.loadgen_(
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

export function compileLoadgen(): Promise<string> {
	return compileBenchProgram('loadgen');
}

const compiling = new Map<string, Promise<string>>();

/**
 * Compiles bench/NAME.c on this machine (the guest runs it over the shared
 * root); returns the binary's path. Callers in one process share one build.
 */
export function compileBenchProgram(name: string): Promise<string> {
	let pending = compiling.get(name);
	if (!pending) {
		pending = buildBenchProgram(name);
		compiling.set(name, pending);
		pending.catch(() => compiling.delete(name));
	}
	return pending;
}

async function buildBenchProgram(name: string): Promise<string> {
	const source = path.join(PROJECT_ROOT, `bench/${name}.c`);
	const hash = createHash('sha256')
		.update(await readFile(source))
		.digest('hex')
		.slice(0, 12);
	const binary = path.join(CACHE, `${name}-${hash}`);
	// Named after its source: built once. Rebuilding it in place would give the
	// path a new inode, and a lab guest that cached the old one would get
	// "Stale file handle" running it.
	if (await stat(binary).then(() => true, ifMissing(false))) return binary;
	await mkdir(CACHE, { recursive: true });
	// Unique per build: two processes (or two Node versions' test runs) may build at once.
	const building = `${binary}.${process.pid}.${randomUUID()}.tmp`;
	await runProgram('gcc', ['-O2', '-Wall', '-Wextra', '-Werror', '-pthread', '-o', building, source, '-lm']);
	await rename(building, binary);
	return binary;
}

/** Builds bench/echo-module against the lab's headers; returns a snapshot of the .ko named after its sources. */
async function buildEcho(headers: string): Promise<string> {
	const hash = createHash('sha256').update(headers);
	for (const file of ['udp_echo.c', 'Kbuild', 'Makefile']) hash.update(await readFile(path.join(ECHO_DIR, file)));
	const dir = await kbuildPath(ECHO_DIR);
	const made = await runProgram('make', ['-C', dir, `KDIR=${headers}`, `CURDIR=${dir}`], {
		reject: false,
		all: true,
		env: { LC_ALL: 'C' },
	});
	if (made.exitCode !== 0) {
		throw new UserError(`bench/echo-module did not build (make exited with ${made.exitCode})`, { hint: made.all ?? '' });
	}
	const ko = path.join(CACHE, `udp_echo-${hash.digest('hex').slice(0, 12)}.ko`);
	await copyFile(path.join(ECHO_DIR, 'udp_echo.ko'), ko);
	return ko;
}

function kernelServer(
	bench: Bench,
	name: string,
	ko: string,
	threads: number,
	params: string[],
	ports: Server['ports'],
	workload: Workload,
	preload: Protocol[],
): Server {
	const module = path.basename(ko).startsWith('udp_echo') ? 'udp_echo' : 'udp_server';
	return {
		name,
		comm: module,
		threads,
		ports,
		async start() {
			await bench.guest(['insmod', ko, `threads=${threads}`, ...params]);
			await bench.ready(ports, workload, preload);
		},
		async stop() {
			await bench.guest(['rmmod', module], 30_000);
		},
	};
}

/** Runs `work` with `other` loaded in the place of `server` (two copies of one module cannot be loaded at once). */
async function inPlaceOf(server: Server, other: Server, work: () => Promise<void>): Promise<void> {
	await server.stop();
	await other.start();
	await work();
	await other.stop();
	await server.start();
}

/** Starts its arguments in the background, detached from the agent, and prints the pid. A fixed script: the words are its arguments. */
const START_DETACHED = 'setsid "$@" </dev/null >/dev/null 2>&1 & echo $!';
/** Kills process $1 and waits until it is gone. */
const KILL_AND_WAIT = 'kill "$1"; while kill -0 "$1" 2>/dev/null; do sleep 0.1; done';

function processServer(
	bench: Bench,
	name: string,
	comm: string,
	threads: number,
	ports: Server['ports'],
	argv: string[],
	workload: Workload,
): Server {
	let pid = '';
	return {
		name,
		comm,
		threads,
		ports,
		async start() {
			pid = (await bench.guest(['sh', '-c', START_DETACHED, 'sh', ...argv])).trim();
			await bench.ready(ports, workload, ['text', 'memcached']);
		},
		async stop() {
			await bench.guest(['sh', '-c', KILL_AND_WAIT, 'sh', pid], 30_000);
		},
	};
}

/** The commit this checkout is at, and whether files git tracks differ from it. */
async function measuredCommit(): Promise<{ commit: string; dirty: boolean }> {
	const head = await runProgram('git', ['-C', PROJECT_ROOT, 'rev-parse', 'HEAD'], { reject: false });
	const status = await runProgram('git', ['-C', PROJECT_ROOT, 'status', '--porcelain', '--untracked-files=no'], { reject: false });
	return {
		commit: head.exitCode === 0 ? head.stdout.trim() : 'unknown',
		dirty: status.exitCode !== 0 || status.stdout.trim() !== '',
	};
}

async function guestFacts(bench: Bench): Promise<GuestFacts> {
	const cpus = Number(await bench.guest(['nproc']));
	const clocksource = (await bench.guest(['cat', CLOCKSOURCE])).trim();
	const kernel = (await bench.guest(['uname', '-r'])).trim();
	const perf = await bench.target.exec(['perf', 'stat', '-e', 'instructions', 'true'], { timeoutMs: 60_000 });
	const perfLine = perf.exitCode === 0 ? 'works' : `fails: ${`${perf.stderr}${perf.stdout}`.trim().split('\n').slice(-1)[0] ?? ''}`;
	return { cpus, clocksource, kernel, perf: perfLine };
}

/**
 * The rows of one workload at one thread count. Every server of it runs at
 * once, on its own port (idle, each waits in recvmsg), and each repetition
 * goes through all the rows in turn: the machine's noise then falls on every
 * server alike; the report shows each figure's median over the repetitions
 * and its range. The softirq=1 rows follow in each repetition, with that
 * copy of the module loaded in the place of `kernel`. `after` runs before
 * the servers stop.
 */
async function phase(
	bench: Bench,
	servers: Server[],
	kernel: Server,
	jobs: Array<() => Promise<Row>>,
	fast: Server,
	fastJobs: Array<() => Promise<Row>>,
	after?: () => Promise<void>,
): Promise<Row[]> {
	for (const one of servers) await one.start();
	const results: Row[][] = [...jobs, ...fastJobs].map(() => []);
	for (let rep = 0; rep < bench.reps; rep++) {
		for (const [i, job] of jobs.entries()) results[i]!.push(await job());
		await inPlaceOf(kernel, fast, async () => {
			for (const [i, job] of fastJobs.entries()) results[jobs.length + i]!.push(await job());
		});
	}
	await after?.();
	for (const one of servers) await one.stop();
	return results.flat();
}

export async function runBenchmark(options: BenchOptions = {}): Promise<void> {
	// The get-heavy table's 100 000 entries of up to 1 KB, in udp_server and memcached at once.
	applySettings({ labCpus: 2, labMemory: 1024 }, { keep: true });
	const target = await chooseTarget({ target: 'lab', lab: options.lab ?? 'bench' });
	const bench = new Bench(target, options);
	const loadBefore = os.loadavg()[0]!;
	const started = new Date().toISOString();
	const workloads = [MIXED, getHeavy(Boolean(options.quick))];
	try {
		bench.loadgen = await compileLoadgen();
		await writeFile(bench.memaslapConfig, 'key\n16 16 1\nvalue\n16 16 1\ncmd\n0 0.5\n1 0.5\n');
		await target.prepare();
		const headers = await target.headersDir();
		const server = await build(target, 'udp_server');
		const echo = await buildEcho(headers);
		const facts = await guestFacts(bench);
		const n = facts.cpus;
		// Nothing of ours may be left loaded from an earlier run of this lab.
		for (const module of ['udp_server', 'udp_echo']) await target.exec(['rmmod', module], { timeoutMs: 30_000 });

		const ours = (threads: number, workload: Workload) =>
			kernelServer(
				bench,
				'udp_server',
				server.ko,
				threads,
				[`port=${TEXT_PORT}`, `memcached_port=${MC_PORT}`, 'bind=127.0.0.1', ...serverParams(workload)],
				{ text: TEXT_PORT, memcached: MC_PORT },
				workload,
				// Both ports share one table: the keys are inserted once.
				['text'],
			);
		const memcached = (threads: number, workload: Workload) =>
			processServer(
				bench,
				'memcached',
				'memcached',
				threads,
				{ memcached: MEMCACHED_PORT },
				[
					'memcached',
					'-U',
					String(MEMCACHED_PORT),
					'-p',
					'0',
					'-l',
					'127.0.0.1',
					'-t',
					String(threads),
					'-u',
					'root',
					'-m',
					workload.values ? '512' : '64',
				],
				workload,
			);
		const node = processServer(
			bench,
			'node dgram',
			'node',
			1,
			{ text: NODE_PORT },
			[process.execPath, path.join(PROJECT_ROOT, 'dist/bench/userspace-server.js'), String(NODE_PORT)],
			MIXED,
		);
		const bareEcho = (threads: number) =>
			kernelServer(bench, 'udp_echo', echo, threads, [`port=${ECHO_PORT}`], { echo: ECHO_PORT }, MIXED, []);
		// softirq=1 (server-module/fastpath.c): the same module, so it takes the place of `ours` in turn.
		const oursSoftirq = (threads: number, workload: Workload) =>
			kernelServer(
				bench,
				'udp_server softirq',
				server.ko,
				threads,
				[`port=${TEXT_PORT}`, 'bind=127.0.0.1', 'softirq=1', ...serverParams(workload)],
				{ text: TEXT_PORT },
				workload,
				['text'],
			);

		const rows: Row[] = [];
		const latency: LatencyPoint[] = [];
		for (const threads of [...new Set([1, n])]) {
			for (const workload of workloads) {
				const mixed = workload === MIXED;
				const kernel = ours(threads, workload);
				const user = memcached(threads, workload);
				const ceiling = bareEcho(threads);
				// The Node server and memaslap (with its own 16-byte load) are in the mixed workload's table only.
				const servers = [kernel, user, ceiling, ...(mixed && threads === 1 ? [node] : [])];
				const fast = oursSoftirq(threads, workload);
				// --quick: the get-heavy table at the most clients only.
				const clientCounts = !mixed && options.quick ? bench.clients.slice(-1) : bench.clients;
				const jobs: Array<() => Promise<Row>> = [];
				for (const clients of clientCounts) {
					jobs.push(
						() => bench.run(kernel, 'text', clients, workload),
						async () => ({ ...(await bench.run(ceiling, 'echo', clients, workload)), protocol: 'text' }),
						() => bench.run(kernel, 'memcached', clients, workload),
						() => bench.run(user, 'memcached', clients, workload),
					);
					if (mixed)
						jobs.push(
							() => bench.memaslap(kernel, clients),
							() => bench.memaslap(user, clients),
						);
					if (mixed && threads === 1) jobs.push(() => bench.run(node, 'text', clients, workload));
				}
				const fastJobs = clientCounts.map(clients => async () => ({
					...(await bench.run(fast, 'text', clients, workload)),
					softirq: true,
				}));
				// The mixed workload at N threads also runs the closed-loop latency table, its servers still up.
				const after =
					mixed && threads === n
						? async () => {
								latency.push(...(await bench.latencyTable([kernel, 'text'], [user, 'memcached'])));
								await inPlaceOf(kernel, fast, async () => {
									latency.push(...(await bench.latencyTable([fast, 'text'])));
								});
							}
						: undefined;
				rows.push(...(await phase(bench, servers, kernel, jobs, fast, fastJobs, after)));
			}
		}

		// The open loop: udp_server at N threads and memcached at its best setting of the get-heavy table,
		// each offered 10%…120% of that memcached's closed-loop saturation, taking turns.
		const openLoop: OpenPoint[] = [];
		const heavy = workloads.at(-1)!;
		const saturation = memcachedSaturation(rows, heavy.name);
		if (saturation) {
			const servers = [ours(n, heavy), memcached(saturation.threads, heavy)];
			for (const one of servers) await one.start();
			for (let rep = 0; rep < bench.reps; rep++) {
				for (const fraction of options.quick ? QUICK_OPEN_LOOP_FRACTIONS : OPEN_LOOP_FRACTIONS) {
					for (const one of servers) {
						openLoop.push(await bench.openLoop(one, Math.round(fraction * saturation.perSecond), fraction, heavy));
					}
				}
			}
			for (const one of servers) await one.stop();
		}

		const order = (row: Row) =>
			[
				workloads.findIndex(workload => workload.name === row.workload),
				row.generator === 'loadgen' ? 0 : 1,
				row.protocol === 'text' ? 0 : 1,
				['udp_server', 'udp_server softirq', 'memcached', 'node dgram', 'udp_echo'].indexOf(row.server),
				row.threads,
				row.clients,
			]
				.map(v => String(v).padStart(3, '0'))
				.join('');
		rows.sort((a, b) => order(a).localeCompare(order(b)));

		const results: Results = {
			...(await measuredCommit()),
			date: started,
			host: { cores: os.cpus().length, loadStart: loadBefore, loadEnd: os.loadavg()[0]! },
			guest: facts,
			quick: Boolean(options.quick),
			reps: bench.reps,
			seconds: bench.seconds,
			window: bench.window,
			threads: n,
			workloads,
			rows,
			latency,
			openLoop,
			saturation: saturation?.perSecond ?? 0,
		};
		// The raw data first, then everything drawn from it alone (bench/render.ts).
		const file = options.quick ? QUICK_RESULTS_PATH : RESULTS_PATH;
		await writeFile(file, `${JSON.stringify(results, null, '\t')}\n`);
		await render(results);
		process.stdout.write(`raw results: ${path.relative(PROJECT_ROOT, file)}\n`);
	} finally {
		if (!options.keep) await target.stop();
	}
}
