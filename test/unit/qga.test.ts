/**
 * The host side of qemu-ga (src/lab/qga.ts) against a fake guest agent on a
 * Unix socket: what guest-exec is sent, how guest-exec-status is read back,
 * stale replies skipped at the sync, a missing program, and a timeout.
 */
import test from 'ava';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { qgaExec } from '../../src/lab/qga.js';
import { MissingProgramError } from '../../src/programs.js';

type Request = { execute: string; arguments?: Record<string, unknown> };
type Reply = { return: unknown } | { error: { class: string; desc: string } };

/** A fake qemu-ga: `answer` replies to every command but the sync; `greeting` is sent on connect (a stale reply). */
async function fakeAgent(answer: (request: Request) => Reply, greeting = '') {
	const dir = await mkdtemp(path.join(tmpdir(), 'kudp-qga-test-'));
	const socketPath = path.join(dir, 'qga.sock');
	const requests: Request[] = [];
	const server = net.createServer(socket => {
		socket.write(greeting);
		let pending = '';
		socket.on('data', chunk => {
			pending += chunk.toString('latin1').replaceAll('\xff', '');
			for (let newline = pending.indexOf('\n'); newline >= 0; newline = pending.indexOf('\n')) {
				const request = JSON.parse(pending.slice(0, newline)) as Request;
				pending = pending.slice(newline + 1);
				requests.push(request);
				if (request.execute === 'guest-sync-delimited') {
					socket.write(`\xff${JSON.stringify({ return: request.arguments?.['id'] })}\n`, 'latin1');
				} else {
					socket.write(`${JSON.stringify(answer(request))}\n`);
				}
			}
		});
	});
	await new Promise<void>(resolve => server.listen(socketPath, resolve));
	return {
		socketPath,
		requests,
		commands: () => requests.filter(request => request.execute !== 'guest-sync-delimited'),
		close: async () => {
			await new Promise(resolve => server.close(resolve));
			await rm(dir, { recursive: true, force: true });
		},
	};
}

const b64 = (text: string) => Buffer.from(text).toString('base64');

test('a command: argv, env, stdin and cwd go out; exit code and output come back', async t => {
	let polls = 0;
	const agent = await fakeAgent(request => {
		if (request.execute === 'guest-exec') {
			return { return: { pid: 42 } };
		}
		// Not finished on the first poll: the client must poll again.
		return polls++ === 0
			? { return: { exited: false } }
			: { return: { exited: true, exitcode: 3, 'out-data': b64('out\n'), 'err-data': b64('err\n') } };
	}, '{"return": {"stale": true}}\n');
	try {
		const seen: string[] = [];
		const result = await qgaExec(agent.socketPath, ['insmod', '/x.ko'], {
			input: 'hello',
			env: { A: 'b' },
			cwd: '/tmp/some dir',
			onStdout: chunk => seen.push(chunk.toString()),
		});
		t.deepEqual(result, { exitCode: 3, signal: null, timedOut: false, stdout: 'out\n', stderr: 'err\n' });
		t.deepEqual(seen, ['out\n']);
		const [exec, ...statuses] = agent.commands();
		t.is(exec?.execute, 'guest-exec');
		t.is(exec?.arguments?.['path'], '/bin/sh');
		t.deepEqual(exec?.arguments?.['arg'], ['-c', 'cd "$1" && shift && exec "$@"', 'sh', '/tmp/some dir', 'insmod', '/x.ko']);
		t.is(exec?.arguments?.['input-data'], b64('hello'));
		t.true(exec?.arguments?.['capture-output']);
		const env = (exec?.arguments?.['env'] ?? []) as string[];
		t.true(env.includes('A=b'));
		t.true(env.some(entry => entry.startsWith('PATH=')));
		t.is(statuses.length, 2);
		t.deepEqual(statuses[0]?.arguments, { pid: 42 });
	} finally {
		await agent.close();
	}
});

test('a program missing in the guest is a MissingProgramError', async t => {
	const agent = await fakeAgent(() => ({
		error: {
			class: 'GenericError',
			desc: 'Guest agent command failed, error was \'Failed to execute child process "nc" (No such file or directory)\'',
		},
	}));
	try {
		await t.throwsAsync(qgaExec(agent.socketPath, ['nc', '-u']), {
			instanceOf: MissingProgramError,
			message: /nc is not installed in the lab guest/,
		});
	} finally {
		await agent.close();
	}
});

test('a command over its time is killed and reported as timed out', async t => {
	let killed = false;
	const agent = await fakeAgent(request => {
		if (request.execute === 'guest-exec') {
			const argv = request.arguments?.['arg'] as string[];
			if (argv.includes('kill')) {
				killed = true;
				return { return: { pid: 8 } };
			}
			return { return: { pid: 7 } };
		}
		return killed ? { return: { exited: true, signal: 9 } } : { return: { exited: false } };
	});
	try {
		const result = await qgaExec(agent.socketPath, ['sleep', '100'], { timeoutMs: 100 });
		t.true(result.timedOut);
		t.is(result.signal, 'SIGKILL');
		t.is(result.exitCode, null);
		const kill = agent.commands().find(request => (request.arguments?.['arg'] as string[] | undefined)?.includes('kill'));
		t.is(((kill?.arguments?.['arg'] ?? []) as string[]).at(-1), '7', 'the kill names the command');
	} finally {
		await agent.close();
	}
});
