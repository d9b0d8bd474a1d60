/**
 * bin/bootstrap.sh compiles the TypeScript on demand. In a scratch copy of
 * the project: a deleted source loses its compiled file (ava runs every
 * dist/test/**, so a deleted test would otherwise keep running), build output
 * beside the sources triggers no compile, and two
 * starts at once on a fresh copy compile once and leave a whole dist/.
 */
import test from 'ava';
import { execa } from 'execa';
import { cp, mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { PROJECT_ROOT } from '../../src/modules.js';
import { linkPackages } from '../helpers/packages.js';

/**
 * A small project with the real bin/, tsconfig.json and package.json and a
 * few sources in the real directories: the mechanics under test do not
 * depend on the project's size, and a compile of the whole project costs
 * ~30 s of a 2-core machine's suite time per compile.
 */
async function scratchProject(t: { teardown(fn: () => Promise<void>): void }): Promise<string> {
	const root = await mkdtemp(path.join(tmpdir(), 'kudp-bootstrap-'));
	t.teardown(() => rm(root, { recursive: true, force: true }));
	for (const entry of ['bin', 'tsconfig.json', 'package.json']) {
		await cp(path.join(PROJECT_ROOT, entry), path.join(root, entry), { recursive: true });
	}
	const sources: Record<string, string> = {
		'src/greeting.ts': "export const greeting = (name: string): string => 'hello ' + name;\n",
		'src/bin/run.ts': "import { greeting } from '../greeting.js';\n\nconsole.log(greeting(process.argv[2] ?? 'world'));\n",
		'daemon/kvd.ts': 'export const kvd = 1;\n',
		'user-client/cli.ts': 'export const cli = 1;\n',
		'test/unit/a.test.ts': "import test from 'ava';\n\ntest('a', t => t.pass());\n",
		'bench/echo-module/README': 'a kernel module builds here\n',
	};
	for (const [file, text] of Object.entries(sources)) {
		await mkdir(path.dirname(path.join(root, file)), { recursive: true });
		await writeFile(path.join(root, file), text);
	}
	await linkPackages(root);
	return root;
}

function bootstrap(root: string) {
	return execa('bash', ['-c', 'set -euo pipefail; source "$1/bin/bootstrap.sh"', 'bootstrap', root], { reject: false });
}

async function files(dir: string): Promise<string[]> {
	return ((await readdir(dir, { recursive: true })) as string[]).sort();
}

test('a deleted source file loses its compiled file', async t => {
	const root = await scratchProject(t);
	const extra = path.join(root, 'test/unit/deleted-later.test.ts');
	await writeFile(extra, "import test from 'ava';\ntest('x', t => t.pass());\n");
	t.is((await bootstrap(root)).exitCode, 0);
	t.true(existsSync(path.join(root, 'dist/test/unit/deleted-later.test.js')));

	await rm(extra);
	const again = await bootstrap(root);
	t.is(again.exitCode, 0, again.stderr);
	t.regex(again.stderr, /compiling TypeScript/, 'the deletion alone triggers a compile');
	t.false(existsSync(path.join(root, 'dist/test/unit/deleted-later.test.js')));
	t.false(existsSync(path.join(root, 'dist/test/unit/deleted-later.test.js.map')));
	t.true(existsSync(path.join(root, 'dist/src/greeting.js')));
	t.deepEqual(
		(await readdir(root)).filter(name => name.startsWith('.dist-next')),
		[],
		'no temporary build left',
	);

	const unchanged = await bootstrap(root);
	t.notRegex(unchanged.stderr, /compiling/, 'nothing changed: no compile');
});

test('build output beside the sources (a kernel module in bench/echo-module) does not trigger a compile', async t => {
	// A compile mid-suite replaces dist/ under the lab guest, whose cached names then fail
	// ("Cannot find module dist/daemon/kvd.js"): the module build in static.test did exactly that.
	const root = await scratchProject(t);
	t.is((await bootstrap(root)).exitCode, 0);
	await writeFile(path.join(root, 'bench/echo-module/udp_echo.o'), 'not TypeScript');
	await writeFile(path.join(root, 'bench/echo-module/.udp_echo.o.cmd'), 'not TypeScript');
	const after = await bootstrap(root);
	t.is(after.exitCode, 0, after.stderr);
	t.notRegex(after.stderr, /compiling/);

	await writeFile(path.join(root, 'bench/echo-module/added.ts'), 'export const added = 1;\n');
	const added = await bootstrap(root);
	t.regex(added.stderr, /compiling TypeScript/, 'a new source file still triggers a compile');
	t.true(existsSync(path.join(root, 'dist/bench/echo-module/added.js')));
});

test('two bootstraps at once on a fresh copy compile once and leave a whole dist/', async t => {
	const root = await scratchProject(t);
	const [first, second] = await Promise.all([bootstrap(root), bootstrap(root)]);
	t.is(first.exitCode, 0, first.stderr);
	t.is(second.exitCode, 0, second.stderr);
	t.is(`${first.stderr}${second.stderr}`.match(/compiling TypeScript/g)?.length, 1);
	const built = await files(path.join(root, 'dist'));
	t.true(built.includes('src/greeting.js'));
	t.true(built.includes('src/bin/run.js'));
	// What one compile on its own produces.
	const reference = path.join(root, 'reference');
	await execa(path.join(root, 'node_modules/.bin/tsc'), ['-p', 'tsconfig.json', '--outDir', reference], { cwd: root });
	t.deepEqual(
		built.filter(name => !name.startsWith('.build')),
		await files(reference),
	);
	const { stdout } = await execa(process.execPath, [path.join(root, 'dist/src/bin/run.js'), 'bootstrap']);
	t.is(stdout, 'hello bootstrap');
});
