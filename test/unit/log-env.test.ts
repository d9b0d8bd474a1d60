/**
 * KUDP_LOG_LEVEL and KUDP_LOG_JSON set the orchestrator's log unless a flag
 * (-v, --log-json) says otherwise. The command: a build that fails at once
 * (the fake make of test/fixtures/bin) after one info line, "building ...".
 */
import test from 'ava';
import { execa } from 'execa';
import path from 'node:path';
import { PROJECT_ROOT } from '../../src/modules.js';

const RUN = path.join(PROJECT_ROOT, 'dist/src/bin/run.js');
const FIXTURES = path.join(PROJECT_ROOT, 'test/fixtures/bin');

async function stderrOf(args: string[], env: Record<string, string>): Promise<string> {
	const { stderr } = await execa(process.execPath, [RUN, 'udp_server', '--target', 'lab', ...args], {
		reject: false,
		env: { PATH: `${FIXTURES}:${process.env['PATH']}`, KUDP_LAB: `unit-${process.pid}`, KUDP_LOG_LEVEL: '', KUDP_LOG_JSON: '', ...env },
	});
	return stderr;
}

const jsonBuilding = (stderr: string) =>
	stderr.split('\n').some(line => line.startsWith('{') && /^building udp_server/.test((JSON.parse(line) as { msg: string }).msg));

test('by default the log is human-readable, at level info', async t => {
	const stderr = await stderrOf([], {});
	t.regex(stderr, /building udp_server/);
	t.false(jsonBuilding(stderr));
});

test('KUDP_LOG_JSON=1 gives JSON lines', async t => {
	t.true(jsonBuilding(await stderrOf([], { KUDP_LOG_JSON: '1' })));
});

test('KUDP_LOG_LEVEL=warn hides info lines', async t => {
	const stderr = await stderrOf([], { KUDP_LOG_LEVEL: 'warn' });
	t.notRegex(stderr, /building udp_server/);
	t.regex(stderr, /run: udp_server did not build/, 'errors are not log lines: they still show');
});

test('flags win over the environment', async t => {
	t.regex(await stderrOf(['-v'], { KUDP_LOG_LEVEL: 'warn' }), /building udp_server/);
	t.true(jsonBuilding(await stderrOf(['--log-json'], { KUDP_LOG_JSON: '0' })));
});
