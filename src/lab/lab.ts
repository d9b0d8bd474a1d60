/**
 * The lab: a QEMU guest booting a real Debian kernel, where our modules are
 * loaded when this machine cannot (or should not) load them itself. A module
 * that crashes or hangs takes down the guest, never the host.
 *
 * The guest runs the host's own programs: the host's root is shared read-only
 * over virtiofs with a tmpfs overlay on top (see guest-init.sh). QEMU's guest
 * agent, qemu-ga, runs commands for us there (qga.ts); an interactive shell
 * goes through a Node agent started on demand (agent.ts). The guest stays up
 * between `./run` calls, until `./run down`; its state lives in `.lab/<name>/`.
 *
 * This file is the lab's life: boot, wait, run, forward, stop. QEMU's command
 * line is built in qemu-args.ts, the shared directories' virtiofsd started in
 * virtiofsd.ts, the state file read and written in state.ts.
 *
 * Safety: the guest gets a /32 address and a route to the host alias
 * 10.0.2.2 only, so nothing it sends can leave this machine; the host side of
 * every port forward listens on 127.0.0.1 only.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ifMissing, UserError, messageOf } from '../errors.js';
import { writeFileAtomically } from '../files.js';
import { bootId, isAlive, lockOwner, processIdentity, withFileLock } from '../lock.js';
import { log } from '../log.js';
import { requireProgram, runProgram } from '../programs.js';
import { settings } from '../settings.js';
import { agentExec, type ExecOptions, type ExecResult } from './agent-client.js';
import { ensureAgent } from './agent-start.js';
import { DEBUG_KERNEL } from './debug-kernel.js';
import { freePort } from './free-port.js';
import { buildInitramfs, findLabKernel, isWantedKernel, uncompressedKernel, type LabKernel } from './kernel.js';
import { hmp } from './monitor.js';
import { assignHost, type LabNetwork, networkOf } from './network.js';
import { QgaConnection, QgaTimeoutError, qgaExec, type Spool } from './qga.js';
import { cpuKhz, qemuArgs } from './qemu-args.js';
import { isLabProcess, type LabState, LabStateFile } from './state.js';
import { startVirtiofsd, VIRTIOFSD, virtiofsSocket, type VirtiofsShare } from './virtiofsd.js';

export interface LabOptions {
	/** Project root: the lab lives in `<root>/.lab/<name>`. */
	root: string;
	name?: string;
	memoryMb?: number;
	cpus?: number;
	bootTimeoutMs?: number;
	/** The file whose mtime says when the TypeScript was last compiled (default `<root>/dist/.build-stamp`); tests use a copy. */
	buildStamp?: string;
}

/**
 * The debug kernel (debug-kernel.ts) under emulation: KASAN takes an eighth
 * of the memory for its shadow and kmemleak and lockdep more, and it boots
 * several times slower. Its lab gets at least this much memory and time.
 */
const DEBUG_KERNEL_MEMORY_MB = 1024;
const DEBUG_KERNEL_BOOT_TIMEOUT_MS = 600_000;

/**
 * A boot whose console has printed nothing for this long has hung, and is
 * started once more: seen once in some 400 boots in CI, where the cloud
 * kernel stopped after "PCI: Fatal: No config space access function found"
 * (microvm has no PCI, so that line itself is normal) for the 180 s of the
 * boot timeout, while the labs booted next came up in about 4 s. A normal
 * boot prints every few seconds until qemu-ga answers; the debug kernel's
 * is several times slower.
 */
const BOOT_STALL_MS = 60_000;
const DEBUG_KERNEL_BOOT_STALL_MS = 240_000;

/** The console stopped before the guest was up (see BOOT_STALL_MS). */
class BootStalledError extends UserError {}

export class Lab {
	readonly name: string;
	readonly dir: string;
	/** Host directory mounted at /var/tmp in the guest; survives `./run down`. */
	readonly persistentDir: string;
	/** The guest's kernel log, mirrored live (raw /dev/kmsg records). */
	readonly kernelLog: string;
	readonly serialLog: string;
	private readonly socketDir: string;
	private readonly stateFile: LabStateFile;
	private readonly options: Required<Omit<LabOptions, 'name'>>;

	constructor(options: LabOptions) {
		this.name = options.name ?? settings.lab;
		if (!/^[\w.-]+$/.test(this.name)) {
			throw new UserError(`bad lab name "${this.name}": use letters, digits, dot, dash, underscore`);
		}
		this.options = {
			root: options.root,
			memoryMb: options.memoryMb ?? settings.labMemory,
			cpus: options.cpus ?? settings.labCpus,
			bootTimeoutMs: options.bootTimeoutMs ?? 180_000,
			buildStamp: options.buildStamp ?? path.join(options.root, 'dist', '.build-stamp'),
		};
		this.dir = path.join(options.root, '.lab', this.name);
		this.persistentDir = path.join(this.dir, 'var-tmp');
		this.kernelLog = path.join(this.dir, 'kern.log');
		this.serialLog = path.join(this.dir, 'console.log');
		// Unix socket paths are limited to 108 bytes: keep them short.
		const hash = createHash('sha256').update(this.dir).digest('hex').slice(0, 12);
		this.socketDir = path.join(tmpdir(), `kudp-${hash}`);
		this.stateFile = new LabStateFile(this.dir, this.name);
	}

	private get monitorSocket(): string {
		return path.join(this.socketDir, 'monitor.sock');
	}

	/** QEMU's end of qemu-ga's virtio-serial port. */
	private get qgaSocket(): string {
		return path.join(this.socketDir, 'qga.sock');
	}

	/** The running lab's state, or undefined when it is down. */
	async state(): Promise<LabState | undefined> {
		const state = await this.stateFile.read();
		return state && isLabProcess(state, state.qemuPid) ? state : undefined;
	}

	/** Boots the guest unless it is already up; returns its state. */
	async up(): Promise<LabState> {
		const running = await this.state();
		if (running) {
			const wanted = settings.labKernel;
			if (wanted && !isWantedKernel(running.kernel, wanted)) {
				log.warn(`the lab is already running ${running.kernel.release}, not KUDP_LAB_KERNEL=${wanted}: ./run down first to switch`);
			}
			await this.forgetRebuiltFiles();
			return running;
		}
		await mkdir(this.dir, { recursive: true });
		const debug = settings.labKernel === DEBUG_KERNEL;
		if (debug) {
			// Built (once per machine, under a lock of its own) before this lab's boot lock is taken.
			await findLabKernel();
		}
		// One boot at a time per lab: parallel tests or two terminals may ask at once.
		const lockPath = path.join(this.dir, 'boot.lock');
		const bootTimeoutMs = debug ? Math.max(this.options.bootTimeoutMs, DEBUG_KERNEL_BOOT_TIMEOUT_MS) : this.options.bootTimeoutMs;
		return withFileLock(lockPath, bootTimeoutMs + 30_000, async () => (await this.state()) ?? this.boot());
	}

	/**
	 * The guest sees this machine's files through an overlay, which does not
	 * expect its lower layer to change: after bin/bootstrap.sh replaces the
	 * compiled files in dist/, the guest's cached names for them fail ("Cannot
	 * find module", "Stale file handle") until they are dropped. So after each
	 * rebuild (dist/.build-stamp is newer than what this lab last saw), the
	 * guest forgets its cached names once, before it runs anything.
	 */
	private async forgetRebuiltFiles(): Promise<void> {
		const stamp = await this.buildStamp();
		const seen = Number(await readFile(this.buildStampSeen, 'utf8').catch(ifMissing('0')));
		if (stamp === undefined || stamp <= seen) {
			return;
		}
		const result = await qgaExec(this.qgaSocket, ['sysctl', '-q', '-w', 'vm.drop_caches=2'], { timeoutMs: 10_000 });
		if (result.exitCode !== 0) {
			log.warn(`the lab could not drop its cached file names after a rebuild: ${result.stderr.trim()}`);
			return;
		}
		await writeFileAtomically(this.buildStampSeen, String(stamp));
	}

	/** When the TypeScript was last compiled (bin/bootstrap.sh), or undefined. */
	private async buildStamp(): Promise<number | undefined> {
		return (await stat(this.options.buildStamp).catch(ifMissing(undefined)))?.mtimeMs;
	}

	private get buildStampSeen(): string {
		return path.join(this.dir, 'build-stamp-seen');
	}

	/** Boots the guest, and once more if the first boot hangs (BOOT_STALL_MS). */
	private async boot(): Promise<LabState> {
		try {
			return await this.bootOnce();
		} catch (error) {
			if (!(error instanceof BootStalledError)) throw error;
			log.warn(`${error.message}; booting it once more. Its console ended:\n${error.hint ?? ''}`);
			return this.bootOnce();
		}
	}

	private async bootOnce(): Promise<LabState> {
		await this.checkTools();
		const kernel = await findLabKernel();
		const memoryMb = kernel.debug ? Math.max(this.options.memoryMb, DEBUG_KERNEL_MEMORY_MB) : this.options.memoryMb;
		const bootTimeoutMs = kernel.debug ? Math.max(this.options.bootTimeoutMs, DEBUG_KERNEL_BOOT_TIMEOUT_MS) : this.options.bootTimeoutMs;
		const cacheDir = path.join(this.options.root, '.lab', 'cache');
		const initramfs = await buildInitramfs(kernel, cacheDir);
		// The uncompressed kernel boots faster under TCG than the LZ4 bzImage: extracted once, cached.
		const image = await uncompressedKernel(kernel, cacheDir);
		await mkdir(this.socketDir, { recursive: true, mode: 0o700 });
		await mkdir(this.persistentDir, { recursive: true, mode: 0o700 });
		await rm(this.kernelLog, { force: true });
		await rm(this.serialLog, { force: true });

		log.info(
			kernel.debug
				? `booting the lab: the debug kernel ${kernel.release} under QEMU (KASAN and lockdep under software emulation: slower)`
				: `booting the lab: Debian kernel ${kernel.release} under QEMU (software emulation, a few seconds)`,
		);
		const started = Date.now();
		const agentPort = await freePort();
		const token = randomBytes(16).toString('hex');
		const labRoot = path.dirname(this.dir);
		const network = networkOf(labRoot, await assignHost(labRoot, this.name, other => this.peerInUse(other)));
		const state: LabState = {
			qemuPid: 0,
			virtiofsdPids: [],
			agentPort,
			token,
			kernel,
			bootedAt: new Date().toISOString(),
			bootSeconds: 0,
			udpForwards: {},
			network,
			boot: bootId(),
			processes: [],
		};
		// Every process is recorded as soon as it runs, so that a failure at any step stops what was started.
		const record = (pid: number) => {
			const identity = processIdentity(pid);
			if (identity) state.processes!.push(identity);
			return pid;
		};
		try {
			// One virtiofsd per shared directory (this.shares), started side by side.
			const virtiofsds = await Promise.allSettled(this.shares.map(share => startVirtiofsd(share, this.socketDir, this.dir)));
			for (const outcome of virtiofsds) {
				if (outcome.status === 'fulfilled') state.virtiofsdPids.push(record(outcome.value));
			}
			const failed = virtiofsds.find(outcome => outcome.status === 'rejected');
			if (failed) throw failed.reason;
			state.qemuPid = record(await this.startQemu({ ...kernel, image }, initramfs, agentPort, network, memoryMb));
			await this.stateFile.write(state);
			await this.waitForAgent(state, bootTimeoutMs, kernel.debug ? DEBUG_KERNEL_BOOT_STALL_MS : BOOT_STALL_MS);
		} catch (error) {
			await this.kill(state);
			throw error;
		}
		state.bootSeconds = (Date.now() - started) / 1000;
		// A fresh guest has no stale names: what it will see is this build.
		await writeFileAtomically(this.buildStampSeen, String((await this.buildStamp()) ?? 0));
		await this.stateFile.write(state);
		log.info(`the lab is up (${state.bootSeconds.toFixed(1)} s)`);
		return state;
	}

	/** Whether another lab of this checkout is running or booting: its network address is not free. */
	private async peerInUse(name: string): Promise<boolean> {
		const peer = new Lab({ ...this.options, name });
		const bootLock = await lockOwner(path.join(peer.dir, 'boot.lock'));
		// A state file that cannot be read may belong to a running lab: keep its address.
		return (await peer.state().catch(() => true)) !== undefined || (bootLock !== undefined && isAlive(bootLock.pid));
	}

	private async checkTools(): Promise<void> {
		requireProgram('qemu-system-x86_64');
		requireProgram(VIRTIOFSD);
	}

	/**
	 * The directories the guest mounts, by tag (guest-init.sh). The host's
	 * root, read-only under a RAM overlay: kept in the guest's page cache
	 * (cache=always: with cache=auto every exec re-read the program and its
	 * libraries, 0.2-0.3 s under emulation) yet a host file that changed is
	 * seen within a second (timeout=1: its name and attributes are looked up
	 * again, and a changed mtime drops the cached pages). And /var/tmp.
	 */
	private get shares(): VirtiofsShare[] {
		return [
			{ tag: 'hostroot', source: '/', cache: ['cache=always', 'timeout=1'] },
			{ tag: 'kudpstate', source: this.persistentDir, cache: ['cache=auto'] },
		];
	}

	private async startQemu(kernel: LabKernel, initramfs: string, agentPort: number, network: LabNetwork, memoryMb: number): Promise<number> {
		const pidFile = path.join(this.dir, 'qemu.pid');
		await rm(pidFile, { force: true });
		const args = qemuArgs({
			kernelImage: kernel.image,
			initramfs,
			cpus: this.options.cpus,
			memoryMb,
			cpuKhz: await cpuKhz(),
			agentPort,
			network,
			shares: this.shares.map(({ tag }) => ({ tag, socket: virtiofsSocket(this.socketDir, tag) })),
			serialLog: this.serialLog,
			kernelLog: this.kernelLog,
			qgaSocket: this.qgaSocket,
			monitorSocket: this.monitorSocket,
			pidFile,
		});
		const result = await runProgram('qemu-system-x86_64', args, { reject: false, all: true });
		if (result.exitCode !== 0) {
			throw new UserError(`QEMU did not start: ${result.all?.trim() || `exit code ${result.exitCode}`}`);
		}
		return Number((await readFile(pidFile, 'utf8')).trim());
	}

	/**
	 * Waits until qemu-ga answers. guest-init.sh starts it last, once the
	 * guest is set up, so an answer means the guest is ready for commands.
	 */
	private async waitForAgent(state: LabState, bootTimeoutMs: number, stallMs: number): Promise<void> {
		const deadline = Date.now() + bootTimeoutMs;
		let printed = -1;
		let printedAt = Date.now();
		while (Date.now() < deadline) {
			if (!isLabProcess(state, state.qemuPid)) {
				throw new UserError('the lab guest stopped while booting', { hint: await this.consoleTail() });
			}
			// A guest whose init gave up halts; QEMU stays up (no ACPI power-off, say), so the console says it.
			const serial = await readFile(this.serialLog, 'utf8').catch(ifMissing(''));
			if (serial.length !== printed) {
				[printed, printedAt] = [serial.length, Date.now()];
			} else if (Date.now() - printedAt > stallMs) {
				throw new BootStalledError(`the lab's boot hung: its console printed nothing for ${stallMs / 1000} s`, {
					hint: await this.consoleTail(),
				});
			}
			if (/reboot: System halted|Kernel panic - not syncing/.test(serial)) {
				throw new UserError('the lab guest stopped while booting', { hint: await this.consoleTail() });
			}
			const kernelLog = await readFile(this.kernelLog, 'utf8').catch(ifMissing(''));
			if (kernelLog.includes('kudp-init: qemu-ga exited')) {
				throw new UserError('the guest agent (qemu-ga) cannot start in the guest', {
					hint: `${await this.consoleTail()}\nits log in the guest: /var/log/qemu-ga.log`,
				});
			}
			try {
				// QEMU holds what we send until qemu-ga opens its port: one try waits up to a second.
				(await QgaConnection.open(this.qgaSocket, 1000)).close();
				return;
			} catch (error) {
				if (!(error instanceof QgaTimeoutError) && (error as NodeJS.ErrnoException).code !== 'ENOENT') {
					throw new UserError(`cannot reach the lab's guest agent: ${messageOf(error)}`, { cause: error });
				}
			}
		}
		throw new UserError(`the lab did not come up within ${bootTimeoutMs / 1000} s`, {
			hint: await this.consoleTail(),
		});
	}

	private async consoleTail(): Promise<string> {
		const text = await readFile(this.serialLog, 'utf8').catch(ifMissing(''));
		const tail = text.trim().split('\n').slice(-15).join('\n');
		return tail ? `last lines of the guest console (${this.serialLog}):\n${tail}` : `see ${this.serialLog}`;
	}

	/** Stops the guest: a clean power-off if it answers, a kill otherwise. */
	async down(): Promise<boolean> {
		const state = await this.stateFile.read();
		if (!state) {
			return false;
		}
		if (!isLabProcess(state, state.qemuPid)) {
			// QEMU died (or was killed, or the machine rebooted): clean up what it left behind.
			await this.kill(state);
			return false;
		}
		// Flush the backup directory before the guest goes away.
		// A guest that is stuck cannot sync or quit: say so, and kill it below.
		await qgaExec(this.qgaSocket, ['sync'], { timeoutMs: 5000 }).catch(error =>
			log.warn(`could not flush the lab's /var/tmp before stopping it: ${messageOf(error)}`),
		);
		await hmp(this.monitorSocket, 'quit').catch(error => log.warn(`QEMU did not take "quit" (${messageOf(error)}); killing it`));
		await this.kill(state);
		return true;
	}

	/** Stops the lab's processes: those still running that it started, never a PID alone (isLabProcess). */
	private async kill(state: LabState): Promise<void> {
		const ours = () => [state.qemuPid, ...state.virtiofsdPids].filter(pid => isLabProcess(state, pid));
		for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
			for (const pid of ours()) {
				try {
					process.kill(pid, signal);
				} catch {
					// Already gone.
				}
			}
			for (let i = 0; i < 50 && ours().length > 0; i++) {
				await sleep(40);
			}
		}
		await this.stateFile.remove();
		await rm(this.socketDir, { recursive: true, force: true });
	}

	/**
	 * Where commands' output goes (qga.ts): the guest's /var/tmp is this
	 * machine's persistentDir (virtiofs), so output is read here as it is
	 * written, whole, instead of through qemu-ga's capped capture.
	 */
	private get spool(): Spool {
		return { hostDir: path.join(this.persistentDir, '.kudp-exec'), guestDir: '/var/tmp/.kudp-exec' };
	}

	/** Runs a command as root in the guest. */
	async exec(argv: string[], options: ExecOptions = {}): Promise<ExecResult> {
		const state = await this.state();
		if (!state) {
			throw new UserError('the lab is not running', { hint: 'it boots on demand: ./run status, or load a module' });
		}
		if (options.tty) {
			return this.interactive(state, argv, options);
		}
		if (options.stdin) {
			// qemu-ga takes a command's whole input up front: read the stream to its end.
			const chunks: Buffer[] = [];
			for await (const chunk of options.stdin) {
				chunks.push(Buffer.from(chunk));
			}
			const { stdin: _, ...rest } = options;
			return qgaExec(this.qgaSocket, argv, { ...rest, input: Buffer.concat(chunks) }, this.spool);
		}
		return qgaExec(this.qgaSocket, argv, options, this.spool);
	}

	/** Runs an interactive command on a pseudo-terminal, with stdin streamed: through the Node agent (agent-start.ts). */
	private async interactive(state: LabState, argv: string[], options: ExecOptions): Promise<ExecResult> {
		const agent = { port: state.agentPort, token: state.token };
		await ensureAgent(this.qgaSocket, agent);
		return agentExec(agent, argv, options);
	}

	/** Forwards UDP on the host's 127.0.0.1:hostPort to guestPort in the guest. */
	async forwardUdp(hostPort: number, guestPort: number): Promise<void> {
		await this.up();
		await this.stateFile.locked(() => this.forwardUdpLocked(hostPort, guestPort));
	}

	private async forwardUdpLocked(hostPort: number, guestPort: number): Promise<void> {
		const state = await this.state();
		if (!state) {
			throw new UserError('the lab stopped before a port could be forwarded to it');
		}
		if (state.udpForwards[String(hostPort)] === guestPort) {
			return;
		}
		// slirp sends a guest port's replies out through the first forward to
		// it, so a guest port gets one forward: drop older ones to the same port.
		for (const [otherHost, otherGuest] of Object.entries(state.udpForwards)) {
			if (Number(otherHost) === hostPort || otherGuest === guestPort) {
				await this.unforwardUdpLocked(Number(otherHost));
			}
		}
		const reply = await hmp(this.monitorSocket, `hostfwd_add n0 udp:127.0.0.1:${hostPort}-:${guestPort}`);
		if (/could not|error|invalid/i.test(reply)) {
			throw new UserError(`cannot forward UDP port ${hostPort} from the host to the lab: ${reply.trim()}`, {
				hint: `is something on this machine already using UDP port ${hostPort}? (ss -ulpn 'sport = :${hostPort}')`,
			});
		}
		const fresh = (await this.state()) ?? state;
		fresh.udpForwards[String(hostPort)] = guestPort;
		await this.stateFile.write(fresh);
	}

	async unforwardUdp(hostPort: number): Promise<void> {
		await this.stateFile.locked(() => this.unforwardUdpLocked(hostPort));
	}

	private async unforwardUdpLocked(hostPort: number): Promise<void> {
		const state = await this.state();
		if (!state || state.udpForwards[String(hostPort)] === undefined) {
			return;
		}
		await hmp(this.monitorSocket, `hostfwd_remove n0 udp:127.0.0.1:${hostPort}`).catch(error => {
			log.warn(`could not remove the forward of UDP port ${hostPort}: ${messageOf(error)}`);
		});
		delete state.udpForwards[String(hostPort)];
		await this.stateFile.write(state);
	}
}
