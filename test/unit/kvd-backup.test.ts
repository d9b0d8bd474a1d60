/**
 * kvd's pieces without a module: journal lines, the backup formats (v1 and
 * v2 base, change log), what a damaged file gives, compaction's hand-over
 * between two generations, and the rejects file.
 */
import test from 'ava';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
	logHeader,
	parseBase,
	parseJournalLine,
	parseLog,
	parseTable,
	serializeBase,
	serializeBatch,
	serializeV1,
	tableLines,
} from '../../daemon/backup.js';
import { compactionDue, type Loaded, loadBackup, restoreText, writeRejects } from '../../daemon/store.js';

async function scratch(t: { teardown(fn: () => Promise<void>): void }): Promise<string> {
	const dir = await mkdtemp(path.join(tmpdir(), 'kudp-kvd-'));
	t.teardown(() => rm(dir, { recursive: true, force: true }));
	return dir;
}

const table = (entries: Record<string, string>) => new Map(Object.entries(entries));
/** What a restore into an empty table would write, as a table. */
const entries = (loaded: Loaded) => parseTable(restoreText(loaded, new Map()));

test('journal lines: insert (a value may hold spaces), delete, snapshot; anything else is refused', t => {
	t.deepEqual(parseJournalLine('7 insert dog baileys the dog'), { seq: 7, op: 'insert', key: 'dog', value: 'baileys the dog' });
	t.deepEqual(parseJournalLine('8 delete dog'), { seq: 8, op: 'delete', key: 'dog' });
	t.deepEqual(parseJournalLine('9 snapshot'), { seq: 9, op: 'snapshot' });
	for (const bad of ['insert dog x', '1 insert dog', '1 delete dog x', '1 snapshot now', '1 lookup dog', 'x insert a b', '']) {
		t.is(parseJournalLine(bad), undefined, bad);
	}
});

test('a v1 backup (before the change log) still reads whole', t => {
	const base = parseBase(serializeV1('boot:123', table({ dog: 'baileys', cat: 'tom the cat' })));
	t.is(base.version, 1);
	t.is(base.instance, 'boot:123');
	t.is(base.problem, undefined);
	t.deepEqual(
		[...parseTable(base.body)],
		[
			['dog', 'baileys'],
			['cat', 'tom the cat'],
		],
	);
});

test('a v2 base round-trips with its generation and what it covers', t => {
	const entries = table({ a: '1', b: '2 3' });
	const text = serializeBase({ instance: 'i:1', generation: 4, covers: { generation: 3, bytes: 120 } }, tableLines(entries), 2);
	t.true(text.startsWith('# kernel-udp backup v2\n'));
	const base = parseBase(text);
	t.like(base, { version: 2, instance: 'i:1', generation: 4, covers: { generation: 3, bytes: 120 }, problem: undefined });
	t.deepEqual(parseTable(base.body), entries);
});

test('a damaged base gives every whole line and rejects the rest, never silently', t => {
	const good = serializeBase({ instance: 'i:1', generation: 1, covers: { generation: 0, bytes: 0 } }, 'a 1\nb 2\nc 3\n', 3);
	const truncated = parseBase(good.slice(0, -2));
	t.regex(truncated.problem ?? '', /checksum/);
	t.deepEqual([...parseTable(truncated.body).keys()], ['a', 'b']);
	t.deepEqual(truncated.rejected, [{ reason: 'a line cut short at the end of the base', lines: ['c '] }]);

	const edited = parseBase(good.replace('b 2', 'b evil'));
	t.regex(edited.problem ?? '', /checksum/);
	t.is(parseTable(edited.body).get('b'), 'evil', 'a well-formed line is restored; the problem is reported');

	// Malformed lines go to the module, which refuses them (EINVAL) for kvd to keep aside.
	const foreign = parseBase('# kernel-udp backup v9\ndog baileys\nnospace\n');
	t.regex(foreign.problem ?? '', /header/);
	t.is(foreign.body, 'dog baileys\nnospace\n');
	t.deepEqual(foreign.rejected, [{ reason: 'a comment line in a base without its header', lines: ['# kernel-udp backup v9'] }]);

	t.regex(parseBase(good.replace('# entries 3', '# entries 4')).problem ?? '', /checksum|header says/);
});

test('the change log replays verified batches and rejects a torn or edited one', t => {
	const one = serializeBatch([
		{ op: '+', key: 'a', value: '1' },
		{ op: '+', key: 'b', value: 'two words' },
	]);
	const two = serializeBatch([{ op: '-', key: 'a' }]);
	const log = logHeader(5) + one + two;
	const parsed = parseLog(log);
	t.is(parsed.generation, 5);
	t.is(parsed.problem, undefined);
	t.deepEqual(parsed.changes, [
		{ op: '+', key: 'a', value: '1' },
		{ op: '+', key: 'b', value: 'two words' },
		{ op: '-', key: 'a' },
	]);

	const torn = parseLog(logHeader(5) + one + two.slice(0, 5));
	t.is(torn.changes.length, 2, 'the whole batches before the tear');
	t.regex(torn.problem ?? '', /incomplete/);
	t.deepEqual(torn.rejected[0]?.lines, ['- a', '#'], 'the cut line too');

	const edited = parseLog(logHeader(5) + one.replace('+ a 1', '+ a 9') + two);
	t.deepEqual(edited.changes, [{ op: '-', key: 'a' }]);
	t.deepEqual(edited.rejected[0]?.lines, ['+ a 9', '+ b two words']);

	t.deepEqual(parseLog(log, logHeader(5).length + one.length).changes, [{ op: '-', key: 'a' }], 'from a byte offset');
});

test('loadBackup: base + log of its generation; after a crash mid-compaction, the old log from where the base stops', async t => {
	const dir = await scratch(t);
	const backup = path.join(dir, 'b.txt');
	const batch1 = serializeBatch([{ op: '+', key: 'a', value: '1' }]);
	const batch2 = serializeBatch([{ op: '+', key: 'b', value: '2' }]);
	const oldLog = logHeader(1) + batch1 + batch2;

	// Compaction wrote base 2 (a=1) while batch2 went on into log 1; then the crash.
	const covers = { generation: 1, bytes: Buffer.byteLength(logHeader(1) + batch1) };
	await writeFile(backup, serializeBase({ instance: 'i:1', generation: 2, covers }, 'a 1\n', 1));
	await writeFile(`${backup}.log`, oldLog);
	let loaded = await loadBackup(backup);
	t.deepEqual(entries(loaded), table({ a: '1', b: '2' }));
	t.deepEqual(loaded.problems, []);

	// Then the new log of generation 2 was written: it holds batch2 alone.
	await writeFile(`${backup}.log`, logHeader(2) + batch2 + serializeBatch([{ op: '-', key: 'a' }]));
	loaded = await loadBackup(backup);
	t.deepEqual(entries(loaded), table({ b: '2' }));

	// A log older than what the base covers is ignored: the base holds it.
	await writeFile(backup, serializeBase({ instance: 'i:1', generation: 3, covers: { generation: 2, bytes: 10 } }, 'z 9\n', 1));
	await writeFile(`${backup}.log`, logHeader(1) + batch1);
	t.deepEqual(entries(await loadBackup(backup)), table({ z: '9' }));

	// No backup at all: an empty table, no problem.
	await rm(backup);
	await rm(`${backup}.log`);
	t.like(await loadBackup(backup), { body: '', changes: [], problems: [], rejected: [] });
});

test('a restore skips keys written since the load, and applies the log over the base', t => {
	const loaded = { body: 'a 1\nb 2\nc 3\n', changes: [{ op: '-', key: 'b' } as const, { op: '+', key: 'd', value: '4' } as const] };
	t.is(restoreText(loaded, new Map()), 'a 1\nc 3\nd 4\n');
	t.is(restoreText(loaded, table({ a: 'newer' })), 'c 3\nd 4\n');
	t.is(restoreText({ body: 'a 1\n', changes: [] }, new Map()), 'a 1\n');
});

test('compaction is due when the log passes both the floor and the base', t => {
	t.false(compactionDue(900_000, 100, 1_000_000));
	t.false(compactionDue(2_000_000, 3_000_000, 1_000_000));
	t.true(compactionDue(3_000_001, 3_000_000, 1_000_000));
	t.true(compactionDue(1_000_001, 10, 1_000_000));
});

test('the rejects file groups lines by reason and is never overwritten', async t => {
	const dir = await scratch(t);
	const backup = path.join(dir, 'b.txt');
	const when = new Date('2026-01-02T03:04:05.678Z');
	t.is(await writeRejects(backup, [{ reason: 'none', lines: [] }], when), undefined, 'nothing to keep: no file');
	const first = await writeRejects(backup, [{ reason: 'ENOSPC: the table is full', lines: ['a 1', 'b 2'] }], when);
	const second = await writeRejects(backup, [{ reason: 'EINVAL', lines: ['c 3'] }], when);
	t.is(first, `${backup}.rejected-2026-01-02T03-04-05-678Z`);
	t.is(second, `${first}-1`);
	t.regex(await readFile(first!, 'utf8'), /^# kernel-udp: 2 lines .*\n# ENOSPC: the table is full\na 1\nb 2\n$/);
	t.is((await readdir(dir)).length, 2);
});
