/**
 * A second kvd leaves the running one's files alone (issue 18): when it
 * loses the lock on the backup, it exits without removing kvd.pid and
 * kvd.ready, which are the first one's (./run took the first for dead and
 * started yet another). Two real kvd processes on this machine, with a fake
 * /proc (no module: the first one waits for one).
 */
import test from 'ava';
import { execa } from 'execa';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { PROJECT_ROOT } from '../../src/modules.js';

const KVD = path.join(PROJECT_ROOT, 'dist/daemon/kvd.js');

test('a second kvd for the same backup exits and leaves the first one’s pid and ready files', async t => {
	const dir = await mkdtemp(path.join(tmpdir(), 'kudp-kvd-second-'));
	t.teardown(() => rm(dir, { recursive: true, force: true }));
	const [proc, run] = [path.join(dir, 'proc'), path.join(dir, 'run')];
	await mkdir(proc);
	await mkdir(run);
	const args = [KVD, '--backup', path.join(dir, 'backup.txt'), '--proc', proc, '--run-dir', run];
	const first = execa(process.execPath, args, { reject: false, stdin: 'ignore' });
	t.teardown(() => {
		first.kill('SIGKILL');
	});
	const pidFile = path.join(run, 'kvd.pid');
	for (let i = 0; i < 200 && !existsSync(pidFile); i++) await sleep(50);
	t.is((await readFile(pidFile, 'utf8')).trim(), String(first.pid));
	// As if the first had restored a module's table into it.
	await writeFile(path.join(run, 'kvd.ready'), 'boot:1\n');

	const second = await execa(process.execPath, args, { reject: false, stdin: 'ignore' });
	t.is(second.exitCode, 1);
	t.regex(second.stderr, new RegExp(`another kvd \\(pid ${first.pid}\\) is already running`));
	t.is((await readFile(pidFile, 'utf8')).trim(), String(first.pid), 'the first kvd’s pid file is still there');
	t.is(await readFile(path.join(run, 'kvd.ready'), 'utf8'), 'boot:1\n', 'and its ready file');
	t.like(JSON.parse(await readFile(path.join(run, 'kvd.status'), 'utf8')), { pid: first.pid, state: 'waiting' });

	first.kill('SIGTERM');
	await first;
	t.false(existsSync(pidFile), 'the first kvd removes its own files when it stops');
});

test('a --run-dir that does not exist yet is made, not an ENOENT', async t => {
	const dir = await mkdtemp(path.join(tmpdir(), 'kudp-kvd-rundir-'));
	t.teardown(() => rm(dir, { recursive: true, force: true }));
	const [proc, run] = [path.join(dir, 'proc'), path.join(dir, 'run', 'kvd-bench')];
	await mkdir(proc);
	const kvd = execa(process.execPath, [KVD, '--backup', path.join(dir, 'backup.txt'), '--proc', proc, '--run-dir', run], {
		reject: false,
		stdin: 'ignore',
	});
	t.teardown(() => {
		kvd.kill('SIGKILL');
	});
	const pidFile = path.join(run, 'kvd.pid');
	for (let i = 0; i < 200 && !existsSync(pidFile) && kvd.exitCode === null; i++) await sleep(50);
	t.true(existsSync(pidFile), 'kvd started there');
	kvd.kill('SIGTERM');
	const result = await kvd;
	t.is(result.exitCode, 0, result.stderr);
});
