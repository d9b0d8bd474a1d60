/**
 * `./run bench --quick` as CI runs it: a smoke test of the whole benchmark
 * (its lab, loadgen, the echo module, memcached, memaslap, the Node server).
 * It checks that every row is there with numbers in it, never how fast
 * anything is: the machine is shared and the guest emulated.
 */
import test from 'ava';
import { execa } from 'execa';
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

/** "12 345" → 12345; "≤ 1 024" → 1024; anything else → NaN. */
function number(cell: string | undefined): number {
	const digits = (cell ?? '').replace(/^≤ /, '').replace(/ /g, '');
	return /^-?\d+(\.\d+)?$/.test(digits) ? Number(digits) : Number.NaN;
}

test('./run bench --quick measures every row', async t => {
	t.timeout(240_000);
	const run = await execa(path.join(PROJECT_ROOT, 'run'), ['bench', '--quick', '--lab', LAB], { reject: false, all: true });
	t.is(run.exitCode, 0, run.all);
	const stdout = run.stdout;
	t.log(stdout.split('\n').slice(0, 4).join('\n'));
	t.regex(stdout, /^guest: 2 vCPUs under QEMU TCG, kernel \S+, clocksource \S+;/m);

	const rows = tableRows(stdout, /^(loadgen|memaslap)$/);
	const expected: string[] = [];
	for (const threads of [1, 2]) {
		for (const clients of [1, 8]) {
			expected.push(
				`loadgen udp_server text ${threads} ${clients}`,
				`loadgen udp_server softirq text ${threads} ${clients}`,
				`loadgen udp_echo text ${threads} ${clients}`,
				`loadgen udp_server memcached ${threads} ${clients}`,
				`loadgen memcached memcached ${threads} ${clients}`,
				`memaslap udp_server memcached ${threads} ${clients}`,
				`memaslap memcached memcached ${threads} ${clients}`,
			);
		}
	}
	expected.push('loadgen node dgram text 1 1', 'loadgen node dgram text 1 8');
	t.deepEqual(rows.map(cells => cells.slice(0, 5).join(' ')).sort(), expected.sort());
	for (const cells of rows) {
		const name = cells.slice(0, 5).join(' ');
		// req/s, p50, p99, CPU µs/req, generator CPU share: each a number, req/s above zero.
		t.true(number(cells[5]) > 0, `${name}: req/s ${cells[5]}`);
		for (const column of [7, 8]) t.false(Number.isNaN(number(cells[column])), `${name}: column ${column} is ${cells[column]}`);
		if (cells[1] === 'udp_server softirq') {
			// Its work runs in the generator's context: no CPU figure of its own.
			t.deepEqual(cells.slice(12, 18), Array(6).fill('n/a'), name);
		} else {
			t.false(Number.isNaN(number(cells[12])), `${name}: CPU µs/req is ${cells[12]}`);
			// The server's own threads ran: loadgen found them by name (0 would mean it measured nobody).
			t.true(number(cells[15]) > 0, `${name}: server threads µs/req ${cells[15]}`);
		}
		t.regex(cells[19] ?? '', /^\d+%$/, `${name}: generator CPU share`);
		t.regex(cells[10] ?? '', /^\d+\.\d\d%$/, `${name}: loss`);
	}

	const latency = tableRows(stdout, /^(udp_server|memcached|udp_server softirq)$/);
	t.deepEqual(
		latency.map(cells => `${cells[0]} ${cells[1]}`),
		['udp_server', 'memcached', 'udp_server softirq'].flatMap(server => ['read', 'write', 'read/write'].map(mix => `${server} ${mix}`)),
	);
	for (const cells of latency) {
		// 1 and 10 processes in --quick.
		t.true(number(cells[2]?.replace('.', '')) > 0 && number(cells[3]?.replace('.', '')) > 0, cells.join(' | '));
	}
});
