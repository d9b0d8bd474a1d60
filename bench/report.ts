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
import { cpuPerRequest, type LatencyPoint, perSecond, type Row, serverCpuPerRequest } from './rows.js';
import { latencySvg, MODDB, type Series } from './svg.js';

const SVG_PATH = path.join(PROJECT_ROOT, 'bench/latency-vs-processes.svg');
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
}

function fmt(value: number | undefined, digits = 0): string {
	return value === undefined || Number.isNaN(value)
		? '–'
		: value.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits }).replace(/,/g, ' ');
}

function throughputTable(rows: Row[]): string {
	const memcachedOf = (row: Row) =>
		rows.find(
			other =>
				other.server.startsWith('memcached') &&
				other.threads === row.threads &&
				other.clients === row.clients &&
				other.generator === row.generator,
		);
	const echoOf = (row: Row) =>
		rows.find(other => other.server === 'udp_echo' && other.threads === row.threads && other.clients === row.clients);
	const lines = [
		'| generator | server | protocol | threads | clients | req/s | (range) | p50 µs | p99 µs | p99.9 µs | loss | ÷ memcached | CPU µs/req | CPU ÷ memcached | CPU ÷ echo | server threads µs/req | threads ÷ memcached | threads ÷ echo | generator CPU | guest busy |',
		'| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
	];
	for (const row of rows) {
		const mc = memcachedOf(row);
		const echo = echoOf(row);
		const sent = row.answered + row.lost;
		const bound = row.p99Bound ? '≤ ' : '';
		lines.push(
			[
				row.generator,
				row.server,
				row.protocol,
				row.threads,
				row.clients,
				fmt(perSecond(row)),
				row.spread ? `${fmt(row.spread[0])}–${fmt(row.spread[1])}` : '',
				`${bound}${fmt(row.p50_us)}`,
				`${bound}${fmt(row.p99_us)}`,
				`${bound}${fmt(row.p999_us)}`,
				`${fmt(sent ? (100 * row.lost) / sent : 0, 2)}%`,
				mc && mc !== row ? `${fmt(perSecond(row) / perSecond(mc), 2)}×` : '',
				// softirq=1: its work is charged to the generator (see Row.softirq).
				...(row.softirq
					? Array<string>(6).fill('n/a')
					: [
							fmt(cpuPerRequest(row), 1),
							mc && mc !== row ? `${fmt(cpuPerRequest(row) / cpuPerRequest(mc), 2)}×` : '',
							echo && echo !== row && row.generator === 'loadgen' ? `${fmt(cpuPerRequest(row) / cpuPerRequest(echo), 2)}×` : '',
							fmt(serverCpuPerRequest(row), 1),
							mc && mc !== row ? `${fmt(serverCpuPerRequest(row) / serverCpuPerRequest(mc), 2)}×` : '',
							echo && echo !== row && row.generator === 'loadgen' ? `${fmt(serverCpuPerRequest(row) / serverCpuPerRequest(echo), 2)}×` : '',
						]),
				`${fmt((100 * row.gen_cpu_s) / row.guest_total_s)}%`,
				`${fmt((100 * row.guest_busy_s) / row.guest_total_s)}%`,
			]
				.join(' | ')
				.replace(/^/, '| ')
				.replace(/$/, ' |'),
		);
	}
	return lines.join('\n');
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
			const ms = series.map(point => fmt(point.mean_us / 1000, 3));
			const growth = series.at(-1)!.mean_us / series[0]!.mean_us;
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
}: BenchReport): Promise<void> {
	const header = [
		`kernel-udp benchmark${options.quick ? ' (--quick: a smoke test, not a measurement)' : ''}`,
		`host: ${os.cpus().length} cores shared with whatever else runs, load average ${loadBefore.toFixed(1)} at the start, ${os.loadavg()[0]!.toFixed(1)} at the end`,
		`guest: ${facts.cpus} vCPUs under QEMU TCG, kernel ${facts.kernel}, clocksource ${facts.clocksource}; perf stat -e instructions: ${facts.perf}`,
		`load: loadgen (bench/loadgen.c) in the same guest over 127.0.0.1, 50/50 insert/lookup (set/get) of 1 000 8-byte keys with 9-byte values, ${window} requests in flight per client, ${reps} × ${seconds} s per row, the servers taking turns (the repetition with the median req/s is shown); memaslap: 16-byte keys and values, 50/50 set/get, one request in flight per connection`,
	];
	process.stdout.write(`${header.join('\n')}\n\n${throughputTable(rows)}\n\n`);
	process.stdout.write(
		`Mean latency per operation (ms), N closed-loop processes each doing one request at a time, median of ${reps} (udp_server threads=${n} on its text protocol, memcached -t ${n} on its UDP protocol, taking turns; then udp_server threads=${n} softirq=1, loaded in udp_server's place):\n\n${latencyTable(latency)}\n`,
	);
	await writeFile(RESULTS_PATH, JSON.stringify({ facts, rows, latency, options }, null, 2));
	if (!options.quick) {
		const series: Series[] = [];
		for (const name of [...new Set(latency.map(point => point.server))]) {
			for (const mix of ['read', 'write', 'read/write'] as const) {
				series.push({
					label: `${name} ${mix}`,
					points: latency.filter(point => point.server === name && point.mix === mix).map(point => [point.processes, point.mean_us / 1000]),
				});
			}
		}
		await writeFile(SVG_PATH, latencySvg(series, `${facts.cpus} vCPUs (QEMU TCG), clocksource ${facts.clocksource}`));
		process.stdout.write(`\nplot: ${path.relative(PROJECT_ROOT, SVG_PATH)}; raw results: ${path.relative(PROJECT_ROOT, RESULTS_PATH)}\n`);
	}
}
