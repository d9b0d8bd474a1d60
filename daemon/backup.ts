/**
 * kvd's files: a base (the whole table at one moment) and a change log (what
 * changed since), both readable text. kvd writes the base with
 * src/files.ts (temporary file, fsync, rename) and appends to the log.
 *
 * The base, `<backup>` (v2):
 *
 *   # kernel-udp backup v2
 *   # instance <boot id>:<inode of /sys/module/udp_server>
 *   # generation <G> covers <G0>:<B0>
 *   # entries <N> sha256 <hex digest of the entry lines>
 *   KEY VALUE
 *   ...
 *
 * The change log, `<backup>.log`, one batch per group commit:
 *
 *   # kernel-udp changes v2 generation <G>
 *   + KEY VALUE
 *   - KEY
 *   # batch <lines> <first 16 hex digits of the sha256 of the batch's lines>
 *
 * A log belongs to the base of its generation. A new base is written before
 * its log; the base says which log it already holds, and up to which byte
 * ("covers G0:B0"), so that a crash between the two files loses nothing: the
 * old log is replayed from byte B0 on. (Compaction writes the new base while
 * batches keep being appended to the old log.)
 *
 * v1 (`# kernel-udp backup v1`, one file, no generation, no log) is still read.
 *
 * Every string here holds bytes, one latin1 character each (kvd reads and
 * writes the files and /proc as latin1): a key or value may hold any byte
 * the module takes, and lengths and offsets are byte counts. The digests
 * are those of the bytes, as they were when the files were read as UTF-8,
 * so backups written before still verify.
 *
 * Nothing here throws on a bad file: what cannot be trusted is returned as
 * rejected lines with a reason, for kvd to keep in a rejects file, and what
 * can be is restored.
 */
import { createHash } from 'node:crypto';

export const MAGIC_V1 = '# kernel-udp backup v1';
export const MAGIC = '# kernel-udp backup v2';
export const LOG_MAGIC = '# kernel-udp changes v2';

/** Lines kept aside, and why. */
export interface Rejected {
	reason: string;
	lines: string[];
}

export interface Base {
	version: 0 | 1 | 2;
	/** The loaded copy of the module the base was taken from ('' if unknown). */
	instance: string;
	generation: number;
	/** The older log this base already holds, up to which byte. */
	covers?: { generation: number; bytes: number };
	/** The entry lines, `KEY VALUE\n` each (as many as `lines`). */
	body: string;
	lines: number;
	rejected: Rejected[];
	/** What was wrong with the file, if anything. */
	problem?: string;
}

export interface Change {
	op: '+' | '-';
	key: string;
	value?: string;
}

export interface ChangeLog {
	generation: number;
	changes: Change[];
	rejected: Rejected[];
	problem?: string;
}

/** Of the bytes a latin1 string stands for (see below). */
const sha256 = (text: string) => createHash('sha256').update(text, 'latin1').digest('hex');

/** Splits `KEY VALUE` at the first space; undefined for a line that is not one. */
export function splitEntry(line: string): [string, string] | undefined {
	const space = line.indexOf(' ');
	return space > 0 && space < line.length - 1 ? [line.slice(0, space), line.slice(space + 1)] : undefined;
}

/** Parses `KEY VALUE` lines as /proc/hashtable prints them. */
export function parseTable(text: string): Map<string, string> {
	const entries = new Map<string, string>();
	for (const line of text.split('\n')) {
		if (line === '') {
			continue;
		}
		const entry = splitEntry(line);
		if (!entry) {
			throw new Error(`not a KEY VALUE line: ${JSON.stringify(line.slice(0, 80))}`);
		}
		entries.set(entry[0], entry[1]);
	}
	return entries;
}

export function tableLines(entries: Map<string, string>): string {
	const lines: string[] = [];
	for (const [key, value] of entries) {
		lines.push(`${key} ${value}\n`);
	}
	return lines.join('');
}

export interface BaseHeader {
	instance: string;
	generation: number;
	covers: { generation: number; bytes: number };
}

/** A v2 base; `body` is tableLines() of the entries (passed in: kvd builds it once). */
export function serializeBase(header: BaseHeader, body: string, count: number): string {
	return [
		MAGIC,
		`# instance ${header.instance}`,
		`# generation ${header.generation} covers ${header.covers.generation}:${header.covers.bytes}`,
		`# entries ${count} sha256 ${sha256(body)}`,
		body,
	].join('\n');
}

/** v1, as kvd wrote it before the change log: kept for tests of the upgrade. */
export function serializeV1(instance: string, entries: Map<string, string>): string {
	const body = tableLines(entries);
	return `${MAGIC_V1}\n# instance ${instance}\n# entries ${entries.size} sha256 ${sha256(body)}\n${body}`;
}

/**
 * Reads a base (v1 or v2) without taking it apart: `body` is its entry
 * lines as they are, for kvd to hand to /proc/kvrestore in big writes (the
 * module checks each line and refuses a malformed one, which kvd keeps
 * aside). A file that is truncated, edited or not a backup at all still
 * gives every whole line; a torn last line is rejected here, and `problem`
 * says what was wrong.
 */
export function parseBase(text: string): Base {
	const base: Base = { version: 0, instance: '', generation: 0, body: '', lines: 0, rejected: [] };
	const header = text.split('\n', 4);
	let headerLines = 0;
	let counted: { entries: number; digest: string } | undefined;
	if (header[0] === MAGIC || header[0] === MAGIC_V1) {
		base.version = header[0] === MAGIC ? 2 : 1;
		const size = base.version === 2 ? 4 : 3;
		const instance = /^# instance (\S+)$/.exec(header[1] ?? '');
		const generation = base.version === 2 ? /^# generation (\d+) covers (\d+):(\d+)$/.exec(header[2] ?? '') : undefined;
		const entries = /^# entries (\d+) sha256 ([0-9a-f]{64})$/.exec(header[size - 1] ?? '');
		if (instance && entries && (base.version === 1 || generation)) {
			base.instance = instance[1]!;
			if (generation) {
				base.generation = Number(generation[1]);
				base.covers = { generation: Number(generation[2]), bytes: Number(generation[3]) };
			}
			counted = { entries: Number(entries[1]), digest: entries[2]! };
			headerLines = size;
		} else {
			base.problem = 'its header is incomplete';
		}
	} else if (text !== '') {
		base.problem = 'it does not start with the kernel-udp header';
	}
	let body = text.slice(header.slice(0, headerLines).join('\n').length + (headerLines ? 1 : 0));
	if (counted && sha256(body) !== counted.digest) {
		base.problem = 'its checksum does not match: truncated or edited';
	}
	const end = body.lastIndexOf('\n') + 1;
	if (end < body.length) {
		// No line end: the file was cut in the middle of this line.
		base.problem ??= 'its last line is cut short';
		base.rejected.push({ reason: 'a line cut short at the end of the base', lines: [body.slice(end)] });
		body = body.slice(0, end);
	}
	if (!counted) {
		// Without a header, "# ..." lines are the remains of one, not entries.
		const lines = body.split('\n');
		const comments = lines.filter(line => line.startsWith('# '));
		if (comments.length > 0) {
			base.rejected.push({ reason: 'a comment line in a base without its header', lines: comments });
			body = lines
				.filter(line => line !== '' && !line.startsWith('# '))
				.map(line => `${line}\n`)
				.join('');
		}
	}
	base.body = body;
	base.lines = countLines(body);
	if (counted && !base.problem && base.lines !== counted.entries) {
		base.problem = `it holds ${base.lines} entries, its header says ${counted.entries}`;
	}
	return base;
}

export function countLines(text: string): number {
	let lines = 0;
	for (let at = text.indexOf('\n'); at !== -1; at = text.indexOf('\n', at + 1)) {
		lines++;
	}
	return lines;
}

export function logHeader(generation: number): string {
	return `${LOG_MAGIC} generation ${generation}\n`;
}

/** One group commit: the change lines and their trailer. */
export function serializeBatch(changes: Change[]): string {
	const lines = changes.map(change => (change.op === '+' ? `+ ${change.key} ${change.value}\n` : `- ${change.key}\n`)).join('');
	return `${lines}# batch ${changes.length} ${sha256(lines).slice(0, 16)}\n`;
}

function parseChange(line: string): Change | undefined {
	if (line.startsWith('+ ')) {
		const entry = splitEntry(line.slice(2));
		return entry ? { op: '+', key: entry[0], value: entry[1] } : undefined;
	}
	if (line.startsWith('- ') && line.length > 2 && !line.includes(' ', 2)) {
		return { op: '-', key: line.slice(2) };
	}
	return undefined;
}

/**
 * Reads a change log from byte `from` on (0: the whole file). Batches whose
 * trailer matches are returned in order; a batch that does not verify (a
 * torn end after a hard kill, an edit) is rejected whole, with its lines.
 */
export function parseLog(text: string, from = 0): ChangeLog {
	const log: ChangeLog = { generation: -1, changes: [], rejected: [] };
	const headerEnd = text.indexOf('\n');
	const header = new RegExp(`^${LOG_MAGIC} generation (\\d+)$`).exec(text.slice(0, headerEnd));
	if (!header) {
		log.problem = 'it does not start with the kernel-udp header';
		log.rejected.push({ reason: 'a change log without its header', lines: text.split('\n').filter(Boolean) });
		return log;
	}
	log.generation = Number(header[1]);
	const lines = text.slice(Math.max(from, headerEnd + 1)).split('\n');
	const torn = lines.pop();
	let batch: string[] = [];
	const reject = (reason: string, rejected: string[]) => {
		log.problem ??= reason;
		log.rejected.push({ reason, lines: rejected });
	};
	for (const line of lines) {
		const trailer = /^# batch (\d+) ([0-9a-f]{16})$/.exec(line);
		if (!trailer) {
			batch.push(line);
			continue;
		}
		const body = batch.map(change => `${change}\n`).join('');
		const changes = batch.map(parseChange);
		if (Number(trailer[1]) !== batch.length || sha256(body).slice(0, 16) !== trailer[2] || changes.includes(undefined)) {
			reject('a batch of the change log that does not match its checksum', batch);
		} else {
			log.changes.push(...(changes as Change[]));
		}
		batch = [];
	}
	if (torn) {
		batch.push(torn);
	}
	if (batch.length > 0) {
		reject('the last batch of the change log is incomplete (cut short by a crash)', batch);
	}
	return log;
}

/** Applies changes in order. */
export function applyChanges(entries: Map<string, string>, changes: Iterable<Change>): void {
	for (const change of changes) {
		if (change.op === '+') {
			entries.set(change.key, change.value!);
		} else {
			entries.delete(change.key);
		}
	}
}

export interface JournalLine {
	seq: number;
	op: 'insert' | 'delete' | 'snapshot';
	key?: string;
	value?: string;
}

/** One line of /proc/kvjournal: `N insert KEY VALUE`, `N delete KEY` or `N snapshot`. */
export function parseJournalLine(line: string): JournalLine | undefined {
	// Words are split on spaces alone: \s would also split at 0xa0 (NBSP in latin1), a byte keys may hold.
	const match = /^(\d+) (insert|delete|snapshot)(?: ([^ ]+)(?: ([^\n]+))?)?$/.exec(line);
	if (!match) {
		return undefined;
	}
	const [, seq, op, key, value] = match;
	const valid = op === 'insert' ? key !== undefined && value !== undefined : op === 'delete' ? key !== undefined && !value : !key;
	return valid ? { seq: Number(seq), op: op as JournalLine['op'], ...(key ? { key } : {}), ...(value ? { value } : {}) } : undefined;
}
