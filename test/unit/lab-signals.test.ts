/**
 * The orchestrator signals only processes it started (issue 18): a lab's
 * state.json outlives a reboot, and its PIDs may then name anyone's
 * process. `./run down` (Lab.down) and `./run test`'s sweep of dead test
 * labs check the boot id and each process's identity (executable and start
 * time from /proc/PID/stat) before any signal. Fake lab directories, real
 * `sleep` processes of this user standing for the strangers.
 */
import test from 'ava';
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { removeTestLabs } from '../../src/commands/test.js';
import { Lab } from '../../src/lab/lab.js';
import { isLabProcess } from '../../src/lab/state.js';
import { acquireLock, bootId, isAlive, lockOwner, processIdentity, processStart } from '../../src/lock.js';

async function scratch(t: { teardown(fn: () => Promise<void>): void }): Promise<string> {
	const dir = await mkdtemp(path.join(tmpdir(), 'kudp-signals-'));
	t.teardown(() => rm(dir, { recursive: true, force: true }));
	return dir;
}

/** A process of this user that no lab started. */
function stranger(t: { teardown(fn: () => void): void }): ChildProcess & { pid: number } {
	const child = spawn('sleep', ['600'], { stdio: 'ignore' });
	t.teardown(() => {
		child.kill('SIGKILL');
	});
	return child as ChildProcess & { pid: number };
}

/** Alive, and not a zombie waiting for us to reap it. */
function running(pid: number): boolean {
	return isAlive(pid) && processStart(pid) !== undefined && !/\) Z /.test(readStat(pid));
}

function readStat(pid: number): string {
	try {
		return readFileSync(`/proc/${pid}/stat`, 'utf8');
	} catch {
		return '';
	}
}

async function writeState(root: string, name: string, state: Record<string, unknown>): Promise<Lab> {
	const lab = new Lab({ root, name });
	await mkdir(lab.dir, { recursive: true });
	const base = { agentPort: 1, token: 'x', kernel: {}, bootedAt: '', bootSeconds: 0, udpForwards: {} };
	await writeFile(path.join(lab.dir, 'state.json'), JSON.stringify({ ...base, ...state }));
	return lab;
}

test('a state file from another boot: ./run down signals none of its PIDs', async t => {
	const root = await scratch(t);
	const [qemu, virtiofsd] = [stranger(t), stranger(t)];
	await sleep(50);
	// Even the identities match: the boot does not, so these PIDs were another machine's life.
	const processes = [processIdentity(qemu.pid), processIdentity(virtiofsd.pid)];
	const lab = await writeState(root, 'rebooted', { qemuPid: qemu.pid, virtiofsdPids: [virtiofsd.pid], boot: 'another-boot-id', processes });
	t.is(await lab.state(), undefined, 'a lab from another boot is down');
	t.false(await lab.down());
	await sleep(100);
	t.true(running(qemu.pid), 'the "QEMU" PID is alive after ./run down');
	t.true(running(virtiofsd.pid), 'the "virtiofsd" PID is alive after ./run down');
});

test('this boot, but the PID now names another process (start time or program differ): not signalled', async t => {
	const root = await scratch(t);
	const other = stranger(t);
	await sleep(50);
	const identity = processIdentity(other.pid)!;
	const lab = await writeState(root, 'reused', {
		qemuPid: other.pid,
		virtiofsdPids: [],
		boot: bootId(),
		processes: [{ ...identity, start: String(Number(identity.start) + 1) }],
	});
	t.false(await lab.down());
	t.true(running(other.pid));
	// A state of an older version (no boot id, no identities): only a live QEMU or virtiofsd is the lab's.
	const legacy = await writeState(root, 'legacy', { qemuPid: other.pid, virtiofsdPids: [other.pid] });
	t.false(await legacy.down());
	await sleep(100);
	t.true(running(other.pid), 'sleep is no QEMU');
});

test("./run test's sweep of dead test labs spares a stranger named in their state", async t => {
	const root = await scratch(t);
	const other = stranger(t);
	await sleep(50);
	// test-<file>-<pid> with a PID that is gone: the sweep's business.
	const dead = spawn('true');
	await new Promise(resolve => dead.once('exit', resolve));
	await writeState(root, `test-x-${dead.pid}`, {
		qemuPid: other.pid,
		virtiofsdPids: [other.pid],
		boot: 'another-boot-id',
		processes: [processIdentity(other.pid)],
	});
	await writeState(root, `unit-${dead.pid}`, { qemuPid: other.pid, virtiofsdPids: [other.pid] });
	await removeTestLabs(root);
	await sleep(100);
	t.true(running(other.pid), 'alive after the sweep');
});

test('the lab does stop its own processes: identities recorded on this boot', async t => {
	const root = await scratch(t);
	const mine = stranger(t);
	await sleep(50);
	const state = { qemuPid: mine.pid, virtiofsdPids: [], boot: bootId(), processes: [processIdentity(mine.pid)!] };
	t.true(isLabProcess(state, mine.pid));
	const lab = await writeState(root, 'mine', state);
	await lab.down(); // no guest to answer: it warns and kills
	await new Promise(resolve => (mine.exitCode !== null || mine.signalCode !== null ? resolve(undefined) : mine.once('exit', resolve)));
	t.is(mine.signalCode, 'SIGTERM');
});

test('a lock records its owner’s start time: a later process with its PID does not hold it', async t => {
	const dir = await scratch(t);
	const lockPath = path.join(dir, 'x.lock');
	const lock = await acquireLock(lockPath, 0);
	const owner = await lockOwner(lockPath);
	t.is(owner?.start, processStart(process.pid));
	await lock.release();
	// A live process's PID and this boot, but another start time: whoever had that PID before it.
	const other = stranger(t);
	await sleep(50);
	await writeFile(lockPath, `${other.pid} ${bootId()} abcdef ${Number(processStart(other.pid)) - 1}\n`);
	const taken = await acquireLock(lockPath, 0);
	t.is((await lockOwner(lockPath))?.pid, process.pid, 'taken over');
	await taken.release();
	t.true(running(other.pid));
});
