/**
 * A project under a folder whose name has a space: a clone there, driven by
 * its own ./run, builds both modules (Kbuild takes no spaces in M=), boots
 * its lab (the agent's path crosses the kernel command line) and loads them;
 * the kernel client's GOT IT proves both run.
 */
import test from 'ava';
import { execa } from 'execa';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort } from '../../src/lab/free-port.js';
import { kbuildPath, PROJECT_ROOT } from '../../src/modules.js';
import { linkPackages } from '../helpers/packages.js';

const LAB = `test-paths-${process.pid}`;
let scratch = '';
let clone = '';

/** ./run of the clone, in the clone's lab. */
function run(args: string[]) {
	return execa(path.join(clone, 'run'), [...args, '--lab', LAB], {
		cwd: clone,
		reject: false,
		all: true,
		env: { KUDP_TARGET: 'lab', KUDP_LAB: LAB },
	});
}

test.before(async () => {
	scratch = await mkdtemp(path.join(tmpdir(), 'kudp-paths-'));
	clone = path.join(scratch, 'a folder with space', 'kernel-udp');
	await mkdir(path.dirname(clone), { recursive: true });
	await execa('git', ['clone', '-q', PROJECT_ROOT, clone]);
	await linkPackages(clone);
});

test.after.always(async () => {
	if (clone) {
		await run(['down']);
		// The space-free symlinks the clone's builds went through.
		for (const dir of ['server-module', 'client-module']) {
			await rm(path.dirname(await kbuildPath(path.join(clone, dir))), { recursive: true, force: true });
		}
	}
	if (scratch) {
		await rm(scratch, { recursive: true, force: true });
	}
});

test('a clone under "a folder with space" builds and loads both modules', async t => {
	t.timeout(170_000);
	const hostPort = await freePort('udp');
	const server = await run(['udp_server', 'port=3000', `--host-port=${hostPort}`, '--no-daemon', '--detach']);
	t.is(server.exitCode, 0, server.all);
	const client = await run(['udp_client', 'destip=127.0.0.1', 'port=3000', '--detach']);
	t.is(client.exitCode, 0, client.all);
	let logs = '';
	for (let i = 0; i < 40 && !/got GOT IT/.test(logs); i++) {
		logs = (await run(['logs', '-m', 'udp_client'])).all ?? '';
		if (!/got GOT IT/.test(logs)) {
			await sleep(500);
		}
	}
	t.regex(logs, /got GOT IT/);
});
