/**
 * ./run shell's output whole however long (issue 18): qemu-ga caps what it
 * captures (64 KiB here) and says so only in out-truncated. A command with a
 * spool writes its output to files on the directory shared with the guest,
 * read here as they grow; without one, a cut capture is an error, never a
 * silent part. Against a fake qemu-ga that "runs" the command by writing
 * the spool files itself.
 */
import test from 'ava';
import { appendFileSync } from 'node:fs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { QgaTruncatedError, qgaExec } from '../../src/lab/qga.js';
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

test('without a spool, output qemu-ga cut is an error, not part of the output', async t => {
	const agent = await fakeAgent(request =>
		request.execute === 'guest-exec'
			? { return: { pid: 5 } }
			: { return: { exited: true, exitcode: 0, 'out-data': b64('x'.repeat(100)), 'out-truncated': true } },
	);
	try {
		const error = await t.throwsAsync(qgaExec(agent.socketPath, ['cat', '/proc/hashtable']), { instanceOf: QgaTruncatedError });
		t.regex(error?.message ?? '', /cut the stdout of cat/);
	} finally {
		await agent.close();
	}
});

test("with a spool, output far past qemu-ga's cap streams whole, in order, as it is written", async t => {
	const hostDir = await mkdtemp(path.join(tmpdir(), 'kudp-spool-'));
	t.teardown(() => rm(hostDir, { recursive: true, force: true }));
	const spool = { hostDir: path.join(hostDir, 'spool'), guestDir: '/var/tmp/.kudp-exec' };
	const piece = Buffer.alloc(256 * 1024, 0x61);
	const pieces = 12; // 3 MiB
	let argv: string[] = [];
	let written = 0;
	const hostPath = (guest: string) => path.join(spool.hostDir, path.posix.basename(guest));
	const agent = await fakeAgent(request => {
		if (request.execute === 'guest-exec') {
			argv = request.arguments?.['arg'] as string[];
			return { return: { pid: 9 } };
		}
		return { return: written < pieces ? { exited: false } : { exited: true, exitcode: 0 } };
	});
	// The "command": a piece per poll, into the file the wrapper redirects stdout to.
	const writer = setInterval(() => {
		if (argv.length > 0 && written < pieces) {
			written++;
			appendFileSync(hostPath(argv[3]!), piece);
		}
	}, 5);
	t.teardown(() => clearInterval(writer));
	try {
		let streamed = 0;
		const chunks: number[] = [];
		const result = await qgaExec(
			agent.socketPath,
			['head', '-c', '3145728', '/dev/zero'],
			{
				onStdout: chunk => {
					streamed += chunk.length;
					chunks.push(chunk.length);
				},
			},
			spool,
		);
		t.is(result.exitCode, 0);
		t.is(result.stdout.length, pieces * piece.length);
		t.is(streamed, pieces * piece.length);
		t.true(chunks.length > 1, 'streamed in several chunks, not at the end');
		t.is(argv[0], '-c');
		t.regex(argv[1]!, /^exec >"\$1" 2>"\$2"/);
		t.deepEqual(argv.slice(5), ['head', '-c', '3145728', '/dev/zero']);
		t.deepEqual(await readdir(spool.hostDir), [], 'the spool files are removed');
	} finally {
		await agent.close();
	}
});

test('with a spool, a missing program is still a MissingProgramError', async t => {
	const hostDir = await mkdtemp(path.join(tmpdir(), 'kudp-spool-'));
	t.teardown(() => rm(hostDir, { recursive: true, force: true }));
	const spool = { hostDir, guestDir: '/var/tmp/.kudp-exec' };
	const agent = await fakeAgent(request => {
		if (request.execute === 'guest-exec') {
			const argv = request.arguments?.['arg'] as string[];
			appendFileSync(path.join(hostDir, path.posix.basename(argv[4]!)), 'kudp-exec: nc: not found\n');
			return { return: { pid: 9 } };
		}
		return { return: { exited: true, exitcode: 127 } };
	});
	try {
		await t.throwsAsync(qgaExec(agent.socketPath, ['nc', '-u'], {}, spool), { instanceOf: MissingProgramError });
	} finally {
		await agent.close();
	}
});
