/**
 * kvclient against a fake UDP server on 127.0.0.1 (a unit test of the client
 * alone; the real module is tested in test/integration). The command line runs
 * in-process through main() with captured output, plus one subprocess run of
 * the real entry point. All traffic stays on 127.0.0.1.
 */
import test from 'ava';
import { execa } from 'execa';
import dgram from 'node:dgram';
import { isIP } from 'node:net';
import { PassThrough } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { buildProgram, main } from '../../user-client/cli.js';
import { KvClient, KvNetworkError, KvProtocolError, KvServerError, KvTimeoutError, request } from '../../user-client/client.js';
import { InvalidRequestError } from '../../user-client/protocol.js';

const ENTRY = fileURLToPath(new URL('../../user-client/kvclient.js', import.meta.url));

type Answer = (message: string) => string | Buffer | undefined;

/** A UDP server on 127.0.0.1 that answers with `answer` (or stays silent) and keeps what it received. */
async function fakeServer(answer: Answer) {
	const socket = dgram.createSocket('udp4');
	const received: string[] = [];
	socket.on('message', (message, from) => {
		received.push(message.toString());
		const reply = answer(message.toString());
		if (reply !== undefined) socket.send(reply, from.port, from.address);
	});
	await new Promise<void>(resolve => socket.bind(0, '127.0.0.1', resolve));
	return { port: socket.address().port, received, close: () => socket.close() };
}

/** Waits (up to 2 s) until `ready()`: a datagram sent by the client may still be queued for the server. */
async function until(ready: () => boolean): Promise<void> {
	for (let waited = 0; !ready() && waited < 2000; waited += 10) await new Promise(resolve => setTimeout(resolve, 10));
}

/** A port that was just free: nothing listens there, so the kernel answers ICMP port unreachable. */
async function closedPort(): Promise<number> {
	const server = await fakeServer(() => undefined);
	server.close();
	return server.port;
}

function capture(input = '') {
	const out = { stdout: '', stderr: '' };
	const stdin = new PassThrough();
	stdin.end(input);
	return {
		out,
		io: {
			stdout: (data: string | Uint8Array) => (out.stdout += typeof data === 'string' ? data : Buffer.from(data).toString('latin1')),
			stderr: (text: string) => (out.stderr += text),
			stdin,
		},
	};
}

/**
 * kvclient's main() against `port`. The timeout is long where a reply comes (a reply slower
 * than 200 ms on a loaded machine was sent again, and the server saw it twice), short only
 * where the test waits for none.
 */
async function kvclient(port: number, args: string[], input = '', timeoutMs = 10_000) {
	const { out, io } = capture(input);
	const code = await main(['--port', String(port), '--timeout', String(timeoutMs), ...args], io);
	return { code, ...out };
}

const table: Answer = message => {
	if (message === 'HELLO') return 'GOT IT\n';
	if (message === 'lookup dog') return 'OK baileys the dog\n';
	if (message === 'lookup cat' || message === 'delete cat') return 'NOT FOUND\n';
	if (message === 'lookup bytes') return Buffer.from('OK caf\xe9\n', 'latin1');
	if (message === 'lookup weird') return 'GOT IT\n';
	if (message.startsWith('insert ') || message === 'delete dog') return 'OK\n';
	if (message === 'stats') return 'OK entries=1 bytes=10 requests=3\n';
	if (message === 'no newline') return 'OK';
	if (message === '') return 'ERR empty\n';
	return 'ERR unknown command\n';
};

test('send prints the raw reply, adding a newline only when there is none', async t => {
	const server = await fakeServer(table);
	t.deepEqual(await kvclient(server.port, ['send', 'HELLO']), { code: 0, stdout: 'GOT IT\n', stderr: '' });
	t.deepEqual(await kvclient(server.port, ['send', 'fetch', 'dog']), {
		code: 2,
		stdout: 'ERR unknown command\n',
		stderr: 'kvclient: server error: unknown command\n',
	});
	t.is((await kvclient(server.port, ['send', 'no', 'newline'])).stdout, 'OK\n');
	t.is((await kvclient(server.port, ['send', 'lookup', 'bytes'])).stdout, 'OK caf\xe9\n', 'bytes pass through undecoded');
	t.deepEqual(server.received, ['HELLO', 'fetch dog', 'no newline', 'lookup bytes']);
	server.close();
});

test('send without words sends one datagram per stdin line', async t => {
	const server = await fakeServer(table);
	const result = await kvclient(server.port, ['send'], 'HELLO\nlookup dog\r\n\nlookup cat');
	t.is(result.code, 2, 'line 3 got ERR');
	t.is(result.stdout, 'GOT IT\nOK baileys the dog\nERR empty\nNOT FOUND\n');
	t.deepEqual(server.received, ['HELLO', 'lookup dog', '', 'lookup cat']);
	server.close();
});

test('insert joins the value words; lookup prints the bare value; delete prints OK', async t => {
	const server = await fakeServer(table);
	t.deepEqual(await kvclient(server.port, ['insert', 'cat', 'tom', 'the', 'cat']), { code: 0, stdout: 'OK\n', stderr: '' });
	t.is(server.received[0], 'insert cat tom the cat');
	t.deepEqual(await kvclient(server.port, ['lookup', 'dog']), { code: 0, stdout: 'baileys the dog\n', stderr: '' });
	t.deepEqual(await kvclient(server.port, ['delete', 'dog']), { code: 0, stdout: 'OK\n', stderr: '' });
	server.close();
});

test('a miss exits 1 with "not found"; ERR exits 2 with the reason; a nonsense reply exits 2', async t => {
	const server = await fakeServer(table);
	t.deepEqual(await kvclient(server.port, ['lookup', 'cat']), { code: 1, stdout: '', stderr: 'kvclient: not found\n' });
	t.deepEqual(await kvclient(server.port, ['delete', 'cat']), { code: 1, stdout: '', stderr: 'kvclient: not found\n' });
	t.deepEqual(await kvclient(server.port, ['delete', 'x']), { code: 2, stdout: '', stderr: 'kvclient: server error: unknown command\n' });
	t.deepEqual(await kvclient(server.port, ['lookup', 'weird']), {
		code: 2,
		stdout: '',
		stderr: 'kvclient: unexpected reply to lookup: "GOT IT"\n',
	});
	server.close();
});

test('stats prints one counter per line, or JSON', async t => {
	const server = await fakeServer(table);
	t.is((await kvclient(server.port, ['stats'])).stdout, 'entries: 1\nbytes: 10\nrequests: 3\n');
	t.is((await kvclient(server.port, ['stats', '--json'])).stdout, '{"entries":1,"bytes":10,"requests":3}\n');
	server.close();
});

test('a silent server: every retry is sent, then a clear timeout, exit 3', async t => {
	const server = await fakeServer(() => undefined);
	const result = await kvclient(server.port, ['--retries', '3', 'send', 'HELLO'], '', 200);
	t.is(result.code, 3);
	t.is(result.stdout, '');
	t.is(result.stderr, `kvclient: no reply from 127.0.0.1:${server.port} after 4 tries (timeout 200 ms each)\n`);
	t.deepEqual(server.received, ['HELLO', 'HELLO', 'HELLO', 'HELLO']);
	server.close();
});

test('the timeout error is typed and --retries 0 sends once', async t => {
	const server = await fakeServer(() => undefined);
	const error = await t.throwsAsync(request('x', { host: '127.0.0.1', port: server.port, timeoutMs: 30, retries: 0 }), {
		instanceOf: KvTimeoutError,
		message: `no reply from 127.0.0.1:${server.port} after 1 try (timeout 30 ms each)`,
	});
	t.is(error?.tries, 1);
	await until(() => server.received.length > 0);
	await new Promise(resolve => setTimeout(resolve, 50));
	t.is(server.received.length, 1);
	server.close();
});

test('a closed port is reported as refused, exit 3', async t => {
	const port = await closedPort();
	const result = await kvclient(port, ['send', 'HELLO']);
	t.is(result.code, 3);
	t.is(result.stderr, `kvclient: 127.0.0.1:${port} refused the datagram (nothing listening?)\n`);
	const error = await t.throwsAsync(request('HELLO', { host: '127.0.0.1', port, timeoutMs: 500 }), { instanceOf: KvNetworkError });
	t.is(error?.code, 'ECONNREFUSED');
	t.is((error?.cause as NodeJS.ErrnoException | undefined)?.code, 'ECONNREFUSED');
});

test('a host that does not resolve is a clear network error (resolver faked: no DNS traffic)', async t => {
	// dgram also looks up the address it binds to (0.0.0.0): only the server's name fails.
	const lookup = ((
		hostname: string,
		_options: unknown,
		callback: (error: NodeJS.ErrnoException | null, address?: string, family?: number) => void,
	) => {
		if (isIP(hostname)) return callback(null, hostname, isIP(hostname));
		const error: NodeJS.ErrnoException = new Error(`getaddrinfo ENOTFOUND ${hostname}`);
		error.code = 'ENOTFOUND';
		callback(error);
	}) as never;
	const error = await t.throwsAsync(request('HELLO', { host: 'no-such-host.invalid', port: 3000, lookup }), { instanceOf: KvNetworkError });
	t.is(error?.message, 'cannot reach no-such-host.invalid:3000: unknown host (ENOTFOUND)');
});

test('an aborted request rejects at once and sends nothing more', async t => {
	const server = await fakeServer(() => undefined);
	const controller = new AbortController();
	// A timeout far beyond the bound below: "at once" means at the abort, not at the timeout,
	// whatever else this machine runs meanwhile (a bound of 1 s failed beside the lab tests).
	const pending = request('HELLO', { host: '127.0.0.1', port: server.port, timeoutMs: 60_000, signal: controller.signal });
	let abortedAt = 0;
	setTimeout(() => {
		abortedAt = Date.now();
		controller.abort();
	}, 50);
	// The rejection is the signal's reason, a DOMException (which AVA's throwsAsync does not accept).
	const reason = (promise: Promise<unknown>) =>
		promise.then(
			() => undefined,
			(error: unknown) => (error as { name?: string }).name,
		);
	t.is(await reason(pending), 'AbortError');
	const ms = Date.now() - abortedAt;
	t.true(ms < 10_000, `rejected ${ms} ms after the abort`);
	t.is(await reason(request('HELLO', { host: '127.0.0.1', port: server.port, signal: controller.signal })), 'AbortError');
	await until(() => server.received.length > 0);
	await new Promise(resolve => setTimeout(resolve, 50));
	t.is(server.received.length, 1);
	server.close();
});

test('KvClient returns typed results', async t => {
	const server = await fakeServer(table);
	const client = new KvClient({ host: '127.0.0.1', port: server.port, timeoutMs: 200 });
	await client.hello();
	await client.insert('cat', 'tom the cat');
	t.is(await client.lookup('dog'), 'baileys the dog');
	t.is(await client.lookup('cat'), undefined);
	t.true(await client.delete('dog'));
	t.false(await client.delete('cat'));
	t.deepEqual(await client.stats(), { entries: 1, bytes: 10, requests: 3 });
	await t.throwsAsync(client.delete('x'), { instanceOf: KvServerError, message: 'server error: unknown command' });
	await t.throwsAsync(client.lookup('weird'), { instanceOf: KvProtocolError });
	t.deepEqual(await client.send('lookup cat'), { kind: 'notFound' });
	const sent = server.received.length;
	await t.throwsAsync(client.lookup('two words'), { instanceOf: InvalidRequestError });
	await t.throwsAsync(client.insert('k', ''), { instanceOf: InvalidRequestError });
	t.is(server.received.length, sent, 'invalid requests are not sent');
	server.close();
});

test('bad options and keys are usage errors, and nothing is sent', async t => {
	const server = await fakeServer(table);
	const cases: Array<[string[], RegExp]> = [
		[['--port', '70000', 'send', 'x'], /option '--port <port>' argument '70000' is invalid\. port must be a whole number from 1 to 65535/],
		[['--port', 'abc', 'send', 'x'], /argument 'abc' is invalid/],
		[['--port', '0', 'send', 'x'], /argument '0' is invalid/],
		[['--timeout', '-5', 'send', 'x'], /timeout/],
		[['lookup', 'two words'], /a key must not contain spaces/],
		[['lookup', ''], /a key must not be empty/],
		[['delete', 'tab\there'], /control characters/],
		[['insert', 'k'.repeat(251), 'v'], /a key is at most 250 bytes, this one is 251/],
		[['insert', 'k', 'line\nbreak'], /a value must not contain control characters/],
		[['insert', 'k'], /missing required argument 'value'/],
		[['fetch', 'dog'], /unknown command 'fetch'/],
	];
	for (const [args, message] of cases) {
		const { out, io } = capture();
		const code = await main(['--port', String(server.port), ...args], io);
		t.is(code, 64, args.join(' '));
		t.regex(out.stderr, message, args.join(' '));
		t.regex(out.stderr, /kvclient --help for usage/, args.join(' '));
		t.is(out.stdout, '');
	}
	t.deepEqual(server.received, []);
	server.close();
});

test('--help goes to stdout with the commands and examples, exit 0', async t => {
	const { out, io } = capture();
	t.is(await main(['--help'], io), 0);
	for (const text of [
		'Usage: kvclient [options] [command]',
		'--host <host>',
		'KVCLIENT_PORT',
		'send [message...]',
		'insert <key> <value...>',
		'Examples:',
		'Exit codes:',
	]) {
		t.true(out.stdout.includes(text), text);
	}
	t.is(out.stderr, '');
	t.is(buildProgram(io).name(), 'kvclient');
});

test('--verbose logs to stderr and leaves stdout to the reply', async t => {
	const server = await fakeServer(table);
	const result = await kvclient(server.port, ['--verbose', 'lookup', 'dog']);
	t.is(result.code, 0);
	t.is(result.stdout, 'baileys the dog\n');
	t.regex(result.stderr, /DEBUG.*send.*attempt.*1/);
	server.close();
});

test('the real entry point: exit codes, KVCLIENT_PORT, and no stack traces', async t => {
	const server = await fakeServer(table);
	const run = (args: string[], env: Record<string, string> = {}, input = '') =>
		execa(process.execPath, [ENTRY, ...args], { reject: false, input, env: { KVCLIENT_PORT: String(server.port), ...env } });
	t.like(await run(['lookup', 'dog']), { exitCode: 0, stdout: 'baileys the dog', stderr: '' });
	t.like(await run(['lookup', 'cat']), { exitCode: 1, stdout: '', stderr: 'kvclient: not found' });
	t.like(await run(['send'], {}, 'HELLO\nlookup cat\n'), { exitCode: 0, stdout: 'GOT IT\nNOT FOUND', stderr: '' });
	const bad = await run(['send', 'x'], { KVCLIENT_PORT: 'abc' });
	t.is(bad.exitCode, 64);
	t.regex(bad.stderr, /option '--port <port>' value 'abc' from env 'KVCLIENT_PORT' is invalid/);
	const refused = await run(['--timeout', '300', 'send', 'x'], { KVCLIENT_PORT: String(await closedPort()) });
	t.is(refused.exitCode, 3);
	t.regex(refused.stderr, /^kvclient: 127\.0\.0\.1:\d+ refused the datagram \(nothing listening\?\)$/);
	server.close();
});
