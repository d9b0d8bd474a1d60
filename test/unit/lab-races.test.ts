/**
 * Three suspected races of the lab and the bootstrap (issue 18), each shown
 * real by a test that failed before its fix:
 * - udpForwards in the lab's state file was read, changed and written back
 *   without a lock: two ./run forwarding ports at once lost one of them;
 * - virtiofsd was started outside boot's kill-on-failure try: a failure
 *   before QEMU started (here: the labs' network registry unreadable) left
 *   the virtiofsd processes running, recorded nowhere;
 * - npm ci ran before bootstrap's flock: two ./run on a fresh checkout ran
 *   it at the same time into one node_modules.
 */
import test from 'ava';
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { execa } from 'execa';
import { chmod, cp, mkdir, mkdtemp, readdir, readFile, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Lab } from '../../src/lab/lab.js';
import { bootId, processIdentity } from '../../src/lock.js';
import { PROJECT_ROOT } from '../../src/modules.js';
import { linkPackages } from '../helpers/packages.js';

async function scratch(t: { teardown(fn: () => Promise<void>): void }, prefix: string): Promise<string> {
	const dir = await mkdtemp(path.join(tmpdir(), prefix));
	t.teardown(() => rm(dir, { recursive: true, force: true }));
	return dir;
}

/** Where the Lab puts its sockets (lab.ts: a short path under the temporary directory). */
const socketDir = (lab: Lab) => path.join(tmpdir(), `kudp-${createHash('sha256').update(lab.dir).digest('hex').slice(0, 12)}`);

test('two ./run forwarding UDP ports at once both keep their forward in the state file', async t => {
	const root = await scratch(t, 'kudp-races-');
	const lab = new Lab({ root, name: 'fwd' });
	await mkdir(lab.dir, { recursive: true });
	// A "QEMU" that is this lab's as far as the state file can tell.
	const qemu = spawn('sleep', ['600'], { stdio: 'ignore' }) as ChildProcess & { pid: number };
	t.teardown(() => {
		qemu.kill('SIGKILL');
	});
	await sleep(50);
	const state = {
		qemuPid: qemu.pid,
		virtiofsdPids: [],
		agentPort: 1,
		token: 'x',
		kernel: { release: 'fake' },
		bootedAt: '',
		bootSeconds: 0,
		udpForwards: {},
		boot: bootId(),
		processes: [processIdentity(qemu.pid)],
	};
	await writeFile(path.join(lab.dir, 'state.json'), JSON.stringify(state));
	// A fake HMP monitor that takes a while to answer, as QEMU under load does.
	await mkdir(socketDir(lab), { recursive: true });
	t.teardown(() => rm(socketDir(lab), { recursive: true, force: true }));
	const monitor = net.createServer(socket => {
		socket.write('(qemu) ');
		socket.on('data', chunk => {
			const line = chunk.toString().trim();
			setTimeout(() => socket.write(`${line}\r\n(qemu) `), 20 + Math.random() * 60);
		});
	});
	await new Promise<void>(resolve => monitor.listen(path.join(socketDir(lab), 'monitor.sock'), resolve));
	t.teardown(() => monitor.close());

	const ports = [4001, 4002, 4003, 4004, 4005, 4006];
	await Promise.all(ports.map(port => new Lab({ root, name: 'fwd' }).forwardUdp(port, port - 1000)));
	const saved = JSON.parse(await readFile(path.join(lab.dir, 'state.json'), 'utf8')) as { udpForwards: Record<string, number> };
	t.deepEqual(saved.udpForwards, Object.fromEntries(ports.map(port => [String(port), port - 1000])));
});

/** virtiofsd processes serving a socket in `dir`. */
async function virtiofsdsIn(dir: string): Promise<number[]> {
	const found: number[] = [];
	for (const entry of await readdir('/proc')) {
		if (!/^\d+$/.test(entry)) continue;
		const cmdline = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
		if (cmdline.includes('virtiofsd') && cmdline.includes(`--socket-path=${dir}/`)) found.push(Number(entry));
	}
	return found;
}

test('a boot that fails before QEMU starts leaves no virtiofsd behind', async t => {
	const labCache = path.join(PROJECT_ROOT, '.lab/cache');
	if (!existsSync('/usr/lib/qemu/virtiofsd') || !existsSync(labCache)) {
		t.log('no virtiofsd or no lab cache on this machine (a lab test builds it): nothing to leak');
		t.pass();
		return;
	}
	const root = await scratch(t, 'kudp-races-');
	await mkdir(path.join(root, '.lab'), { recursive: true });
	await symlink(labCache, path.join(root, '.lab/cache'));
	// The labs' network registry cannot be read: assignHost throws.
	await mkdir(path.join(root, '.lab/network.json'));
	const lab = new Lab({ root, name: 'leak' });
	await t.throwsAsync(lab.up());
	const left = await virtiofsdsIn(socketDir(lab));
	for (const pid of left) process.kill(pid, 'SIGKILL');
	t.deepEqual(left, [], 'virtiofsd processes left running');
});

test('two bootstraps at once on a checkout without node_modules run npm ci one at a time', async t => {
	const root = await scratch(t, 'kudp-races-npm-');
	for (const entry of [
		'bin',
		'src',
		'user-client',
		'daemon',
		'bench',
		'test/unit',
		'test/fixtures',
		'test/helpers',
		'tsconfig.json',
		'package.json',
	]) {
		await cp(path.join(PROJECT_ROOT, entry), path.join(root, entry), { recursive: true });
	}
	await linkPackages(root);
	// package-lock.json changed since the last install: npm ci is due.
	const later = new Date(Date.now() + 60_000);
	await utimes(path.join(root, 'package-lock.json'), later, later);
	// A fake npm: notes when two run at once, "installs" by updating npm's record.
	const bin = path.join(root, 'fake-bin');
	await mkdir(bin);
	await writeFile(
		path.join(bin, 'npm'),
		[
			'#!/bin/sh',
			'mkdir "$KUDP_ROOT/npm-running" 2>/dev/null || echo overlap >> "$KUDP_ROOT/npm.log"',
			'echo run >> "$KUDP_ROOT/npm.log"',
			'sleep 1',
			'touch -d "+2 minutes" "$KUDP_ROOT/node_modules/.package-lock.json"',
			'rmdir "$KUDP_ROOT/npm-running" 2>/dev/null',
			'exit 0',
			'',
		].join('\n'),
	);
	await chmod(path.join(bin, 'npm'), 0o755);
	const env = { PATH: `${bin}:${process.env['PATH'] ?? ''}`, KUDP_ROOT: root };
	const bootstrap = () =>
		execa('bash', ['-c', 'set -euo pipefail; source "$1/bin/bootstrap.sh"', 'bootstrap', root], { reject: false, env });
	const [first, second] = await Promise.all([bootstrap(), bootstrap()]);
	t.is(first.exitCode, 0, first.stderr);
	t.is(second.exitCode, 0, second.stderr);
	const npmLog = (await readFile(path.join(root, 'npm.log'), 'utf8')).trim().split('\n');
	t.false(npmLog.includes('overlap'), 'two npm ci ran at the same time');
	t.deepEqual(npmLog, ['run'], 'the second bootstrap found the packages installed');
});
