/**
 * `./run test`: installs what is missing, then runs the whole ava suite
 * (unit, static analysis and lab integration tests) and ends with the line
 * `N passed, N failed` that CI reads.
 */
import { execa } from 'execa';
import { readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { Lab } from '../lab/lab.js';
import { PROJECT_ROOT } from '../modules.js';
import { TapTally } from '../tap.js';
import { ensureSystemPackages } from './setup.js';

/**
 * Each integration test file boots a lab named test-<file>-<pid> and stops it
 * when it ends; a file that was killed (a timeout) cannot, so sweep up here.
 */
async function removeTestLabs(): Promise<void> {
	const labs = await readdir(path.join(PROJECT_ROOT, '.lab')).catch(() => [] as string[]);
	for (const name of labs.filter(entry => entry.startsWith('test-') || entry.startsWith('unit-'))) {
		await new Lab({ root: PROJECT_ROOT, name }).down();
		await rm(path.join(PROJECT_ROOT, '.lab', name), { recursive: true, force: true });
	}
}

export async function testCommand(files: string[]): Promise<void> {
	await ensureSystemPackages();
	const ava = path.join(PROJECT_ROOT, 'node_modules/.bin/ava');
	const started = Date.now();
	const child = execa(ava, ['--tap', ...files], {
		cwd: PROJECT_ROOT,
		reject: false,
		stdout: 'pipe',
		stderr: 'inherit',
		stdin: 'ignore',
	});
	const tally = new TapTally();
	for await (const line of createInterface({ input: child.stdout! })) {
		process.stdout.write(`${line}\n`);
		tally.add(line);
	}
	const result = await child;
	const { passed, skipped, ...counts } = tally.result();
	if (result.exitCode !== 0 && counts.failed === 0) {
		// ava stopped without reporting a failure (a timeout, a crash): still a failure.
		counts.failed = 1;
		process.stdout.write(`not ok - the test runner exited with ${result.exitCode} before reporting every test\n`);
	}
	await removeTestLabs();
	const minutes = ((Date.now() - started) / 60_000).toFixed(1);
	process.stdout.write(`\nsuite time: ${minutes} min\n`);
	process.stdout.write(`${passed} passed, ${counts.failed} failed${skipped ? `, ${skipped} skipped` : ''}\n`);
	process.exitCode = result.exitCode === 0 && counts.failed === 0 && passed > 0 ? 0 : 1;
}
