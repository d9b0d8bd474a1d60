/**
 * Our kernel modules: where their sources are, how to build them, and what
 * parameters the built `.ko` declares.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, readlink, realpath, rename, stat, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { EXIT_USAGE, UserError } from './errors.js';
import { partialPath, writeFileIfAbsent } from './files.js';
import { withFileLock } from './lock.js';
import { log } from './log.js';
import { parseModinfoParams } from './params.js';
import { findProgram, runProgram } from './programs.js';
/** The project root (this file is dist/src/modules.js once compiled). */
export const PROJECT_ROOT = fileURLToPath(new URL('../../', import.meta.url)).replace(/\/$/, '');
export const MODULES = {
    udp_server: { dir: 'server-module', summary: 'the key-value UDP server' },
    udp_client: { dir: 'client-module', summary: 'the UDP client that says HELLO' },
};
export function isModuleName(name) {
    return Object.hasOwn(MODULES, name);
}
export function moduleNames() {
    return Object.keys(MODULES).join(', ');
}
export function checkModuleName(name) {
    if (!isModuleName(name)) {
        throw new UserError(`unknown module "${name}"`, { hint: `the modules are: ${moduleNames()}`, exitCode: EXIT_USAGE });
    }
    return name;
}
export function moduleDir(name) {
    return path.join(PROJECT_ROOT, MODULES[name].dir);
}
/**
 * A digest of what a build of the module depends on: its sources, Kbuild and
 * Makefile, the shared include/ directory, the kernel headers built against
 * (their path and their Module.symvers, which changes with the ABI), and the
 * make and gcc found on PATH.
 */
export async function buildInputs(name, headersDir) {
    const hash = createHash('sha256').update(`${name}\0${await realpath(headersDir)}\0`);
    const symvers = await stat(path.join(headersDir, 'Module.symvers')).catch(() => undefined);
    hash.update(`${symvers?.size ?? '-'}:${symvers?.mtimeMs ?? '-'}\0`);
    // The toolchain on PATH: another make or compiler (an upgrade, a wrapper) builds anew.
    for (const program of ['make', 'gcc']) {
        const found = findProgram(program);
        const info = found ? await stat(found) : undefined;
        hash.update(`${found ?? '-'}:${info?.size ?? '-'}:${info?.mtimeMs ?? '-'}\0`);
    }
    for (const dir of [moduleDir(name), path.join(PROJECT_ROOT, 'include')]) {
        const files = (await readdir(dir)).filter(file => /\.[ch]$/.test(file) || file === 'Kbuild' || file === 'Makefile').sort();
        for (const file of files) {
            hash
                .update(`${path.join(dir, file)}\0`)
                .update(await readFile(path.join(dir, file)))
                .update('\0');
        }
    }
    return hash.digest('hex').slice(0, 16);
}
/** Where the build of a given set of inputs is kept (see buildModule). */
function builtFor(name, inputs) {
    return path.join(PROJECT_ROOT, '.lab', 'cache', 'modules', `${name}-src-${inputs}.ko`);
}
/**
 * Builds a module against the given kernel headers and returns the path of a
 * snapshot of the `.ko`. Compiler output goes to stderr as it comes. When
 * nothing the build depends on changed since a build (buildInputs), that
 * build is reused without running make, which costs seconds even with
 * nothing to do. The file is named after its inputs: a change makes a new
 * name, so an old build is never mistaken for a new one.
 */
export async function buildModule(name, headersDir) {
    const dir = moduleDir(name);
    const inputs = await buildInputs(name, headersDir);
    const reusable = builtFor(name, inputs);
    if (existsSync(reusable)) {
        log.info(`${name} is unchanged since its last build against ${path.basename(path.dirname(headersDir))} headers: not rebuilding`);
        return reusable;
    }
    log.info(`building ${name} against ${path.basename(path.dirname(headersDir))} headers`);
    const ko = path.join(dir, `${name}.ko`);
    // Kbuild writes its outputs next to the sources: one build per directory
    // at a time, and the snapshot is taken before the lock goes, since the
    // next build (perhaps for another kernel) overwrites the .ko.
    const { result, copy } = await withFileLock(path.join(dir, '.build.lock'), 300_000, async () => {
        const buildDir = await kbuildPath(dir);
        // KUDP_MODDIR: the module's Makefile passes it as M= (make's own CURDIR is the real path, and setting
        // CURDIR on the command line would leak into the kernel's Makefile, which 6.12 refuses).
        const made = await runProgram('make', ['-C', buildDir, `KDIR=${headersDir}`, `KUDP_MODDIR=${buildDir}`], {
            reject: false,
            all: true,
            env: { LC_ALL: 'C' },
        });
        return { result: made, copy: made.exitCode === 0 && existsSync(ko) ? await snapshot(ko, name) : undefined };
    });
    const output = result.all ?? '';
    const diagnostics = output
        .split('\n')
        .filter(line => /\b(error|warning|note):|Error \d/.test(line) || /^\s+\|/.test(line) || /^\s*\d+ \|/.test(line));
    if (result.exitCode !== 0) {
        process.stderr.write(`${output}\n`);
        throw new UserError(`${name} did not build (make exited with ${result.exitCode})`, {
            hint: output.trim() ? 'the compiler output is above' : 'make printed nothing',
        });
    }
    if (diagnostics.length > 0) {
        process.stderr.write(`${diagnostics.join('\n')}\n`);
    }
    if (!copy) {
        throw new UserError(`make succeeded but ${ko} is missing`);
    }
    // Kept for reuse only if no source changed while make ran (the .ko may have either version).
    // Never replaced once there: a parallel build of the same inputs may have loaded it already.
    if ((await buildInputs(name, headersDir)) === inputs) {
        await writeFileIfAbsent(reusable, await readFile(copy));
        return reusable;
    }
    return copy;
}
/** Characters Kbuild cannot take in M= (it splits words on spaces; ':' and '#' mean things to make). */
const KBUILD_UNSAFE = /[\s:#$%\\'"]/;
/**
 * A path to `dir` that Kbuild can take: `dir` itself, or when the project
 * path has a space (say), a symlink to it under a space-free directory of
 * the temporary directory. Kbuild uses M= as given (it does not resolve it),
 * and `../include` from the symlink resolves to the real project.
 */
export async function kbuildPath(dir) {
    if (!KBUILD_UNSAFE.test(dir)) {
        return dir;
    }
    const base = path.join(tmpdir(), `kudp-build-${createHash('sha256').update(dir).digest('hex').slice(0, 12)}`);
    const link = path.join(base, path.basename(dir));
    if (KBUILD_UNSAFE.test(link)) {
        throw new UserError(`cannot build in ${dir}: Kbuild takes no spaces or special characters in paths`, {
            hint: `move the project to a path without them, or set TMPDIR to one (now ${tmpdir()})`,
        });
    }
    const current = await readlink(link).catch((error) => {
        if (error.code === 'ENOENT') {
            return undefined;
        }
        throw error;
    });
    if (current !== dir) {
        await mkdir(base, { recursive: true, mode: 0o700 });
        // Made under a name of its own and renamed into place: parallel builds may do this at once.
        const partial = partialPath(link);
        await symlink(dir, partial);
        await rename(partial, link);
    }
    return link;
}
/**
 * A copy of the built module named after its content, so that a later build
 * (another terminal, a parallel test) cannot change or remove the file that
 * is about to be loaded.
 */
async function snapshot(ko, name) {
    const bytes = await readFile(ko);
    const digest = createHash('sha256').update(bytes).digest('hex').slice(0, 16);
    const dir = path.join(PROJECT_ROOT, '.lab', 'cache', 'modules');
    const copy = path.join(dir, `${name}-${digest}.ko`);
    if (!existsSync(copy)) {
        await mkdir(dir, { recursive: true });
        await writeFileIfAbsent(copy, bytes);
    }
    return copy;
}
/** The parameters a built module declares, from `modinfo -p`. */
export async function moduleParams(ko) {
    const { stdout } = await runProgram('modinfo', ['-p', ko]);
    return parseModinfoParams(stdout);
}
//# sourceMappingURL=modules.js.map