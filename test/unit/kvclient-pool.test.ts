/**
 * kvclient --servers against fake table servers on 127.0.0.1: every key
 * goes to its ketama server and nowhere else, commands of many keys are
 * split per server, a silent server fails its own keys (named in the error)
 * and only those, and bad server lists are usage errors. The real modules
 * in a pool of labs: test/integration/pool.test.ts.
 */
import test from 'ava';
import dgram from 'node:dgram';
import { PassThrough } from 'node:stream';
import { main } from '../../user-client/cli.js';
import { Continuum } from '../../user-client/ketama.js';
import { parseServers } from '../../user-client/pool.js';

/** A fake kernel-udp server with a table of its own (silent: receives and never answers). */
async function tableServer({ silent = false } = {}) {
	const socket = dgram.createSocket('udp4');
	const table = new Map<string, string>();
	const received: string[] = [];
	socket.on('message', (message, from) => {
		const text = message.toString();
		received.push(text);
		if (silent) return;
		const [command, key = ''] = text.split(' ');
		let reply = 'ERR unknown command\n';
		if (text === 'HELLO') reply = 'GOT IT\n';
		else if (text === 'stats') reply = `OK entries=${table.size} hits=0\n`;
		else if (command === 'insert') {
			table.set(key, text.slice(`insert ${key} `.length));
			reply = 'OK\n';
		} else if (command === 'lookup') reply = table.has(key) ? `OK ${table.get(key)}\n` : 'NOT FOUND\n';
		else if (command === 'delete') reply = table.delete(key) ? 'OK\n' : 'NOT FOUND\n';
		socket.send(reply, from.port, from.address);
	});
	await new Promise<void>(resolve => socket.bind(0, '127.0.0.1', resolve));
	const port = socket.address().port;
	return { port, name: `127.0.0.1:${port}`, table, received, close: () => socket.close() };
}

type Server = Awaited<ReturnType<typeof tableServer>>;

async function pool(t: { teardown(fn: () => void): void }, count: number, silent: number[] = []): Promise<Server[]> {
	const servers = await Promise.all(Array.from({ length: count }, (_, i) => tableServer({ silent: silent.includes(i) })));
	t.teardown(() => {
		for (const server of servers) server.close();
	});
	return servers;
}

async function kvclient(args: string[], input = '') {
	const out = { stdout: '', stderr: '' };
	const stdin = new PassThrough();
	stdin.end(input);
	const code = await main(args, {
		stdout: data => (out.stdout += typeof data === 'string' ? data : Buffer.from(data).toString()),
		stderr: text => (out.stderr += text),
		stdin,
	});
	return { code, ...out };
}

const list = (servers: Server[]) => servers.map(server => server.name).join(',');
const continuumOf = (servers: Server[]) => new Continuum(parseServers(list(servers)));

test('load puts every key on its ketama server and nowhere else; lookup of several keys reads them back in order', async t => {
	const servers = await pool(t, 3);
	const keys = Array.from({ length: 600 }, (_, i) => `key${i}`);
	const loaded = await kvclient(['--servers', list(servers), 'load'], keys.map(key => `${key} value of ${key}`).join('\n'));
	t.is(loaded.code, 0, loaded.stderr);
	const continuum = continuumOf(servers);
	servers.forEach((server, index) => {
		const mine = keys.filter(key => continuum.indexFor(key) === index);
		t.deepEqual([...server.table.keys()].sort(), mine.sort(), `server ${index + 1} holds exactly its keys`);
		t.true(mine.length > 100, `server ${index + 1} has ${mine.length} keys`);
		t.true(loaded.stdout.includes(`${server.name}: ${mine.length} stored\n`));
	});
	t.regex(loaded.stdout, /^600 keys in \d+\.\d s$/m);

	const read = await kvclient(['--servers', list(servers), 'lookup', 'key5', 'key1', 'nokey', 'key599']);
	t.is(read.code, 1, 'one key is missing');
	t.is(read.stdout, 'key5 value of key5\nkey1 value of key1\nkey599 value of key599\n');
	t.regex(read.stderr, /^kvclient: nokey: not found$/m);

	// One key: the value alone, as with --host.
	t.like(await kvclient(['--servers', list(servers), 'lookup', 'key7']), { code: 0, stdout: 'value of key7\n' });
	t.like(await kvclient(['--servers', list(servers), 'delete', 'key7']), { code: 0, stdout: 'OK\n' });
	t.false(servers[continuum.indexFor('key7')]!.table.has('key7'));
	t.like(await kvclient(['--servers', list(servers), 'insert', 'dog', 'baileys', 'the', 'dog']), { code: 0, stdout: 'OK\n' });
	t.is(servers[continuum.indexFor('dog')]!.table.get('dog'), 'baileys the dog');
});

test('a silent server fails its own keys, named in the error, once; the keys on the others are stored', async t => {
	const servers = await pool(t, 3, [1]);
	const silent = servers[1]!;
	const keys = Array.from({ length: 300 }, (_, i) => `k${i}`);
	const continuum = continuumOf(servers);
	const theirs = keys.filter(key => continuum.indexFor(key) === 1);
	const started = Date.now();
	const result = await kvclient(
		['--servers', list(servers), '--timeout', '200', '--retries', '1', 'load'],
		keys.map(key => `${key} v`).join('\n'),
	);
	t.is(result.code, 3);
	t.true(result.stdout.includes(`${silent.name}: 0 stored, ${theirs.length} failed\n`), result.stdout);
	t.regex(result.stderr, new RegExp(`key \\S+ is on ${silent.name} \\(server 2 of 3 in --servers\\), which does not answer`));
	t.is(servers[0]!.table.size + servers[2]!.table.size, keys.length - theirs.length, 'every key of the others is stored');
	// A window of requests went out before the first timed out; the rest were never sent.
	t.true(silent.received.length <= 2 * 8, `the silent server got ${silent.received.length} datagrams`);
	t.true(Date.now() - started < 5000, 'its keys fail at once after the first timeout');

	const mine = theirs[0]!;
	const one = await kvclient(['--servers', list(servers), '--timeout', '200', '--retries', '0', 'lookup', mine]);
	t.is(one.code, 3);
	t.is(
		one.stderr,
		`kvclient: key ${mine} is on ${silent.name} (server 2 of 3 in --servers), which does not answer: no reply from ${silent.name} after 1 try (timeout 200 ms each)\n`,
	);
	const other = keys.find(key => continuum.indexFor(key) === 0)!;
	t.like(await kvclient(['--servers', list(servers), 'lookup', other]), { code: 0, stdout: 'v\n' });
	const several = await kvclient(['--servers', list(servers), '--timeout', '200', '--retries', '0', 'lookup', other, mine]);
	t.is(several.code, 3);
	t.is(several.stdout, `${other} v\n`);
	t.regex(several.stderr, new RegExp(`^kvclient: ${mine}: key ${mine} is on ${silent.name}`, 'm'));
});

test('bad --servers lists are usage errors that say what is wrong, and nothing is sent', async t => {
	const servers = await pool(t, 1);
	const cases: Array<[string, RegExp]> = [
		['', /the server list is empty/],
		['10.0.9.2', /server 1 \("10\.0\.9\.2"\) is not HOST:PORT/],
		['10.0.9.2:', /is not HOST:PORT/],
		['10.0.9.2:3000,', /server 2 \(""\) is empty: a comma too many\?/],
		['10.0.9.2:3000,,10.0.9.3:3000', /server 2 \(""\) is empty/],
		['10.0.9.2:0', /the port must be from 1 to 65535/],
		['10.0.9.2:70000', /the port must be from 1 to 65535/],
		['10.0.9.2:3000:2', /is not HOST:PORT/],
		['[nothing]:3000', /nothing in brackets is not an IPv6 address/],
		['10.0.9.2 :3000', /is not HOST:PORT/],
		[`${servers[0]!.name},10.0.9.9:3000,${servers[0]!.name}`, /127\.0\.0\.1:\d+ is listed twice/],
	];
	for (const [value, message] of cases) {
		const result = await kvclient(['--servers', value, 'lookup', 'dog']);
		t.is(result.code, 64, value);
		t.regex(result.stderr, /option '--servers <list>' argument .* is invalid/, value);
		t.regex(result.stderr, message, value);
		t.is(result.stdout, '');
	}
	const both = await kvclient(['--servers', servers[0]!.name, '--host', '127.0.0.1', 'lookup', 'dog']);
	t.is(both.code, 64);
	t.regex(both.stderr, /--servers names every server: leave out --host/);
	const port = await kvclient(['--port', '3001', '--servers', servers[0]!.name, 'lookup', 'dog']);
	t.regex(port.stderr, /leave out --port/);
	t.deepEqual(servers[0]!.received, []);
	t.deepEqual(parseServers('[::1]:3000,cache-a:11211'), [
		{ host: '::1', port: 3000 },
		{ host: 'cache-a', port: 11211 },
	]);
});

test('one server in --servers behaves as --host and --port: same output, same errors', async t => {
	// Two servers with tables of their own, one for each way of naming it, so each run starts alike.
	const [server, twin] = await pool(t, 2);
	const [silent] = await pool(t, 1, [0]);
	const runs: Array<[string[], string]> = [
		[['insert', 'dog', 'baileys'], ''],
		[['lookup', 'dog'], ''],
		[['lookup', 'cat'], ''],
		[['send', 'HELLO'], ''],
		[['send'], 'HELLO\nlookup dog\nstats\n'],
		[['stats'], ''],
		[['delete', 'dog'], ''],
	];
	for (const [args, input] of runs) {
		const viaHost = await kvclient(['--host', '127.0.0.1', '--port', String(server!.port), ...args], input);
		const viaServers = await kvclient(['--servers', twin!.name, ...args], input);
		t.deepEqual(viaServers, viaHost, args.join(' '));
	}
	const quiet = ['--timeout', '100', '--retries', '0', 'lookup', 'dog'];
	t.deepEqual(await kvclient(['--servers', silent!.name, ...quiet]), await kvclient(['--port', String(silent!.port), ...quiet]));
});

test('send places a request by its key; one without a key needs a single server; stats asks every server', async t => {
	const servers = await pool(t, 3);
	const continuum = continuumOf(servers);
	const sent = await kvclient(['--servers', list(servers), 'send'], 'insert a 1\ninsert b 2\nlookup a\nHELLO\ndelete b\n');
	t.is(sent.stdout, 'OK\nOK\nOK 1\nOK\n');
	t.is(sent.code, 64);
	t.regex(sent.stderr, /line 4: "HELLO" has no key to place it by among the 3 --servers; send it to one of them with --host and --port/);
	const placed = ['insert a 1', 'insert b 2', 'lookup a', 'delete b'];
	servers.forEach((server, index) => {
		t.deepEqual(
			server.received,
			placed.filter(line => continuum.indexFor(line.split(' ')[1]!) === index),
		);
	});
	const hello = await kvclient(['--servers', list(servers), 'send', 'HELLO']);
	t.is(hello.code, 64);

	const stats = await kvclient(['--servers', list(servers), 'stats']);
	t.is(stats.code, 0);
	for (const server of servers) t.regex(stats.stdout, new RegExp(`^${server.name}\\n  entries: \\d+\\n  hits: 0$`, 'm'));
	const json = JSON.parse((await kvclient(['--servers', list(servers), 'stats', '--json'])).stdout) as Record<string, { entries: number }>;
	t.deepEqual(
		Object.keys(json),
		servers.map(server => server.name),
	);
	t.is(
		Object.values(json).reduce((sum, stats) => sum + stats.entries, 0),
		1,
		'a was inserted, b deleted',
	);
});

test('load checks every line before sending: a bad line is a usage error naming it', async t => {
	const servers = await pool(t, 2);
	const result = await kvclient(['--servers', list(servers), 'load'], 'good value\nbad\n');
	t.is(result.code, 64);
	t.regex(result.stderr, /line 2: the value is missing \(KEY VALUE\)/);
	t.deepEqual(
		servers.flatMap(server => server.received),
		[],
	);
});
