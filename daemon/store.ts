/**
 * kvd's backup on disk: reading base + change log into the table to restore
 * (replaying only what the base does not hold), the rejects file, and when
 * to compact. The formats themselves are in backup.ts. Files are read and
 * written as latin1: a string's characters are the file's bytes.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { pino } from 'pino';
import { type Change, parseBase, parseLog, type Rejected } from './backup.js';

/** The change log is compacted once it is past this and past the base's size. */
export const COMPACT_MIN = 1024 * 1024;
/** Refusals of /proc/kvrestore that concern one line, not the whole write. */
export const REFUSED = new Set(['EINVAL', 'ENOSPC', 'EBUSY', 'ENOMEM']);

const log = pino({ base: undefined, name: 'kvd' }, pino.destination(2));

/** Whether the log is due for compaction (see COMPACT_MIN). */
export function compactionDue(logBytes: number, baseBytes: number, floor = COMPACT_MIN): boolean {
	return logBytes > Math.max(floor, baseBytes);
}

/** A rejects file name that no earlier one has: `<backup>.rejected-<time>`. */
export function rejectsName(backup: string, when: Date): string {
	return `${backup}.rejected-${when.toISOString().replace(/[:.]/g, '-')}`;
}

/** Writes the rejected lines, grouped under their reason; never overwrites a file. */
export async function writeRejects(backup: string, rejected: Rejected[], when = new Date()): Promise<string | undefined> {
	const lines = rejected.reduce((count, group) => count + group.lines.length, 0);
	if (lines === 0) {
		return undefined;
	}
	let text = `# kernel-udp: ${lines} lines kvd could not restore from ${backup}, ${when.toISOString()}\n`;
	for (const group of rejected) {
		text += `# ${group.reason}\n${group.lines.map(line => `${line}\n`).join('')}`;
	}
	for (let attempt = 0; ; attempt++) {
		const file = `${rejectsName(backup, when)}${attempt ? `-${attempt}` : ''}`;
		try {
			await writeFile(file, text, { flag: 'wx', mode: 0o600, encoding: 'latin1' });
			return file;
		} catch (error) {
			if ((error as NodeJS.ErrnoException).code !== 'EEXIST') {
				throw error;
			}
		}
	}
}

/** What the backup files hold: the table to restore, and what had to be kept aside. */
export interface Loaded {
	instance: string;
	/** The base's entry lines, as written. */
	body: string;
	/** The changes of the log the base does not hold, in order. */
	changes: Change[];
	rejected: Rejected[];
	problems: string[];
	baseGeneration: number;
	baseBytes: number;
	logGeneration: number;
	logBytes: number;
}

/**
 * The `KEY VALUE` lines that put the backup back into a table holding
 * `current` (keys written since the load are newer than the backup). The
 * base goes as it is when nothing filters it, which is the usual case.
 */
export function restoreText(loaded: Pick<Loaded, 'body' | 'changes'>, current: ReadonlyMap<string, string>): string {
	const last = new Map<string, string | undefined>();
	for (const change of loaded.changes) {
		last.set(change.key, change.op === '+' ? change.value : undefined);
	}
	let text = loaded.body;
	if (last.size > 0 || current.size > 0) {
		const keep = (line: string) => {
			const space = line.indexOf(' ');
			const key = space > 0 ? line.slice(0, space) : line;
			return line !== '' && !last.has(key) && !current.has(key);
		};
		text = text
			.split('\n')
			.filter(keep)
			.map(line => `${line}\n`)
			.join('');
	}
	const changed: string[] = [];
	for (const [key, value] of last) {
		if (value !== undefined && !current.has(key)) {
			changed.push(`${key} ${value}\n`);
		}
	}
	return text + changed.join('');
}

async function readIfThere(file: string): Promise<string | undefined> {
	try {
		return await readFile(file, 'latin1');
	} catch (error) {
		if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
			return undefined;
		}
		throw error;
	}
}

/** Reads base + change log, replaying the part of the log the base does not hold. */
export async function loadBackup(backup: string): Promise<Loaded> {
	const baseText = await readIfThere(backup);
	const logText = await readIfThere(`${backup}.log`);
	const base = parseBase(baseText ?? '');
	const loaded: Loaded = {
		instance: base.instance,
		body: base.body,
		changes: [],
		rejected: [...base.rejected],
		problems: [],
		baseGeneration: base.generation,
		baseBytes: baseText?.length ?? 0,
		logGeneration: base.generation,
		logBytes: 0,
	};
	if (baseText !== undefined && base.problem) {
		loaded.problems.push(`the base ${backup} is damaged: ${base.problem}`);
	}
	if (logText === undefined) {
		return loaded;
	}
	const header = parseLog(logText.slice(0, logText.indexOf('\n') + 1));
	const generation = header.generation;
	let from: number | undefined = 0;
	if (generation === base.covers?.generation) {
		// A crash between the new base and its log: replay what the base does not hold.
		from = base.covers.bytes;
	} else if (generation >= 0 && generation < base.generation) {
		// An older log, all of it in the base.
		from = undefined;
		log.info(`ignoring ${backup}.log of generation ${generation}: the base (${base.generation}) holds it`);
	} else if (generation > base.generation && baseText !== undefined) {
		loaded.problems.push(`the change log is newer (${generation}) than the base (${base.generation})`);
	}
	if (from !== undefined) {
		const changes = parseLog(logText, from);
		loaded.changes = changes.changes;
		loaded.rejected.push(...changes.rejected);
		if (changes.problem) {
			loaded.problems.push(`the change log ${backup}.log is damaged: ${changes.problem}`);
		}
		loaded.logGeneration = Math.max(generation, 0);
		loaded.logBytes = logText.length;
	}
	return loaded;
}
