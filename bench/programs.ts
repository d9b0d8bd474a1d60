/**
 * The bench's own programs, built on this machine: bench/NAME.c (loadgen,
 * commitloop), run in the lab guest over the shared root, and the bare echo
 * module (bench/echo-module/), built against the lab's kernel headers.
 */
import { createHash, randomUUID } from 'node:crypto';
import { copyFile, mkdir, readFile, rename, stat } from 'node:fs/promises';
import path from 'node:path';
import { ifMissing, UserError } from '../src/errors.js';
import { kbuildPath, PROJECT_ROOT } from '../src/modules.js';
import { runProgram } from '../src/programs.js';

/** Where built programs and snapshots of the echo module are kept, named after their sources. */
export const CACHE = path.join(PROJECT_ROOT, '.lab/cache/bench');
const ECHO_DIR = path.join(PROJECT_ROOT, 'bench/echo-module');

export function compileLoadgen(): Promise<string> {
	return compileBenchProgram('loadgen');
}

const compiling = new Map<string, Promise<string>>();

/**
 * Compiles bench/NAME.c on this machine (the guest runs it over the shared
 * root); returns the binary's path. Callers in one process share one build.
 */
export function compileBenchProgram(name: string): Promise<string> {
	let pending = compiling.get(name);
	if (!pending) {
		pending = buildBenchProgram(name);
		compiling.set(name, pending);
		pending.catch(() => compiling.delete(name));
	}
	return pending;
}

async function buildBenchProgram(name: string): Promise<string> {
	const source = path.join(PROJECT_ROOT, `bench/${name}.c`);
	const hash = createHash('sha256')
		.update(await readFile(source))
		.digest('hex')
		.slice(0, 12);
	const binary = path.join(CACHE, `${name}-${hash}`);
	// Named after its source: built once. Rebuilding it in place would give the
	// path a new inode, and a lab guest that cached the old one would get
	// "Stale file handle" running it.
	if (await stat(binary).then(() => true, ifMissing(false))) return binary;
	await mkdir(CACHE, { recursive: true });
	// Unique per build: two processes (or two Node versions' test runs) may build at once.
	const building = `${binary}.${process.pid}.${randomUUID()}.tmp`;
	await runProgram('gcc', ['-O2', '-Wall', '-Wextra', '-Werror', '-pthread', '-o', building, source, '-lm']);
	await rename(building, binary);
	return binary;
}

/** Builds bench/echo-module against the lab's headers; returns a snapshot of the .ko named after its sources. */
export async function buildEcho(headers: string): Promise<string> {
	const hash = createHash('sha256').update(headers);
	for (const file of ['udp_echo.c', 'Kbuild', 'Makefile']) hash.update(await readFile(path.join(ECHO_DIR, file)));
	const dir = await kbuildPath(ECHO_DIR);
	const made = await runProgram('make', ['-C', dir, `KDIR=${headers}`, `CURDIR=${dir}`], {
		reject: false,
		all: true,
		env: { LC_ALL: 'C' },
	});
	if (made.exitCode !== 0) {
		throw new UserError(`bench/echo-module did not build (make exited with ${made.exitCode})`, { hint: made.all ?? '' });
	}
	const ko = path.join(CACHE, `udp_echo-${hash.digest('hex').slice(0, 12)}.ko`);
	await copyFile(path.join(ECHO_DIR, 'udp_echo.ko'), ko);
	return ko;
}
