/**
 * kvd's group commit, on a thread of its own (a worker thread): a blocking
 * read of /proc/kvjournal, one write and one fdatasync of the change log,
 * the batch's last number written back, and again. Nothing else runs on
 * this thread, so a batch goes from the module to the disk and back without
 * waiting for libuv's thread pool or Node's event loop: the loop that
 * bench/commitloop.c measures as the floor of this design, in TypeScript.
 *
 * The main thread keeps the table in memory (for compaction) and does what
 * is rare: each committed batch is posted to it afterwards, off the commit
 * path. Two hand-overs, through a shared Int32Array (`Control`):
 *   - a batch holding "N snapshot" is not committed here: the loop posts it
 *     whole, the main thread takes the snapshot and appends the rest of
 *     the batch, and the loop waits (PAUSE) until it has, then confirms;
 *   - the main thread replaces the change log after a snapshot or a
 *     compaction. It takes LOCK, which the loop holds around each append,
 *     takes in the batches already posted (receiveMessageOnPort, so that no
 *     appended batch is left out of the new log), and bumps LOG_GENERATION
 *     once the new log is in place: the loop then reopens the file.
 */
import { closeSync, fdatasyncSync, openSync, readSync, writeSync } from 'node:fs';
import { type MessagePort, parentPort, workerData } from 'node:worker_threads';
import { type Change, parseJournalLine, serializeBatch } from './backup.js';
import { crashPoint } from './crash-points.js';

/** Indices into the shared Int32Array. */
export const LOCK = 0;
export const LOG_GENERATION = 1;
export const PAUSE = 2;
/** Set by the main thread when it failed: the loop stops at the next batch. */
export const ABORT = 3;
export const CONTROL_SLOTS = 4;

/** The most bytes of journal lines one read takes: one batch, one fdatasync. */
export const JOURNAL_READ = 1024 * 1024;

export interface CommitLoopData {
	/** /proc/kvjournal: the loop opens it twice, to read and to confirm, and closes it. */
	journalFile: string;
	logFile: string;
	control: SharedArrayBuffer;
	port: MessagePort;
}

/** What the loop posts to the main thread, in this order for each batch. */
export type CommitMessage =
	/** Appended, synced and confirmed: the main thread applies it to its table. */
	| { type: 'batch'; batch: string; changes: Change[] }
	/** Holds a snapshot: for the main thread to commit; the loop waits for PAUSE to drop. */
	| { type: 'main'; text: string }
	| { type: 'skipped'; line: string }
	/** The journal is open: the loop is about to read it. */
	| { type: 'started' }
	/** The journal ended (unloaded, or kvd unregistered): the loop has stopped. */
	| { type: 'end' };

/** Takes the lock: a compare-and-swap, waiting on the slot while the other thread holds it. */
export function lock(control: Int32Array): void {
	while (Atomics.compareExchange(control, LOCK, 0, 1) !== 0) {
		Atomics.wait(control, LOCK, 1, 100);
	}
}

export function unlock(control: Int32Array): void {
	Atomics.store(control, LOCK, 0);
	Atomics.notify(control, LOCK);
}

const SNAPSHOT = /^\d+ snapshot$/m;
const CHANGE = /^\d+ (insert|delete) /m;

function readJournal(fd: number, buffer: Buffer): number {
	for (;;) {
		try {
			return readSync(fd, buffer, 0, buffer.length, null);
		} catch (error) {
			const code = (error as NodeJS.ErrnoException).code;
			// Another reader took the lines, or a signal came: read again.
			if (code === 'EAGAIN' || code === 'EINTR') continue;
			// EIO: the module removed the file between two reads, after its last line.
			if (code === 'EIO') return 0;
			throw error;
		}
	}
}

/** The highest number of a batch's lines. */
function lastNumber(text: string): number {
	let last = 0;
	for (const match of text.matchAll(/^(\d+) /gm)) {
		last = Math.max(last, Number(match[1]));
	}
	return last;
}

/** The changes of a batch of journal lines, and its last number; lines that do not parse are posted. */
function parseBatch(text: string, port: MessagePort): { changes: Change[]; last: number } {
	const lines = text.split('\n');
	lines.pop();
	const changes: Change[] = [];
	let last = 0;
	for (const line of lines) {
		const parsed = parseJournalLine(line);
		if (!parsed) {
			port.postMessage({ type: 'skipped', line: line.slice(0, 80) } satisfies CommitMessage);
			continue;
		}
		last = Math.max(last, parsed.seq);
		changes.push(parsed.op === 'insert' ? { op: '+', key: parsed.key!, value: parsed.value! } : { op: '-', key: parsed.key! });
	}
	return { changes, last };
}

/** Writes the batch's last number back (with durable=1 that releases its replies). */
export function confirmUpTo(confirm: number, last: number): void {
	try {
		writeSync(confirm, String(last));
	} catch (error) {
		// EIO: the module is gone (it waited 5 s for this); the changes are on disk all the same.
		if ((error as NodeJS.ErrnoException).code !== 'EIO') throw error;
	}
}

export function runCommitLoop({ journalFile, logFile, control: shared, port }: CommitLoopData): void {
	const control = new Int32Array(shared);
	const buffer = Buffer.allocUnsafe(JOURNAL_READ);
	// Opened here, not passed in: a descriptor closed by another thread while this one
	// reads it stays blocked, and its number may meanwhile name another file.
	const journal = openSync(journalFile, 'r');
	const confirm = openSync(journalFile, 'w');
	let logFd: number | undefined;
	let logGeneration = -1;
	port.postMessage({ type: 'started' } satisfies CommitMessage);
	try {
		for (;;) {
			const n = readJournal(journal, buffer);
			if (n === 0) {
				break;
			}
			const text = buffer.toString('latin1', 0, n);
			if (SNAPSHOT.test(text)) {
				Atomics.store(control, PAUSE, 1);
				port.postMessage({ type: 'main', text } satisfies CommitMessage);
				while (Atomics.load(control, PAUSE) === 1) {
					Atomics.wait(control, PAUSE, 1, 1000);
				}
				if (Atomics.load(control, ABORT) === 1) {
					break;
				}
				confirmUpTo(confirm, lastNumber(text));
				if (CHANGE.test(text)) crashPoint('after-confirm');
				continue;
			}
			if (Atomics.load(control, ABORT) === 1) {
				break;
			}
			const { changes, last } = parseBatch(text, port);
			if (changes.length > 0) {
				const batch = serializeBatch(changes);
				const bytes = Buffer.from(batch, 'latin1');
				lock(control);
				try {
					if (logFd === undefined || logGeneration !== Atomics.load(control, LOG_GENERATION)) {
						if (logFd !== undefined) closeSync(logFd);
						logGeneration = Atomics.load(control, LOG_GENERATION);
						logFd = openSync(logFile, 'a', 0o600);
					}
					for (let offset = 0; offset < bytes.length; ) {
						offset += writeSync(logFd, bytes, offset);
					}
					crashPoint('before-fdatasync');
					fdatasyncSync(logFd);
					crashPoint('after-append');
					// Posted under the lock: a new log takes in every batch appended to the old one.
					port.postMessage({ type: 'batch', batch, changes } satisfies CommitMessage);
				} finally {
					unlock(control);
				}
			}
			if (last > 0) {
				confirmUpTo(confirm, last);
				if (changes.length > 0) crashPoint('after-confirm');
			}
		}
	} finally {
		if (logFd !== undefined) closeSync(logFd);
		closeSync(journal);
		closeSync(confirm);
	}
	// Not on an error: the worker's 'error' event reports that.
	port.postMessage({ type: 'end' } satisfies CommitMessage);
}

if (parentPort && (workerData as CommitLoopData | undefined)?.port) {
	runCommitLoop(workerData as CommitLoopData);
}
