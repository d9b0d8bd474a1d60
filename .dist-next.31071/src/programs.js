import { accessSync, constants } from 'node:fs';
import path from 'node:path';
import { UserError } from './errors.js';
import { settings } from './settings.js';
/** Program → the Debian package that provides it. */
export const PROGRAM_PACKAGES = {
    make: 'make',
    gcc: 'gcc',
    modinfo: 'kmod',
    insmod: 'kmod',
    rmmod: 'kmod',
    modprobe: 'kmod',
    cpio: 'cpio',
    gzip: 'gzip',
    xz: 'xz-utils',
    zstd: 'zstd',
    lz4: 'lz4',
    'qemu-ga': 'qemu-guest-agent',
    'qemu-system-x86_64': 'qemu-system-x86',
    '/usr/lib/qemu/virtiofsd': 'qemu-system-common',
    'dpkg-query': 'dpkg',
    'apt-get': 'apt',
    git: 'git',
    nc: 'netcat-openbsd',
    ip: 'iproute2',
    script: 'util-linux',
    flock: 'util-linux',
    sh: 'dash',
    chmod: 'coreutils',
    find: 'findutils',
    memcached: 'memcached',
    memcaslap: 'libmemcached-tools',
    // Building the lab's debug kernel.
    tar: 'tar',
    bison: 'bison',
    flex: 'flex',
    bc: 'bc',
    perl: 'perl',
};
/** A program that is not installed (where: "in the lab guest", say, when it is not this machine). */
export class MissingProgramError extends UserError {
    program;
    constructor(program, options = {}) {
        const name = path.basename(program);
        const debianPackage = PROGRAM_PACKAGES[program] ?? PROGRAM_PACKAGES[name];
        super(`${program} is not installed${options.where ? ` ${options.where}` : ''}` +
            (debianPackage ? ` (Debian package: ${debianPackage})` : ''), {
            hint: debianPackage
                ? `install it: apt-get install ${debianPackage} (./run setup installs everything the project needs)`
                : `install ${name}, or put it on PATH`,
            cause: options.cause,
        });
        this.program = program;
        this.name = 'MissingProgramError';
    }
}
function isExecutable(file) {
    try {
        accessSync(file, constants.X_OK);
        return true;
    }
    catch {
        return false;
    }
}
/** Where `program` is: itself if it has a slash, else the first match on `searchPath`. */
export function findProgram(program, searchPath = settings.path) {
    if (program.includes('/')) {
        return isExecutable(program) ? program : undefined;
    }
    return searchPath
        .split(':')
        .filter(Boolean)
        .map(dir => path.join(dir, program))
        .find(isExecutable);
}
/** The path of `program`, or a MissingProgramError. */
export function requireProgram(program, searchPath) {
    const found = findProgram(program, searchPath);
    if (!found) {
        throw new MissingProgramError(program);
    }
    return found;
}
/** True for the error of spawning a program that does not exist. */
export function isSpawnEnoent(error) {
    return error?.code === 'ENOENT';
}
/**
 * execa(), but a missing program is a MissingProgramError whether or not
 * `reject` is set. (ENOENT also comes from a missing `cwd`: the program is
 * blamed only when it really cannot be found.)
 */
// biome-ignore lint/complexity/noBannedTypes: execa's own default, so results keep their string types
export async function runProgram(file, args, options) {
    const searchPath = options?.env?.['PATH'] ?? settings.path;
    const missing = (cause) => isSpawnEnoent(cause) && !findProgram(file, searchPath) ? new MissingProgramError(file, { cause }) : undefined;
    try {
        // Loaded when first needed: importing execa costs ~80 ms, a quarter of `./run shell -- true`.
        const { execa } = await import('execa');
        const result = await execa(file, args, options);
        const error = result.failed ? missing(result) : undefined;
        if (error) {
            throw error;
        }
        return result;
    }
    catch (error) {
        throw missing(error) ?? error;
    }
}
//# sourceMappingURL=programs.js.map