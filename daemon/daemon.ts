/**
 * kvd: keeps a copy of udp_server's key-value table on disk and puts it back.
 *
 * One kvd runs per target (per boot) and outlives module reloads:
 *
 *   waiting   ──/proc/daemonpid appears──▶ register (write our PID)
 *   restoring  if the module is another loaded copy than the backup's, put
 *              the backup (base + change log) back through /proc/kvrestore
 *   following  read /proc/kvjournal, append each batch to the change log,
 *              fdatasync once, write back the batch's last number (group
 *              commit; with durable=1 that releases the replies)
 *   ──journal EOF (unload: the module waits for kvd to confirm its last
 *     changes first)──▶ waiting
 *
 * "N snapshot" (first after registering, or when kvd fell 4 MiB behind)
 * makes a new base from /proc/kvsnapshot (/proc/hashtable on a module
 * without it). When the change log outgrows the
 * base, kvd writes a new base from the table it keeps in memory while it
 * goes on appending (compaction, as Redis rewrites its AOF). The file
 * formats are in backup.ts.
 *
 * The journal is read with a blocking read in one of libuv's threads: an
 * idle kvd costs nothing, and a change is read as soon as it is queued (it
 * used to poll without blocking; each empty read threw an EAGAIN error whose
 * stack trace cost milliseconds of the emulated CPU). To leave, kvd
 * unregisters, and the module answers that read with the lines queued
 * before, then end of file.
 *
 * Bytes, not text: keys and values may hold any byte the module takes
 * (0x80-0xff, and control bytes from the memcached port), valid UTF-8 or
 * not. Every file and /proc read is decoded as latin1, one character per
 * byte, and encoded back the same way, so nothing is ever replaced by U+FFFD
 * and a string's length is its size in bytes.
 *
 * State for ./run, in --run-dir (default /run, so it goes with the boot):
 * kvd.pid; kvd.status (JSON: state, restored, rejected, rejects file);
 * kvd.ready (the module copy kvd follows, once the backup is restored into it).
 */
import { closeSync, constants, existsSync, fdatasyncSync, openSync, read, writeFileSync, writeSync } from 'node:fs';
import { copyFile, mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import { writeFileAtomically } from '../src/files.js';
import { acquireLock, type HeldLock } from '../src/lock.js';
import {
	applyChanges,
	type Change,
	countLines,
	logHeader,
	parseJournalLine,
	parseTable,
	type Rejected,
	serializeBase,
	serializeBatch,
	tableLines,
} from './backup.js';
import { COMPACT_MIN, compactionDue, loadBackup, REFUSED, restoreText, writeRejects } from './store.js';
import { type BaseKind, baseSteps, crashPoint } from './crash-points.js';
import type { KvdOptions, Status } from './status.js';

/** The most bytes of lines one /proc/kvrestore write carries. */
export const RESTORE_CHUNK = 256 * 1024;
/** The most bytes of journal lines one read takes: one batch, one fdatasync. */
const JOURNAL_READ = 1024 * 1024;
const readAsync = promisify(read);

export const log = pino({ base: undefined, name: 'kvd' }, pino.destination(2));

interface Compaction {
	generation: number;
	baseBytes: number;
	/** Batches appended to the old log after the new base was taken. */
	pending: string[];
	promise: Promise<void>;
	outcome: { done: boolean; error?: unknown };
}

export class Kvd {
	private lock: HeldLock | undefined;
	private status: Status;
	private stopping = false;
	/** Registered with the loaded module: stop() has to unregister. */
	private registered = false;
	/** The module copy kvd must not register with again (it is being unloaded). */
	private detachedFrom: string | undefined;

	// The backup as kvd has it on disk, and the table it describes.
	private entries = new Map<string, string>();
	private baseGeneration = 0;
	private baseBytes = 0;
	private logGeneration = 0;
	private logBytes = 0;
	/** The change log, open for appending (a file descriptor). */
	private logFd: number | undefined;
	private compaction: Compaction | undefined;
	private compactFloor = COMPACT_MIN;
	private batches = 0;

	constructor(private readonly options: KvdOptions) {
		this.status = {
			pid: process.pid,
			state: 'waiting',
			backup: options.backup,
			restored: 0,
			rejected: 0,
			problems: [],
			since: new Date().toISOString(),
		};
	}

	private proc(name: string): string {
		return path.join(this.options.proc, name);
	}

	/**
	 * The whole table as `KEY VALUE` lines: /proc/kvsnapshot where the module
	 * has it (only the entries to back up: memcached entries with an expiry
	 * time are a cache), else /proc/hashtable.
	 */
	private tableFile(): string {
		const snapshot = this.proc('kvsnapshot');
		return existsSync(snapshot) ? snapshot : this.proc('hashtable');
	}

	private run(name: string): string {
		return path.join(this.options.runDir, `kvd.${name}`);
	}

	private get logFile(): string {
		return `${this.options.backup}.log`;
	}

	/** Which loaded copy of the module this is: changes on every insmod and every boot. */
	async instance(): Promise<string> {
		const bootId = (await readFile('/proc/sys/kernel/random/boot_id', 'utf8')).trim();
		const loaded = await stat(path.join('/sys/module', this.options.module));
		return `${bootId}:${loaded.ino}`;
	}

	private async setStatus(change: Partial<Status>): Promise<void> {
		this.status = { ...this.status, ...change, since: new Date().toISOString() };
		await writeFileAtomically(this.run('status'), `${JSON.stringify(this.status)}\n`);
	}

	/**
	 * One kvd per backup file: the shared lock of src/lock.ts, which records
	 * the owner's boot id beside its PID (the lab keeps /var/tmp on the host,
	 * so the lock outlives the guest).
	 */
	async start(): Promise<void> {
		this.lock = await acquireLock(
			`${this.options.backup}.lock`,
			0,
			holder => `another kvd (pid ${holder.pid}) is already running for ${this.options.backup}`,
		);
		// A --run-dir of one's own (several kvds, a bench) need not exist yet: kvd used to stop with ENOENT.
		await mkdir(this.options.runDir, { recursive: true, mode: 0o755 });
		await rm(this.run('ready'), { force: true });
		await this.removePartials();
		await this.setStatus({ state: 'waiting' });
		await writeFile(this.run('pid'), `${process.pid}\n`);
		log.info({ backup: this.options.backup }, 'started; waiting for the module');
	}

	/**
	 * A kvd that crashed while writing a new base or log left its temporary
	 * file (`BACKUP.<pid>-<random>.partial`, src/files.ts): never read, only
	 * in the way. Under the lock, no other kvd is writing one.
	 */
	private async removePartials(): Promise<void> {
		const dir = path.dirname(this.options.backup);
		const base = path.basename(this.options.backup);
		const partial = /^(log\.)?\d+-[0-9a-f]+\.partial$/;
		for (const name of await readdir(dir).catch(() => [] as string[])) {
			if (name.startsWith(`${base}.`) && partial.test(name.slice(base.length + 1))) {
				await rm(path.join(dir, name), { force: true });
				log.info(`removed ${name}, left by a kvd that stopped while writing it`);
			}
		}
	}

	async loop(): Promise<void> {
		while (!this.stopping) {
			const instance = await this.waitForModule();
			if (!instance) {
				break;
			}
			try {
				await this.follow(instance);
			} catch (error) {
				log.error({ err: error }, `following ${this.options.module} failed; trying again in 1 s`);
				await this.setStatus({ state: 'failed', error: (error as Error).message });
				await rm(this.run('ready'), { force: true });
				await sleep(1000);
			}
		}
	}

	/** Polls for a module to register with (every 10 ms: a load waits on it); undefined when stopping. */
	private async waitForModule(): Promise<string | undefined> {
		while (!this.stopping) {
			if (existsSync(this.proc('daemonpid'))) {
				const instance = await this.instance().catch(() => undefined);
				if (instance && instance !== this.detachedFrom) {
					return instance;
				}
			}
			await sleep(10);
		}
		return undefined;
	}

	private async follow(instance: string): Promise<void> {
		try {
			await writeFile(this.proc('daemonpid'), `${process.pid}\n`);
		} catch (error) {
			if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
				return; // unloaded meanwhile
			}
			throw error;
		}
		const journal = openSync(this.proc('kvjournal'), constants.O_RDONLY);
		const confirm = openSync(this.proc('kvjournal'), constants.O_WRONLY);
		this.registered = true;
		if (this.stopping) {
			this.unregister(); // stop() came while registering
		}
		try {
			await this.setStatus({ state: 'restoring', instance, restored: 0, rejected: 0, problems: [] });
			log.info({ instance }, 'registered');
			await this.restore(instance);
			// The table is whole: the server can answer. The old backup stays
			// valid on disk until the snapshot (the journal's first line)
			// replaces it, and the changes meanwhile wait in the journal.
			await this.setStatus({ state: 'following' });
			await writeFile(this.run('ready'), `${instance}\n`);
			await this.pump(journal, confirm, instance);
			this.registered = false;
			await this.finishCompaction(true);
			this.detachedFrom = instance;
			await rm(this.run('ready'), { force: true });
			await this.setStatus({ state: this.stopping ? 'stopped' : 'detached' });
			log.info({ instance, batches: this.batches }, this.stopping ? 'left the module' : 'the module was unloaded');
		} finally {
			this.registered = false;
			closeSync(journal);
			closeSync(confirm);
			this.closeLog();
		}
	}

	/** Loads the backup and, for a new copy of the module, puts it back. */
	private async restore(instance: string): Promise<void> {
		const started = performance.now();
		const loaded = await loadBackup(this.options.backup);
		this.baseGeneration = loaded.baseGeneration;
		this.baseBytes = loaded.baseBytes;
		this.logGeneration = loaded.logGeneration;
		this.logBytes = loaded.logBytes;
		if (loaded.instance === instance) {
			log.info('the module is the copy the backup was taken from: it holds every write; nothing to restore');
			return;
		}
		for (const problem of loaded.problems) {
			log.error(problem);
		}
		if (loaded.problems.length > 0 && existsSync(this.options.backup)) {
			// The next snapshot replaces the base: keep the damaged one as it was.
			const copy = `${this.options.backup}.damaged-${new Date().toISOString().replace(/[:.]/g, '-')}`;
			await copyFile(this.options.backup, copy, constants.COPYFILE_EXCL);
			log.warn(`kept the damaged base as ${copy}`);
		}
		const current = parseTable(await readFile(this.tableFile(), 'latin1'));
		const text = restoreText(loaded, current);
		const loadMs = Math.round(performance.now() - started);
		const { restored, refused } = this.restoreLines(Buffer.from(text, 'latin1'));
		const rejected = [...loaded.rejected, ...refused];
		const count = rejected.reduce((sum, group) => sum + group.lines.length, 0);
		const rejectsFile = await writeRejects(this.options.backup, rejected);
		const ms = Math.round(performance.now() - started);
		if (rejectsFile) {
			log.warn(
				{ restored, ms, rejected: count, rejectsFile },
				`restored ${restored} entries; ${count} could not be: kept in ${rejectsFile}`,
			);
		} else {
			log.info({ restored, ms, loadMs }, `restored ${restored} entries in ${ms} ms`);
		}
		await this.setStatus({ restored, rejected: count, problems: loaded.problems, ...(rejectsFile ? { rejectsFile } : {}) });
	}

	/**
	 * Writes `KEY VALUE` lines to /proc/kvrestore in writes of up to
	 * RESTORE_CHUNK, cut at line ends. A write stops before a line the
	 * module refuses; the next write, starting with it, fails with the
	 * reason, and the line is kept aside.
	 */
	private restoreLines(buffer: Buffer): { restored: number; refused: Rejected[] } {
		const refused = new Map<string, string[]>();
		let restored = 0;
		const fd = openSync(this.proc('kvrestore'), 'w');
		try {
			let offset = 0;
			while (offset < buffer.length) {
				const limit = Math.min(offset + RESTORE_CHUNK, buffer.length);
				const end = limit === buffer.length ? limit : buffer.lastIndexOf(0x0a, limit - 1) + 1 || limit;
				try {
					const taken = writeSync(fd, buffer, offset, end - offset);
					for (let at = buffer.indexOf(0x0a, offset); at !== -1 && at < offset + taken; at = buffer.indexOf(0x0a, at + 1)) {
						restored++;
					}
					offset += taken;
				} catch (error) {
					const code = (error as NodeJS.ErrnoException).code ?? '';
					if (!REFUSED.has(code)) {
						throw error;
					}
					const lineEnd = buffer.indexOf(0x0a, offset);
					const group = refused.get(code) ?? [];
					group.push(buffer.toString('latin1', offset, lineEnd));
					refused.set(code, group);
					offset = lineEnd + 1;
				}
			}
		} finally {
			closeSync(fd);
		}
		const reasons: Record<string, string> = {
			EINVAL: 'EINVAL: refused by the module as not a valid KEY VALUE line',
			ENOSPC: 'ENOSPC: the table is full (max_entries or max_bytes)',
			EBUSY: 'EBUSY: the module was busy',
			ENOMEM: 'ENOMEM: the module had no memory for it',
		};
		return { restored, refused: [...refused].map(([code, lines]) => ({ reason: reasons[code] ?? code, lines })) };
	}

	/**
	 * Follows the journal until a read returns 0: the module is being
	 * unloaded, or kvd left (stop() unregisters; the module then hands out
	 * the lines queued before, then 0). The read blocks in one of libuv's
	 * threads, so an idle kvd costs no CPU and a change is read the moment
	 * it is queued; the confirmations go through their own descriptor.
	 */
	private async pump(journal: number, confirm: number, instance: string): Promise<void> {
		const buffer = Buffer.allocUnsafe(JOURNAL_READ);
		for (;;) {
			let n: number;
			try {
				({ bytesRead: n } = await readAsync(journal, buffer, 0, buffer.length, null));
			} catch (error) {
				const code = (error as NodeJS.ErrnoException).code;
				// Another reader took the lines, or a signal came: read again.
				if (code === 'EAGAIN' || code === 'EINTR') continue;
				// EIO: the module removed the file between two reads, after its last line.
				if (code !== 'EIO') throw error;
				n = 0;
			}
			if (n > 0) {
				await this.commit(confirm, buffer.toString('latin1', 0, n), instance);
			}
			await this.finishCompaction(false);
			if (n === 0) {
				return;
			}
		}
	}

	/** One group commit: append the batch, fdatasync once, confirm its last number. */
	private async commit(confirm: number, text: string, instance: string): Promise<void> {
		const lines = text.split('\n');
		lines.pop();
		let last = 0;
		let changes: Change[] = [];
		for (const line of lines) {
			const parsed = parseJournalLine(line);
			if (!parsed) {
				log.error(`not a journal line, skipped: ${JSON.stringify(line.slice(0, 80))}`);
				continue;
			}
			last = Math.max(last, parsed.seq);
			if (parsed.op === 'snapshot') {
				// The snapshot holds every change before it in the batch.
				changes = [];
				await this.snapshot(instance);
			} else {
				changes.push(parsed.op === 'insert' ? { op: '+', key: parsed.key!, value: parsed.value! } : { op: '-', key: parsed.key! });
			}
		}
		if (changes.length > 0) {
			const batch = serializeBatch(changes);
			applyChanges(this.entries, changes);
			this.append(batch);
		}
		if (last > 0) {
			try {
				writeSync(confirm, String(last));
			} catch (error) {
				// EIO: the module is gone (it waited 5 s for this); the changes are on disk all the same.
				if ((error as NodeJS.ErrnoException).code !== 'EIO') throw error;
			}
			if (changes.length > 0) crashPoint('after-confirm');
		}
		this.batches++;
		this.maybeCompact(instance);
	}

	private closeLog(): void {
		if (this.logFd !== undefined) {
			closeSync(this.logFd);
			this.logFd = undefined;
		}
	}

	/**
	 * One write and one fdatasync, synchronous: on the commit path a trip
	 * through libuv's thread pool costs more than the call in the emulated
	 * guest, and kvd has nothing else to do meanwhile (a compaction goes on
	 * in the pool).
	 */
	private append(batch: string): void {
		this.logFd ??= openSync(this.logFile, 'a', 0o600);
		const bytes = Buffer.from(batch, 'latin1');
		for (let offset = 0; offset < bytes.length; ) {
			offset += writeSync(this.logFd, bytes, offset);
		}
		crashPoint('before-fdatasync');
		fdatasyncSync(this.logFd);
		crashPoint('after-append');
		this.logBytes += bytes.length;
		this.compaction?.pending.push(batch);
	}

	/** Replaces the log by an empty one (plus `pending`) of a new base's generation. */
	private async resetLog(generation: number, pending: string, kind: BaseKind): Promise<void> {
		const text = logHeader(generation) + pending;
		this.closeLog();
		await writeFileAtomically(this.logFile, Buffer.from(text, 'latin1'), {
			mode: 0o600,
			durable: true,
			onStep: step => step === 'written' && crashPoint('before-log-remove', kind),
		});
		this.logGeneration = generation;
		this.logBytes = text.length;
	}

	private newBase(instance: string, generation: number, body = tableLines(this.entries)): string {
		return serializeBase(
			{ instance, generation, covers: { generation: this.logGeneration, bytes: this.logBytes } },
			body,
			countLines(body),
		);
	}

	/** "N snapshot": the table as it is now becomes the base. */
	private async snapshot(instance: string): Promise<void> {
		await this.finishCompaction(true);
		const started = performance.now();
		const table = await readFile(this.tableFile(), 'latin1');
		this.entries = parseTable(table);
		const generation = Math.max(this.baseGeneration, this.logGeneration) + 1;
		// /proc/hashtable prints the base's own lines.
		const text = this.newBase(instance, generation, table);
		await writeFileAtomically(this.options.backup, Buffer.from(text, 'latin1'), {
			mode: 0o600,
			durable: true,
			onStep: baseSteps('snapshot'),
		});
		this.baseGeneration = generation;
		this.baseBytes = text.length;
		await this.resetLog(generation, '', 'snapshot');
		log.info({ entries: this.entries.size, ms: Math.round(performance.now() - started) }, 'snapshot saved');
	}

	/** Starts writing a new base from memory while batches go on into the old log. */
	private maybeCompact(instance: string): void {
		if (this.compaction || !compactionDue(this.logBytes, this.baseBytes, this.compactFloor)) {
			return;
		}
		const generation = Math.max(this.baseGeneration, this.logGeneration) + 1;
		const text = this.newBase(instance, generation);
		const outcome: Compaction['outcome'] = { done: false };
		const promise = writeFileAtomically(this.options.backup, Buffer.from(text, 'latin1'), {
			mode: 0o600,
			durable: true,
			onStep: baseSteps('compact'),
		}).then(
			() => {
				outcome.done = true;
			},
			error => {
				outcome.error = error;
			},
		);
		this.compaction = { generation, baseBytes: text.length, pending: [], promise, outcome };
	}

	private async finishCompaction(wait: boolean): Promise<void> {
		const compaction = this.compaction;
		if (!compaction) {
			return;
		}
		if (wait) {
			await compaction.promise;
		}
		const { outcome } = compaction;
		if (!outcome.done && outcome.error === undefined) {
			return;
		}
		this.compaction = undefined;
		if (outcome.error !== undefined) {
			// The old base and log are intact; try again when the log has doubled.
			this.compactFloor = this.logBytes * 2;
			log.error({ err: outcome.error }, 'compaction failed');
			return;
		}
		const before = this.logBytes;
		this.baseGeneration = compaction.generation;
		this.baseBytes = compaction.baseBytes;
		await this.resetLog(compaction.generation, compaction.pending.join(''), 'compact');
		this.compactFloor = COMPACT_MIN;
		log.info({ entries: this.entries.size, logBytesBefore: before, logBytes: this.logBytes }, 'compacted');
	}

	/** SIGTERM: confirm every change read, leave the module, then exit. */
	stop(): void {
		this.stopping = true;
		if (this.registered) {
			this.unregister(); // wakes the journal read (pump)
		}
	}

	/** Unregisters from the module (ENOENT: it is gone already, which is as good). */
	private unregister(): void {
		try {
			writeFileSync(this.proc('daemonpid'), '0\n');
		} catch (error) {
			if ((error as NodeJS.ErrnoException).code !== 'ENOENT') {
				throw error;
			}
		}
	}

	/**
	 * Removes kvd's files, if they are its own: a kvd that did not get the
	 * lock leaves the running one's pid, ready and status files alone (it
	 * used to delete them, and ./run then took the running kvd for dead).
	 */
	async cleanUp(): Promise<void> {
		this.closeLog();
		if (this.lock) {
			await rm(this.run('pid'), { force: true });
			await rm(this.run('ready'), { force: true });
			await this.setStatus({ state: 'stopped' });
			await this.lock.release();
			this.lock = undefined;
		}
	}
}
