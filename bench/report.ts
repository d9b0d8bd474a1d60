/**
 * The report of `./run bench`: the Markdown tables on stdout (BENCHMARKS.md
 * explains them), the raw results as JSON in .lab/bench-results.json, and
 * the plot of latency against processes as SVG.
 */
import { writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { PROJECT_ROOT } from '../src/modules.js';
import type { BenchOptions } from './kv-bench.js';
import {
	bestMemcached,
	cpuPerRequest,
	describeWorkload,
	type OpenPoint,
	groupRows,
	inFlight,
	type LatencyPoint,
	perSecond,
	type Row,
	type Spread,
	serverCpuPerRequest,
	spread,
	type Workload,
} from './rows.js';
import { latencySvg, lineSvg, MODDB, type Series } from './svg.js';

const SVG_PATH = path.join(PROJECT_ROOT, 'bench/latency-vs-processes.svg');
const OPEN_SVG_PATH = path.join(PROJECT_ROOT, 'bench/latency-vs-offered-load.svg');
const RESULTS_PATH = path.join(PROJECT_ROOT, '.lab/bench-results.json');

/** What the bench guest is, as the report's header says. */
export interface GuestFacts {
	cpus: number;
	clocksource: string;
	kernel: string;
	perf: string;
}

export interface BenchReport {
	rows: Row[];
	latency: LatencyPoint[];
	facts: GuestFacts;
	options: BenchOptions;
	/** The host's load average when the run started. */
	loadBefore: number;
	/** The servers' threads in the latency table (the guest's CPUs). */
	threads: number;
	/** Requests in flight per client, repetitions, seconds per row and repetition. */
	window: number;
	reps: number;
	seconds: number;
	/** What the clients asked for: a table each. */
	workloads: Workload[];
	/** The open-loop points, every repetition. */
	openLoop: OpenPoint[];
	/** memcached's closed-loop saturation (req/s) that the open loop's offered loads are shares of. */
	saturation: number;
}

function fmt(value: number | undefined, digits = 0): string {
	return value === undefined || Number.isNaN(value)
		? '–'
		: value.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits }).replace(/,/g, ' ');
}

/** "median (min–max)". */
function fmtSpread({ median, min, max }: Spread, digits = 0, prefix = ''): string {
	return `${prefix}${fmt(median, digits)} (${fmt(min, digits)}–${fmt(max, digits)})`;
}

function ratio(ours: number, theirs: number | undefined): string {
	return theirs === undefined ? '' : `${fmt(ours / theirs, 2)}×`;
}

/** Every figure of a row over its repetitions. */
function figures(reps: Row[]) {
	const of = (figure: (row: Row) => number) => spread(reps.map(figure));
	return {
		perSecond: of(perSecond),
		p50: of(row => row.p50_us ?? Number.NaN),
		p99: of(row => row.p99_us ?? Number.NaN),
		p999: of(row => row.p999_us ?? Number.NaN),
		cpu: of(cpuPerRequest),
		threadsCpu: of(serverCpuPerRequest),
		inFlight: of(inFlight),
		generator: of(row => row.gen_cpu_s / row.guest_total_s),
		busy: of(row => row.guest_busy_s / row.guest_total_s),
	};
}

export function throughputTable(rows: Row[]): string {
	const groups = groupRows(rows);
	const stats = new Map(groups.map(reps => [reps[0]!, figures(reps)]));
	const first = (reps: Row[]) => reps[0]!;
	const echoOf = (row: Row) =>
		groups.map(first).find(other => other.server === 'udp_echo' && other.threads === row.threads && other.clients === row.clients);
	const headings = [
		'generator',
		'server',
		'protocol',
		'threads:',
		'clients:',
		'req/s (min–max):',
		'p50 µs (min–max):',
		'p99 µs (min–max):',
		'p99.9 µs:',
		'loss:',
		'λ·W:',
		'in flight:',
		'baseline',
		'÷ memcached:',
		'CPU µs/req (min–max):',
		'CPU ÷ memcached:',
		'CPU ÷ echo:',
		'server threads µs/req:',
		'threads ÷ memcached:',
		'threads ÷ echo:',
		'generator CPU:',
		'guest busy:',
	];
	const lines = [
		`| ${headings.map(heading => heading.replace(/:$/, '')).join(' | ')} |`,
		`| ${headings.map(heading => (heading.endsWith(':') ? '---:' : '---')).join(' | ')} |`,
	];
	for (const reps of groups) {
		const row = first(reps);
		const own = stats.get(row)!;
		const mcRow = bestMemcached(groups, row)?.[0];
		const mc = mcRow && mcRow !== row ? stats.get(mcRow) : undefined;
		const echoRow = echoOf(row);
		const echo = echoRow && echoRow !== row && row.generator === 'loadgen' ? stats.get(echoRow) : undefined;
		const lost = reps.reduce((sum, rep) => sum + rep.lost, 0);
		const sent = reps.reduce((sum, rep) => sum + rep.answered + rep.lost, 0);
		const bound = row.p99Bound ? '≤ ' : '';
		lines.push(
			[
				row.generator,
				row.server,
				row.protocol,
				row.threads,
				row.clients,
				fmtSpread(own.perSecond),
				fmtSpread(own.p50, 0, bound),
				fmtSpread(own.p99, 0, bound),
				`${bound}${fmt(own.p999.median)}`,
				`${fmt(sent ? (100 * lost) / sent : 0, 2)}%`,
				fmt(own.inFlight.median, 1),
				row.clients * row.window,
				mcRow ? `memcached -t ${mcRow.threads}` : '',
				ratio(own.perSecond.median, mc?.perSecond.median),
				// softirq=1: its work is charged to the generator (see Row.softirq).
				...(row.softirq
					? Array<string>(6).fill('n/a')
					: [
							fmtSpread(own.cpu, 1),
							ratio(own.cpu.median, mc?.cpu.median),
							ratio(own.cpu.median, echo?.cpu.median),
							fmt(own.threadsCpu.median, 1),
							ratio(own.threadsCpu.median, mc?.threadsCpu.median),
							ratio(own.threadsCpu.median, echo?.threadsCpu.median),
						]),
				`${fmt(100 * own.generator.median)}%`,
				`${fmt(100 * own.busy.median)}%`,
			]
				.join(' | ')
				.replace(/^/, '| ')
				.replace(/$/, ' |'),
		);
	}
	return lines.join('\n');
}

/** p50 and p99 against offered load, a line per server and offered rate. */
export function openLoopTable(points: OpenPoint[]): string {
	const servers = [...new Set(points.map(point => point.server))];
	const rates = [...new Set(points.map(point => point.offered))].sort((a, b) => a - b);
	const lines = [
		"| server | threads | offered req/s | of memcached's saturation | answered req/s (min–max) | p50 µs (min–max) | p99 µs (min–max) | loss | p99 ÷ memcached |",
		'| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
	];
	const p99 = (server: string, offered: number) =>
		spread(points.filter(point => point.server === server && point.offered === offered).map(point => point.p99_us ?? Number.NaN)).median;
	for (const server of servers) {
		for (const offered of rates) {
			const reps = points.filter(point => point.server === server && point.offered === offered);
			if (!reps.length) continue;
			const lost = reps.reduce((sum, rep) => sum + rep.lost, 0);
			const sent = reps.reduce((sum, rep) => sum + rep.answered + rep.lost, 0);
			lines.push(
				`| ${[
					server,
					reps[0]!.threads,
					fmt(offered),
					`${fmt(100 * reps[0]!.fraction)}%`,
					fmtSpread(spread(reps.map(perSecond))),
					fmtSpread(spread(reps.map(rep => rep.p50_us ?? Number.NaN))),
					fmtSpread(spread(reps.map(rep => rep.p99_us ?? Number.NaN))),
					`${fmt(sent ? (100 * lost) / sent : 0, 2)}%`,
					server === 'memcached' ? '' : ratio(p99(server, offered), p99('memcached', offered)),
				].join(' | ')} |`,
			);
		}
	}
	return lines.join('\n');
}

/** The plot of p50 and p99 against offered load. */
export function openLoopSvg(points: OpenPoint[], saturation: number, subtitle: string): string {
	const series: Series[] = [];
	for (const server of [...new Set(points.map(point => point.server))]) {
		const rates = [...new Set(points.filter(point => point.server === server).map(point => point.offered))];
		for (const [name, figure] of [
			['p50', (point: OpenPoint) => point.p50_us ?? Number.NaN],
			['p99', (point: OpenPoint) => point.p99_us ?? Number.NaN],
		] as const) {
			series.push({
				label: `${server} ${name}`,
				points: rates.map(offered => [
					offered,
					spread(points.filter(point => point.server === server && point.offered === offered).map(figure)).median / 1000,
				]),
			});
		}
	}
	return lineSvg({
		title: 'Latency against offered load (open loop, Poisson arrivals)',
		subtitle,
		xLabel: 'offered load (requests a second)',
		yLabel: 'latency (ms, log scale), median of the repetitions',
		series,
		marker: { x: saturation, label: "memcached's closed-loop saturation" },
	});
}

function latencyTable(points: LatencyPoint[]): string {
	const processes = [...new Set(points.map(point => point.processes))];
	const lines = [
		`| server | operation | ${processes.map(n => `${n} proc`).join(' | ')} | ${processes.at(-1)} ÷ 1 |`,
		`| --- | --- | ${processes.map(() => '---:').join(' | ')} | ---: |`,
	];
	for (const server of [...new Set(points.map(point => point.server))]) {
		for (const mix of ['read', 'write', 'read/write'] as const) {
			const series = points.filter(point => point.server === server && point.mix === mix);
			const ms = series.map(point => {
				const { median, min, max } = spread(point.means_us);
				return fmtSpread({ median: median / 1000, min: min / 1000, max: max / 1000 }, 3);
			});
			const growth = spread(series.at(-1)!.means_us).median / spread(series[0]!.means_us).median;
			lines.push(`| ${server} | ${mix} | ${ms.join(' | ')} | ${fmt(growth, 1)}× |`);
		}
	}
	for (const [mix, one, ten] of MODDB) {
		const cells = processes.map(n => (n === 1 ? fmt(one, 2) : n === 10 ? fmt(ten, 2) : ''));
		lines.push(`| moddb (2017 hardware, its own figures) | ${mix} | ${cells.join(' | ')} | ${fmt(ten / one, 1)}× |`);
	}
	return lines.join('\n');
}

/** Prints the tables, writes the JSON results and (not --quick) the SVG plot. */
export async function writeReport({
	rows,
	latency,
	facts,
	options,
	loadBefore,
	threads: n,
	window,
	reps,
	seconds,
	workloads,
	openLoop,
	saturation,
}: BenchReport): Promise<void> {
	const header = [
		`kernel-udp benchmark${options.quick ? ' (--quick: a smoke test, not a measurement)' : ''}`,
		`host: ${os.cpus().length} cores shared with whatever else runs, load average ${loadBefore.toFixed(1)} at the start, ${os.loadavg()[0]!.toFixed(1)} at the end`,
		`guest: ${facts.cpus} vCPUs under QEMU TCG, kernel ${facts.kernel}, clocksource ${facts.clocksource}; perf stat -e instructions: ${facts.perf}`,
		`load: loadgen (bench/loadgen.c) in the same guest over 127.0.0.1, ${window} requests in flight per client, ${reps} × ${seconds} s per row, the servers taking turns (every figure the median of the repetitions, with their range); λ·W: req/s × mean latency, the requests in flight by Little's law, beside the most loadgen keeps in flight`,
	];
	process.stdout.write(`${header.join('\n')}\n\n`);
	for (const workload of workloads) {
		const memaslap =
			workload.name === 'mixed' ? '; memaslap: 16-byte keys and values, 50/50 set/get, one request in flight per connection' : '';
		process.stdout.write(
			`### Workload ${workload.name}: ${describeWorkload(workload)}${memaslap}\n\n${throughputTable(rows.filter(row => row.workload === workload.name))}\n\n`,
		);
	}
	process.stdout.write(
		`### Closed-loop latency\n\nMean latency per operation (ms), N closed-loop processes each doing one request at a time, median of ${reps} (udp_server threads=${n} on its text protocol, memcached -t ${n} on its UDP protocol, taking turns; then udp_server threads=${n} softirq=1, loaded in udp_server's place):\n\n${latencyTable(latency)}\n`,
	);
	const heavy = workloads.at(-1)!;
	process.stdout.write(
		`\n### Open loop: latency against offered load\n\nloadgen -r: Poisson arrivals over 8 sockets at a share of memcached's closed-loop saturation in the ${heavy.name} table (${fmt(saturation)} req/s, its best setting), ${heavy.name} workload on the memcached protocol, latency from each request's scheduled send time; udp_server threads=${n} and memcached at that setting taking turns, ${reps} × ${seconds} s per point:\n\n${openLoopTable(openLoop)}\n`,
	);
	await writeFile(RESULTS_PATH, JSON.stringify({ facts, rows, latency, options, workloads, openLoop, saturation }, null, 2));
	await writeFile(
		options.quick ? path.join(PROJECT_ROOT, '.lab/bench-open-loop-quick.svg') : OPEN_SVG_PATH,
		openLoopSvg(openLoop, saturation, `${heavy.name} workload, ${facts.cpus} vCPUs (QEMU TCG); dashed: p99`),
	);
	if (!options.quick) {
		const series: Series[] = [];
		for (const name of [...new Set(latency.map(point => point.server))]) {
			for (const mix of ['read', 'write', 'read/write'] as const) {
				series.push({
					label: `${name} ${mix}`,
					points: latency
						.filter(point => point.server === name && point.mix === mix)
						.map(point => [point.processes, spread(point.means_us).median / 1000]),
				});
			}
		}
		await writeFile(SVG_PATH, latencySvg(series, `${facts.cpus} vCPUs (QEMU TCG), clocksource ${facts.clocksource}`));
		process.stdout.write(`\nplot: ${path.relative(PROJECT_ROOT, SVG_PATH)}; raw results: ${path.relative(PROJECT_ROOT, RESULTS_PATH)}\n`);
	}
}
