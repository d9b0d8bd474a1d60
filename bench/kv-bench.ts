/**
 * `./run bench`: udp_server against memcached, the Node reference server and
 * a bare in-kernel UDP echo, all inside one lab guest of their own, loaded
 * by bench/loadgen.c (a C generator compiled here, run in the guest over the
 * shared filesystem) and by memaslap. BENCHMARKS.md explains the tables.
 *
 * Absolute numbers on a shared machine under QEMU's software emulation are
 * noisy: compare the rows of one run with each other.
 *
 * This file runs the rows; rows.ts says what a row is, report.ts prints and
 * writes them (Markdown, JSON, SVG).
 */
import { createHash } from 'node:crypto';
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
import { writeReport, type GuestFacts } from './report.js';
import { type LatencyPoint, type Measured, perSecond, type Row } from './rows.js';

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

	async guest(command: string, timeoutMs = 60_000): Promise<string> {
		const result = await this.target.exec(['sh', '-c', command], { timeoutMs });
		if (result.exitCode !== 0 || result.timedOut) {
			throw new Error(
				`in the bench guest, \`${command}\` failed (${result.timedOut ? 'timed out' : `exit ${result.exitCode}`}):\n${result.stderr}${result.stdout}`,
			);
		}
		return result.stdout;
	}

	/** Waits until the server answers on each of its ports (Node starts slowly), then inserts the keys lookups ask for. */
	async ready(ports: Server['ports'], seconds = 60): Promise<void> {
		for (const [protocol, port] of Object.entries(ports)) {
			const wire = protocol === 'memcached' ? 'mc' : protocol;
			await this.guest(`${q(this.loadgen)} probe ${port} ${wire} ${seconds}`, (seconds + 10) * 1000);
			if (wire !== 'echo') await this.guest(`${q(this.loadgen)} preload ${port} ${wire}`, 120_000);
		}
	}

	async loadgen_(args: (string | number)[], seconds: number, comm = ''): Promise<Measured> {
		const out = await this.guest(`LOADGEN_SERVER=${q(comm)} ${q(this.loadgen)} run ${args.join(' ')}`, (seconds + 60) * 1000);
		return JSON.parse(out.trim().split('\n').at(-1) ?? '') as Measured;
	}

	async run(server: Server, protocol: 'text' | 'memcached' | 'echo', clients: number): Promise<Row> {
		const port = server.ports[protocol]!;
		const wire = protocol === 'memcached' ? 'mc' : protocol;
		const measured = await this.loadgen_([port, wire, 'rw', clients, this.window, this.seconds], this.seconds, server.comm);
		const row: Row = {
			...measured,
			server: server.name,
			protocol: protocol === 'memcached' ? 'memcached' : 'text',
			threads: server.threads,
			clients,
			generator: 'loadgen',
			window: this.window,
		};
		log.info(`${server.name} (${row.protocol}, ${server.threads} thr) ${clients} clients: ${perSecond(row).toFixed(0)} req/s`);
		return row;
	}

	/** memaslap, 50/50 set/get of 16-byte keys and values, `clients` UDP connections. */
	async memaslap(server: Server, clients: number): Promise<Row> {
		const port = server.ports.memcached!;
		const seconds = Math.max(1, Math.round(this.seconds));
		const threads = Math.min(clients, 2);
		const out = await this.guest(
			`LOADGEN_SERVER=${q(server.comm)} ${q(this.loadgen)} exec memcaslap -s 127.0.0.1:${port} -U -T ${threads} -c ${clients} -t ${seconds}s -S ${seconds}s -F ${q(this.memaslapConfig)}`,
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
	 * original moddb table), the servers taking turns; the median of the repetitions.
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
							[server.ports[protocol]!, protocol === 'memcached' ? 'mc' : 'text', code, processes, 1, seconds, processes],
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

/** Shell-quotes one word. */
function q(word: string): string {
	return `'${word.replace(/'/g, "'\\''")}'`;
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

/** Compiles bench/NAME.c on this machine (the guest runs it over the shared root); returns the binary's path. */
export async function compileBenchProgram(name: string): Promise<string> {
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
	const building = `${binary}.${process.pid}.tmp`;
	await runProgram('gcc', ['-O2', '-Wall', '-Wextra', '-Werror', '-pthread', '-o', building, source]);
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

function kernelServer(bench: Bench, name: string, ko: string, threads: number, params: string[], ports: Server['ports']): Server {
	const module = path.basename(ko).startsWith('udp_echo') ? 'udp_echo' : 'udp_server';
	return {
		name,
		comm: module,
		threads,
		ports,
		async start() {
			await bench.guest(`insmod ${q(ko)} threads=${threads} ${params.join(' ')}`);
			await bench.ready(ports);
		},
		async stop() {
			await bench.guest(`rmmod ${module}`, 30_000);
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

function processServer(bench: Bench, name: string, comm: string, threads: number, ports: Server['ports'], command: string): Server {
	let pid = '';
	return {
		name,
		comm,
		threads,
		ports,
		async start() {
			pid = (await bench.guest(`setsid ${command} </dev/null >/dev/null 2>&1 & echo $!`)).trim();
			await bench.ready(ports);
		},
		async stop() {
			await bench.guest(`kill ${pid}; while kill -0 ${pid} 2>/dev/null; do sleep 0.1; done`, 30_000);
		},
	};
}

async function guestFacts(bench: Bench): Promise<GuestFacts> {
	const cpus = Number(await bench.guest('nproc'));
	const clocksource = (await bench.guest(`cat ${CLOCKSOURCE}`)).trim();
	const kernel = (await bench.guest('uname -r')).trim();
	const perf = await bench.target.exec(['sh', '-c', 'perf stat -e instructions true 2>&1'], { timeoutMs: 60_000 });
	const perfLine = perf.exitCode === 0 ? 'works' : `fails: ${perf.stdout.trim().split('\n').slice(-1)[0] ?? ''}`;
	return { cpus, clocksource, kernel, perf: perfLine };
}

export async function runBenchmark(options: BenchOptions = {}): Promise<void> {
	applySettings({ labCpus: 2 }, { keep: true });
	const target = await chooseTarget({ target: 'lab', lab: options.lab ?? 'bench' });
	const bench = new Bench(target, options);
	const loadBefore = os.loadavg()[0]!;
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
		await bench.guest('rmmod udp_server 2>/dev/null; rmmod udp_echo 2>/dev/null; true');

		const ours = (threads: number) =>
			kernelServer(bench, 'udp_server', server.ko, threads, [`port=${TEXT_PORT}`, `memcached_port=${MC_PORT}`, 'bind=127.0.0.1'], {
				text: TEXT_PORT,
				memcached: MC_PORT,
			});
		const memcached = (threads: number) =>
			processServer(
				bench,
				'memcached',
				'memcached',
				threads,
				{ memcached: MEMCACHED_PORT },
				`memcached -U ${MEMCACHED_PORT} -p 0 -l 127.0.0.1 -t ${threads} -u root -m 64`,
			);
		const node = processServer(
			bench,
			'node dgram',
			'node',
			1,
			{ text: NODE_PORT },
			`${q(process.execPath)} ${q(path.join(PROJECT_ROOT, 'dist/bench/userspace-server.js'))} ${NODE_PORT}`,
		);
		const bareEcho = (threads: number) => kernelServer(bench, 'udp_echo', echo, threads, [`port=${ECHO_PORT}`], { echo: ECHO_PORT });
		// softirq=1 (server-module/fastpath.c): the same module, so it takes the place of `ours` in turn.
		const oursSoftirq = (threads: number) =>
			kernelServer(bench, 'udp_server softirq', server.ko, threads, [`port=${TEXT_PORT}`, 'bind=127.0.0.1', 'softirq=1'], {
				text: TEXT_PORT,
			});

		// Every server of a phase runs at once, on its own port (idle, each waits in recvmsg), and
		// each repetition goes through all the rows in turn: the machine's noise then falls on
		// every server alike; the report shows each figure's median over the repetitions and its range.
		const rows: Row[] = [];
		const latency: LatencyPoint[] = [];
		for (const threads of [...new Set([1, n])]) {
			const servers = [ours(threads), memcached(threads), bareEcho(threads), ...(threads === 1 ? [node] : [])];
			const [kernel, user, ceiling] = servers as [Server, Server, Server];
			const fast = oursSoftirq(threads);
			for (const one of servers) await one.start();
			const jobs: Array<() => Promise<Row>> = [];
			for (const clients of bench.clients) {
				jobs.push(
					() => bench.run(kernel, 'text', clients),
					async () => ({ ...(await bench.run(ceiling, 'echo', clients)), protocol: 'text' }),
					() => bench.run(kernel, 'memcached', clients),
					() => bench.run(user, 'memcached', clients),
					() => bench.memaslap(kernel, clients),
					() => bench.memaslap(user, clients),
				);
				if (threads === 1) jobs.push(() => bench.run(node, 'text', clients));
			}
			// Then the softirq=1 rows, with that copy of the module loaded in its place.
			const fastJobs = bench.clients.map(clients => async () => ({ ...(await bench.run(fast, 'text', clients)), softirq: true }));
			const results: Row[][] = [...jobs, ...fastJobs].map(() => []);
			for (let rep = 0; rep < bench.reps; rep++) {
				for (const [i, job] of jobs.entries()) results[i]!.push(await job());
				await inPlaceOf(kernel, fast, async () => {
					for (const [i, job] of fastJobs.entries()) results[jobs.length + i]!.push(await job());
				});
			}
			rows.push(...results.flat());
			if (threads === n) {
				latency.push(...(await bench.latencyTable([kernel, 'text'], [user, 'memcached'])));
				await inPlaceOf(kernel, fast, async () => {
					latency.push(...(await bench.latencyTable([fast, 'text'])));
				});
			}
			for (const one of servers) await one.stop();
		}

		const order = (row: Row) =>
			[
				row.generator === 'loadgen' ? 0 : 1,
				row.protocol === 'text' ? 0 : 1,
				['udp_server', 'udp_server softirq', 'memcached', 'node dgram', 'udp_echo'].indexOf(row.server),
				row.threads,
				row.clients,
			]
				.map(v => String(v).padStart(3, '0'))
				.join('');
		rows.sort((a, b) => order(a).localeCompare(order(b)));

		await writeReport({
			rows,
			latency,
			facts,
			options,
			loadBefore,
			threads: n,
			window: bench.window,
			reps: bench.reps,
			seconds: bench.seconds,
		});
	} finally {
		if (!options.keep) await target.stop();
	}
}
