/**
 * The renderer of `./run bench`'s results: from bench/results.json alone
 * (kv-bench.ts writes it; --quick keeps its own in .lab/), the Markdown
 * tables (printed, and between the BEGIN and END lines of BENCHMARKS.md,
 * which explains them) and the SVG plots.
 *
 *   node dist/bench/render.js [RESULTS.json]
 */
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { PROJECT_ROOT } from '../src/modules.js';
import {
	bestMemcached,
	cpuPerRequest,
	describeWorkload,
	type OpenPoint,
	groupRows,
	inFlight,
	type LatencyPoint,
	type MemoryPoint,
	median,
	perSecond,
	placementOf,
	type Row,
	type Spread,
	serverCpuPerRequest,
	serverGuestBusy,
	spread,
	type Workload,
} from './rows.js';
import { latencySvg, lineSvg, MODDB, type Series } from './svg.js';

/** The committed results of the last full run, and where --quick keeps its own. */
export const RESULTS_PATH = path.join(PROJECT_ROOT, 'bench/results.json');
export const QUICK_RESULTS_PATH = path.join(PROJECT_ROOT, '.lab/bench-results-quick.json');
const BENCHMARKS_MD = path.join(PROJECT_ROOT, 'BENCHMARKS.md');
const SVGS = { processes: 'bench/latency-vs-processes.svg', offered: 'bench/latency-vs-offered-load.svg' };
const QUICK_SVGS = { processes: '.lab/bench-latency-quick.svg', offered: '.lab/bench-open-loop-quick.svg' };

/** The lines of BENCHMARKS.md between which the tables are generated. */
export const BEGIN = '<!-- BEGIN TABLES: generated from bench/results.json by `node dist/bench/render.js`; edits here are overwritten -->';
export const END = '<!-- END TABLES -->';

/** What the bench guest is, as the report's header says. */
export interface GuestFacts {
	cpus: number;
	clocksource: string;
	kernel: string;
	perf: string;
}

/** Everything a run measured, as bench/results.json keeps it: the tables and plots are drawn from this alone. */
export interface Results {
	/** The commit measured, and whether the tree had changes beside it. */
	commit: string;
	dirty: boolean;
	/** When the run started (ISO 8601). */
	date: string;
	host: { cores: number; loadStart: number; loadEnd: number };
	/** The servers' guest (lab a), and the generator's second lab (lab b; absent in runs before it). */
	guest: GuestFacts;
	generatorGuest?: GuestFacts;
	quick: boolean;
	/** Repetitions, seconds per row and repetition, requests in flight per client, the servers' threads in the latency table and open loop (the guest's CPUs). */
	reps: number;
	seconds: number;
	window: number;
	threads: number;
	workloads: Workload[];
	/** Every repetition of every row. */
	rows: Row[];
	latency: LatencyPoint[];
	openLoop: OpenPoint[];
	/** memcached's closed-loop saturation (req/s) that the open loop's offered loads are shares of. */
	saturation: number;
	/** Memory per entry after the get-heavy keys were inserted (absent in runs before it). */
	memory?: MemoryPoint[];
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
		busy: of(serverGuestBusy),
		/** With the generator in lab b: lab b's busy share (the generator's guest). */
		generatorBusy: of(row => row.guest_busy_s / row.guest_total_s),
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
		'errors:',
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
				fmt(reps.reduce((sum, rep) => sum + rep.refused, 0)),
				fmt(own.inFlight.median, 1),
				row.clients * row.window,
				mcRow ? `memcached -t ${mcRow.threads}` : '',
				ratio(own.perSecond.median, mc?.perSecond.median),
				// softirq=1 in the same guest: its work is charged to the generator (see Row.softirq).
				...(row.softirq && !row.serverSide
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

/** "| a | b |" from cells. */
function tableLine(cells: Array<string | number>): string {
	return `| ${cells.join(' | ')} |`;
}

/** A header and its alignment line from headings; a heading that ends in ":" is a right-aligned number. */
function tableHead(headings: string[]): string[] {
	return [
		tableLine(headings.map(heading => heading.replace(/:$/, ''))),
		tableLine(headings.map(heading => (heading.endsWith(':') ? '---:' : '---'))),
	];
}

/**
 * The rows whose generator ran in lab b, each beside the same row with the
 * generator in the same guest. CPU is lab a's busy time (less watch's own)
 * over the requests answered, for every server, softirq=1 included.
 * `÷ echo` sets a row's req/s against the bare echo's over the same
 * network: near 1 the network (or the generator) binds, not the server;
 * `lab a busy` and `lab b busy` say which guest, if any, ran out of CPU.
 */
export function twoLabTable(rows: Row[]): string {
	const groups = groupRows(rows);
	const remote = groups.filter(reps => placementOf(reps[0]!) === 'lab b');
	const stats = new Map(groups.map(reps => [reps[0]!, figures(reps)]));
	const find = (row: Row, test: (other: Row) => boolean) =>
		groups
			.map(reps => reps[0]!)
			.find(other => other.workload === row.workload && other.threads === row.threads && other.clients === row.clients && test(other));
	const lines = tableHead([
		'workload',
		'server',
		'protocol',
		'threads:',
		'clients:',
		'req/s (min–max):',
		'p50 µs:',
		'p99 µs (min–max):',
		'loss:',
		'errors:',
		'λ·W:',
		'baseline',
		'÷ memcached:',
		'÷ echo:',
		'CPU µs/req, lab a (min–max):',
		'CPU ÷ memcached:',
		'CPU ÷ echo:',
		'server threads µs/req:',
		'same guest: req/s:',
		'same guest: CPU µs/req:',
		'lab a busy:',
		'lab b busy:',
	]);
	for (const reps of remote) {
		const row = reps[0]!;
		const own = stats.get(row)!;
		const mcRow = bestMemcached(groups, row)?.[0];
		const mc = mcRow && mcRow !== row ? stats.get(mcRow) : undefined;
		const echoRow = find(row, other => other.server === 'udp_echo' && placementOf(other) === 'lab b');
		const echo = echoRow && echoRow !== row ? stats.get(echoRow) : undefined;
		const localRow = find(
			row,
			other =>
				other.server === row.server &&
				other.protocol === row.protocol &&
				other.generator === row.generator &&
				placementOf(other) === 'same guest',
		);
		const local = localRow ? stats.get(localRow) : undefined;
		const lost = reps.reduce((sum, rep) => sum + rep.lost, 0);
		const sent = reps.reduce((sum, rep) => sum + rep.answered + rep.lost + rep.refused, 0);
		const errors = reps.reduce((sum, rep) => sum + rep.refused, 0);
		lines.push(
			tableLine([
				row.workload,
				row.server,
				row.protocol,
				row.threads,
				row.clients,
				fmtSpread(own.perSecond),
				fmt(own.p50.median),
				fmtSpread(own.p99),
				`${fmt(sent ? (100 * lost) / sent : 0, 2)}%`,
				fmt(errors),
				fmt(own.inFlight.median, 1),
				mcRow ? `memcached -t ${mcRow.threads}` : '',
				ratio(own.perSecond.median, mc?.perSecond.median),
				ratio(own.perSecond.median, echo?.perSecond.median),
				fmtSpread(own.cpu, 1),
				ratio(own.cpu.median, mc?.cpu.median),
				ratio(own.cpu.median, echo?.cpu.median),
				fmt(own.threadsCpu.median, 1),
				local ? fmt(local.perSecond.median) : '',
				// The same guest's softirq=1 rows have no CPU figure of their own (see throughputTable).
				local && !localRow?.softirq ? fmt(local.cpu.median, 1) : local ? 'n/a' : '',
				`${fmt(100 * own.busy.median)}%`,
				`${fmt(100 * own.generatorBusy.median)}%`,
			]),
		);
	}
	return lines.join('\n');
}

/**
 * Memory per entry, udp_server beside memcached for the same keys and
 * values: each server's own count, and what the guest lost to the table
 * (udp_server: the kernel's Slab + VmallocUsed growth; memcached: its RSS
 * growth), both divided by the entries the server reports.
 */
export function memoryTable(points: MemoryPoint[]): string {
	const lines = tableHead([
		'workload',
		'server',
		'threads:',
		'entries:',
		'own count, bytes/entry:',
		'guest memory, bytes/entry:',
		'guest memory read as',
		'÷ memcached:',
	]);
	const perEntry = (point: MemoryPoint) => point.grownBytes / point.entries;
	for (const point of points) {
		const theirs = points.filter(other => other.server === 'memcached' && other.workload === point.workload);
		const baseline = theirs.length ? median(theirs.map(perEntry)) : undefined;
		lines.push(
			tableLine([
				point.workload,
				point.server,
				point.threads,
				fmt(point.entries),
				fmt(point.statsBytes / point.entries),
				fmt(perEntry(point)),
				point.grownHow,
				point.server === 'memcached' ? '' : ratio(perEntry(point), baseline),
			]),
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

/** The tables of a run, as Markdown: what BENCHMARKS.md shows between BEGIN and END, and what ./run bench prints. */
export function renderTables(results: Results): string {
	const { reps, seconds, window, threads: n, guest, host } = results;
	const out: string[] = [
		`kernel-udp benchmark${results.quick ? ' (--quick: a smoke test, not a measurement)' : ''}`,
		'',
		`commit: ${results.commit}${results.dirty ? ' with uncommitted changes' : ''}, run ${results.date}`,
		`host: ${host.cores} cores shared with whatever else runs, load average ${fmt(host.loadStart, 1)} at the start, ${fmt(host.loadEnd, 1)} at the end`,
		`guest: ${guest.cpus} vCPUs under QEMU TCG, kernel ${guest.kernel}, clocksource ${guest.clocksource}; perf stat -e instructions: ${guest.perf}`,
		...(results.generatorGuest
			? [
					`lab b (the generator of the two-lab rows): ${results.generatorGuest.cpus} vCPUs, kernel ${results.generatorGuest.kernel}, clocksource ${results.generatorGuest.clocksource}`,
				]
			: []),
		`load: loadgen (bench/loadgen.c) in the same guest over 127.0.0.1, ${window} requests in flight per client, ${reps} × ${seconds} s per row, the servers taking turns (every figure the median of the repetitions, with their range); λ·W: req/s × mean latency, the requests in flight by Little's law, beside the most loadgen keeps in flight`,
		'',
	];
	for (const workload of results.workloads) {
		const memaslap =
			workload.name === 'mixed' ? '; memaslap: 16-byte keys and values, 50/50 set/get, one request in flight per connection' : '';
		out.push(
			`### Workload ${workload.name}: ${describeWorkload(workload)}${memaslap}`,
			'',
			throughputTable(results.rows.filter(row => row.workload === workload.name && placementOf(row) === 'same guest')),
			'',
		);
	}
	out.push(
		'### Closed-loop latency',
		'',
		`Mean latency per operation (ms), N closed-loop processes each doing one request at a time, median of ${reps} with the range (udp_server threads=${n} on its text protocol, memcached -t ${n} on its UDP protocol, taking turns; then udp_server threads=${n} softirq=1, loaded in udp_server's place):`,
		'',
		latencyTable(results.latency),
		'',
	);
	if (!results.quick) out.push(`![mean latency per operation against processes](${SVGS.processes})`, '');
	const heavy = results.workloads.at(-1)!;
	out.push(
		'### Open loop: latency against offered load',
		'',
		`loadgen -r: Poisson arrivals over 8 sockets at a share of memcached's closed-loop saturation in the ${heavy.name} table (${fmt(results.saturation)} req/s, its best setting), ${heavy.name} workload on the memcached protocol, latency from each request's scheduled send time; udp_server threads=${n} and memcached at that setting taking turns, then udp_server threads=${n} softirq=1 in udp_server's place, ${reps} × ${seconds} s per point:`,
		'',
		openLoopTable(results.openLoop),
		'',
	);
	if (!results.quick) out.push(`![p50 and p99 against offered load](${SVGS.offered})`, '');
	const remote = results.rows.filter(row => placementOf(row) === 'lab b');
	if (remote.length) {
		out.push(
			'### Two labs: the generator in lab b, the servers in lab a',
			'',
			`loadgen in a second lab guest (lab b) over the labs' network (10.0.9.0/24, virtio-net between two QEMU guests; text lookups padded to the reflection bound), the servers in the bench lab (lab a) at its address there; ${window} requests in flight per client, ${reps} × ${seconds} s per row. CPU µs/req: lab a's busy time (wall × vCPUs − idle, /proc/stat) less its sampler's own, ÷ requests answered, for every row; errors: error replies (loadgen's refusals, e.g. "ERR pad to N"); the same-guest columns repeat that row's figures with the generator in lab a:`,
			'',
			twoLabTable(results.rows),
			'',
		);
	}
	if (results.memory?.length) {
		out.push(
			'### Memory per entry',
			'',
			'After the get-heavy keys were inserted (each server on its first start in that phase): its own count (udp_server: stats `bytes=`, what max_bytes charges; memcached: stats `bytes`) and what the guest lost to the table (udp_server: /proc/meminfo Slab + VmallocUsed growth; memcached: RSS growth), each ÷ the entries it reports:',
			'',
			memoryTable(results.memory),
			'',
		);
	}
	return out.join('\n');
}

/** The plots of a run: file (relative to the project) → SVG. */
export function renderSvgs(results: Results): Record<string, string> {
	const paths = results.quick ? QUICK_SVGS : SVGS;
	const series: Series[] = [];
	for (const name of [...new Set(results.latency.map(point => point.server))]) {
		for (const mix of ['read', 'write', 'read/write'] as const) {
			series.push({
				label: `${name} ${mix}`,
				points: results.latency
					.filter(point => point.server === name && point.mix === mix)
					.map(point => [point.processes, spread(point.means_us).median / 1000]),
			});
		}
	}
	const heavy = results.workloads.at(-1)!;
	const svgs: Record<string, string> = {
		[paths.processes]: latencySvg(
			series,
			`${results.guest.cpus} vCPUs (QEMU TCG), clocksource ${results.guest.clocksource}, commit ${results.commit.slice(0, 7)}`,
		),
	};
	if (results.openLoop.length) {
		svgs[paths.offered] = openLoopSvg(
			results.openLoop,
			results.saturation,
			`${heavy.name} workload, ${results.guest.cpus} vCPUs (QEMU TCG), commit ${results.commit.slice(0, 7)}; dashed: p99`,
		);
	}
	return svgs;
}

/** BENCHMARKS.md with the text between BEGIN and END replaced by `tables`. */
export function replaceTables(markdown: string, tables: string): string {
	const begin = markdown.indexOf(BEGIN);
	const end = markdown.indexOf(END);
	if (begin < 0 || end < begin) throw new Error(`BENCHMARKS.md has no "${BEGIN}" … "${END}" section`);
	return `${markdown.slice(0, begin + BEGIN.length)}\n\n${tables.trimEnd()}\n\n${markdown.slice(end)}`;
}

/**
 * Draws a run's tables and plots from its results: prints the tables, writes
 * the SVGs and, for a full run, the tables section of BENCHMARKS.md.
 */
export async function render(results: Results): Promise<void> {
	const tables = renderTables(results);
	process.stdout.write(`${tables}\n`);
	for (const [file, svg] of Object.entries(renderSvgs(results))) await writeFile(path.join(PROJECT_ROOT, file), svg);
	if (!results.quick) {
		await writeFile(BENCHMARKS_MD, replaceTables(await readFile(BENCHMARKS_MD, 'utf8'), tables));
		process.stdout.write(
			`\nBENCHMARKS.md and ${Object.values(SVGS).join(', ')} regenerated from ${path.relative(PROJECT_ROOT, RESULTS_PATH)}\n`,
		);
	}
}

// `node dist/bench/render.js [RESULTS.json]`: regenerate from the committed results (or those given) alone.
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
	const file = process.argv[2] ? path.resolve(process.argv[2]) : RESULTS_PATH;
	await render(JSON.parse(await readFile(file, 'utf8')) as Results);
}
