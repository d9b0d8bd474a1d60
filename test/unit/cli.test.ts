/**
 * The `run` command line as a user meets it: help, usage errors, and clear
 * messages (no stack traces) when a tool fails. Fake tools come first on
 * PATH (test/fixtures/bin), as in execa's own tests.
 */
import test from 'ava';
import { execa } from 'execa';
import path from 'node:path';
import { PROJECT_ROOT } from '../../src/modules.js';

const RUN = path.join(PROJECT_ROOT, 'dist/src/bin/run.js');
const FIXTURES = path.join(PROJECT_ROOT, 'test/fixtures/bin');

function run(args: string[], env: Record<string, string> = {}) {
	return execa(process.execPath, [RUN, ...args], { reject: false, env: { KUDP_LAB: `unit-${process.pid}`, ...env } });
}

test('--help lists the commands and shows how to load a module', async t => {
	const { stdout, exitCode } = await run(['--help']);
	t.is(exitCode, 0);
	for (const text of [
		'Usage: run [options] MODULE [name=value ...] | COMMAND',
		'unload',
		'logs',
		'status',
		'shell',
		'down',
		'setup',
		'demo',
		'udp_server',
		'udp_client',
	]) {
		t.true(stdout.includes(text), text);
	}
});

test('an unknown module is refused with the list of modules', async t => {
	const { stderr, exitCode } = await run(['udp_sever', 'port=3000']);
	t.is(exitCode, 64);
	t.regex(stderr, /run: unknown module "udp_sever"\nthe modules are: udp_server, udp_client/);
});

test('an unknown target is a usage error', async t => {
	const { stderr, exitCode } = await run(['udp_server', '--target', 'moon']);
	t.not(exitCode, 0);
	t.regex(stderr, /--target <target>' argument 'moon' is invalid/);
});

test('a module that does not compile shows the compiler error and exits non-zero', async t => {
	const { stderr, exitCode } = await run(['udp_server', '--target', 'lab'], {
		PATH: `${FIXTURES}:${process.env['PATH']}`,
	});
	t.is(exitCode, 1);
	t.regex(stderr, /error: 'sock' undeclared/);
	t.regex(stderr, /run: udp_server did not build \(make exited with 2\)/);
	t.notRegex(stderr, /\n\s+at /, 'no stack trace');
});

test('a lab that cannot boot because QEMU fails says so', async t => {
	const { stderr, exitCode } = await run(['shell', '--', 'true'], { PATH: `${FIXTURES}:${process.env['PATH']}` });
	t.is(exitCode, 1);
	t.regex(stderr, /run: QEMU did not start: qemu-system-x86_64: -accel tcg: failed to initialize tcg/);
});

test('a machine without QEMU is told how to install it', async t => {
	const { stderr, exitCode } = await run(['shell', '--', 'true'], { PATH: '/nonexistent' });
	t.is(exitCode, 1);
	t.regex(
		stderr,
		/run: qemu-system-x86_64 is not installed \(Debian package: qemu-system-x86\)\ninstall it: apt-get install qemu-system-x86/,
	);
});

test('./run down on a lab that is not running is harmless', async t => {
	const { stdout, exitCode } = await run(['down']);
	t.is(exitCode, 0);
	t.regex(stdout, /was not running/);
});

test('./run pool: a bad count or prefix is a usage error (64), before any lab boots; status and down of no pool are harmless', async t => {
	for (const count of ['0', '33', 'three', '-1']) {
		const { stderr, exitCode } = await run(['pool', 'up', count]);
		t.is(exitCode, 64, count);
		t.regex(stderr, /invalid for argument 'count'. must be a whole number from 1 to 32|unknown option '-1'/, count);
	}
	const prefix = await run(['pool', 'up', '2', '--prefix', 'pool7']);
	t.is(prefix.exitCode, 64);
	t.regex(prefix.stderr, /bad pool prefix "pool7": .*not ending in a digit/);
	const nobody = `unit-pool-${process.pid}-`;
	const status = await run(['pool', 'status', '--prefix', nobody]);
	t.is(status.exitCode, 0);
	t.is(status.stdout, `no lab of the pool "${nobody}" is running (./run pool up N starts one)`);
	const json = await run(['pool', 'status', '--json', '--prefix', nobody]);
	t.deepEqual(JSON.parse(json.stdout), { members: [], servers: '' });
	const down = await run(['pool', 'down', '--prefix', nobody]);
	t.is(down.stdout, `no lab of the pool "${nobody}" was running`);
	t.true((await run(['pool', '--help'])).stdout.includes('./run pool up 3'));
});
