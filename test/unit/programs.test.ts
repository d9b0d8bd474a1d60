/**
 * A missing program reads as "X is not installed (Debian package: P)", never
 * "make exited with undefined" or a stack trace. PATH points to an empty
 * directory, so every program is missing.
 */
import test from 'ava';
import { execa } from 'execa';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { agentExec } from '../../src/lab/agent-client.js';
import { encodeFrame } from '../../src/lab/agent-protocol.js';
import { PROJECT_ROOT } from '../../src/modules.js';
import { MissingProgramError, PROGRAM_PACKAGES, requireProgram, runProgram } from '../../src/programs.js';

const RUN = path.join(PROJECT_ROOT, 'dist/src/bin/run.js');
let emptyPath = '';

test.before(async () => {
	emptyPath = await mkdtemp(path.join(tmpdir(), 'kudp-empty-path-'));
});
test.after.always(async () => {
	await rm(emptyPath, { recursive: true, force: true });
});

const EXPECTED: Record<string, string> = {
	make: 'make',
	modinfo: 'kmod',
	insmod: 'kmod',
	rmmod: 'kmod',
	cpio: 'cpio',
	'qemu-system-x86_64': 'qemu-system-x86',
	'dpkg-query': 'dpkg',
	'apt-get': 'apt',
};

for (const [program, debianPackage] of Object.entries(EXPECTED)) {
	test(`a missing ${program} is named with its package ${debianPackage}`, async t => {
		t.is(PROGRAM_PACKAGES[program], debianPackage);
		for (const reject of [true, false]) {
			const error = await t.throwsAsync(runProgram(program, ['--version'], { reject, env: { PATH: emptyPath } }), {
				instanceOf: MissingProgramError,
			});
			t.is(error?.message, `${program} is not installed (Debian package: ${debianPackage})`);
			t.regex((error as MissingProgramError).hint ?? '', new RegExp(`apt-get install ${debianPackage}\\b`));
		}
		t.throws(() => requireProgram(program, emptyPath), { instanceOf: MissingProgramError });
	});
}

test('virtiofsd, which is not on PATH, is named by its path and package', t => {
	t.is(
		new MissingProgramError('/usr/lib/qemu/virtiofsd').message,
		'/usr/lib/qemu/virtiofsd is not installed (Debian package: qemu-system-common)',
	);
	t.throws(() => requireProgram('/nonexistent/virtiofsd'), { message: '/nonexistent/virtiofsd is not installed' });
});

test('a program that runs and fails is not called missing', async t => {
	const result = await runProgram('sh', ['-c', 'exit 3'], { reject: false });
	t.is(result.exitCode, 3);
});

test('./run without make says so, with no stack and no "compiler output above"', async t => {
	const { stderr, exitCode } = await execa(process.execPath, [RUN, 'udp_server', '--target', 'lab'], {
		reject: false,
		env: { PATH: emptyPath, KUDP_LAB: `unit-${process.pid}` },
	});
	t.is(exitCode, 1);
	t.regex(stderr, /run: make is not installed \(Debian package: make\)\ninstall it: apt-get install make/);
	t.notRegex(stderr, /undefined|compiler output|unexpected error|\n\s+at /);
});

test('a program missing in the lab guest is named too (the agent reports ENOENT)', async t => {
	const server = net.createServer(socket => {
		socket.once('data', () =>
			socket.end(encodeFrame({ error: 'cannot run insmod: spawn insmod ENOENT', code: 'ENOENT', program: 'insmod' })),
		);
	});
	await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve));
	t.teardown(() => server.close());
	const { port } = server.address() as net.AddressInfo;
	const error = await t.throwsAsync(agentExec({ port, token: 'x' }, ['insmod', '/run/kudp/udp_server.ko']), {
		instanceOf: MissingProgramError,
	});
	t.is(error?.message, 'insmod is not installed in the lab guest (Debian package: kmod)');
});
