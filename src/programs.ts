/**
 * The external programs the tools run, and what to say when one is missing:
 * its name and the Debian package that provides it, instead of "make exited
 * with undefined" or a stack trace. Every execa call on an external program
 * goes through runProgram(); spawn() callers check with requireProgram().
 */
import type { Options } from 'execa';
import { accessSync, constants } from 'node:fs';
import path from 'node:path';
import { UserError } from './errors.js';
import { settings } from './settings.js';

/** Program → the Debian package that provides it. */
export const PROGRAM_PACKAGES: Readonly<Record<string, string>> = {
	make: 'make',
	gcc: 'gcc',
	modinfo: 'kmod',
	insmod: 'kmod',
	rmmod: 'kmod',
	modprobe: 'kmod',
	dkms: 'dkms',
	systemctl: 'systemd',
	'systemd-analyze': 'systemd',
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
	constructor(
		readonly program: string,
		options: { where?: string; cause?: unknown } = {},
	) {
		const name = path.basename(program);
		const debianPackage = PROGRAM_PACKAGES[program] ?? PROGRAM_PACKAGES[name];
		super(
			`${program} is not installed${options.where ? ` ${options.where}` : ''}` +
				(debianPackage ? ` (Debian package: ${debianPackage})` : ''),
			{
				hint: debianPackage
					? `install it: apt-get install ${debianPackage} (./run setup installs everything the project needs)`
					: `install ${name}, or put it on PATH`,
				cause: options.cause,
			},
		);
		this.name = 'MissingProgramError';
	}
}

function isExecutable(file: string): boolean {
	try {
		accessSync(file, constants.X_OK);
		return true;
	} catch {
		return false;
	}
}

/** Where `program` is: itself if it has a slash, else the first match on `searchPath`. */
export function findProgram(program: string, searchPath = settings.path): string | undefined {
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
export function requireProgram(program: string, searchPath?: string): string {
	const found = findProgram(program, searchPath);
	if (!found) {
		throw new MissingProgramError(program);
	}
	return found;
}

/** True for the error of spawning a program that does not exist. */
export function isSpawnEnoent(error: unknown): boolean {
	return (error as { code?: unknown } | undefined)?.code === 'ENOENT';
}

/**
 * execa(), but a missing program is a MissingProgramError whether or not
 * `reject` is set. (ENOENT also comes from a missing `cwd`: the program is
 * blamed only when it really cannot be found.)
 */
// biome-ignore lint/complexity/noBannedTypes: execa's own default, so results keep their string types
export async function runProgram<O extends Options = {}>(file: string, args: readonly string[], options?: O) {
	const searchPath = options?.env?.['PATH'] ?? settings.path;
	const missing = (cause: unknown) =>
		isSpawnEnoent(cause) && !findProgram(file, searchPath) ? new MissingProgramError(file, { cause }) : undefined;
	try {
		// Loaded when first needed: importing execa costs ~80 ms, a quarter of `./run shell -- true`.
		const { execa } = await import('execa');
		const result = await execa(file, args, options);
		const error = (result as unknown as { failed: boolean }).failed ? missing(result) : undefined;
		if (error) {
			throw error;
		}
		return result;
	} catch (error) {
		throw missing(error) ?? error;
	}
}
