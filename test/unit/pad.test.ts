/**
 * The reflection bound from the client's side: a server that answers
 * `ERR pad to N` (PROTOCOL.md, "Reflection") gets the same request again,
 * padded with spaces, and inserts are never padded. Against a fake server on
 * 127.0.0.1 that applies the server's rule itself; the real module is held
 * to the rule in test/integration/limits.test.ts.
 */
import test from 'ava';
import dgram from 'node:dgram';
import { KvClient, KvServerError } from '../../user-client/client.js';
import { MIN_LEN, padRequest, padSize, REFLECT_RATIO } from '../../user-client/protocol.js';

/** Answers like the server does to a sender off its host: long replies need long requests. */
async function boundedServer(replies: Record<string, string>) {
	const socket = dgram.createSocket('udp4');
	const received: string[] = [];
	socket.on('message', (message, from) => {
		received.push(message.toString());
		const reply = replies[message.toString().trimEnd()] ?? 'ERR unknown command\n';
		const limit = Math.max(REFLECT_RATIO * message.length, MIN_LEN);
		const answer = reply.length <= limit ? reply : `ERR pad to ${Math.ceil(reply.length / REFLECT_RATIO)}\n`;
		socket.send(answer, from.port, from.address);
	});
	await new Promise<void>(resolve => socket.bind(0, '127.0.0.1', resolve));
	return { port: socket.address().port, received, close: () => socket.close() };
}

test('padSize reads N from "pad to N" and nothing else', t => {
	t.is(padSize('pad to 1366'), 1366);
	t.is(padSize('pad to'), undefined);
	t.is(padSize('full'), undefined);
	t.is(padSize('pad to 12x'), undefined);
});

test('padRequest adds spaces up to the size in bytes, never shortens', t => {
	t.is(padRequest('lookup k', 12), 'lookup k    ');
	t.is(padRequest('lookup é', 12), 'lookup é   ', 'é is two bytes');
	t.is(padRequest('lookup key', 4), 'lookup key');
});

test('lookup and stats pad their request when the server asks, insert does not need to', async t => {
	const value = 'v'.repeat(200);
	const server = await boundedServer({
		'lookup k': `OK ${value}\n`,
		stats: 'OK entries=1 bytes=512 requests=3 hits=1 misses=0 errors=1\n',
		[`insert k ${value}`]: 'OK\n',
	});
	try {
		const client = new KvClient({ host: '127.0.0.1', port: server.port, timeoutMs: 500, retries: 0 });
		await client.insert('k', value);
		t.is(await client.lookup('k'), value);
		t.is((await client.stats()).entries, 1);
		t.is(server.received[0], `insert k ${value}`, 'the insert went out once, unpadded');
		t.is(server.received[1], 'lookup k');
		t.is(server.received[2]?.trimEnd(), 'lookup k');
		t.true(REFLECT_RATIO * (server.received[2]?.length ?? 0) >= value.length + 4, 'padded far enough');
		t.is(server.received.length, 5);
	} finally {
		server.close();
	}
});

test('a pad request that would not grow the request is an error, not a loop', async t => {
	const socket = dgram.createSocket('udp4');
	let count = 0;
	socket.on('message', (_message, from) => {
		count++;
		socket.send('ERR pad to 3\n', from.port, from.address);
	});
	await new Promise<void>(resolve => socket.bind(0, '127.0.0.1', resolve));
	try {
		const client = new KvClient({ host: '127.0.0.1', port: socket.address().port, timeoutMs: 500, retries: 0 });
		const error = await t.throwsAsync(client.lookup('k'), { instanceOf: KvServerError });
		t.is(error?.reason, 'pad to 3');
		t.is(count, 1);
	} finally {
		socket.close();
	}
});
