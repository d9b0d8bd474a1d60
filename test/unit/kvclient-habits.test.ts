/**
 * kvclient where netcat habits meet it (issue 18): `send` fails (exit 2) on
 * an ERR reply while still printing it; a delete whose first try got no
 * reply and whose retry got NOT FOUND succeeds with a note (the first try
 * may have deleted the key: it is gone either way); stdin mode reports a
 * line that got no reply and goes on; --version; -w SECONDS as nc has it.
 * Against fake UDP servers on 127.0.0.1.
 */
import test from 'ava';
import dgram from 'node:dgram';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { main } from '../../user-client/cli.js';
import { PROJECT_ROOT } from '../../src/modules.js';

/** A server that answers `answer(message, n)` (n: how many times it got this message), or stays silent. */
async function fakeServer(answer: (message: string, n: number) => string | undefined) {
	const socket = dgram.createSocket('udp4');
	const seen = new Map<string, number>();
	const received: Array<{ message: string; at: number }> = [];
	socket.on('message', (message, from) => {
		const text = message.toString();
		const n = (seen.get(text) ?? 0) + 1;
		seen.set(text, n);
		received.push({ message: text, at: Date.now() });
		const reply = answer(text, n);
		if (reply !== undefined) socket.send(reply, from.port, from.address);
	});
	await new Promise<void>(resolve => socket.bind(0, '127.0.0.1', resolve));
	return { port: socket.address().port, received, close: () => socket.close() };
}

async function kvclient(args: string[], input = '') {
	const out = { stdout: '', stderr: '' };
	const stdin = new PassThrough();
	stdin.end(input);
	const io = {
		stdout: (data: string | Uint8Array) => (out.stdout += typeof data === 'string' ? data : Buffer.from(data).toString('latin1')),
		stderr: (text: string) => (out.stderr += text),
		stdin,
	};
	const code = await main(args, io);
	return { code, ...out };
}

test('send exits 2 on an ERR reply, and still prints the reply as received', async t => {
	const server = await fakeServer(() => 'ERR unknown command\n');
	t.deepEqual(await kvclient(['--port', String(server.port), 'send', 'fetch', 'dog']), {
		code: 2,
		stdout: 'ERR unknown command\n',
		stderr: 'kvclient: server error: unknown command\n',
	});
	server.close();
});

test('a delete whose reply was lost, retried, then NOT FOUND: success with a note, not "not found"', async t => {
	// The first try deletes (its reply is lost); the retry finds nothing.
	const server = await fakeServer((message, n) => (message === 'delete dog' ? (n === 1 ? undefined : 'NOT FOUND\n') : 'ERR\n'));
	const result = await kvclient(['--port', String(server.port), '--timeout', '1000', 'delete', 'dog']);
	t.is(result.code, 0, result.stderr);
	t.is(result.stdout, 'OK\n');
	t.regex(result.stderr, /^kvclient: note: NOT FOUND came to a retry after a try that got no reply; that try may have deleted dog/);
	t.is(server.received.length, 2);
	// NOT FOUND to the first try is still exit 1.
	const never = await fakeServer(() => 'NOT FOUND\n');
	t.deepEqual(await kvclient(['--port', String(never.port), 'delete', 'cat']), { code: 1, stdout: '', stderr: 'kvclient: not found\n' });
	server.close();
	never.close();
});

test('stdin mode: a line that gets no reply is reported, and the next line is sent', async t => {
	const server = await fakeServer(message => (message === 'lookup lost' ? undefined : message === 'HELLO' ? 'GOT IT\n' : 'NOT FOUND\n'));
	const result = await kvclient(
		['--port', String(server.port), '--timeout', '1000', '--retries', '0', 'send'],
		'HELLO\nlookup lost\nlookup dog\n',
	);
	t.is(result.stdout, 'GOT IT\nNOT FOUND\n', 'the line after the timeout was sent and answered');
	t.regex(result.stderr, /kvclient: line 2: no reply from 127\.0\.0\.1:\d+/);
	t.is(result.code, 3, 'a line got no reply: exit 3 at the end');
	t.deepEqual(
		server.received.map(entry => entry.message),
		['HELLO', 'lookup lost', 'lookup dog'],
	);
	server.close();
});

test('--version prints the version', async t => {
	const { version } = JSON.parse(await readFile(path.join(PROJECT_ROOT, 'package.json'), 'utf8')) as { version: string };
	t.deepEqual(await kvclient(['--version']), { code: 0, stdout: `${version}\n`, stderr: '' });
});

test('-w SECONDS sets the reply timeout, as nc -w does', async t => {
	const server = await fakeServer(() => undefined);
	const started = Date.now();
	// -w 3 against --timeout 100 and the default of 1 s: only lower bounds on elapsed times,
	// which a busy machine cannot break (a gap measured at a lagging fake server shrank to 182 ms of 300).
	const result = await kvclient(['--port', String(server.port), '--timeout', '100', '-w', '3', '--retries', '1', 'send', 'HELLO']);
	const took = Date.now() - started;
	t.is(result.code, 3);
	t.is(server.received.length, 2);
	const gap = server.received[1]!.at - server.received[0]!.at;
	t.true(gap >= 2000, `the retry came ${gap} ms after the first try, not ~3000`);
	t.true(took >= 5900, `gave up after ${took} ms, not after two waits of 3 s`);
	t.is((await kvclient(['-w', 'soon', 'send', 'HELLO'])).code, 64, 'a bad -w is a usage error');
	server.close();
});
