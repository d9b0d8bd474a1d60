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
 * Safety: the guest gets a /32 address and a route to the host alias
 * 10.0.2.2 only, so nothing it sends can leave this machine; the host side of
 * every port forward listens on 127.0.0.1 only.
 */
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, open, readFile, rm, stat } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { ifMissing, UserError, messageOf } from '../errors.js';
import { writeFileAtomically } from '../files.js';
import { bootId, isAlive, isSameProcess, lockOwner, type ProcessIdentity, processIdentity, withFileLock } from '../lock.js';
import { log } from '../log.js';
import { requireProgram, runProgram } from '../programs.js';
import { agentExec, type ExecOptions, type ExecResult } from './agent-client.js';
import { AGENT_GUEST_PORT } from './agent-protocol.js';
import { DEBUG_KERNEL } from './debug-kernel.js';
import { buildInitramfs, findLabKernel, isWantedKernel, uncompressedKernel, type LabKernel } from './kernel.js';
import { hmp } from './monitor.js';
import { QGA_PORT_NAME, QgaConnection, QgaTimeoutError, qgaExec, type Spool } from './qga.js';
import { assignHost, type LabNetwork, networkOf, qemuNetworkArgs } from './network.js';

export interface LabState {
	qemuPid: number;
	virtiofsdPids: number[];
	agentPort: number;
	token: string;
	kernel: LabKernel;
	bootedAt: string;
	bootSeconds: number;
	/** Host port → guest port, UDP, on 127.0.0.1. */
	udpForwards: Record<string, number>;
	/** The guest's eth1 on the labs' private network (network.ts); absent in states of older versions. */
	network?: LabNetwork;
	/** This machine's boot id when the lab booted: after a reboot its PIDs are anyone's. */
	boot?: string;
	/** QEMU's and virtiofsd's identities (executable, start time): only these are ever signalled. */
	processes?: ProcessIdentity[];
}

/** What a lab's processes run, for a state file of an older version that recorded no identities. */
const LAB_PROGRAMS = /\/(qemu-system-x86_64|virtiofsd)$/;

/**
 * Whether `pid` is a process this lab started, still running: the state's
 * boot id and the process's recorded identity (executable and start time)
 * match. A state file survives a reboot, and a PID is reused once its
 * process is gone, so a PID alone may name the user's editor. A state of an
 * older version, without identities, counts a live QEMU or virtiofsd only.
 */
export function isLabProcess(state: Pick<LabState, 'boot' | 'processes'>, pid: number): boolean {
	if (pid <= 0) {
		return false;
	}
	const recorded = state.processes?.find(process => process.pid === pid);
	if (state.boot !== undefined || recorded) {
		return recorded !== undefined && isSameProcess(recorded, state.boot ?? '');
	}
	return LAB_PROGRAMS.test(processIdentity(pid)?.exe ?? '');
}

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

const NODE_BINARY = process.execPath;
const VIRTIOFSD = '/usr/lib/qemu/virtiofsd';

const AGENT_SCRIPT = fileURLToPath(new URL('./agent.js', import.meta.url));

/**
 * The debug kernel (debug-kernel.ts) under emulation: KASAN takes an eighth
 * of the memory for its shadow and kmemleak and lockdep more, and it boots
 * several times slower. Its lab gets at least this much memory and time.
 */
const DEBUG_KERNEL_MEMORY_MB = 1024;
const DEBUG_KERNEL_BOOT_TIMEOUT_MS = 600_000;

/** A free TCP or UDP port on 127.0.0.1, as the kernel hands them out. */
export async function freePort(type: 'tcp' | 'udp' = 'tcp'): Promise<number> {
	if (type === 'udp') {
		const dgram = await import('node:dgram');
		const socket = dgram.createSocket('udp4');
		await new Promise<void>(resolve => socket.bind(0, '127.0.0.1', resolve));
		const { port } = socket.address();
		socket.close();
		return port;
	}
	const server = net.createServer();
	await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve));
	const address = server.address() as net.AddressInfo;
	await new Promise(resolve => server.close(resolve));
	return address.port;
}

/**
 * A value for the guest's kernel command line, which is split on spaces
 * (and parsed by guest-init.sh with `tr ' ' '\n'`): %, space, tab, newline
 * and double quote become %XX; guest-init.sh decodes exactly these.
 */
export function encodeBootArg(value: string): string {
	return value.replace(/[% \t\n"]/g, char => `%${char.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')}`);
}

/** The host's CPU clock in kHz: microvm guests need it (tsc_early_khz) to boot reliably. */
async function cpuKhz(): Promise<number | undefined> {
	const cpuinfo = await readFile('/proc/cpuinfo', 'utf8').catch(ifMissing(''));
	const mhz = /^cpu MHz\s*:\s*([\d.]+)/m.exec(cpuinfo)?.[1];
	return mhz ? Math.round(Number(mhz) * 1000) : undefined;
}

function agentOf(state: LabState): { port: number; token: string } {
	return { port: state.agentPort, token: state.token };
}

export class Lab {
	readonly name: string;
	readonly dir: string;
	/** Host directory mounted at /var/tmp in the guest; survives `./run down`. */
	readonly persistentDir: string;
	/** The guest's kernel log, mirrored live (raw /dev/kmsg records). */
	readonly kernelLog: string;
	readonly serialLog: string;
	private readonly socketDir: string;
	private readonly options: Required<Omit<LabOptions, 'name'>>;

	constructor(options: LabOptions) {
		this.name = options.name ?? process.env['KUDP_LAB'] ?? 'default';
		if (!/^[\w.-]+$/.test(this.name)) {
			throw new UserError(`bad lab name "${this.name}": use letters, digits, dot, dash, underscore`);
		}
		this.options = {
			root: options.root,
			memoryMb: options.memoryMb ?? 256,
			cpus: options.cpus ?? (Number(process.env['KUDP_LAB_CPUS']) || 2),
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
	}

	private get statePath(): string {
		return path.join(this.dir, 'state.json');
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
		const state = await this.savedState();
		return state && isLabProcess(state, state.qemuPid) ? state : undefined;
	}

	/**
	 * What the last boot recorded, whether or not QEMU still runs. A state
	 * file that cannot be parsed is an error, not "down": a lab may still be
	 * running, and booting another beside it would fight it for its sockets.
	 */
	private async savedState(): Promise<LabState | undefined> {
		const text = await readFile(this.statePath, 'utf8').catch(ifMissing(undefined));
		if (text === undefined) {
			return undefined;
		}
		let state: Partial<LabState>;
		try {
			state = JSON.parse(text) as Partial<LabState>;
		} catch (error) {
			throw this.corruptState(messageOf(error));
		}
		if (typeof state !== 'object' || state === null || typeof state.qemuPid !== 'number' || !Array.isArray(state.virtiofsdPids)) {
			throw this.corruptState('it does not hold a QEMU PID');
		}
		return state as LabState;
	}

	private corruptState(reason: string): UserError {
		const pidFile = path.join(this.dir, 'qemu.pid');
		return new UserError(`the lab "${this.name}" cannot be used: its state file ${this.statePath} is corrupt (${reason})`, {
			hint:
				`if a QEMU of this lab still runs, stop it first (its PID is in ${pidFile}); then remove the state file:\n` +
				`  rm '${this.statePath}'`,
		});
	}

	private async saveState(state: LabState): Promise<void> {
		await writeFileAtomically(this.statePath, JSON.stringify(state, null, 2), { mode: 0o600 });
	}

	/** Boots the guest unless it is already up; returns its state. */
	async up(): Promise<LabState> {
		const running = await this.state();
		if (running) {
			const wanted = process.env['KUDP_LAB_KERNEL'];
			if (wanted && !isWantedKernel(running.kernel, wanted)) {
				log.warn(`the lab is already running ${running.kernel.release}, not KUDP_LAB_KERNEL=${wanted}: ./run down first to switch`);
			}
			await this.forgetRebuiltFiles();
			return running;
		}
		await mkdir(this.dir, { recursive: true });
		const debug = process.env['KUDP_LAB_KERNEL'] === DEBUG_KERNEL;
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
		const result = await qgaExec(this.qgaSocket, ['sh', '-c', 'echo 2 > /proc/sys/vm/drop_caches'], { timeoutMs: 10_000 });
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

	private async boot(): Promise<LabState> {
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
			// The guest mounts the host's root read-only, writing to a RAM overlay. It keeps
			// what it read in its page cache (cache=always: with cache=auto every exec re-read
			// the program and its libraries, 0.2-0.3 s under emulation) and still sees a host
			// file that changed within a second (timeout=1: its name and attributes are
			// looked up again, and a changed mtime drops the cached pages).
			const virtiofsds = await Promise.allSettled([
				this.startVirtiofsd('hostroot', '/', ['cache=always', 'timeout=1']),
				this.startVirtiofsd('kudpstate', this.persistentDir, ['cache=auto']),
			]);
			for (const outcome of virtiofsds) {
				if (outcome.status === 'fulfilled') state.virtiofsdPids.push(record(outcome.value));
			}
			const failed = virtiofsds.find(outcome => outcome.status === 'rejected');
			if (failed) throw failed.reason;
			state.qemuPid = record(await this.startQemu({ ...kernel, image }, initramfs, agentPort, network, memoryMb));
			await this.saveState(state);
			await this.waitForAgent(state, bootTimeoutMs);
		} catch (error) {
			await this.kill(state);
			throw error;
		}
		state.bootSeconds = (Date.now() - started) / 1000;
		// A fresh guest has no stale names: what it will see is this build.
		await writeFileAtomically(this.buildStampSeen, String((await this.buildStamp()) ?? 0));
		await this.saveState(state);
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

	private async startVirtiofsd(tag: string, source: string, cache: string[]): Promise<number> {
		const socket = path.join(this.socketDir, `${tag}.sock`);
		await rm(socket, { force: true });
		const logFile = await open(path.join(this.dir, `virtiofsd-${tag}.log`), 'w');
		const args = [`--socket-path=${socket}`, '-o', `source=${source}`, ...cache.flatMap(option => ['-o', option]), '-o', 'sandbox=chroot'];
		// Detached: it must outlive this `./run` and serve the guest until `./run down`.
		const child = spawn(VIRTIOFSD, args, {
			detached: true,
			stdio: ['ignore', logFile.fd, logFile.fd],
		});
		child.unref();
		await logFile.close();
		for (let i = 0; i < 400 && !existsSync(socket); i++) {
			await sleep(5);
		}
		if (!existsSync(socket) || child.pid === undefined) {
			// Not recorded anywhere yet: stop it here, or it outlives this ./run.
			child.kill('SIGKILL');
			throw new UserError(`virtiofsd did not start for ${source}`, {
				hint: `see ${path.join(this.dir, `virtiofsd-${tag}.log`)}`,
			});
		}
		return child.pid;
	}

	private async startQemu(kernel: LabKernel, initramfs: string, agentPort: number, network: LabNetwork, memoryMb: number): Promise<number> {
		const khz = await cpuKhz();
		const memory = `${memoryMb}M`;
		const append = [
			'console=ttyS0',
			'quiet',
			'panic=-1',
			// A hung task or a soft lockup in our module should be loud.
			'hung_task_panic=0',
			khz ? `tsc_early_khz=${khz}` : '',
			// A fine clock: under TCG the kernel finds the vCPUs' TSCs unsynchronized and
			// falls back to refined-jiffies (4 ms steps). QEMU's TSC is one host clock.
			'tsc=reliable',
			'kudp.state=1',
			`kudp.net=${network.address}/${network.prefixLength}`,
			`kudp.netmac=${network.mac}`,
		].filter(Boolean);
		const pidFile = path.join(this.dir, 'qemu.pid');
		await rm(pidFile, { force: true });
		const args = [
			'-M',
			'microvm,memory-backend=mem,acpi=on',
			'-accel',
			'tcg',
			'-cpu',
			'max',
			'-smp',
			String(this.options.cpus),
			'-m',
			memory,
			'-nodefaults',
			'-no-user-config',
			'-display',
			'none',
			'-object',
			`memory-backend-memfd,id=mem,size=${memory},share=on`,
			'-global',
			'virtio-mmio.force-legacy=false',
			'-kernel',
			kernel.image,
			'-initrd',
			initramfs,
			'-append',
			append.join(' '),
			'-serial',
			`file:${this.serialLog}`,
			'-chardev',
			`socket,id=hostroot,path=${path.join(this.socketDir, 'hostroot.sock')}`,
			'-device',
			'vhost-user-fs-device,chardev=hostroot,tag=hostroot',
			'-chardev',
			`socket,id=kudpstate,path=${path.join(this.socketDir, 'kudpstate.sock')}`,
			'-device',
			'vhost-user-fs-device,chardev=kudpstate,tag=kudpstate',
			'-netdev',
			`user,id=n0,hostfwd=tcp:127.0.0.1:${agentPort}-:${AGENT_GUEST_PORT}`,
			'-device',
			'virtio-net-device,netdev=n0',
			...qemuNetworkArgs(network),
			'-device',
			'virtio-serial-device',
			'-chardev',
			`file,id=klog,path=${this.kernelLog}`,
			'-device',
			'virtconsole,chardev=klog',
			'-chardev',
			`socket,id=qga0,path=${this.qgaSocket},server=on,wait=off`,
			'-device',
			`virtserialport,chardev=qga0,name=${QGA_PORT_NAME}`,
			'-monitor',
			`unix:${this.monitorSocket},server=on,wait=off`,
			'-pidfile',
			pidFile,
			'-daemonize',
		];
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
	private async waitForAgent(state: LabState, bootTimeoutMs: number): Promise<void> {
		const deadline = Date.now() + bootTimeoutMs;
		while (Date.now() < deadline) {
			if (!isLabProcess(state, state.qemuPid)) {
				throw new UserError('the lab guest stopped while booting', { hint: await this.consoleTail() });
			}
			// A guest whose init gave up halts; QEMU stays up (no ACPI power-off, say), so the console says it.
			const serial = await readFile(this.serialLog, 'utf8').catch(ifMissing(''));
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
		const state = await this.savedState();
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
		await rm(this.statePath, { force: true });
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

	/**
	 * Runs an interactive command on a pseudo-terminal, with stdin streamed:
	 * qemu-ga cannot (it takes input up front and returns output at the end),
	 * so this goes through the Node agent (agent.ts), started on the first
	 * interactive use and left running. Starting Node under emulation takes
	 * seconds, a price paid only by a person at a terminal.
	 */
	private async interactive(state: LabState, argv: string[], options: ExecOptions): Promise<ExecResult> {
		const agent = agentOf(state);
		const reachable = async () => {
			try {
				return (await agentExec(agent, ['true'], { timeoutMs: 5000 })).exitCode === 0;
			} catch {
				// Not listening yet: slirp accepts the connection and drops it.
				return false;
			}
		};
		if (!(await reachable())) {
			log.info('starting the interactive agent in the lab (Node, a few seconds under emulation)');
			const started = await qgaExec(
				this.qgaSocket,
				[
					'sh',
					'-c',
					'setsid "$1" "$2" --port "$3" --token "$4" </dev/null >>/var/log/kudp-agent.log 2>&1 &',
					'agent',
					NODE_BINARY,
					AGENT_SCRIPT,
					String(AGENT_GUEST_PORT),
					state.token,
				],
				{ timeoutMs: 10_000 },
			);
			if (started.exitCode !== 0) {
				throw new UserError(`cannot start the interactive agent in the lab: ${started.stderr.trim()}`);
			}
			const deadline = Date.now() + 120_000;
			while (!(await reachable())) {
				if (Date.now() > deadline) {
					throw new UserError('the interactive agent did not start in the lab within 120 s', {
						hint: './run shell -- cat /var/log/kudp-agent.log',
					});
				}
				await sleep(250);
			}
		}
		return agentExec(agent, argv, options);
	}

	/**
	 * The state file's udpForwards is read, changed in QEMU and written back:
	 * two ./run forwarding at once each wrote back what it had read, and one
	 * forward was lost from the record. One at a time, under this lock.
	 */
	private withStateLock<T>(action: () => Promise<T>): Promise<T> {
		return withFileLock(path.join(this.dir, 'state.lock'), 30_000, action);
	}

	/** Forwards UDP on the host's 127.0.0.1:hostPort to guestPort in the guest. */
	async forwardUdp(hostPort: number, guestPort: number): Promise<void> {
		await this.up();
		await this.withStateLock(() => this.forwardUdpLocked(hostPort, guestPort));
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
		await this.saveState(fresh);
	}

	async unforwardUdp(hostPort: number): Promise<void> {
		await this.withStateLock(() => this.unforwardUdpLocked(hostPort));
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
		await this.saveState(state);
	}
}
