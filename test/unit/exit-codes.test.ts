/**
 * One exit code scheme for ./run and kvclient: 0 ok, 1 failed, 64 usage
 * (commander's own errors included), 70 a bug; kvclient adds 2 and 3.
 */
import test from 'ava';
import { execa } from 'execa';
import path from 'node:path';
import { EXIT_FAILURE, EXIT_INTERNAL, EXIT_OK, EXIT_USAGE } from '../../src/errors.js';
import { PROJECT_ROOT } from '../../src/modules.js';
import { EXIT } from '../../user-client/cli.js';

const RUN = path.join(PROJECT_ROOT, 'dist/src/bin/run.js');
const KVCLIENT = path.join(PROJECT_ROOT, 'dist/user-client/kvclient.js');
const FIXTURES = path.join(PROJECT_ROOT, 'test/fixtures/bin');

function run(args: string[], env: Record<string, string> = {}) {
	return execa(process.execPath, [RUN, ...args], { reject: false, env: { KUDP_LAB: `unit-${process.pid}`, ...env } });
}

test('the constants', t => {
	t.deepEqual([EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERNAL], [0, 1, 64, 70]);
	t.like(EXIT, { ok: 0, notFound: 1, serverError: 2, network: 3, usage: 64, internal: 70 });
});

for (const [args, code] of [
	[['--help'], 0],
	[['help', 'logs'], 0],
	[['--no-such-option'], 64],
	[[], 64],
	[['unload'], 64],
	[['udp_server', '--target', 'moon'], 64],
	[['udp_server', '--host-port', '70000'], 64],
	[['udp_sever', 'port=3000'], 64],
	[['logs', '--bogus'], 64],
] as const) {
	test(`./run ${args.join(' ') || '(nothing)'} exits ${code}`, async t => {
		const result = await run([...args]);
		t.is(result.exitCode, code, result.stderr);
		t.notRegex(result.stderr, /\n\s+at /, 'no stack trace');
	});
}

test('./run: a failed operation exits 1', async t => {
	const result = await run(['udp_server', '--target', 'lab'], { PATH: `${FIXTURES}:${process.env['PATH']}` });
	t.is(result.exitCode, 1);
});

test('both --help texts list the exit codes', async t => {
	const runHelp = (await run(['--help'])).stdout;
	t.regex(
		runHelp,
		/Exit codes:\n {2}0 {3}success\n {2}1 {3}the operation failed.*\n {2}64 {2}a usage error.*\n {2}70 {2}an internal error/,
	);
	const kvHelp = (await execa(process.execPath, [KVCLIENT, '--help'])).stdout;
	const kvCodes = /Exit codes:\n((?: {2}.*\n)+)/.exec(kvHelp)?.[1] ?? '';
	for (const code of ['0 ', '1 ', '2 ', '3 ', '64', '70']) {
		t.regex(kvCodes, new RegExp(`^ {2}${code} \\S`, 'm'), `exit code ${code} is listed`);
	}
});

for (const [args, code] of [
	[['--help'], 0],
	[['--no-such-option'], 64],
	[['lookup'], 64],
	[['--port', '0', 'stats'], 64],
	[['frobnicate'], 64],
] as const) {
	test(`kvclient ${args.join(' ')} exits ${code}`, async t => {
		const result = await execa(process.execPath, [KVCLIENT, ...args], { reject: false });
		t.is(result.exitCode, code, result.stderr);
	});
}
