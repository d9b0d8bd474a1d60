/**
 * `./run setup`: install the Debian packages the project needs, and put
 * `run` and `kvclient` on PATH. Other commands call ensureSystemPackages()
 * so that a fresh machine needs no manual step.
 */
import { existsSync } from 'node:fs';
import { lstat, readlink, symlink, unlink } from 'node:fs/promises';
import path from 'node:path';
import { ifMissing, UserError } from '../errors.js';
import { LAB_KERNEL_PACKAGES } from '../lab/kernel.js';
import { log } from '../log.js';
import { PROJECT_ROOT } from '../modules.js';
import { runProgram } from '../programs.js';

/** Debian packages, and why each is here. */
export const SYSTEM_PACKAGES: Record<string, string> = {
	make: 'builds the modules (Kbuild)',
	gcc: 'compiles the modules',
	kmod: 'modinfo, insmod, rmmod',
	iproute2: 'ip: the lab guest configures its network with it',
	'qemu-system-x86': 'runs the lab guest',
	[LAB_KERNEL_PACKAGES[0]!]: 'the kernel the lab boots',
	[LAB_KERNEL_PACKAGES[1]!]: 'the headers the modules are built against',
	// Debian 12's newer kernel series, from its security archive.
	'linux-image-6.12-cloud-amd64': 'a second kernel the tests run the modules on',
	'linux-headers-6.12-cloud-amd64': "the second kernel's headers",
	'busybox-static': "the lab guest's initramfs",
	cpio: "packs the lab guest's initramfs",
	lz4: 'uncompresses the 6.1 lab kernel once (an uncompressed kernel boots faster)',
	zstd: 'uncompresses the 6.12 lab kernel once',
	'qemu-guest-agent': 'qemu-ga: runs commands in the lab guest',
	dkms: './run install: builds and installs the modules for the running kernel and every new one (the lab uses it too)',
	'netcat-openbsd': 'nc -u: the interoperability tests and examples',
	sparse: 'static analysis of the modules (make check)',
	'linux-source-6.1': "scripts/checkpatch.pl for the style check, and the source of the lab's debug kernel",
	// Building the lab's debug kernel (src/lab/debug-kernel.ts), once per machine.
	bc: 'the kernel build computes constants with it (kernel/time/timeconst.bc)',
	bison: "the kernel's config tools (scripts/kconfig) are generated with it",
	flex: "the kernel's config tools (scripts/kconfig) are generated with it",
	'libelf-dev': 'objtool, which checks every object of the debug kernel, reads ELF with it',
	'libssl-dev': "the kernel's certificate tools (certs/extract-cert, scripts/sign-file) link against it",
	'xz-utils': "unpacks Debian's kernel source tarball",
	perl: "the kernel build's scripts are written in it",
	'linux-perf': "perf: reads udp_server's tracepoints (the trace test) and counts instructions in the benchmark",
	memcached: 'the benchmark compares udp_server with memcached over UDP',
	'libmemcached-tools': 'memcaslap (memaslap): the memcached protocol tests and benchmark',
	'python3-pylibmc': "libmemcached from Python: the ketama test checks kvclient's key placement against the real library",
};

async function missingPackages(): Promise<string[]> {
	const names = Object.keys(SYSTEM_PACKAGES);
	// biome-ignore lint/suspicious/noTemplateCurlyInString: dpkg-query's own ${field} format, not a template
	const { stdout } = await runProgram('dpkg-query', ['-W', '-f', '${Package} ${db:Status-Status}\n', ...names], {
		reject: false,
	});
	const installed = new Set(
		stdout
			.split('\n')
			.filter(line => line.endsWith(' installed'))
			.map(line => line.split(' ')[0]),
	);
	return names.filter(name => !installed.has(name));
}

/** Installs whatever Debian packages are missing (needs root and apt). */
export async function ensureSystemPackages(): Promise<void> {
	if (!existsSync('/usr/bin/dpkg-query')) {
		throw new UserError('this is not a Debian-based system: install the packages by hand', {
			hint: Object.entries(SYSTEM_PACKAGES)
				.map(([name, why]) => `  ${name}: ${why}`)
				.join('\n'),
		});
	}
	const missing = await missingPackages();
	if (missing.length === 0) {
		return;
	}
	if (process.getuid?.() !== 0) {
		throw new UserError(`missing Debian packages: ${missing.join(' ')}`, {
			hint: `run as root: apt-get install ${missing.join(' ')}`,
		});
	}
	log.info(`installing Debian packages: ${missing.join(' ')} (a few minutes on a fresh machine)`);
	const env = { DEBIAN_FRONTEND: 'noninteractive' };
	const update = await runProgram('apt-get', ['update', '-q'], { env, reject: false, all: true });
	if (update.exitCode !== 0) {
		throw new UserError('apt-get update failed', { hint: update.all ?? '' });
	}
	const install = await runProgram('apt-get', ['install', '-y', '-q', '--no-install-recommends', ...missing], {
		env,
		reject: false,
		all: true,
	});
	if (install.exitCode !== 0) {
		throw new UserError(`apt-get install failed for ${missing.join(' ')}`, {
			hint: install.all?.split('\n').slice(-15).join('\n') ?? '',
		});
	}
	log.info('Debian packages installed');
}

/**
 * Links bin/run and bin/kvclient into /usr/local/bin, replacing only our own
 * links. Needs root; without it, says how to reach them instead.
 */
export async function putCommandsOnPath(): Promise<void> {
	if (process.getuid?.() !== 0) {
		log.info(`not root, so run and kvclient stay in ${path.join(PROJECT_ROOT, 'bin')} (./run setup as root puts them on PATH)`);
		return;
	}
	for (const command of ['run', 'kvclient']) {
		const link = path.join('/usr/local/bin', command);
		const target = path.join(PROJECT_ROOT, 'bin', command);
		const existing = await lstat(link).catch(ifMissing(undefined));
		if (existing) {
			const current = existing.isSymbolicLink() ? await readlink(link) : undefined;
			if (current === target) {
				continue;
			}
			if (!current?.endsWith(`/bin/${command}`)) {
				log.warn(`${link} exists and is not ours; not touching it (use ${target})`);
				continue;
			}
			await unlink(link);
		}
		await symlink(target, link);
		log.info(`${command} is on PATH: ${link} → ${target}`);
	}
}

export async function setupCommand(): Promise<void> {
	await ensureSystemPackages();
	await putCommandsOnPath();
	process.stdout.write('set-up complete: ./run demo shows the modules at work\n');
}
