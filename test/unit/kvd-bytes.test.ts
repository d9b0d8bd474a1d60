/**
 * kvd's backup is bytes, not text (issue 18): every byte a key or value may
 * hold (PROTOCOL.md: 0x21-0x7e and 0x80-0xff in text-protocol keys, space
 * too in values; control bytes but \r, \n and NUL from the memcached port)
 * comes back from the files as it went in, valid UTF-8 or not. The strings
 * are latin1: one character per byte.
 */
import test from 'ava';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { logHeader, parseJournalLine, parseTable, serializeBase, serializeBatch, tableLines } from '../../daemon/backup.js';
import { loadBackup, restoreText, writeRejects } from '../../daemon/store.js';
import { ALL_BYTES, bytes, hexLine } from '../helpers/bytes.js';

async function scratch(t: { teardown(fn: () => Promise<void>): void }): Promise<string> {
	const dir = await mkdtemp(path.join(tmpdir(), 'kudp-kvd-bytes-'));
	t.teardown(() => rm(dir, { recursive: true, force: true }));
	return dir;
}

test('journal lines with any byte in keys and values parse whole', t => {
	let seq = 0;
	for (const [key, value] of ALL_BYTES) {
		seq++;
		t.deepEqual(
			parseJournalLine(`${seq} insert ${key} ${value}`),
			{ seq, op: 'insert', key, value },
			Buffer.from(key, 'latin1').toString('hex'),
		);
		t.deepEqual(parseJournalLine(`${seq} delete ${key}`), { seq, op: 'delete', key });
	}
});

test('base + change log written as bytes read back byte for byte, however they decode as UTF-8', async t => {
	const dir = await scratch(t);
	const backup = path.join(dir, 'b.txt');
	const body = tableLines(ALL_BYTES);
	await writeFile(
		backup,
		Buffer.from(serializeBase({ instance: 'i:1', generation: 2, covers: { generation: 1, bytes: 0 } }, body, ALL_BYTES.size), 'latin1'),
	);
	const changes = [...ALL_BYTES].map(([key, value]) => ({ op: '+' as const, key: `${key}2`, value: `${value}2` }));
	await writeFile(
		`${backup}.log`,
		Buffer.from(logHeader(2) + serializeBatch(changes) + serializeBatch([{ op: '-', key: changes[0]!.key }]), 'latin1'),
	);

	const loaded = await loadBackup(backup);
	t.deepEqual(loaded.problems, [], 'the checksums are those of the bytes');
	t.deepEqual(loaded.rejected, []);
	const want = new Map(ALL_BYTES);
	for (const change of changes.slice(1)) want.set(change.key, change.value);
	const restored = parseTable(restoreText(loaded, new Map()));
	t.deepEqual([...restored].map(([key, value]) => hexLine(key, value)).sort(), [...want].map(([key, value]) => hexLine(key, value)).sort());
	t.is(loaded.logBytes, (await readFile(`${backup}.log`)).length, 'sizes are byte counts');
	t.is(loaded.baseBytes, (await readFile(backup)).length);
});

test('a backup written before as UTF-8 text still verifies', async t => {
	const dir = await scratch(t);
	const backup = path.join(dir, 'b.txt');
	// As the old kvd wrote it: digests over the UTF-8 encoding of the text.
	const { createHash } = await import('node:crypto');
	const body = 'chien café\nneko 猫\n';
	const digest = createHash('sha256').update(body).digest('hex');
	await writeFile(backup, `# kernel-udp backup v2\n# instance i:1\n# generation 1 covers 0:0\n# entries 2 sha256 ${digest}\n${body}`);
	const loaded = await loadBackup(backup);
	t.deepEqual(loaded.problems, []);
	t.is(Buffer.from(loaded.body, 'latin1').toString('utf8'), body);
});

test('the rejects file keeps the refused lines as bytes', async t => {
	const dir = await scratch(t);
	const backup = path.join(dir, 'b.txt');
	const line = bytes([0x6b, 0xff, 0x20, 0x80, 0xfe]);
	const file = await writeRejects(backup, [{ reason: 'why', lines: [line] }]);
	const written = await readFile(file!);
	t.true(written.includes(Buffer.from([0x6b, 0xff, 0x20, 0x80, 0xfe, 0x0a])));
});
