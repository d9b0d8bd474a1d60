/**
 * Errors that used to be swallowed, or thrown where nothing could catch them:
 * each case that is expected is handled, anything else is reported.
 */
import test from 'ava';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { cleanUp } from '../../src/commands/demo.js';
import { ifMissing, UserError } from '../../src/errors.js';
import { agentExec } from '../../src/lab/agent-client.js';
import { Lab } from '../../src/lab/lab.js';
import type { Target } from '../../src/targets.js';

async function scratch(t: { teardown(fn: () => Promise<void>): void }): Promise<string> {
	const dir = await mkdtemp(path.join(tmpdir(), 'kudp-swallowed-'));
	t.teardown(() => rm(dir, { recursive: true, force: true }));
	return dir;
}

test('ifMissing gives the fallback for a missing file only', async t => {
	const dir = await scratch(t);
	t.is(await readFile(path.join(dir, 'none'), 'utf8').catch(ifMissing('fallback')), 'fallback');
	await t.throwsAsync(readFile(dir, 'utf8').catch(ifMissing('fallback')), { code: 'EISDIR' });
});

test('an agent that sends garbage fails the command instead of throwing uncaught', async t => {
	const server = net.createServer(socket => socket.once('data', () => socket.write('this is not JSON\n')));
	await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve));
	t.teardown(() => server.close());
	const { port } = server.address() as net.AddressInfo;
	const error = await t.throwsAsync(agentExec({ port, token: 'x' }, ['true'], { timeoutMs: 5000 }), { instanceOf: UserError });
	t.regex(error?.message ?? '', /^the lab agent sent a bad frame: /);
});

test('a corrupt lab state file is a clear error, not "down" and not a crash', async t => {
	const root = await scratch(t);
	const lab = new Lab({ root, name: 'corrupt' });
	await mkdir(lab.dir, { recursive: true });
	const statePath = path.join(lab.dir, 'state.json');
	for (const text of ['{"qemuPid": 12', '"just a string"', '{}']) {
		await writeFile(statePath, text);
		const error = await t.throwsAsync(lab.state(), { instanceOf: UserError });
		t.true(error?.message.startsWith(`the lab "corrupt" cannot be used: its state file ${statePath} is corrupt (`), error?.message);
		t.regex((error as UserError).hint ?? '', /rm '.*state\.json'/);
	}
	await rm(statePath);
	t.is(await lab.state(), undefined, 'no state file: down');
	await mkdir(statePath);
	await t.throwsAsync(lab.state(), { code: 'EISDIR' }, 'an unreadable state file is not "down"');
});

test('the demo reports a stuck rmmod, and still cleans up the rest', async t => {
	const unloaded: string[] = [];
	const unexposed: number[] = [];
	const target = {
		kind: 'local',
		unexposeUdp: async (port: number) => {
			unexposed.push(port);
		},
	} as unknown as Target;
	const stuck = new UserError('rmmod udp_client did not finish within 10 s: the module is stuck');
	const error = await t.throwsAsync(
		cleanUp(target, true, async (_target, name) => {
			if (name === 'udp_client') {
				throw stuck;
			}
			unloaded.push(name);
			return 5;
		}),
	);
	t.is(error, stuck);
	t.deepEqual(unloaded, ['udp_server']);
	t.deepEqual(unexposed, [3000]);
});
