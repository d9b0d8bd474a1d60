/**
 * The lab fixture for integration tests: one guest per test file, booted in
 * `before`, stopped in `after.always` whatever happens. `labTest` runs a test
 * serially (the kernel log is shared) and fails it when the kernel logged a
 * BUG, WARNING, Oops, lockdep report or hung task while it ran.
 */
import anyTest, { type ExecutionContext, type TestFn } from 'ava';
import path from 'node:path';
import { formatKmsg, isProblem } from '../../src/kmsg.js';
import { freePort } from '../../src/lab/lab.js';
import { build, lastLogSequence, load, type BuiltModule, type Loaded } from '../../src/lifecycle.js';
import type { ModuleName } from '../../src/modules.js';
import { chooseTarget, LabTarget } from '../../src/targets.js';

export interface LabContext {
	target: LabTarget;
	server: BuiltModule;
	client: BuiltModule;
}

export const test = anyTest as TestFn<LabContext>;

/**
 * Boots a lab of its own for the calling test file; `kernel` picks the
 * guest's kernel release the way a user would, with KUDP_LAB_KERNEL (each
 * test file runs in a process of its own).
 */
export function useLab(testFile: string, options: { kernel?: () => Promise<string> } = {}): void {
	const name = `test-${path.basename(testFile, '.test.js')}-${process.pid}`;
	test.before(async t => {
		// Two test files run at once on a 2-core machine: one emulated CPU each.
		process.env['KUDP_LAB_CPUS'] ??= '1';
		if (options.kernel) {
			process.env['KUDP_LAB_KERNEL'] = await options.kernel();
		}
		const target = await chooseTarget({ target: 'lab', lab: name });
		if (!(target instanceof LabTarget)) {
			throw new Error('expected the lab target');
		}
		t.context.target = target;
		await target.prepare();
		t.context.server = await build(target, 'udp_server');
		t.context.client = await build(target, 'udp_client');
	});
	test.after.always(async t => {
		await t.context.target?.lab.down();
	});
}

/** Kernel log records since `sequence`, waiting briefly for the mirror to catch up. */
export async function recordsSince(target: LabTarget, sequence: number) {
	await new Promise(resolve => setTimeout(resolve, 200));
	return (await target.kernelLog()).filter(record => record.sequence > sequence);
}

/** Waits until a kernel log line since `sequence` matches, or fails after timeoutMs. */
export async function waitForLog(target: LabTarget, sequence: number, pattern: RegExp, timeoutMs = 15_000) {
	const deadline = Date.now() + timeoutMs;
	while (Date.now() < deadline) {
		const found = (await target.kernelLog()).find(record => record.sequence > sequence && pattern.test(record.text));
		if (found) {
			return found;
		}
		await new Promise(resolve => setTimeout(resolve, 100));
	}
	throw new Error(`no kernel log line matching ${pattern} within ${timeoutMs} ms`);
}

/**
 * Unloads a module from inside the guest and returns two times in ms: the
 * module's own measure of module_exit ("stopped in N us"), which is what
 * "prompt" is about, and the whole rmmod command, which also waits for the
 * emulated CPU and varies with the machine's load.
 */
export async function timedRmmod(t: ExecutionContext<LabContext>, name: ModuleName): Promise<{ exitMs: number; commandMs: number }> {
	const since = await lastLogSequence(t.context.target);
	const out = await guest(t, `s=$(date +%s%N); rmmod ${name}; e=$(date +%s%N); echo $(( (e - s) / 1000000 ))`);
	const line = await waitForLog(t.context.target, since, new RegExp(`^${name}: stopped in \\d+ us$`), 10_000);
	return { exitMs: Number(/(\d+) us$/.exec(line.text)?.[1]) / 1000, commandMs: Number(out.trim()) };
}

/** Unload bounds: module_exit itself, and a generous one for the whole command. */
export function assertPromptUnload(t: ExecutionContext<LabContext>, times: { exitMs: number; commandMs: number }, what: string) {
	t.true(times.exitMs < 1000, `${what}: module_exit took ${times.exitMs} ms`);
	t.true(times.commandMs < 5000, `${what}: the rmmod command took ${times.commandMs} ms`);
}

export type LabImplementation = (t: ExecutionContext<LabContext>, since: number) => Promise<void>;

export function labTest(title: string, implementation: LabImplementation): void {
	test.serial(title, async t => {
		// Emulated CPUs are slow: allow a lab test up to 10 minutes of its own.
		t.timeout(600_000);
		const since = await lastLogSequence(t.context.target);
		try {
			await implementation(t, since);
		} finally {
			const problems = (await recordsSince(t.context.target, since)).filter(record => isProblem(record.text));
			t.deepEqual(
				problems.map(record => formatKmsg(record)),
				[],
				'the kernel logged a problem during this test',
			);
		}
	});
}

/**
 * Loads the server with a free host port forwarded to it; returns where to
 * reach it. Without the backup daemon unless asked: each test starts empty.
 */
export async function loadServer(
	t: ExecutionContext<LabContext>,
	params: string[] = [],
	options: { daemon?: boolean; backup?: string } = {},
): Promise<Loaded & { port: number }> {
	const hostPort = await freePort('udp');
	const loaded = await load(t.context.target, t.context.server, {
		name: 'udp_server',
		params,
		hostPort,
		daemon: options.daemon ?? false,
		...(options.backup ? { backup: options.backup } : {}),
	});
	return { ...loaded, port: hostPort };
}

export async function loadClient(t: ExecutionContext<LabContext>, params: string[]): Promise<Loaded> {
	return load(t.context.target, t.context.client, { name: 'udp_client', params });
}

/** Runs a shell command in the guest; fails the test on a non-zero exit. */
export async function guest(t: ExecutionContext<LabContext>, script: string, timeoutMs = 60_000): Promise<string> {
	const result = await t.context.target.exec(['sh', '-c', script], { timeoutMs });
	if (result.exitCode !== 0) {
		throw new Error(`guest command failed (${result.exitCode}): ${script}\n${result.stderr}`);
	}
	return result.stdout;
}
