/**
 * The rules of issue 10's "one door per target", checked on the sources: a
 * target is reached only through the Target interface, what is particular to
 * a module lives in src/roles.ts, and src/ does not depend on bench/.
 */
import test from 'ava';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { PROJECT_ROOT } from '../../src/modules.js';

async function sources(dir: string): Promise<Array<{ file: string; text: string }>> {
	const files = (await readdir(path.join(PROJECT_ROOT, dir), { recursive: true })).filter(name => name.endsWith('.ts'));
	return Promise.all(
		files.map(async name => ({ file: path.join(dir, name), text: await readFile(path.join(PROJECT_ROOT, dir, name), 'utf8') })),
	);
}

test('only src/targets.ts looks inside the lab target; commands and bench use the Target interface', async t => {
	const offenders = [...(await sources('src')), ...(await sources('bench'))]
		.filter(({ file }) => file !== path.join('src', 'targets.ts') && !file.startsWith(path.join('src', 'lab')))
		.filter(({ text }) => /instanceof LabTarget|\.lab\.(state|down|up|exec|forwardUdp|unforwardUdp)\(/.test(text))
		.map(({ file }) => file);
	t.deepEqual(offenders, []);
});

test('lifecycle.ts treats every module alike: what is particular to one is in roles.ts', async t => {
	const lifecycle = await readFile(path.join(PROJECT_ROOT, 'src', 'lifecycle.ts'), 'utf8');
	t.notRegex(lifecycle, /['"]udp_(server|client)['"]/);
});

test('nothing in src/ imports from bench/', async t => {
	const offenders = (await sources('src')).filter(({ text }) => /from '(\.\.\/)+bench\//.test(text)).map(({ file }) => file);
	t.deepEqual(offenders, []);
});
