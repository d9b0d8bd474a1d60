/**
 * How fast the edit → load → try loop is, before → after: the lab's boot,
 * `./run shell -- true`, a reload of an unchanged module without and with
 * the backup daemon kvd, and a reload after editing one .c file, each the
 * median of several runs. Both columns come
 * from one run on this machine: each revision is checked out into a
 * temporary git worktree (sharing this checkout's npm packages) and driven
 * through its own `./run`, one after the other, so they never compete for
 * the CPU. The checkout itself is never modified.
 *
 *   npm run bench:lab-speed -- [--runs N] [--before REV] [--after REV] [--boots N]
 *
 * --boots N adds a boot-reliability pass to the "after" revision: N boots
 * in a row on each installed lab kernel, each checked for the tsc clocksource.
 */
import { execFile, spawn } from 'node:child_process';
import { appendFile, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { parseArgs } from 'node:util';
import { linkPackages } from '../test/helpers/packages.js';
import { installedLabKernels } from '../src/lab/kernel.js';
import { PROJECT_ROOT } from '../src/modules.js';
import { childEnv, settingsEnv } from '../src/settings.js';

const run = promisify(execFile);

const { values } = parseArgs({
	options: {
		runs: { type: 'string', default: '5' },
		// The last commit before the lab ran its commands through qemu-ga.
		before: { type: 'string', default: '694340d^' },
		after: { type: 'string', default: 'HEAD' },
		boots: { type: 'string', default: '0' },
	},
});
const RUNS = Number(values.runs);
const BOOTS = Number(values.boots);
const LAB = `bench-speed-${process.pid}`;
const CLOCKSOURCE = '/sys/devices/system/clocksource/clocksource0/current_clocksource';

interface Timing {
	boot: number[];
	shell: number[];
	reload: number[];
	reloadKvd: number[];
	edited: number[];
}

/** Runs `./run ARGS` in a tree; returns its wall time in seconds and its stdout. */
async function runIn(root: string, args: string[], env: Record<string, string> = {}): Promise<{ seconds: number; stdout: string }> {
	const started = performance.now();
	const child = spawn(path.join(root, 'run'), args, {
		cwd: root,
		env: childEnv({ target: 'lab', lab: LAB }, env),
		stdio: ['ignore', 'pipe', 'pipe'],
	});
	let stdout = '';
	let stderr = '';
	child.stdout.on('data', chunk => {
		stdout += chunk;
	});
	child.stderr.on('data', chunk => {
		stderr += chunk;
	});
	const code = await new Promise<number | null>(resolve => child.on('close', resolve));
	if (code !== 0) {
		throw new Error(`${root}: ./run ${args.join(' ')} failed (exit ${code}):\n${stderr}${stdout}`);
	}
	return { seconds: (performance.now() - started) / 1000, stdout };
}

/** The boot time the lab recorded: from starting QEMU's helpers to the first command answered. */
async function bootSeconds(root: string): Promise<number> {
	const state = JSON.parse(await readFile(path.join(root, '.lab', LAB, 'state.json'), 'utf8')) as { bootSeconds: number };
	return state.bootSeconds;
}

function median(values: number[]): number {
	const sorted = [...values].sort((a, b) => a - b);
	const middle = Math.floor(sorted.length / 2);
	return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

async function worktree(revision: string): Promise<string> {
	const root = await mkdtemp(path.join(tmpdir(), 'kudp-speed-'));
	await run('git', ['-C', PROJECT_ROOT, 'worktree', 'add', '--detach', root, revision]);
	await linkPackages(root);
	return root;
}

async function measure(root: string, label: string): Promise<Timing> {
	const timing: Timing = { boot: [], shell: [], reload: [], reloadKvd: [], edited: [] };
	const load = ['udp_server', 'port=3100', '--no-daemon', '--detach'];
	const say = (text: string) => process.stderr.write(`[${label}] ${text}\n`);
	try {
		// Warm-up, not counted: compiles the tree, builds the initramfs, the module.
		say('warming up (compile, first boot, first build)');
		await runIn(root, load);
		for (let i = 0; i < RUNS; i++) {
			await runIn(root, ['down']);
			await runIn(root, ['shell', '--', 'true']);
			timing.boot.push(await bootSeconds(root));
			say(`boot ${i + 1}/${RUNS}: ${timing.boot.at(-1)?.toFixed(1)} s`);
		}
		await runIn(root, load);
		for (let i = 0; i < RUNS; i++) {
			timing.shell.push((await runIn(root, ['shell', '--', 'true'])).seconds);
		}
		for (let i = 0; i < RUNS; i++) {
			timing.reload.push((await runIn(root, load)).seconds);
		}
		// With kvd: the first load starts it (not counted), the next ones find it running.
		const withKvd = load.filter(arg => arg !== '--no-daemon');
		await runIn(root, withKvd);
		for (let i = 0; i < RUNS; i++) {
			timing.reloadKvd.push((await runIn(root, withKvd)).seconds);
		}
		await runIn(root, load); // --no-daemon stops kvd again
		for (let i = 0; i < RUNS; i++) {
			// A new comment each time: new content, so a real rebuild (a cache may not skip it).
			await appendFile(path.join(root, 'server-module', 'main.c'), `/* lab-speed edit ${process.pid}-${i} */\n`);
			timing.edited.push((await runIn(root, load)).seconds);
		}
		say('done');
	} finally {
		await runIn(root, ['down']).catch(error => say(`could not stop the lab: ${(error as Error).message}`));
	}
	return timing;
}

/** Boots the lab `count` times in a row on each installed kernel; each boot must come up on the tsc clocksource. */
async function bootReliability(root: string, count: number): Promise<string[]> {
	const lines: string[] = [];
	for (const { release } of await installedLabKernels()) {
		const boots: number[] = [];
		const clocks: Record<string, number> = {};
		for (let i = 0; i < count; i++) {
			const { stdout } = await runIn(root, ['shell', '--', 'cat', CLOCKSOURCE], settingsEnv({ labKernel: release }));
			boots.push(await bootSeconds(root));
			clocks[stdout.trim()] = (clocks[stdout.trim()] ?? 0) + 1;
			await runIn(root, ['down']);
		}
		const summary = Object.entries(clocks)
			.map(([clock, n]) => `${clock} ${n}/${count}`)
			.join(', ');
		lines.push(`${release}: ${count} boots, ${summary}; boot median ${median(boots).toFixed(1)} s, max ${Math.max(...boots).toFixed(1)} s`);
		process.stderr.write(`${lines.at(-1)}\n`);
	}
	return lines;
}

const roots: string[] = [];
try {
	const before = await worktree(values.before!);
	roots.push(before);
	const after = await worktree(values.after!);
	roots.push(after);
	const [old, now] = [await measure(before, 'before'), await measure(after, 'after')];
	const row = (step: string, key: keyof Timing) =>
		`| ${step} | ${median(old[key]).toFixed(2)} s | ${median(now[key]).toFixed(2)} s | ${(median(old[key]) / median(now[key])).toFixed(1)}× |`;
	const revisions = async (revision: string) => (await run('git', ['-C', PROJECT_ROOT, 'rev-parse', '--short', revision])).stdout.trim();
	const table = [
		`Median of ${RUNS} runs, before = ${await revisions(values.before!)}, after = ${await revisions(values.after!)}:`,
		'',
		'| step | before | after | speed-up |',
		'| --- | --- | --- | --- |',
		row('lab boot (QEMU start → ready for commands)', 'boot'),
		row('`./run shell -- true`', 'shell'),
		row('reload, module unchanged (`--no-daemon --detach`)', 'reload'),
		row('reload, module unchanged, kvd running (`--detach`)', 'reloadKvd'),
		row('reload after editing one `.c` file', 'edited'),
	];
	const kvdCost = (timing: Timing) => `${(median(timing.reloadKvd) - median(timing.reload)).toFixed(2)} s`;
	table.push('', `What kvd adds to a reload (median with kvd − median without): before ${kvdCost(old)}, after ${kvdCost(now)}.`);
	process.stdout.write(`${table.join('\n')}\n`);
	if (BOOTS > 0) {
		const lines = await bootReliability(after, BOOTS);
		process.stdout.write(`\nBoot reliability (after):\n${lines.map(line => `- ${line}`).join('\n')}\n`);
	}
} finally {
	for (const root of roots) {
		await run('git', ['-C', PROJECT_ROOT, 'worktree', 'remove', '--force', root]).catch(async () => {
			await rm(root, { recursive: true, force: true });
			await run('git', ['-C', PROJECT_ROOT, 'worktree', 'prune']);
		});
	}
}
