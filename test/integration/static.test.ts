/**
 * Static analysis of the kernel modules, on every run: a W=1 build without
 * warnings and sparse without reports against both lab kernels (6.1 and 6.12),
 * checkpatch --strict clean. Each build runs on a copy of the sources so it
 * never races the builds of the lab tests.
 */
import test from 'ava';
import { execa } from 'execa';
import { existsSync } from 'node:fs';
import { cp, mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { installedLabKernels, LAB_KERNEL_PACKAGES } from '../../src/lab/kernel.js';
import { PROJECT_ROOT } from '../../src/modules.js';
import { withFileLock } from '../../src/lock.js';

const MODULE_DIRS = ['server-module', 'client-module', 'bench/echo-module'];
const CHECKPATCH_DIR = path.join(PROJECT_ROOT, '.lab/cache/checkpatch');

/** scripts/checkpatch.pl and its data files, from Debian's kernel source package. */
async function checkpatch(): Promise<string> {
	const script = path.join(CHECKPATCH_DIR, 'scripts/checkpatch.pl');
	await mkdir(path.dirname(CHECKPATCH_DIR), { recursive: true });
	return withFileLock(`${CHECKPATCH_DIR}.lock`, 600_000, async () => {
		if (!existsSync(script)) {
			const tarball = (await readdir('/usr/src')).find(name => /^linux-source-[\d.]+\.tar\.xz$/.test(name));
			if (!tarball) {
				throw new Error('linux-source is not installed (./run setup installs it)');
			}
			await mkdir(CHECKPATCH_DIR, { recursive: true });
			const top = tarball.replace(/\.tar\.xz$/, '');
			await execa('tar', [
				'-xJf',
				path.join('/usr/src', tarball),
				'-C',
				CHECKPATCH_DIR,
				'--strip-components=1',
				`${top}/scripts/checkpatch.pl`,
				`${top}/scripts/spelling.txt`,
				`${top}/scripts/const_structs.checkpatch`,
			]);
		}
		return script;
	});
}

async function copyOfSources(): Promise<string> {
	const dir = await mkdtemp(path.join(tmpdir(), 'kudp-static-'));
	for (const name of [...MODULE_DIRS, 'include']) {
		await cp(path.join(PROJECT_ROOT, name), path.join(dir, name), {
			recursive: true,
			filter: source => !/\.(o|ko|mod|mod\.c|cmd|symvers|order)$|\.build\.lock$/.test(source),
		});
	}
	return dir;
}

/**
 * The two kernels the lab proves the modules on, each named by the Debian
 * meta-package that pulls it in (./run setup installs both). Tests are made
 * for both whatever is installed, so a missing kernel fails instead of
 * taking its tests away with it.
 */
const LAB_KERNELS = [
	{ series: '6.1', metaPackage: LAB_KERNEL_PACKAGES[0]! },
	{ series: '6.12', metaPackage: 'linux-image-6.12-cloud-amd64' },
];

/** The kernel release an installed meta-package stands for, or undefined. */
async function releaseOf(metaPackage: string): Promise<string | undefined> {
	// biome-ignore lint/suspicious/noTemplateCurlyInString: dpkg-query's own format, not a template
	const format = '${db:Status-Status} ${Depends}';
	const { stdout, exitCode } = await execa('dpkg-query', ['-W', '-f', format, metaPackage], { reject: false });
	if (exitCode !== 0 || !stdout.startsWith('installed ')) {
		return undefined;
	}
	return /linux-image-(\S+-cloud-amd64)/.exec(stdout)?.[1];
}

const installed = await installedLabKernels();
const labKernels = await Promise.all(
	LAB_KERNELS.map(async kernel => {
		const release = await releaseOf(kernel.metaPackage);
		return { ...kernel, release, headers: installed.find(candidate => candidate.release === release)?.headers };
	}),
);

/** Why the lab cannot use this kernel, or undefined when it can. */
function missing(kernel: (typeof labKernels)[number]): string | undefined {
	if (!kernel.release) {
		return `${kernel.metaPackage} is not installed (./run setup installs it)`;
	}
	if (!kernel.release.startsWith(`${kernel.series}.`)) {
		return `${kernel.metaPackage} stands for ${kernel.release}, not a ${kernel.series} kernel`;
	}
	if (!kernel.headers) {
		return `${kernel.release} (${kernel.metaPackage}) has no /boot/vmlinuz-${kernel.release} or no headers in /lib/modules/${kernel.release}/build`;
	}
	return undefined;
}

test('both lab kernels are installed with their headers: 6.1 (linux-image-cloud-amd64) and 6.12', t => {
	t.deepEqual(labKernels.map(missing).filter(Boolean), []);
	t.log(`lab kernels: ${labKernels.map(kernel => kernel.release).join(', ')}`);
});

for (const [moduleDir, kernel] of MODULE_DIRS.flatMap(dir => labKernels.map(kernel => [dir, kernel] as const))) {
	test(`${moduleDir} builds against ${kernel.release ?? kernel.metaPackage} with W=1 and sparse (C=2) without a single warning`, async t => {
		if (missing(kernel) || !kernel.headers) {
			t.fail(missing(kernel));
			return;
		}
		const copy = await copyOfSources();
		try {
			const result = await execa('make', ['-C', path.join(copy, moduleDir), `KDIR=${kernel.headers}`, 'W=1', 'C=2'], {
				all: true,
				reject: false,
				env: { LC_ALL: 'C' },
			});
			t.is(result.exitCode, 0, result.all);
			const warnings = (result.all ?? '').split('\n').filter(line => /warning:|error:|sparse:/.test(line));
			t.deepEqual(warnings, []);
			t.regex(result.all ?? '', /CHECK/, 'sparse ran');
		} finally {
			await rm(copy, { recursive: true, force: true });
		}
	});
}

for (const moduleDir of MODULE_DIRS) {
	test(`${moduleDir} is clean under checkpatch --strict`, async t => {
		const script = await checkpatch();
		const dir = path.join(PROJECT_ROOT, moduleDir);
		const sources = (await readdir(dir)).filter(name => /\.[ch]$/.test(name) && !name.endsWith('.mod.c')).map(name => path.join(dir, name));
		t.true(sources.length > 0);
		const result = await execa('perl', [script, '--no-tree', '--strict', '--terse', '--show-types', '-f', ...sources], {
			reject: false,
			all: true,
		});
		t.is(result.exitCode, 0, result.all);
	});
}

test('the shared headers are clean under checkpatch --strict', async t => {
	const script = await checkpatch();
	const check = (file: string, ...extra: string[]) =>
		execa('perl', [script, '--no-tree', '--strict', '--terse', ...extra, '-f', path.join(PROJECT_ROOT, 'include', file)], {
			reject: false,
			all: true,
		});
	for (const header of ['kudp_protocol.h', 'kudp_kthread.h']) {
		const result = await check(header);
		t.is(result.exitCode, 0, result.all);
	}
	// Justified in the header: the macro pastes its argument, never evaluates it.
	const params = await check('kudp_params.h', '--ignore', 'MACRO_ARG_REUSE');
	t.is(params.exitCode, 0, params.all);
});
