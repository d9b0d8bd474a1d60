/**
 * bench/render.ts draws BENCHMARKS.md's tables and the plots from a run's
 * results alone: a tiny fixed results file, and what comes out of it.
 */
import test from 'ava';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { BEGIN, END, renderSvgs, renderTables, replaceTables, type Results } from '../../bench/render.js';
import { PROJECT_ROOT } from '../../src/modules.js';

async function fixture(): Promise<Results> {
	return JSON.parse(await readFile(path.join(PROJECT_ROOT, 'test/fixtures/bench/results.json'), 'utf8')) as Results;
}

test('the header names the commit, the date, the host load and the guest kernel', async t => {
	const tables = renderTables(await fixture());
	t.regex(tables, /^commit: 0123456789abcdef0123456789abcdef01234567, run 2026-12-04T07:00:00.000Z$/m);
	t.regex(tables, /^host: 2 cores .* load average 0\.5 at the start, 1\.3 at the end$/m);
	t.regex(tables, /^guest: 2 vCPUs under QEMU TCG, kernel 6\.1\.0-57-cloud-amd64, clocksource tsc;/m);
});

test('a row: medians with their range, λ·W, and the ratios against the best memcached setting, named', async t => {
	const tables = renderTables(await fixture());
	// udp_server 11 000 (10 000–12 000) req/s; memcached -t 1 (median 5 500) beat -t 2 (4 000): the baseline.
	// λ·W = 11 000 × 1.6 ms = 17.6; CPU (1.5 − 0.5) s / 11 000 = 90.9 µs against memcached's 1.1 / 5 500 = 200.
	t.true(
		tables.includes(
			'| loadgen | udp_server | text | 2 | 8 | 11 000 (10 000–12 000) | 1 500 (1 500–1 500) | 4 000 (4 000–4 000) | 8 000 | 0.00% | 0 | 17.6 | 128 | memcached -t 1 | 2.00× | 90.9 (83.3–100.0) | 0.45× |  | 36.4 | 0.50× |  | 25% | 75% |',
		),
		tables,
	);
	t.regex(tables, /^\| loadgen \| memcached \| memcached \| 2 \| 8 \| 4 000 .* \| memcached -t 1 \| 0\.73× \|/m);
	t.regex(tables, /^### Workload get-heavy: 90\/10 lookup\/insert \(get\/set\) of 100 000 keys drawn by Zipf\(0\.99\) rank/m);
});

test('the closed-loop latency table and the open loop, with the p99 ratio at the same offered load', async t => {
	const tables = renderTables(await fixture());
	t.regex(tables, /^\| udp_server \| read \| 0\.100 \(0\.090–0\.110\) \| 1\.000 \(0\.900–1\.100\) \| 10\.0× \|$/m);
	t.regex(
		tables,
		/^\| udp_server \| 2 \| 1 500 \| 50% \| 1 500 \(1 500–1 500\) \| 200 \(200–200\) \| 800 \(800–800\) \| 0\.00% \| 0\.40× \|$/m,
	);
	t.regex(tables, /^\| memcached \| 1 \| 3 600 \| 120% \|/m);
	t.regex(tables, /\(3 000 req\/s, its best setting\)/);
	t.regex(tables, /!\[p50 and p99 against offered load\]\(bench\/latency-vs-offered-load\.svg\)/);
});

test('both plots are drawn, with a line per server and percentile', async t => {
	const svgs = renderSvgs(await fixture());
	t.deepEqual(Object.keys(svgs).sort(), ['bench/latency-vs-offered-load.svg', 'bench/latency-vs-processes.svg']);
	const open = svgs['bench/latency-vs-offered-load.svg']!;
	for (const label of ['udp_server p50', 'udp_server p99', 'memcached p50', 'memcached p99'])
		t.true(open.includes(`>${label}</text>`), label);
	for (const label of ['udp_server softirq p50', 'udp_server softirq p99']) t.true(open.includes(`>${label}</text>`), label);
	t.is(open.match(/<path /g)?.length, 6);
	t.regex(open, /commit 0123456/);
});

test('softirq=1 on the memcached protocol: a row of its own, CPU n/a in the same guest; open-loop points beside the others', async t => {
	const tables = renderTables(await fixture());
	t.regex(
		tables,
		/^\| loadgen \| udp_server softirq \| memcached \| 2 \| 8 \| 12 000 .* \| 2\.18× \| n\/a \| n\/a \| n\/a \| n\/a \| n\/a \| n\/a \| 25% \| 75% \|$/m,
	);
	// p99 400 µs against memcached's 2 000 at the same offered load.
	t.regex(tables, /^\| udp_server softirq \| 2 \| 1 500 \| 50% \| .* \| 400 \(400–400\) \| 0\.00% \| 0\.20× \|$/m);
});

test('the two-lab rows: a table of their own, CPU from lab a for every row, softirq=1 included, beside the same-guest figures', async t => {
	const tables = renderTables(await fixture());
	t.regex(tables, /^lab b \(the generator of the two-lab rows\): 2 vCPUs, kernel 6\.1\.0-57-cloud-amd64, clocksource tsc$/m);
	// Not in the same-guest tables.
	t.notRegex(tables.slice(0, tables.indexOf('### Two labs')), /\| 6 000 \(6 000–6 000\) \|/);
	const section = tables.slice(tables.indexOf('### Two labs'));
	// (0.9 − 0.03) s of lab a over 6 000 requests: 145 µs; memcached (1.2 − 0.03) / 3 000 = 390; echo (0.6 − 0.03) / 8 000 = 71.25.
	t.true(
		section.includes(
			'| mixed | udp_server | text | 2 | 8 | 6 000 (6 000–6 000) | 1 800 | 5 000 (5 000–5 000) | 0.00% | 0 | 12.0 | memcached -t 1 | 2.00× | 0.75× | 145.0 (145.0–145.0) | 0.37× | 2.04× | 50.0 | 11 000 | 90.9 | 45% | 50% |',
		),
		section,
	);
	// softirq=1: lab a's CPU is its own, (0.5 − 0.03) / 7 000 = 67.1 µs; the same guest had none to show.
	t.regex(
		section,
		/^\| mixed \| udp_server softirq \| memcached \| 2 \| 8 \| 7 000 .* \| 67\.1 \(67\.1–67\.1\) \| 0\.17× \| 0\.94× \| 7\.1 \| 12 000 \| n\/a \| 25% \| 50% \|$/m,
	);
});

test("memory per entry: each server's own count and the guest's growth over its entries, against memcached's", async t => {
	const tables = renderTables(await fixture());
	t.regex(tables, /^\| get-heavy \| udp_server \| 1 \| 100 000 \| 600 \| 650 \| Slab \+ VmallocUsed \| 0\.81× \|$/m);
	t.regex(tables, /^\| get-heavy \| memcached \| 1 \| 100 000 \| 580 \| 800 \| RSS \| {2}\|$/m);
});

test('results from before the second lab and the memory table still render', async t => {
	const { generatorGuest: _, memory: __, ...old } = await fixture();
	const tables = renderTables({ ...old, rows: old.rows.filter(row => !row.placement) });
	t.notRegex(tables, /### Two labs|### Memory per entry|^lab b/m);
	t.regex(tables, /### Open loop/);
});

test('replaceTables rewrites only what lies between BEGIN and END', t => {
	const page = `# Title\n\nprose\n\n${BEGIN}\n\nold\n\n${END}\n\nmore prose\n`;
	t.is(replaceTables(page, 'new tables\n'), `# Title\n\nprose\n\n${BEGIN}\n\nnew tables\n\n${END}\n\nmore prose\n`);
	t.throws(() => replaceTables('# no markers\n', 'x'));
});
