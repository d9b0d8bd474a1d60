/**
 * Static analysis of the kernel modules, on every run: a W=1 build without
 * warnings and sparse without reports against every installed lab kernel,
 * checkpatch --strict clean. Each build runs on a copy of the sources so it
 * never races the builds of the lab tests.
 */
import test from 'ava';
import { execa } from 'execa';
import { existsSync } from 'node:fs';
import { cp, mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { installedLabKernels } from '../../src/lab/kernel.js';
import { PROJECT_ROOT } from '../../src/modules.js';
import { withFileLock } from '../../src/lock.js';

const MODULE_DIRS = ['server-module', 'client-module'];
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
				'-xJf', path.join('/usr/src', tarball), '-C', CHECKPATCH_DIR, '--strip-components=1',
				`${top}/scripts/checkpatch.pl`, `${top}/scripts/spelling.txt`, `${top}/scripts/const_structs.checkpatch`,
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

// Every installed lab kernel: the distribution's 6.1 and the second, 6.12.
const kernels = await installedLabKernels();

for (const [moduleDir, { release, headers }] of MODULE_DIRS.flatMap(dir => kernels.map(kernel => [dir, kernel] as const))) {
	test(`${moduleDir} builds against ${release} with W=1 and sparse (C=2) without a single warning`, async t => {
		const copy = await copyOfSources();
		try {
			const result = await execa('make', ['-C', path.join(copy, moduleDir), `KDIR=${headers}`, 'W=1', 'C=2'], {
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
		const sources = (await readdir(dir))
			.filter(name => /\.[ch]$/.test(name) && !name.endsWith('.mod.c'))
			.map(name => path.join(dir, name));
		t.true(sources.length > 0);
		const result = await execa(
			'perl',
			[script, '--no-tree', '--strict', '--terse', '--show-types', '-f', ...sources],
			{ reject: false, all: true },
		);
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
