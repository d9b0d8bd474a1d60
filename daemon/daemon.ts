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
 * The group commit runs on a worker thread of its own (commit-loop.ts): a
 * blocking read of the journal, one write and one fdatasync, the
 * confirmation, and again, without a trip through libuv's thread pool or
 * the event loop (it used to read in the pool; kvd then reached about half
 * of what bench/commitloop.c, the same loop in C, does). An idle kvd costs
 * nothing: the read blocks. This thread keeps the table in memory, takes
 * snapshots and compacts. To leave, kvd unregisters, and the module answers
 * the loop's read with the lines queued before, then end of file.
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
import { closeSync, constants, existsSync, fdatasyncSync, openSync, writeFileSync, writeSync } from 'node:fs';
import { copyFile, mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { MessageChannel, type MessagePort, receiveMessageOnPort, Worker } from 'node:worker_threads';
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
import { ABORT, type CommitLoopData, type CommitMessage, CONTROL_SLOTS, LOG_GENERATION, lock, PAUSE, unlock } from './commit-loop.js';
import type { KvdOptions, Status } from './status.js';

/** The most bytes of lines one /proc/kvrestore write carries. */
export const RESTORE_CHUNK = 256 * 1024;

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
	// The commit loop while kvd follows the journal (commit-loop.ts).
	private control: Int32Array | undefined;
	private port: MessagePort | undefined;
	private onMessage: ((message: CommitMessage) => void) | undefined;
	private logHeld = false;
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
			// Ready once the commit loop runs: with durable=1 no write is answered before.
			await this.pump(instance, async () => {
				await this.setStatus({ state: 'following' });
				await writeFile(this.run('ready'), `${instance}\n`);
			});
			this.registered = false;
			await this.finishCompaction(true);
			this.detachedFrom = instance;
			await rm(this.run('ready'), { force: true });
			await this.setStatus({ state: this.stopping ? 'stopped' : 'detached' });
			log.info({ instance, batches: this.batches }, this.stopping ? 'left the module' : 'the module was unloaded');
		} finally {
			this.registered = false;
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
	 * the lines queued before, then 0). The group commit runs on a thread of
	 * its own (commit-loop.ts); this thread takes in each batch it committed,
	 * and takes a snapshot when a batch asks for one.
	 */
	private async pump(instance: string, started: () => Promise<void>): Promise<void> {
		const shared = new SharedArrayBuffer(CONTROL_SLOTS * Int32Array.BYTES_PER_ELEMENT);
		const { port1, port2 } = new MessageChannel();
		const data: CommitLoopData = { journalFile: this.proc('kvjournal'), logFile: this.logFile, control: shared, port: port2 };
		this.control = new Int32Array(shared);
		this.port = port1;
		const worker = new Worker(new URL('./commit-loop.js', import.meta.url), { workerData: data, transferList: [port2] });
		const exited = new Promise(resolve => worker.once('exit', resolve));
		let work = Promise.resolve();
		let failure: unknown;
		// Runs in order after what came before; skipped once something failed.
		const step = (fn: () => Promise<void>) => {
			work = work
				.then(() => (failure === undefined ? fn() : undefined))
				.catch(error => {
					// The table in memory no longer matches the log: stop the loop.
					failure ??= error;
					this.abortLoop();
				});
		};
		let end = () => {};
		const ended = new Promise<void>((resolve, reject) => {
			end = resolve;
			worker.on('error', reject);
			worker.on('exit', code => {
				this.drain(); // its last messages, if the exit came first
				if (code === 0) resolve();
				else reject(new Error(`kvd's commit loop exited with ${code}`));
			});
		});
		this.onMessage = message => {
			if (message.type === 'batch') {
				this.absorb(message);
				step(() => this.afterBatch(instance));
			} else if (message.type === 'main') {
				step(async () => {
					await this.commit(message.text, instance);
					this.resume();
				});
			} else if (message.type === 'started') {
				step(started);
			} else if (message.type === 'skipped') {
				log.error(`not a journal line, skipped: ${JSON.stringify(message.line)}`);
			} else {
				end();
			}
		};
		port1.on('message', (message: CommitMessage) => this.onMessage?.(message));
		try {
			await ended;
		} catch (error) {
			failure ??= error;
		} finally {
			await work;
			// Its read may still block if this thread failed first: abortLoop() woke it.
			await exited;
			port1.close();
			this.port = undefined;
			this.onMessage = undefined;
			this.control = undefined;
		}
		if (failure !== undefined) {
			throw failure;
		}
	}

	/** Takes in, on this thread and now, what the loop posted and this thread has not yet seen. */
	private drain(): void {
		for (let received = this.port && receiveMessageOnPort(this.port); received; received = this.port && receiveMessageOnPort(this.port)) {
			this.onMessage?.(received.message as CommitMessage);
		}
	}

	/** A batch the loop committed: into the table in memory (and a compaction's pending batches). */
	private absorb({ batch, changes }: { batch: string; changes: Change[] }): void {
		applyChanges(this.entries, changes);
		this.logBytes += batch.length;
		this.compaction?.pending.push(batch);
		this.batches++;
	}

	private async afterBatch(instance: string): Promise<void> {
		this.maybeCompact(instance);
		await this.finishCompaction(false);
	}

	/** Lets the loop go on after a batch this thread committed. */
	private resume(): void {
		if (this.control) {
			Atomics.store(this.control, PAUSE, 0);
			Atomics.notify(this.control, PAUSE);
		}
	}

	/** Stops the loop at its next batch and wakes its read (by unregistering). */
	private abortLoop(): void {
		if (this.control) {
			Atomics.store(this.control, ABORT, 1);
		}
		this.resume();
		this.unregister();
	}

	/**
	 * A batch holding a snapshot, committed on this thread while the loop
	 * waits: the snapshot holds every change before it in the batch, the
	 * changes after it are appended. The loop confirms the batch.
	 */
	private async commit(text: string, instance: string): Promise<void> {
		const lines = text.split('\n');
		lines.pop();
		let changes: Change[] = [];
		for (const line of lines) {
			const parsed = parseJournalLine(line);
			if (!parsed) {
				log.error(`not a journal line, skipped: ${JSON.stringify(line.slice(0, 80))}`);
				continue;
			}
			if (parsed.op === 'snapshot') {
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

	/**
	 * Replaces the log by an empty one (plus `pending()`) of a new base's
	 * generation. Under the commit loop's lock, after taking in the batches
	 * it has appended: `pending()` is read then, so none is left out.
	 */
	private async resetLog(generation: number, pending: () => string, kind: BaseKind): Promise<void> {
		if (this.logHeld) {
			throw new Error('resetLog entered twice'); // it would wait on its own lock forever
		}
		this.logHeld = true;
		const control = this.control;
		if (control) {
			lock(control);
			this.drain();
		}
		try {
			const text = logHeader(generation) + pending();
			this.closeLog();
			await writeFileAtomically(this.logFile, Buffer.from(text, 'latin1'), {
				mode: 0o600,
				durable: true,
				onStep: step => step === 'written' && crashPoint('before-log-remove', kind),
			});
			this.logGeneration = generation;
			this.logBytes = text.length;
		} finally {
			if (control) {
				Atomics.add(control, LOG_GENERATION, 1); // the loop reopens the log
				unlock(control);
			}
			this.logHeld = false;
		}
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
		await this.resetLog(generation, () => '', 'snapshot');
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
		if (outcome.error !== undefined) {
			this.compaction = undefined;
			// The old base and log are intact; try again when the log has doubled.
			this.compactFloor = this.logBytes * 2;
			log.error({ err: outcome.error }, 'compaction failed');
			return;
		}
		const before = this.logBytes;
		this.baseGeneration = compaction.generation;
		this.baseBytes = compaction.baseBytes;
		// Still the compaction until resetLog has taken in the loop's last batches (its pending ones).
		await this.resetLog(
			compaction.generation,
			() => {
				this.compaction = undefined;
				return compaction.pending.join('');
			},
			'compact',
		);
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
