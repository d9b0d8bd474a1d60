/**
 * writeFileIfAbsent: a file named after its content is written once and
 * never replaced, so that a lab guest holding it open over virtiofs never
 * sees a stale handle (two test files building the same module at once).
 */
import test from 'ava';
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { writeFileIfAbsent } from '../../src/files.js';

test('writes a missing file, then never replaces it, and leaves no temporaries', async t => {
	const dir = await mkdtemp(path.join(tmpdir(), 'kudp-files-'));
	try {
		const file = path.join(dir, 'udp_server-src-0123.ko');
		t.true(await writeFileIfAbsent(file, 'first'));
		const inode = (await stat(file)).ino;
		const results = await Promise.all(Array.from({ length: 8 }, () => writeFileIfAbsent(file, 'second')));
		t.deepEqual(results, Array(8).fill(false));
		t.is((await stat(file)).ino, inode, 'the same file, not a replacement');
		t.is(await readFile(file, 'utf8'), 'first');
		t.deepEqual(await readdir(dir), ['udp_server-src-0123.ko']);
	} finally {
		await rm(dir, { recursive: true, force: true });
	}
});
