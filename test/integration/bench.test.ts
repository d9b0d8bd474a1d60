/**
 * `./run bench --quick` as CI runs it: a smoke test of the whole benchmark
 * (its two labs, loadgen, the echo module, memcached, memaslap, the Node
 * server).
 * It checks that every row is there with numbers in it, never how fast
 * anything is: the machine is shared and the guest emulated.
 */
import test from 'ava';
import { execa } from 'execa';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { PROJECT_ROOT } from '../../src/modules.js';

const LAB = `test-bench-${process.pid}`;

/** The cells of the table rows (lines that start with "| ") whose first cell matches. */
function tableRows(stdout: string, first: RegExp): string[][] {
	return stdout
		.split('\n')
		.filter(line => line.startsWith('| '))
		.map(line =>
			line
				.slice(2, -2)
				.split(' | ')
				.map(cell => cell.trim()),
		)
		.filter(cells => first.test(cells[0] ?? ''));
}

/** "12 345" → 12345; "≤ 1 024" → 1024; "42 077 (41 534–43 840)" → 42077 (the median); anything else → NaN. */
function number(cell: string | undefined): number {
	const digits = (cell ?? '')
		.replace(/^≤ /, '')
		.replace(/ \(.*\)$/, '')
		.replace(/ /g, '');
	return /^-?\d+(\.\d+)?$/.test(digits) ? Number(digits) : Number.NaN;
}

/** "42 077 (41 534–43 840)" → [41534, 43840]. */
function range(cell: string | undefined): [number, number] {
	const match = /\((.*)–(.*)\)$/.exec(cell ?? '');
	return match ? [number(match[1]), number(match[2])] : [Number.NaN, Number.NaN];
}

/** The text from the line that starts with `heading` to the next "### " heading. */
function section(stdout: string, heading: string): string {
	const start = stdout.indexOf(`\n${heading}`);
	if (start < 0) return '';
	const end = stdout.indexOf('\n### ', start + 1);
	return stdout.slice(start, end < 0 ? undefined : end);
}

/** The column of each heading of the first table whose first heading is `first`. */
function columns(stdout: string, first: string): Record<string, number> {
	const header = stdout.split('\n').find(line => line.startsWith(`| ${first} |`)) ?? '';
	return Object.fromEntries(
		header
			.slice(2, -2)
			.split(' | ')
			.map((name, i) => [name.trim(), i]),
	);
}

test('./run bench --quick measures every row', async t => {
	// About 2 minutes on a quiet host; the CI machine is shared.
	// With the second lab: 5.4 min with the host's load average at 10-20 (other guests on its 2 cores).
	t.timeout(600_000);
	const run = await execa(path.join(PROJECT_ROOT, 'run'), ['bench', '--quick', '--lab', LAB], { reject: false, all: true });
	t.is(run.exitCode, 0, run.all);
	const stdout = run.stdout;
	t.log(stdout.split('\n').slice(0, 4).join('\n'));
	t.regex(stdout, /^guest: 2 vCPUs under QEMU TCG, kernel \S+, clocksource \S+;/m);

	const mixedSection = section(stdout, '### Workload mixed:');
	const heavySection = section(stdout, '### Workload get-heavy:');
	t.regex(heavySection, /90\/10 lookup\/insert \(get\/set\) of 10 000 keys drawn by Zipf\(0\.99\) rank, values of 32–1000 bytes/);
	const heavy = tableRows(heavySection, /^loadgen$/);
	t.deepEqual(
		heavy.map(cells => cells.slice(0, 5).join(' ')).sort(),
		[1, 2]
			.flatMap(threads =>
				[
					'udp_server text',
					'udp_server softirq text',
					'udp_echo text',
					'udp_server memcached',
					'udp_server softirq memcached',
					'memcached memcached',
				].map(server => `loadgen ${server} ${threads} 8`),
			)
			.sort(),
	);
	const rows = tableRows(mixedSection, /^(loadgen|memaslap)$/);
	const expected: string[] = [];
	for (const threads of [1, 2]) {
		for (const clients of [1, 8]) {
			expected.push(
				`loadgen udp_server text ${threads} ${clients}`,
				`loadgen udp_server softirq text ${threads} ${clients}`,
				`loadgen udp_echo text ${threads} ${clients}`,
				`loadgen udp_server memcached ${threads} ${clients}`,
				`loadgen udp_server softirq memcached ${threads} ${clients}`,
				`loadgen memcached memcached ${threads} ${clients}`,
				`memaslap udp_server memcached ${threads} ${clients}`,
				`memaslap memcached memcached ${threads} ${clients}`,
			);
		}
	}
	expected.push('loadgen node dgram text 1 1', 'loadgen node dgram text 1 8');
	t.deepEqual(rows.map(cells => cells.slice(0, 5).join(' ')).sort(), expected.sort());
	const col = columns(stdout, 'generator');
	for (const cells of [...rows, ...heavy]) {
		const name = cells.slice(0, 5).join(' ');
		const at = (heading: string) => cells[col[heading] ?? -1];
		// req/s, p50, p99, CPU µs/req: each a median with its range; req/s above zero.
		t.true(number(at('req/s (min–max)')) > 0, `${name}: req/s ${at('req/s (min–max)')}`);
		const [low, high] = range(at('req/s (min–max)'));
		t.true(low <= number(at('req/s (min–max)')) && number(at('req/s (min–max)')) <= high, `${name}: req/s range`);
		for (const heading of ['p50 µs (min–max)', 'p99 µs (min–max)']) {
			t.false(Number.isNaN(number(at(heading))), `${name}: ${heading} is ${at(heading)}`);
			t.false(Number.isNaN(range(at(heading))[0]), `${name}: ${heading} has no range`);
		}
		// Little's law: req/s × mean latency, a positive number of requests in flight.
		t.true(number(at('λ·W')) > 0, `${name}: λ·W ${at('λ·W')}`);
		if (cells[1] === 'udp_server softirq') {
			// Its work runs in the generator's context: no CPU figure of its own.
			t.is(at('CPU µs/req (min–max)'), 'n/a', name);
			t.is(at('server threads µs/req'), 'n/a', name);
		} else {
			t.false(Number.isNaN(number(at('CPU µs/req (min–max)'))), `${name}: CPU µs/req is ${at('CPU µs/req (min–max)')}`);
			// The server's own threads ran: loadgen found them by name (0 would mean it measured nobody).
			t.true(number(at('server threads µs/req')) > 0, `${name}: server threads µs/req ${at('server threads µs/req')}`);
		}
		t.regex(at('generator CPU') ?? '', /^\d+%$/, `${name}: generator CPU share`);
		t.regex(at('loss') ?? '', /^\d+\.\d\d%$/, `${name}: loss`);
		t.regex(at('errors') ?? '', /^\d[\d ]*$/, `${name}: errors`);
		// Compared with memcached at its best setting of this run, named.
		t.regex(at('baseline') ?? '', /^memcached -t \d+$/, `${name}: baseline`);
	}

	// The open loop: udp_server, memcached and udp_server softirq=1, 2 offered loads each (--quick), p50 and p99 at each, and its plot.
	const open = tableRows(section(stdout, '### Open loop'), /^(udp_server|memcached|udp_server softirq)$/);
	t.deepEqual(
		open.map(cells => `${cells[0]} ${cells[3]}`),
		['udp_server', 'memcached', 'udp_server softirq'].flatMap(server => ['50%', '120%'].map(share => `${server} ${share}`)),
	);
	for (const cells of open) {
		t.true(number(cells[2]) > 0, `open loop: offered ${cells[2]}`);
		for (const column of [4, 5, 6]) t.false(Number.isNaN(number(cells[column])), `open loop: ${cells.join(' | ')}`);
	}
	const svg = await readFile(path.join(PROJECT_ROOT, '.lab/bench-open-loop-quick.svg'), 'utf8');
	t.regex(svg, /^<svg[\s\S]*udp_server p99[\s\S]*memcached p50[\s\S]*<\/svg>\n$/);

	// The generator in lab b (--quick: the get-heavy workload only): every row answered, no error replies
	// (lookups padded to the reflection bound), and a CPU figure from lab a for every server, softirq=1 and rx_dev included.
	const twoLabs = section(stdout, '### Two labs');
	const remote = tableRows(twoLabs, /^get-heavy$/);
	const two = columns(stdout, 'workload');
	t.deepEqual(
		remote.map(cells => `${cells[1]} ${cells[2]}`).sort(),
		[
			'udp_server text',
			'udp_server memcached',
			'memcached memcached',
			'udp_echo text',
			'udp_server softirq text',
			'udp_server softirq memcached',
			'udp_server rx_dev text',
			'udp_server rx_dev memcached',
		].sort(),
	);
	// udp_server and the echo at the guest's vCPUs, memcached at its best setting; the most clients.
	for (const cells of remote) t.true(cells[1] === 'memcached' ? /^[12]$/.test(cells[3] ?? '') : cells[3] === '2', cells.join(' | '));
	for (const cells of remote) t.is(cells[4], '8', cells.join(' | '));
	for (const cells of remote) {
		const name = cells.slice(1, 5).join(' ');
		const at = (heading: string) => cells[two[heading] ?? -1];
		t.true(number(at('req/s (min–max)')) > 0, `${name}: req/s ${at('req/s (min–max)')}`);
		t.is(at('errors'), '0', `${name}: error replies`);
		t.true(number(at('CPU µs/req, lab a (min–max)')) > 0, `${name}: CPU ${at('CPU µs/req, lab a (min–max)')}`);
		t.regex(at('lab a busy') ?? '', /^\d+%$/, `${name}: lab a busy`);
	}

	// Memory per entry after the get-heavy keys (10 000 in --quick), udp_server and memcached at each thread count.
	const memory = tableRows(section(stdout, '### Memory per entry'), /^get-heavy$/);
	t.deepEqual(memory.map(cells => `${cells[1]} ${cells[2]} ${cells[3]}`).sort(), [
		'memcached 1 10 000',
		'memcached 2 10 000',
		'udp_server 1 10 000',
		'udp_server 2 10 000',
	]);
	for (const cells of memory) t.true(number(cells[4]) > 0 && number(cells[5]) > 0, cells.join(' | '));

	const latency = tableRows(section(stdout, '### Closed-loop latency'), /^(udp_server|memcached|udp_server softirq)$/);
	t.deepEqual(
		latency.map(cells => `${cells[0]} ${cells[1]}`),
		['udp_server', 'memcached', 'udp_server softirq'].flatMap(server => ['read', 'write', 'read/write'].map(mix => `${server} ${mix}`)),
	);
	for (const cells of latency) {
		// 1 and 10 processes in --quick.
		t.true(number(cells[2]) > 0 && number(cells[3]) > 0, cells.join(' | '));
	}
});
