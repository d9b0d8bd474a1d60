/**
 * `./run bench`: the benchmark is a program of its own (bench/main.ts), run
 * on this Node with the options as JSON. bench/ builds on src/, so src/
 * never imports it (test/unit/architecture.test.ts).
 */
import { execa } from 'execa';
import path from 'node:path';
import { PROJECT_ROOT } from '../modules.js';

export async function runBench(options: Record<string, unknown>): Promise<void> {
	const main = path.join(PROJECT_ROOT, 'dist/bench/main.js');
	const result = await execa(process.execPath, ['--enable-source-maps', main, JSON.stringify(options)], {
		stdio: 'inherit',
		reject: false,
	});
	process.exitCode = result.exitCode ?? 1;
}
