/**
 * The key-value protocol of PROTOCOL.md against the real server module in
 * the lab: every reply, every ERR, the length boundaries, netcat, /proc,
 * concurrency against a model, limits, and unload with a full table.
 */
import { execa } from 'execa';
import path from 'node:path';
import { PROJECT_ROOT } from '../../src/modules.js';
import { request } from '../../user-client/client.js';
import { assertPromptUnload, guest, labTest, loadServer, timedRmmod, useLab, type LabContext } from '../helpers/lab.js';
import type { ExecutionContext } from 'ava';

useLab(import.meta.url);

type T = ExecutionContext<LabContext>;

async function send(port: number, message: string | Buffer): Promise<string> {
	return (await request(message, { host: '127.0.0.1', port, timeoutMs: 3000, retries: 3 })).toString('latin1');
}

async function restart(t: T, params: string[]): Promise<number> {
	const server = await loadServer(t, [...params]);
	return server.port;
}

labTest('every request of PROTOCOL.md gets its reply', async t => {
	const port = await restart(t, ['len=1024']);
	const cases: Array<[string, string]> = [
		['HELLO', 'GOT IT\n'],
		['HELLO\n', 'GOT IT\n'],
		['HELLO\r\n', 'GOT IT\n'],
		['lookup dog', 'NOT FOUND\n'],
		['insert dog baileys', 'OK\n'],
		['lookup dog', 'OK baileys\n'],
		['insert dog good boy, very good\n', 'OK\n'],
		['lookup dog', 'OK good boy, very good\n'],
		['insert  spaced   out value ', 'OK\n'],
		['lookup spaced', 'OK out value \n'],
		['delete dog', 'OK\n'],
		['delete dog', 'NOT FOUND\n'],
		['lookup dog', 'NOT FOUND\n'],
		['insert café crème brûlée', 'OK\n'],
		['lookup café', 'OK crème brûlée\n'],
		['', 'ERR empty\n'],
		['\n', 'ERR empty\n'],
		['\r\n', 'ERR empty\n'],
		['fetch dog', 'ERR unknown command\n'],
		['INSERT dog x', 'ERR unknown command\n'],
		['insert', 'ERR missing key\n'],
		['insert ', 'ERR missing key\n'],
		['lookup', 'ERR missing key\n'],
		['delete', 'ERR missing key\n'],
		['insert dog', 'ERR missing value\n'],
		['insert dog ', 'ERR missing value\n'],
		['lookup dog cat', 'ERR unexpected argument\n'],
		['delete dog cat', 'ERR unexpected argument\n'],
		['HELLO there', 'ERR unexpected argument\n'],
		['stats now', 'ERR unexpected argument\n'],
		['insert dog bai\0leys', 'ERR control bytes\n'],
		['insert dog\tbaileys', 'ERR control bytes\n'],
		['lookup dog\n\n', 'ERR control bytes\n'],
		['insert dog \x7f', 'ERR control bytes\n'],
		[`insert ${'k'.repeat(250)} v`, 'OK\n'],
		[`lookup ${'k'.repeat(250)}`, 'OK v\n'],
		[`insert ${'k'.repeat(251)} v`, 'ERR key too long\n'],
		[`lookup ${'k'.repeat(251)}`, 'ERR key too long\n'],
	];
	for (const [message, reply] of cases) {
		t.is(await send(port, Buffer.from(message, 'utf8')), Buffer.from(reply, 'utf8').toString('latin1'), JSON.stringify(message));
	}
	// A stats line is longer than a 5-byte request may draw from another host (PROTOCOL.md, Reflection).
	t.regex(await send(port, 'stats'), /^ERR pad to \d+\n$/);
	const stats = await send(port, `stats${' '.repeat(40)}`);
	t.regex(stats, /^OK entries=3 bytes=\d+ requests=\d+ hits=\d+ misses=\d+ errors=\d+ drops=0\n$/);
});

labTest('values up to 4096 bytes are stored, longer ones refused', async t => {
	const port = await restart(t, ['len=8192']);
	const value = 'v'.repeat(4096);
	t.is(await send(port, `insert big ${value}`), 'OK\n');
	t.is(await send(port, 'lookup big'), 'ERR pad to 1367\n', '4 100 bytes for a 10-byte request from another host');
	t.is(await send(port, 'lookup big'.padEnd(1367)), `OK ${value}\n`);
	t.is(await send(port, `insert big ${value}w`), 'ERR value too long\n');
});

labTest('length boundaries: len-1 and len bytes are served, len+1 is refused whole', async t => {
	const len = 50;
	const port = await restart(t, [`len=${len}`]);
	const insert = (size: number) => {
		const prefix = 'insert edge ';
		return prefix + 'x'.repeat(size - prefix.length);
	};
	// Lookups padded so that a len-byte reply may come back to this host (PROTOCOL.md, Reflection).
	const lookup = 'lookup edge'.padEnd(Math.ceil(len / 3));
	t.is(await send(port, insert(len - 1)), 'OK\n');
	t.is(await send(port, lookup), `OK ${'x'.repeat(len - 1 - 12)}\n`);
	t.is(await send(port, insert(len)), 'OK\n');
	t.is(await send(port, lookup), `OK ${'x'.repeat(len - 12)}\n`);
	// One byte more must not be truncated into the valid command above.
	t.is(await send(port, insert(len + 1)), 'ERR too long\n');
	t.is(await send(port, lookup), `OK ${'x'.repeat(len - 12)}\n`);
	t.is(await send(port, `${insert(len - 1)}\n`), 'OK\n', 'a line end counts toward len');
	t.is(await send(port, `${insert(len)}\n`), 'ERR too long\n');
	t.is(await send(port, 'x'.repeat(65_000)), 'ERR too long\n');
	// Replies never exceed len, stats included.
	const stats = await send(port, 'stats'.padEnd(len));
	t.true(stats.length <= len, `stats reply is ${stats.length} bytes`);
	t.regex(stats, /^OK entries=1 bytes=\d+( \w+=\d+)*\n$/);
});

labTest('netcat (netcat-openbsd) works exactly as in the README', async t => {
	const port = await restart(t, []);
	const nc = async (line: string) => (await execa('sh', ['-c', `echo "${line}" | nc -u -w1 127.0.0.1 ${port}`])).stdout;
	t.is(await nc('insert dog baileys'), 'OK');
	t.is(await nc('lookup dog'), 'OK baileys');
	t.is(await nc('delete dog'), 'OK');
	t.is(await nc('lookup dog'), 'NOT FOUND');
	// And from inside the guest, to its own loopback.
	t.is(await guest(t, 'echo "insert fox fred" | nc -u -w1 127.0.0.1 3000'), 'OK\n');
});

labTest('kvclient insert, lookup, delete and stats, with their exit codes', async t => {
	const port = await restart(t, []);
	const kvclient = (...args: string[]) =>
		execa(path.join(PROJECT_ROOT, 'bin/kvclient'), ['--port', String(port), ...args], { reject: false });
	t.is((await kvclient('insert', 'cat', 'tom the cat')).stdout, 'OK');
	t.is((await kvclient('lookup', 'cat')).stdout, 'tom the cat');
	const miss = await kvclient('lookup', 'mouse');
	t.is(miss.exitCode, 1);
	t.regex(miss.stderr, /not found/);
	t.is((await kvclient('delete', 'cat')).exitCode, 0);
	t.is((await kvclient('delete', 'cat')).exitCode, 1);
	const error = await kvclient('send', 'fetch cat');
	t.is(error.stdout, 'ERR unknown command');
	t.regex((await kvclient('stats')).stdout, /entries/);
	t.is((await kvclient('send', 'HELLO')).stdout, 'GOT IT');
});

labTest('/proc/ht runs commands and keeps the history; /proc/hashtable lists the table', async t => {
	const port = await restart(t, ['history=4']);
	await guest(t, 'echo "insert fox fred" > /proc/ht');
	t.is(await send(port, 'lookup fox'), 'OK fred\n');
	t.is(await send(port, 'insert dog baileys'), 'OK\n');
	await send(port, 'lookup dog');
	t.is(await guest(t, 'cat /proc/ht'), 'insert fox fred\ninsert dog baileys\n');
	t.is(await guest(t, 'sort /proc/hashtable'), 'dog baileys\nfox fred\n');
	// Failed commands are refused with an errno and are not history.
	const bad = await t.context.target.exec(['sh', '-c', 'echo "delete nobody" > /proc/ht'], { timeoutMs: 10_000 });
	t.not(bad.exitCode, 0);
	for (const n of [1, 2, 3, 4]) {
		await guest(t, `echo "insert k${n} v${n}" > /proc/ht`);
	}
	t.is(await guest(t, 'cat /proc/ht'), 'insert k1 v1\ninsert k2 v2\ninsert k3 v3\ninsert k4 v4\n', 'a ring of history=4');
	t.is(await guest(t, 'stat -c %a /proc/ht /proc/hashtable'), '600\n400\n');
});

labTest('8 concurrent clients × 10 000 mixed operations match a model of the table', async t => {
	const port = await restart(t, []);
	const clients = 8;
	const operations = 10_000;
	const model = new Map<string, string>();
	let mismatches = 0;
	await Promise.all(
		Array.from({ length: clients }, async (_, client) => {
			const mine = new Map<string, string>();
			let seed = client + 1;
			const random = (n: number) => {
				seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
				return seed % n;
			};
			for (let i = 0; i < operations; i++) {
				const key = `c${client}k${random(200)}`;
				const choice = random(10);
				if (choice < 5) {
					const value = `v${i}-${random(1000)}`;
					if ((await send(port, `insert ${key} ${value}`)) !== 'OK\n') mismatches++;
					mine.set(key, value);
				} else if (choice < 8) {
					const expected = mine.has(key) ? `OK ${mine.get(key)}\n` : 'NOT FOUND\n';
					if ((await send(port, `lookup ${key}`)) !== expected) mismatches++;
				} else {
					const expected = mine.delete(key) ? 'OK\n' : 'NOT FOUND\n';
					if ((await send(port, `delete ${key}`)) !== expected) mismatches++;
				}
			}
			for (const [key, value] of mine) model.set(key, value);
		}),
	);
	t.is(mismatches, 0);
	const table = await guest(t, 'cat /proc/hashtable');
	const expected = [...model].map(([key, value]) => `${key} ${value}`).sort();
	t.deepEqual(table.split('\n').filter(Boolean).sort(), expected);
});

labTest('/proc and UDP writers at the same time lose nothing', async t => {
	const port = await restart(t, []);
	const procWriter = guest(t, 'i=0; while [ $i -lt 1500 ]; do echo "insert p$i proc$i" > /proc/ht; i=$((i + 1)); done', 300_000);
	const udpWriter = (async () => {
		for (let i = 0; i < 1500; i++) {
			t.is(await send(port, `insert u${i} udp${i}`), 'OK\n');
		}
	})();
	await Promise.all([procWriter, udpWriter]);
	const lines = (await guest(t, 'cat /proc/hashtable')).split('\n').filter(Boolean);
	t.is(lines.length, 3000);
	t.true(lines.includes('p1499 proc1499') && lines.includes('u1499 udp1499'));
});

labTest('max_entries and max_bytes: ERR full, overwrites still allowed', async t => {
	let port = await restart(t, ['max_entries=5']);
	for (let i = 0; i < 5; i++) {
		t.is(await send(port, `insert k${i} v`), 'OK\n');
	}
	t.is(await send(port, 'insert k5 v'), 'ERR full\n');
	t.is(await send(port, 'insert k0 replaced'), 'OK\n', 'overwriting an existing key needs no new entry');
	t.is(await send(port, 'delete k1'), 'OK\n');
	t.is(await send(port, 'insert k5 v'), 'OK\n');

	// max_bytes counts what is allocated (PROTOCOL.md, Limits): an entry with a
	// 2 000-byte value takes a 2 320-byte object of its size class (its 32-byte
	// header and its key included), 8 bytes for the slab's pointer to its
	// memory cgroup and 32 bytes of buckets, and its history line a 2 KiB
	// kmalloc object (and its 8 bytes) until the next line replaces it (history=1).
	// Five fit in 16 KiB, where counting the bytes of keys and values would
	// let eight in.
	port = await restart(t, ['max_bytes=16384', 'len=4096', 'history=1']);
	const value = 'x'.repeat(2000);
	let stored = 0;
	while ((await send(port, `insert k${stored} ${value}`)) === 'OK\n') stored++;
	t.is(stored, 5, 'the table and its one history line hold five entries');
	t.is(await send(port, `insert k${stored} ${value}`), 'ERR full\n');
	const bytes = Number(/bytes=(\d+)/.exec(await send(port, 'stats'.padEnd(40)))?.[1]);
	t.is(bytes, 8 + stored * (2320 + 8 + 32) + 2048 + 8, 'the ring, five entries and one line');
	t.is(await send(port, 'delete k0'), 'OK\n');
	// The deleted entry's memory comes back after an RCU grace period.
	await guest(t, 'sleep 0.5');
	t.is(await send(port, `insert k${stored} ${value}`), 'OK\n');
});

labTest('unload with 100 000 entries is prompt and leaves nothing behind', async t => {
	const before = Number(await guest(t, "awk '/^SUnreclaim/ {print $2}' /proc/meminfo"));
	await restart(t, []);
	// Filling through /proc/ht from inside the guest is far faster than UDP from outside.
	await guest(
		t,
		`${process.execPath} -e 'const fs=require("fs"); const fd=fs.openSync("/proc/ht","w"); for (let i=0;i<100000;i++) fs.writeSync(fd, "insert key"+i+" value"+i);'`,
		300_000,
	);
	t.is((await guest(t, 'wc -l < /proc/hashtable')).trim(), '100000');
	const times = await timedRmmod(t, 'udp_server');
	t.log(`unload with 100 000 entries: module_exit ${times.exitMs} ms, the rmmod command ${times.commandMs} ms`);
	assertPromptUnload(t, times, 'rmmod with 100 000 entries');
	t.is(await guest(t, 'ls /proc/ht /proc/hashtable /proc/daemonpid 2>/dev/null; grep -c ^udp_server /proc/modules || true'), '0\n');
	await guest(t, 'sleep 1');
	const after = Number(await guest(t, "awk '/^SUnreclaim/ {print $2}' /proc/meminfo"));
	t.true(after - before < 4096, `unreclaimable slab grew by ${after - before} kB`);
});
