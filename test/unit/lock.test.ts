/**
 * src/lock.ts under contention: separate processes each add 1 to a counter
 * file many times, each time under the lock and with a pause between the read
 * and the write, so that two holders at once would lose an increment.
 */
import test from 'ava';
import { execa } from 'execa';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { acquireLock, bootId, lockOwner, withFileLock } from '../../src/lock.js';
import { PROJECT_ROOT } from '../../src/modules.js';

// KUDP_TEST_LOCK_MODULE: run the takers on another build of the lock (to show an old one fail).
const LOCK_MODULE = process.env['KUDP_TEST_LOCK_MODULE'] ?? pathToFileURL(path.join(PROJECT_ROOT, 'dist/src/lock.js')).href;
const TAKERS = 20;
const ROUNDS = 5;

const TAKER = `
import { readFile, writeFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
const { withFileLock } = await import(process.env.LOCK_MODULE);
const [lockPath, counter, rounds] = process.argv.slice(2);
for (let i = 0; i < Number(rounds); i++) {
	await withFileLock(lockPath, 120_000, async () => {
		const value = Number(await readFile(counter, 'utf8'));
		await sleep(5);
		await writeFile(counter, String(value + 1));
	});
	await sleep(Math.random() * 5);
}
`;

async function scratch(t: { teardown(fn: () => Promise<void>): void }): Promise<string> {
	const dir = await mkdtemp(path.join(tmpdir(), 'kudp-lock-'));
	t.teardown(() => rm(dir, { recursive: true, force: true }));
	return dir;
}

async function race(dir: string): Promise<number> {
	const script = path.join(dir, 'taker.mjs');
	const counter = path.join(dir, 'counter');
	await writeFile(script, TAKER);
	await writeFile(counter, '0');
	await Promise.all(
		Array.from({ length: TAKERS }, () =>
			execa(process.execPath, [script, path.join(dir, 'the.lock'), counter, String(ROUNDS)], {
				env: { LOCK_MODULE },
			}),
		),
	);
	return Number(await readFile(counter, 'utf8'));
}

test(`${TAKERS} processes taking the lock at once lose no increment`, async t => {
	const dir = await scratch(t);
	t.is(await race(dir), TAKERS * ROUNDS);
});

test(`${TAKERS} processes taking over one stale lock at once lose no increment`, async t => {
	const dir = await scratch(t);
	// A lock left by a process that is gone: every taker finds it stale at once.
	const dead = (await execa(process.execPath, ['-e', 'console.log(process.pid)'])).stdout.trim();
	await writeFile(path.join(dir, 'the.lock'), `${dead} ${bootId()} 0123456789abcdef\n`);
	t.is(await race(dir), TAKERS * ROUNDS);
});

test('a lock from before the last reboot, or in an older format, is stale', async t => {
	const dir = await scratch(t);
	const lockPath = path.join(dir, 'the.lock');
	// PID 1 is alive, but not the process that took the lock on another boot.
	await writeFile(lockPath, '1 another-boot 0123456789abcdef\n');
	await withFileLock(lockPath, 0, async () => t.is((await lockOwner(lockPath))?.pid, process.pid));
	await writeFile(lockPath, '');
	await withFileLock(lockPath, 0, async () => t.is((await lockOwner(lockPath))?.pid, process.pid));
	t.is(await lockOwner(lockPath), undefined, 'released');
});

test('a live holder makes a taker wait, then time out with its PID', async t => {
	const dir = await scratch(t);
	const lockPath = path.join(dir, 'the.lock');
	const first = await acquireLock(lockPath, 0);
	// The same process holds it: another task of ours must wait as well.
	const error = await t.throwsAsync(acquireLock(lockPath, 300));
	t.is(error?.message, `timed out waiting for process ${process.pid}, which holds ${lockPath}`);
	await first.release();
	const second = await acquireLock(lockPath, 0);
	await second.release();
});
