/**
 * kvd's backup is byte-exact (issue 18): keys and values holding every byte
 * the server takes (the text protocol's and the memcached port's, see
 * test/helpers/bytes.ts) come back byte for byte after kvd saved them, a
 * module reload, a compaction (a base written from kvd's memory) and a hard
 * kill of the guest. kvd used to decode the journal and /proc/hashtable as
 * UTF-8, so a byte 0x80-0xff that is not valid UTF-8 came back as U+FFFD.
 */
import type { ExecutionContext } from 'ava';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { parseTable } from '../../daemon/backup.js';
import { loadBackup, restoreText } from '../../daemon/store.js';
import { unload } from '../../src/lifecycle.js';
import { ALL_BYTES, bytes, hexLine, MEMCACHED_ENTRIES, range, TEXT_ENTRIES } from '../helpers/bytes.js';
import { guest, labTest, loadServer, useLab, type LabContext } from '../helpers/lab.js';

useLab(import.meta.url);

type T = ExecutionContext<LabContext>;
const BACKUP = '/var/tmp/bytes-test-backup.txt';
const MC_PORT = 11311;
const PARAMS = ['len=8192', `memcached_port=${MC_PORT}`];

/**
 * Stores entries from inside the guest (loopback: no reflection bound), the
 * text ones with `insert`, the others with memcached's `set` (flags 0, no
 * expiry: entries kvd backs up). Fails unless every one is acknowledged.
 */
async function store(t: T, text: Iterable<[string, string]>, memcached: Iterable<[string, string]>): Promise<void> {
	const hex = (entries: Iterable<[string, string]>) =>
		[...entries].map(([k, v]) => [Buffer.from(k, 'latin1').toString('hex'), Buffer.from(v, 'latin1').toString('hex')]);
	const script = `
import json, socket, struct, sys
todo = json.load(sys.stdin)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5.0)
for k, v in todo['text']:
    s.sendto(b'insert ' + bytes.fromhex(k) + b' ' + bytes.fromhex(v), ('127.0.0.1', 3000))
    r = s.recv(65536)
    assert r == b'OK\\n', (k, r)
for i, (k, v) in enumerate(todo['memcached']):
    k, v = bytes.fromhex(k), bytes.fromhex(v)
    s.sendto(struct.pack('>HHHH', i + 1, 0, 1, 0) + b'set %s 0 0 %d\\r\\n%s\\r\\n' % (k, len(v), v), ('127.0.0.1', ${MC_PORT}))
    r = s.recv(65536)
    assert r[8:] == b'STORED\\r\\n', (k, r)
print(len(todo['text']) + len(todo['memcached']))
`;
	const input = JSON.stringify({ text: hex(text), memcached: hex(memcached) });
	const result = await t.context.target.exec(['python3', '-c', script], { input, timeoutMs: 300_000 });
	if (result.exitCode !== 0) throw new Error(`storing from the guest failed:\n${result.stderr}`);
}

/** /proc/hashtable's lines as hex (base64 through the guest agent: the bytes, not text). */
async function tableHex(t: T): Promise<string[]> {
	const raw = Buffer.from(await guest(t, 'base64 -w0 /proc/hashtable'), 'base64').toString('latin1');
	return [...parseTable(raw)].map(([key, value]) => hexLine(key, value)).sort();
}

/** What the backup on this machine's disk (.lab/NAME/var-tmp) restores, as hex lines. */
async function backupHex(t: T): Promise<string[]> {
	const loaded = await loadBackup(path.join(t.context.target.lab.persistentDir, path.basename(BACKUP)));
	t.deepEqual(loaded.problems, [], 'the backup verifies');
	return [...parseTable(restoreText(loaded, new Map()))].map(([key, value]) => hexLine(key, value)).sort();
}

const expected = (model: Map<string, string>) => [...model].map(([key, value]) => hexLine(key, value)).sort();

async function kvdLogCount(t: T, message: string): Promise<number> {
	return Number((await guest(t, `grep -c '"msg":"${message}' /var/log/kvd.log || true`)).trim());
}

async function eventually(check: () => Promise<boolean>, what: string, timeoutMs = 30_000): Promise<void> {
	const deadline = Date.now() + timeoutMs;
	while (!(await check())) {
		if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
		await new Promise(resolve => setTimeout(resolve, 250));
	}
}

labTest('every byte the server takes survives kvd, a reload, a compaction and a hard kill, byte for byte', async t => {
	await guest(t, `rm -f ${BACKUP} ${BACKUP}.*`);
	const model = new Map(ALL_BYTES);
	await loadServer(t, PARAMS, { daemon: true, backup: BACKUP });
	await store(t, TEXT_ENTRIES, MEMCACHED_ENTRIES);
	t.deepEqual(await tableHex(t), expected(model), 'the table holds every byte');
	// kvd appends and fdatasyncs each batch as it reads it: the change log has it at once.
	await eventually(async () => (await backupHex(t).catch(() => [])).join() === expected(model).join(), 'kvd saves every entry');

	// 1. A reload: the backup goes back through /proc/kvrestore.
	await unload(t.context.target, 'udp_server');
	await loadServer(t, PARAMS, { daemon: true, backup: BACKUP });
	t.deepEqual(await tableHex(t), expected(model), 'after a reload');

	// 2. A compaction: the new base is written from kvd's memory, not from /proc.
	const compactions = await kvdLogCount(t, 'compacted');
	const big: Array<[string, string]> = [];
	const allText = bytes([...range(0x21, 0x7e), ...range(0x80, 0xff)]);
	for (let i = 0; i < 300; i++) {
		// ~4 KB values: 300 of them outgrow the 1 MiB compaction floor.
		big.push([`big${i % 5}${allText.slice(0, 40)}`, `${String(i).padStart(3, '0')} ${allText.repeat(18)}`]);
	}
	await store(t, big, []);
	for (const [key, value] of big) model.set(key, value);
	// The new base is written beside the journal; kvd switches to it on its next batch.
	let nudges = 0;
	await eventually(
		async () => {
			const nudge = new Map([[bytes([0x6d, 0x01, 0x7f, 0x30 + (nudges++ % 10)]), bytes([0x41, 0x1b, 0xff, 0x09])]]);
			await store(t, [], nudge);
			for (const [key, value] of nudge) model.set(key, value);
			return (await kvdLogCount(t, 'compacted')) > compactions;
		},
		'kvd compacts its log',
		120_000,
	);
	const base = await readFile(path.join(t.context.target.lab.persistentDir, path.basename(BACKUP)));
	t.true(base.includes(Buffer.from(`${[...ALL_BYTES.keys()][1]} `, 'latin1')), 'the compacted base holds the bytes, not U+FFFD');
	t.deepEqual(await backupHex(t), expected(model), 'the compacted backup');
	await unload(t.context.target, 'udp_server');
	await loadServer(t, PARAMS, { daemon: true, backup: BACKUP });
	t.deepEqual(await tableHex(t), expected(model), 'after a compaction and a reload');

	// 3. A hard kill of the guest, once kvd has the last change on disk.
	await eventually(async () => (await backupHex(t)).join() === expected(model).join(), 'kvd saves every entry');
	const { qemuPid } = (await t.context.target.lab.state())!;
	process.kill(qemuPid, 'SIGKILL');
	await t.context.target.lab.down();
	await t.context.target.prepare();
	await loadServer(t, PARAMS, { daemon: true, backup: BACKUP });
	t.deepEqual(await tableHex(t), expected(model), 'after a hard kill');
	await unload(t.context.target, 'udp_server');
});
