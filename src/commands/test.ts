/**
 * `./run test`: installs what is missing, then runs every check and ends with
 * the line `N passed, N failed` that CI reads. A full run (no files named):
 *   1. lint and format (Biome), counted as one test;
 *   2. the unit tests on the newest Node 22 and 24 (binaries from the npm
 *      registry, cached in .lab/cache/node);
 *   3. the whole ava suite (unit, static analysis, lab integration tests) on
 *      the Node that runs ./run;
 *   4. beside 1 and 2: the tests that stress concurrency and teardown again,
 *      on the lab's debug kernel (KASAN, lockdep, kmemleak, UBSAN:
 *      lab/debug-kernel.ts), built first if this machine has not built it yet;
 *      3 starts once 4 is down to its last file (each file leaves its times
 *      in .lab/test-times, which also give the slowest files at the end).
 * With files named, only those files, on this Node.
 */
import { execa } from 'execa';
import { readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { DEBUG_KERNEL } from '../lab/debug-kernel.js';
import { findLabKernel } from '../lab/kernel.js';
import { Lab } from '../lab/lab.js';
import { isAlive } from '../lock.js';
import { PROJECT_ROOT } from '../modules.js';
import { settings, settingsEnv } from '../settings.js';
import { nodeBinary, OTHER_NODE_MAJORS } from '../node-versions.js';
import { type Tally, TapTally } from '../tap.js';
import { filesEnded, pruneTimes, slowestFiles } from '../test-times.js';
import { ensureSystemPackages } from './setup.js';

/** What the lint and format check covers (also `npm run lint`). */
export const LINTED = ['src', 'user-client', 'daemon', 'test', 'bench'];
const UNIT_TESTS = 'dist/test/unit/**/*.test.js';
/**
 * Test files run at once. Tried because the cores sat idle at times with
 * two (lab tests wait on their guests: replies, kvd, timers); measured in
 * fresh-clone CI runs on this 2-core machine, the suite took the same time
 * either way (24.0 min with two, 24.1 and 24.7 with three: each file runs
 * longer), so the cores are busy after all. The debug kernel's files, the
 * busiest (KASAN, kmemleak's scans), run two at a time.
 */
const SUITE_CONCURRENCY = 3;
const DEBUG_CONCURRENCY = 2;
const NODE_CACHE = path.join(PROJECT_ROOT, '.lab/cache/node');
/**
 * What runs again on the debug kernel: the tests that stress concurrency and
 * teardown, where KASAN, lockdep, DEBUG_ATOMIC_SLEEP and kmemleak find what
 * Debian's kernel lets pass: ava --match patterns, which match a title in
 * any of these files, so each names its test closely.
 */
export const DEBUG_KERNEL_TESTS: Record<string, string[]> = {
	softirq: ['softirq=1 answers lookups, inserts*', 'softirq=1 with four threads*', 'softirq=1: a load that fails*', 'softirq=1 with kvd*'],
	'daemon-edges': ['durable=1: rmmod returns*', 'durable=1: a kvd that dies*', 'durable=0: a daemon that died*'],
	robustness: ['fuzz: *', 'out-of-range /proc writes*'],
	'rx-dev': ['rx_dev=eth0: *'],
};

/**
 * The PID in a test lab's name (test-<file>-<pid>, unit-<pid>, and a test
 * pool's servers test-<file>-<pid>-s<N>), if any.
 */
export function testLabOwner(name: string): number | undefined {
	const match = /^(?:test-.+|unit)-(\d+)(?:-s\d+)?$/.exec(name);
	return match ? Number(match[1]) : undefined;
}

/**
 * Each integration test file boots a lab named test-<file>-<pid> and stops it
 * when it ends; a file that was killed (a timeout) cannot, so sweep up here
 * the labs whose test process is gone (another ./run test may be running).
 */
export async function removeTestLabs(root = PROJECT_ROOT): Promise<void> {
	const labs = await readdir(path.join(root, '.lab')).catch((error: NodeJS.ErrnoException) => {
		if (error.code === 'ENOENT') {
			return [] as string[];
		}
		throw error;
	});
	for (const name of labs) {
		const owner = testLabOwner(name);
		if (owner === undefined || isAlive(owner)) {
			continue;
		}
		// down() signals only the processes the lab started (isLabProcess), never a PID alone.
		await new Lab({ root, name }).down();
		await rm(path.join(root, '.lab', name), { recursive: true, force: true });
	}
}

/** One part of the run and its counts, for the closing lines. */
export interface Part {
	label: string;
	tally: Tally;
}

/**
 * Runs ava with TAP output and counts it. `echo`: the lines as they come;
 * else kept, and printed at the end if a test failed, or always with `replay`
 * (a part run beside others prints in one block, not interleaved).
 */
async function runAva(
	node: string,
	files: string[],
	{
		echo,
		replay = false,
		env = {},
		concurrency = SUITE_CONCURRENCY,
	}: { echo: boolean; replay?: boolean; env?: Record<string, string>; concurrency?: number },
) {
	const cli = path.join(PROJECT_ROOT, 'node_modules/ava/entrypoints/cli.mjs');
	const child = execa(node, ['--enable-source-maps', cli, '--tap', `--concurrency=${concurrency}`, ...files], {
		cwd: PROJECT_ROOT,
		reject: false,
		stdout: 'pipe',
		stderr: echo ? 'inherit' : 'pipe',
		stdin: 'ignore',
		env,
	});
	const tally = new TapTally();
	const lines: string[] = [];
	for await (const line of createInterface({ input: child.stdout! })) {
		if (echo) {
			process.stdout.write(`${line}\n`);
		} else {
			lines.push(line);
		}
		tally.add(line);
	}
	const result = await child;
	const counts = tally.result();
	let crashed = '';
	if (result.exitCode !== 0 && counts.failed === 0) {
		// ava stopped without reporting a failure (a timeout, a crash): still a failure.
		counts.failed = 1;
		crashed = `not ok - the test runner exited with ${result.exitCode ?? result.signal} before reporting every test\n`;
	}
	if (!echo && (counts.failed > 0 || replay)) {
		process.stdout.write(`${lines.join('\n')}\n`);
		if (result.stderr) {
			process.stderr.write(`${result.stderr}\n`);
		}
	}
	process.stdout.write(crashed);
	return counts;
}

/** Biome's lint and format check over the TypeScript: one test. */
export async function lint(): Promise<Tally> {
	const biome = path.join(PROJECT_ROOT, 'node_modules/.bin/biome');
	const result = await execa(biome, ['ci', '--error-on-warnings', '--colors=off', ...LINTED], {
		cwd: PROJECT_ROOT,
		reject: false,
		all: true,
		stdin: 'ignore',
	});
	if (result.exitCode === 0) {
		process.stdout.write('ok - lint and format check (biome ci)\n');
		return { passed: 1, failed: 0, skipped: 0 };
	}
	process.stdout.write(`not ok - lint and format check (biome ci exited with ${result.exitCode ?? result.signal})\n`);
	process.stdout.write(`${result.all}\n# npm run lint shows the findings; npm run format fixes the formatting\n`);
	return { passed: 0, failed: 1, skipped: 0 };
}

/** The unit tests on the newest release of another Node major. */
export async function unitTestsOn(major: number): Promise<Part> {
	let binary: Awaited<ReturnType<typeof nodeBinary>>;
	try {
		binary = await nodeBinary(major, NODE_CACHE);
	} catch (error) {
		process.stdout.write(`not ok - Node ${major}: no binary to run the unit tests with: ${(error as Error).message}\n`);
		return { label: `Node ${major}, unit tests`, tally: { passed: 0, failed: 1, skipped: 0 } };
	}
	if (binary.note) {
		process.stdout.write(`# Node ${major}: ${binary.note}\n`);
	}
	process.stdout.write(`# unit tests on Node ${binary.version}\n`);
	// `node` on PATH is this version too, for anything the tests start by name.
	const env = settingsEnv({ path: `${path.dirname(binary.node)}:${settings.path}` });
	return { label: `Node ${binary.version}, unit tests`, tally: await runAva(binary.node, [UNIT_TESTS], { echo: false, env }) };
}

/** Part 4: the chosen files on the debug kernel, which is built first when it is not cached. */
export async function debugKernelPart(): Promise<Part> {
	const label = 'debug kernel (KASAN, lockdep, kmemleak, UBSAN)';
	const files = Object.keys(DEBUG_KERNEL_TESTS);
	try {
		const kernel = await findLabKernel(DEBUG_KERNEL);
		process.stdout.write(`# ${label}, ${kernel.release}: ${files.join(', ')}, beside the lint and the unit tests\n`);
	} catch (error) {
		process.stdout.write(`not ok - the debug kernel could not be built: ${(error as Error).message}\n`);
		return { label, tally: { passed: 0, failed: 1, skipped: 0 } };
	}
	const started = Date.now();
	const match = Object.values(DEBUG_KERNEL_TESTS).flatMap(patterns => patterns.flatMap(pattern => ['--match', pattern]));
	const paths = files.map(file => `dist/test/integration/${file}.test.js`);
	const tally = await runAva(process.execPath, [...match, ...paths], {
		echo: false,
		replay: true,
		env: settingsEnv({ labKernel: DEBUG_KERNEL }),
		concurrency: DEBUG_CONCURRENCY,
	});
	process.stdout.write(`# ${label}: ${((Date.now() - started) / 60_000).toFixed(1)} min\n`);
	return { label, tally };
}

/** The closing lines: each part's counts, then the total CI reads. */
export function summary(parts: Part[]): { lines: string[]; total: Tally } {
	const total = { passed: 0, failed: 0, skipped: 0 };
	const lines = parts.map(({ label, tally }) => {
		total.passed += tally.passed;
		total.failed += tally.failed;
		total.skipped += tally.skipped;
		return `# ${label}: ${tally.passed} passed, ${tally.failed} failed${tally.skipped ? `, ${tally.skipped} skipped` : ''}`;
	});
	lines.push(`${total.passed} passed, ${total.failed} failed${total.skipped ? `, ${total.skipped} skipped` : ''}`);
	return { lines, total };
}

export async function testCommand(files: string[]): Promise<void> {
	await ensureSystemPackages();
	const started = Date.now();
	const full = files.length === 0;
	const parts: Part[] = [];
	let debug: Promise<Part> | undefined;
	if (full) {
		await pruneTimes();
		// The debug kernel's part runs beside the lint and the unit tests, which are light;
		// the whole suite, whose lab tests are not, starts once the debug part is down to
		// its last file (the suite then begins with its unit tests).
		debug = debugKernelPart();
		parts.push({ label: 'lint and format (Biome)', tally: await lint() });
		for (const major of OTHER_NODE_MAJORS) {
			parts.push(await unitTestsOn(major));
		}
		await Promise.race([debug, filesEnded(DEBUG_KERNEL, Object.keys(DEBUG_KERNEL_TESTS).length - 1, started)]);
	} else {
		process.stdout.write(`# files named: no lint, no unit tests on Node ${OTHER_NODE_MAJORS.join(' and ')} (a full ./run test has them)\n`);
	}
	const suite = await runAva(process.execPath, files, { echo: true });
	if (debug) {
		parts.push(await debug);
	}
	parts.push({ label: `Node ${process.versions.node}, ${full ? 'the whole suite' : files.join(' ')}`, tally: suite });
	await removeTestLabs();
	const minutes = ((Date.now() - started) / 60_000).toFixed(1);
	const slowest = await slowestFiles(started);
	if (slowest.length > 0) {
		process.stdout.write(
			`\n# the slowest lab test files (each boots a lab of its own; ${SUITE_CONCURRENCY} run at once):\n${slowest.join('\n')}\n`,
		);
	}
	const { lines, total } = summary(parts);
	process.stdout.write(`\nsuite time: ${minutes} min\n${lines.join('\n')}\n`);
	process.exitCode = total.failed === 0 && total.passed > 0 ? 0 : 1;
}
