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
			'| loadgen | udp_server | text | 2 | 8 | 11 000 (10 000–12 000) | 1 500 (1 500–1 500) | 4 000 (4 000–4 000) | 8 000 | 0.00% | 17.6 | 128 | memcached -t 1 | 2.00× | 90.9 (83.3–100.0) | 0.45× |  | 36.4 | 0.50× |  | 25% | 75% |',
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
	t.is(open.match(/<path /g)?.length, 4);
	t.regex(open, /commit 0123456/);
});

test('replaceTables rewrites only what lies between BEGIN and END', t => {
	const page = `# Title\n\nprose\n\n${BEGIN}\n\nold\n\n${END}\n\nmore prose\n`;
	t.is(replaceTables(page, 'new tables\n'), `# Title\n\nprose\n\n${BEGIN}\n\nnew tables\n\n${END}\n\nmore prose\n`);
	t.throws(() => replaceTables('# no markers\n', 'x'));
});
