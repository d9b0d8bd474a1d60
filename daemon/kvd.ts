/**
 * kvd: keeps a copy of udp_server's key-value table on disk and puts it back.
 *
 * It registers its PID in /proc/daemonpid; the module sends it SIGUSR1 after
 * every change; kvd then reads /proc/hashtable and replaces the backup file
 * atomically. Signals that arrive while a save runs are coalesced into one
 * more save, so a burst of 10 000 inserts costs a handful of saves and the
 * last one has them all.
 *
 * Restore: the backup records which loaded copy of the module it was taken
 * from (boot id + the load time of /sys/module/udp_server). If kvd restarts
 * beside the same copy, the table already holds every write (it may be newer
 * than the file) and nothing is restored. If the module was loaded again or
 * the guest rebooted, the entries of the backup are inserted through /proc/ht
 * — only keys the new table does not have, since writes that reached it
 * after loading are newer than the backup.
 */
import { Command, InvalidArgumentError } from 'commander';
import { existsSync } from 'node:fs';
import { readFile, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import { acquireLock, type HeldLock } from '../src/lock.js';
import { writeFileAtomically } from '../src/files.js';
import { deserialize, parseTable, serialize } from './backup.js';

export const DEFAULT_BACKUP = '/var/tmp/hashtable_backup.txt';

interface Options {
	backup: string;
	proc: string;
	module: string;
	pidFile: string;
	json?: boolean;
}

const log = pino({ base: undefined, name: 'kvd' }, pino.destination(2));

class Kvd {
	private saving: Promise<void> | undefined;
	private dirty = false;
	private saves = 0;
	private lock: HeldLock | undefined;
	private queue: Promise<void> = Promise.resolve();

	constructor(private readonly options: Options) {}

	private proc(name: string): string {
		return path.join(this.options.proc, name);
	}

	private get lockFile(): string {
		return `${this.options.backup}.lock`;
	}

	/** Which loaded copy of the module this is: changes on every insmod and every boot. */
	async instance(): Promise<string> {
		const bootId = (await readFile('/proc/sys/kernel/random/boot_id', 'utf8')).trim();
		const loaded = await stat(path.join('/sys/module', this.options.module), { bigint: true });
		return `${bootId}:${loaded.ctimeNs}`;
	}

	async start(): Promise<void> {
		if (!existsSync(this.proc('hashtable'))) {
			throw new Error(`${this.options.module} is not loaded (${this.proc('hashtable')} is missing)`);
		}
		await this.takeLock();
		// SIGUSR1 would kill us before the handler exists: install it first.
		process.on('SIGUSR1', () => this.scheduleSave());
		await writeFile(this.proc('daemonpid'), `${process.pid}\n`);

		const restored = await this.restore();
		await this.saveInTurn();
		await writeFile(this.options.pidFile, `${process.pid}\n`);
		log.info({ restored, backup: this.options.backup }, `ready: restored ${restored} entries`);
	}

	/**
	 * One kvd per backup file: the shared lock of src/lock.ts, which records
	 * the owner's boot id beside its PID. The boot id matters because the file
	 * outlives the machine (the lab keeps /var/tmp on the host), and after a
	 * reboot the same PID may belong to anything.
	 */
	private async takeLock(): Promise<void> {
		this.lock = await acquireLock(
			this.lockFile,
			0,
			holder => `another kvd (pid ${holder.pid}) is already running for ${this.options.backup}`,
		);
	}

	private async restore(): Promise<number> {
		const text = await readFile(this.options.backup, 'utf8').catch(error => {
			if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
				return undefined;
			}
			throw error;
		});
		if (text === undefined) {
			log.info(`no backup at ${this.options.backup} yet; starting empty`);
			return 0;
		}
		const backup = deserialize(this.options.backup, text);
		if (backup.instance === (await this.instance())) {
			return 0;
		}
		const current = parseTable(await readFile(this.proc('hashtable'), 'utf8'));
		let restored = 0;
		for (const [key, value] of backup.entries) {
			if (current.has(key)) {
				continue;
			}
			// One command per write(2): /proc/ht runs each write as one request.
			await writeFile(this.proc('ht'), `insert ${key} ${value}`);
			restored++;
		}
		return restored;
	}

	scheduleSave(): void {
		this.dirty = true;
		this.saving ??= this.saveWhileDirty().finally(() => {
			this.saving = undefined;
		});
	}

	private async saveWhileDirty(): Promise<void> {
		while (this.dirty) {
			this.dirty = false;
			try {
				await this.saveInTurn();
			} catch (error) {
				log.error({ err: error }, 'save failed');
				await sleep(100);
			}
		}
	}

	/**
	 * Saves one at a time, whoever asks (start, a signal, stop): two saves at
	 * once would race on the temporary file and the rename.
	 */
	private saveInTurn(): Promise<void> {
		const turn = this.queue.then(() => this.save());
		// The caller awaits `turn` and sees its error; the queue only orders the saves.
		this.queue = turn.catch(() => undefined);
		return turn;
	}

	private async save(): Promise<void> {
		// Clear `dirty` before reading: a change during the read triggers one more save.
		const entries = parseTable(await readFile(this.proc('hashtable'), 'utf8'));
		// A crash at any moment leaves the old or the new complete backup.
		await writeFileAtomically(this.options.backup, serialize({ instance: await this.instance(), entries }), {
			mode: 0o600,
			durable: true,
		});
		this.saves++;
		log.info({ entries: entries.size, saves: this.saves }, 'saved');
	}

	/** Final save, then unregister: used on SIGTERM and before the module is unloaded. */
	async stop(): Promise<void> {
		await this.saving;
		if (existsSync(this.proc('hashtable'))) {
			await this.saveInTurn().catch(error => log.error({ err: error }, 'final save failed'));
			// The module may have been unloaded since the check: only that is expected.
			await writeFile(this.proc('daemonpid'), '0\n').catch(error => {
				if ((error as NodeJS.ErrnoException).code !== 'ENOENT') {
					log.error({ err: error }, 'could not unregister from /proc/daemonpid');
				}
			});
		}
		await this.cleanUp();
		log.info({ saves: this.saves }, 'stopped');
	}

	async cleanUp(): Promise<void> {
		await rm(this.options.pidFile, { force: true });
		await this.lock?.release();
		this.lock = undefined;
	}
}

function absolutePath(value: string): string {
	if (!path.isAbsolute(value)) {
		throw new InvalidArgumentError('must be an absolute path.');
	}
	return value;
}

const program = new Command('kvd')
	.description("Back up udp_server's key-value table to a file and restore it when the module or the machine restarts.")
	.option('--backup <file>', 'the backup file', absolutePath, DEFAULT_BACKUP)
	.option('--pid-file <file>', 'written once the table is restored and kvd is ready', absolutePath, '/run/kvd.pid')
	.option('--proc <dir>', 'where the module’s /proc files are', absolutePath, '/proc')
	.option('--module <name>', 'the server module', 'udp_server')
	.addHelpText(
		'after',
		`
Run as root beside a loaded udp_server. Logs are JSON lines on stderr.
Stop it with SIGTERM (it saves once more and unregisters).`,
	)
	.action(async (options: Options) => {
		const kvd = new Kvd(options);
		let stopping = false;
		const stop = async () => {
			if (stopping) {
				return;
			}
			stopping = true;
			await kvd.stop();
			process.exit(0);
		};
		process.on('SIGTERM', () => void stop());
		process.on('SIGINT', () => void stop());
		try {
			await kvd.start();
		} catch (error) {
			await kvd.cleanUp();
			throw error;
		}
		// Leave when the module goes away (it was unloaded without stopping us first).
		const watch = setInterval(() => {
			if (!existsSync(path.join(options.proc, 'hashtable'))) {
				log.warn(`${options.module} was unloaded; exiting`);
				clearInterval(watch);
				void kvd.cleanUp().then(() => process.exit(0));
			}
		}, 500);
	});

try {
	await program.parseAsync(process.argv);
} catch (error) {
	const message = error instanceof Error ? error.message : String(error);
	log.error(message);
	process.stderr.write(`kvd: ${message}\n`);
	process.exit(1);
}
