/**
 * `./run bench`: udp_server against memcached, the Node reference server and
 * a bare in-kernel UDP echo, all inside one lab guest of their own, loaded
 * by bench/loadgen.c (a C generator compiled here, run in the guest over the
 * shared filesystem) and by memaslap; then a few rows with the generator in
 * a second lab, over the labs' network (two-labs.ts). BENCHMARKS.md explains
 * the tables.
 *
 * Absolute numbers on a shared machine under QEMU's software emulation are
 * noisy: compare the rows of one run with each other.
 *
 * This file runs the rows and writes the results (bench/results.json, or
 * .lab/ for --quick); rows.ts says what a row is; render.ts draws the
 * tables and plots from the results alone. guest.ts drives loadgen in a
 * guest, servers.ts starts and stops the servers, programs.ts builds the
 * bench's programs, memory.ts measures memory per entry.
 */
import { writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { build } from '../src/lifecycle.js';
import { PROJECT_ROOT } from '../src/modules.js';
import { runProgram } from '../src/programs.js';
import { applySettings } from '../src/settings.js';
import { chooseTarget } from '../src/targets.js';
import { BenchGuest } from './guest.js';
import { MEMASLAP_CONFIG } from './memaslap.js';
import { measureMemory } from './memory.js';
import { Bench, type BenchOptions, phase } from './measure.js';
import { buildEcho, compileLoadgen } from './programs.js';
import { QUICK_RESULTS_PATH, RESULTS_PATH, type Results, render } from './render.js';
import { type LatencyPoint, type MemoryPoint, memcachedSaturation, type OpenPoint, placementOf, type Row, type Workload } from './rows.js';
import { inPlaceOf, type Server, ServerKit } from './servers.js';

export type { BenchOptions };
import { secondLab, twoLabRows } from './two-labs.js';

/** The open loop's offered loads, as shares of memcached's closed-loop saturation. */
const OPEN_LOOP_FRACTIONS = [0.1, 0.3, 0.5, 0.7, 0.9, 1.2];
const QUICK_OPEN_LOOP_FRACTIONS = [0.5, 1.2];

/** Today's load: 50/50, 1 000 keys, uniform, 9-byte values. */
const MIXED: Workload = { name: 'mixed', keys: 1000, theta: 0, readPercent: 50 };

/** The get-heavy load caches are judged on (BMC's): 90/10, Zipf 0.99 over 100 000 keys, values 32-1 000 bytes. */
function getHeavy(quick: boolean): Workload {
	return { name: 'get-heavy', keys: quick ? 10_000 : 100_000, theta: 0.99, values: [32, 1000], readPercent: 90 };
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

/** Rows in the order of the tables: placement, workload, generator, protocol, server, threads, clients. */
function sortRows(rows: Row[], workloads: Workload[]): void {
	const order = (row: Row) =>
		[
			placementOf(row) === 'same guest' ? 0 : 1,
			workloads.findIndex(workload => workload.name === row.workload),
			row.generator === 'loadgen' ? 0 : 1,
			row.protocol === 'text' ? 0 : 1,
			['udp_server', 'udp_server softirq', 'udp_server rx_dev', 'memcached', 'node dgram', 'udp_echo'].indexOf(row.server),
			row.threads,
			row.clients,
		]
			.map(v => String(v).padStart(3, '0'))
			.join('');
	rows.sort((a, b) => order(a).localeCompare(order(b)));
}

/**
 * The same-guest tables: for each thread count (1 and the guest's vCPUs) and
 * workload, a phase of every server at once, the softirq=1 copy of
 * udp_server in its place in each repetition; the mixed workload at N
 * threads also runs the closed-loop latency table.
 */
async function sameGuestRows(
	bench: Bench,
	kit: ServerKit,
	workloads: Workload[],
	n: number,
): Promise<{ rows: Row[]; latency: LatencyPoint[] }> {
	const quick = Boolean(bench.options.quick);
	const node = kit.node(MIXED);
	const rows: Row[] = [];
	const latency: LatencyPoint[] = [];
	for (const threads of [...new Set([1, n])]) {
		for (const workload of workloads) {
			const mixed = workload === MIXED;
			const kernel = kit.ours(threads, workload);
			const user = kit.memcached(threads, workload);
			const ceiling = kit.echo(threads);
			// The Node server and memaslap (with its own 16-byte load) are in the mixed workload's table only.
			const servers = [kernel, user, ceiling, ...(mixed && threads === 1 ? [node] : [])];
			const fast = kit.oursSoftirq(threads, workload);
			// --quick: the get-heavy table at the most clients only.
			const clientCounts = !mixed && quick ? bench.clients.slice(-1) : bench.clients;
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
			const fastJobs = clientCounts.flatMap(clients =>
				(['text', 'memcached'] as const).map(protocol => async () => ({
					...(await bench.run(fast, protocol, clients, workload)),
					softirq: true,
				})),
			);
			const after =
				mixed && threads === n
					? async () => {
							latency.push(...(await bench.latencyTable([kernel, 'text'], [user, 'memcached'])));
							await inPlaceOf(kernel, fast, async () => {
								latency.push(...(await bench.latencyTable([fast, 'text'])));
							});
						}
					: undefined;
			rows.push(...(await phase(bench.reps, servers, kernel, jobs, [{ server: fast, jobs: fastJobs }], after)));
		}
	}
	return { rows, latency };
}

/**
 * The open loop: udp_server at N threads (threads, then softirq=1 in its
 * place) and memcached at its best setting of the get-heavy table, each
 * offered 10%…120% of that memcached's closed-loop saturation, taking turns.
 */
async function openLoopPoints(
	bench: Bench,
	kit: ServerKit,
	heavy: Workload,
	n: number,
	saturation: { perSecond: number; threads: number },
): Promise<OpenPoint[]> {
	const points: OpenPoint[] = [];
	const ours = kit.ours(n, heavy);
	const fast = kit.oursSoftirq(n, heavy);
	const servers = [ours, kit.memcached(saturation.threads, heavy)];
	const fractions = bench.options.quick ? QUICK_OPEN_LOOP_FRACTIONS : OPEN_LOOP_FRACTIONS;
	const offer = (server: Server, fraction: number) => bench.openLoop(server, Math.round(fraction * saturation.perSecond), fraction, heavy);
	for (const one of servers) await one.start();
	for (let rep = 0; rep < bench.reps; rep++) {
		for (const fraction of fractions) {
			for (const one of servers) points.push(await offer(one, fraction));
		}
		await inPlaceOf(ours, fast, async () => {
			for (const fraction of fractions) points.push(await offer(fast, fraction));
		});
	}
	for (const one of servers) await one.stop();
	return points;
}

export async function runBenchmark(options: BenchOptions = {}): Promise<void> {
	// The get-heavy table's 100 000 entries of up to 1 KB, in udp_server and memcached at once.
	applySettings({ labCpus: 2, labMemory: 1024 }, { keep: true });
	const labName = options.lab ?? 'bench';
	const target = await chooseTarget({ target: 'lab', lab: labName });
	const generatorTarget = await chooseTarget({ target: 'lab', lab: secondLab(labName) });
	const loadBefore = os.loadavg()[0]!;
	const started = new Date().toISOString();
	const workloads = [MIXED, getHeavy(Boolean(options.quick))];
	try {
		const loadgen = await compileLoadgen();
		const guest = new BenchGuest(target, loadgen);
		const bench = new Bench(guest, options);
		await writeFile(bench.memaslapConfig, MEMASLAP_CONFIG);
		// The second lab boots while the first works.
		const generatorReady = generatorTarget.prepare();
		generatorReady.catch(() => {});
		await target.prepare();
		const headers = await target.headersDir();
		const modules = { server: (await build(target, 'udp_server')).ko, echo: await buildEcho(headers) };
		const facts = await guest.facts();
		const n = facts.cpus;
		// Nothing of ours may be left loaded from an earlier run of this lab.
		for (const module of ['udp_server', 'udp_echo']) await target.exec(['rmmod', module], { timeoutMs: 30_000 });

		const memory: MemoryPoint[] = [];
		const kit = new ServerKit(guest, '127.0.0.1', modules, measureMemory(guest, memory));

		const { rows, latency } = await sameGuestRows(bench, kit, workloads, n);
		const heavy = workloads.at(-1)!;
		const saturation = memcachedSaturation(rows, heavy.name);
		// Memory per entry was measured in the closed-loop phases: the open loop's servers start afresh without it.
		const openLoop = saturation ? await openLoopPoints(bench, new ServerKit(guest, '127.0.0.1', modules), heavy, n, saturation) : [];

		// The generator in lab b, the servers in this lab, over the labs' network.
		await generatorReady;
		const generator = new BenchGuest(generatorTarget, loadgen);
		const remoteKit = new ServerKit(guest, await guest.address(), modules);
		rows.push(...(await twoLabRows(bench, remoteKit, generator, rows, options.quick ? [heavy] : workloads, n)));

		sortRows(rows, workloads);
		const results: Results = {
			...(await measuredCommit()),
			date: started,
			host: { cores: os.cpus().length, loadStart: loadBefore, loadEnd: os.loadavg()[0]! },
			guest: facts,
			generatorGuest: await generator.facts(),
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
			memory,
		};
		// The raw data first, then everything drawn from it alone (bench/render.ts).
		const file = options.quick ? QUICK_RESULTS_PATH : RESULTS_PATH;
		await writeFile(file, `${JSON.stringify(results, null, '\t')}\n`);
		await render(results);
		process.stdout.write(`raw results: ${path.relative(PROJECT_ROOT, file)}\n`);
	} finally {
		if (!options.keep) {
			await generatorTarget.stop();
			await target.stop();
		}
	}
}
