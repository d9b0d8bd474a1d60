/**
 * `./run` with the local target INSIDE a lab guest: the guest's kernel is
 * a real Debian kernel that loads modules, and the guest sees this
 * machine's files (its writes go to its RAM), so this checkout's compiled
 * ./run drives the host-kernel path there (local-target.test.ts,
 * dkms.test.ts). Node and Kbuild run emulated: seconds to minutes each.
 */
import type { ExecutionContext } from 'ava';
import { PROJECT_ROOT } from '../../src/modules.js';
import type { LabContext } from './lab.js';

/**
 * Starts a command in the guest on its own, in the background: its output
 * (stdout and stderr) goes to DIR/out and its exit code to DIR/code when it
 * ends; setsid makes it the leader of a process group, DIR/pid. Prints DIR.
 */
const DETACHED = `
dir=$(mktemp -d)
setsid sh -c '"$@" >"$0/out" 2>&1 </dev/null; echo $? >"$0/code.new"; mv "$0/code.new" "$0/code"' "$dir" "$@" \\
	>/dev/null 2>&1 </dev/null &
echo $! >"$dir/pid"
echo "$dir"
`;

export interface Run {
	exitCode: number | null;
	output: string;
	seconds: number;
}

/**
 * Runs argv in the guest with the local target and waits for it. The guest
 * command runs detached and is polled with short commands: one guest-exec
 * held for minutes while Node and Kbuild keep the emulated CPU busy made
 * qemu-ga stop answering.
 */
export async function inGuest(t: ExecutionContext<LabContext>, argv: string[], timeoutMs = 570_000): Promise<Run> {
	await prepareGuest(t);
	const target = t.context.target;
	const started = performance.now();
	const options = { cwd: PROJECT_ROOT, env: { KUDP_TARGET: 'local' }, timeoutMs: 60_000 };
	const launched = await target.exec(['sh', '-c', DETACHED, 'detached', ...argv], options);
	const dir = launched.stdout.trim();
	if (launched.exitCode !== 0 || !dir.startsWith('/')) {
		throw new Error(`could not start ${argv.join(' ')} in the guest: ${launched.stderr}`);
	}
	for (;;) {
		await new Promise(resolve => setTimeout(resolve, 2000));
		const done = await target.exec(['sh', '-c', 'cat "$1/code" 2>/dev/null && cat "$1/out"', 'poll', dir], options);
		const seconds = (performance.now() - started) / 1000;
		if (done.exitCode === 0) {
			const newline = done.stdout.indexOf('\n');
			return { exitCode: Number(done.stdout.slice(0, newline)), output: done.stdout.slice(newline + 1), seconds };
		}
		if (seconds * 1000 > timeoutMs) {
			const output = await target.exec(['cat', `${dir}/out`], options);
			await target.exec(['sh', '-c', 'kill -KILL -- "-$(cat "$1/pid")"', 'kill', dir], options);
			throw new Error(`${argv.join(' ')} did not finish within ${timeoutMs / 1000} s in the guest:\n${output.stdout}`);
		}
	}
}

let prepared: Promise<void> | undefined;

/**
 * Once per file, before the first ./run in the guest (ava runs the before
 * hooks at once, so this cannot be one: the lab is not up yet there).
 */
function prepareGuest(t: ExecutionContext<LabContext>): Promise<void> {
	prepared ??= (async () => {
		const target = t.context.target;
		// The host has installed and compiled this checkout (./run test did);
		// files others touch meanwhile must not make the guest's ./run
		// reinstall or recompile it under emulation. Only the guest's RAM
		// copy of these stamps changes.
		const stamps = await target.exec(['touch', 'dist/.build-stamp', 'node_modules/.package-lock.json'], {
			cwd: PROJECT_ROOT,
			timeoutMs: 30_000,
		});
		if (stamps.exitCode !== 0) {
			throw new Error(`cannot touch the build stamps in the guest: ${stamps.stderr}`);
		}
		const release = await target.exec(['uname', '-r'], { timeoutMs: 30_000 });
		t.log(`the guest's kernel ${release.stdout.trim()} is the local target`);
	})();
	return prepared;
}
