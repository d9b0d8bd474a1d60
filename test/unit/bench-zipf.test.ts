/**
 * loadgen's Zipf sampler (bench/loadgen.c), run on this machine: the ten
 * hottest keys must come up about as often as Zipf(θ) says,
 * P(rank r) = (1 / (r + 1)^θ) / Σ_k 1 / k^θ.
 */
import test from 'ava';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { compileLoadgen } from '../../bench/programs.js';

const run = promisify(execFile);

async function sample(keys: number, theta: number, draws: number): Promise<number[]> {
	const loadgen = await compileLoadgen();
	const { stdout } = await run(loadgen, ['zipf', String(keys), String(theta), String(draws)]);
	return (JSON.parse(stdout) as { counts: number[] }).counts;
}

function expected(keys: number, theta: number, rank: number): number {
	let sum = 0;
	for (let k = 1; k <= keys; k++) sum += 1 / k ** theta;
	return 1 / (rank + 1) ** theta / sum;
}

for (const [keys, theta] of [
	[100_000, 0.99],
	[1000, 0.5],
] as const) {
	test(`Zipf(${theta}) over ${keys} keys: the hottest ten within 10% of their share`, async t => {
		const draws = 400_000;
		const counts = await sample(keys, theta, draws);
		t.is(counts.length, 10);
		for (const [rank, count] of counts.entries()) {
			const share = expected(keys, theta, rank);
			t.true(Math.abs(count / draws - share) < 0.1 * share, `rank ${rank}: ${count / draws} against ${share}`);
		}
		// Hotter ranks come up more often.
		t.true(counts[0]! > counts[1]! && counts[1]! > counts[9]!);
	});
}
