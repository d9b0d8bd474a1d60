/**
 * Where modules run: `local` (this machine's own kernel) or `lab` (a QEMU
 * guest, see lab/lab.ts). Both look the same to the commands.
 */
import { createReadStream, existsSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { UserError } from './errors.js';
import type { ExecOptions, ExecResult } from './lab/agent-client.js';
import { type DebugKernelStatus, debugKernelStatus } from './lab/debug-kernel.js';
import { findLabKernel, usualLabKernel } from './lab/kernel.js';
import { Lab } from './lab/lab.js';
import { followKmsg, parseKmsg, readKmsg, type KmsgRecord } from './kmsg.js';
import { PROJECT_ROOT } from './modules.js';
import { findProgram, MissingProgramError } from './programs.js';
import { settings } from './settings.js';

export type TargetKind = 'local' | 'lab';

export interface Target {
	readonly kind: TargetKind;
	/** One line: what the target is and why it was chosen. */
	readonly reason: string;
	/** Its name in a sentence: `this machine's kernel`, `the lab "default"`. */
	readonly place: string;
	/** Its short name after "loaded in": `this kernel`, `the lab`. */
	readonly where: string;
	/**
	 * A guest apart from this machine (the lab): reached through port
	 * forwards, so its UDP ports are told as this machine's, and modules get
	 * their roles' labParams (roles.ts).
	 */
	readonly isGuest: boolean;
	/** The host part of an interactive shell's prompt (`./run shell`). */
	readonly promptHost: string;
	/** What to do about a module that rmmod cannot unload. */
	readonly stuckModuleHint: string;
	/** What `./run install` tells before it installs there: what becomes of it (undefined: it stays, as on any machine). */
	readonly installNote: string | undefined;
	/** Kernel headers the modules must be built against. */
	headersDir(): Promise<string>;
	kernelRelease(): Promise<string>;
	/** Makes the target ready (boots the lab). */
	prepare(): Promise<void>;
	/** Whether commands can run there now without prepare() (the lab is running). */
	isUp(): Promise<boolean>;
	/** Stops the target (powers the lab off); returns whether it was running. This machine's kernel never stops. */
	stop(): Promise<boolean>;
	/** The guest the target is, for `./run status` (undefined: this machine's kernel). */
	guest(): Promise<GuestReport | undefined>;
	/** Runs a command as root in the target. */
	exec(argv: string[], options?: ExecOptions): Promise<ExecResult>;
	/** Throws a MissingProgramError if `result` of exec() says `program` could not be started. */
	checkStarted(result: ExecResult, program: string): void;
	/** The lab's debug kernel, for `./run status`: whether it is built (undefined: this machine's kernel has none). */
	debugKernel(): Promise<DebugKernelStatus | undefined>;
	/** Makes a built `.ko` loadable in the target; returns its path there. */
	stage(ko: string): Promise<string>;
	/** Makes UDP guestPort reachable at 127.0.0.1:hostPort on this machine. */
	exposeUdp(hostPort: number, guestPort: number): Promise<void>;
	unexposeUdp(hostPort: number): Promise<void>;
	/** Host port → the target's port, for every UDP port exposed now. */
	exposedUdp(): Promise<Record<string, number>>;
	/** Kernel log records so far (all of them, oldest first). */
	kernelLog(): Promise<KmsgRecord[]>;
	/**
	 * Calls onRecord for every kernel log record after sequence number `since`
	 * (by default: every record logged from now on) until `signal` aborts, and
	 * returns soon after the abort.
	 */
	followKernelLog(onRecord: (record: KmsgRecord) => void, signal: AbortSignal, since?: number): Promise<void>;
}

/** A lab guest as `./run status` shows it. */
export interface GuestReport {
	running: boolean;
	name: string;
	pid?: number;
	bootedAt?: string;
	bootSeconds?: number;
	udpForwards?: Record<string, number>;
	/** The guest's eth1 on the labs' private network (see src/lab/network.ts). */
	network?: { address: string; prefixLength: number; mac: string };
	/** The guest kernel's clocksource: tsc is fine-grained, refined-jiffies moves in 4 ms steps. */
	clocksource?: string;
	/** Where its kernel log is mirrored on this machine. */
	kernelLog: string;
}

/** Why this machine's own kernel cannot take our modules, or undefined if it can. */
export async function localUnfitness(): Promise<string | undefined> {
	const release = os.release();
	if (process.getuid?.() !== 0) {
		return 'loading modules needs root';
	}
	if (!existsSync('/proc/modules')) {
		return `the running kernel (${release}) has no module support`;
	}
	if ((await readFile('/proc/sys/kernel/modules_disabled', 'utf8').catch(ignoreMissing('0'))).trim() === '1') {
		return 'module loading is disabled (kernel.modules_disabled=1)';
	}
	if (!existsSync(`/lib/modules/${release}/build/Makefile`)) {
		return `there are no kernel headers for the running kernel (/lib/modules/${release}/build)`;
	}
	return undefined;
}

/** For a catch: `fallback` when the file does not exist, any other error goes on. */
function ignoreMissing<T>(fallback: T): (error: unknown) => T {
	return error => {
		if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
			return fallback;
		}
		throw error;
	};
}

class LocalTarget implements Target {
	readonly kind = 'local';
	readonly place = "this machine's kernel";
	readonly where = 'this kernel';
	readonly isGuest = false;
	readonly promptHost = '\\h';
	readonly stuckModuleHint = 'a reboot may be needed; check the kernel log (./run logs)';
	readonly installNote = undefined;
	constructor(readonly reason: string) {}

	async headersDir(): Promise<string> {
		return `/lib/modules/${os.release()}/build`;
	}

	async kernelRelease(): Promise<string> {
		return os.release();
	}

	async prepare(): Promise<void> {}

	async isUp(): Promise<boolean> {
		return true;
	}

	async stop(): Promise<boolean> {
		return false;
	}

	async guest(): Promise<GuestReport | undefined> {
		return undefined;
	}

	async exec(argv: string[], options: ExecOptions = {}): Promise<ExecResult> {
		const [file = 'true', ...args] = argv;
		const { execa } = await import('execa'); // ~80 ms to import: only when needed
		const child = execa(file, args, {
			reject: false,
			input: options.input,
			stdin: options.stdin ? 'inherit' : options.input === undefined ? 'ignore' : 'pipe',
			timeout: options.timeoutMs,
			env: options.env,
			cwd: options.cwd,
		});
		child.stdout?.on('data', (chunk: Buffer) => options.onStdout?.(chunk));
		child.stderr?.on('data', (chunk: Buffer) => options.onStderr?.(chunk));
		const result = await child;
		return {
			exitCode: result.exitCode ?? null,
			signal: result.signal ?? null,
			timedOut: result.timedOut,
			stdout: String(result.stdout ?? ''),
			stderr: String(result.stderr ?? ''),
		};
	}

	/**
	 * A command that neither exited nor was killed did not start: on this
	 * machine's kernel that is a program missing from PATH.
	 */
	checkStarted(result: ExecResult, program: string): void {
		if (result.exitCode === null && result.signal === null && !result.timedOut && !findProgram(program)) {
			throw new MissingProgramError(program);
		}
	}

	async debugKernel(): Promise<undefined> {
		return undefined;
	}

	async stage(ko: string): Promise<string> {
		return ko;
	}

	async exposeUdp(): Promise<void> {}
	async unexposeUdp(): Promise<void> {}
	async exposedUdp(): Promise<Record<string, number>> {
		return {};
	}

	kernelLog(): Promise<KmsgRecord[]> {
		return readKmsg();
	}

	followKernelLog(onRecord: (record: KmsgRecord) => void, signal: AbortSignal, since?: number): Promise<void> {
		return followKmsg(onRecord, signal, since === undefined ? {} : { since });
	}
}

class LabTarget implements Target {
	readonly kind = 'lab';
	readonly where = 'the lab';
	readonly isGuest = true;
	readonly promptHost = 'kudp-lab';
	readonly stuckModuleHint = 'the lab guest has to be restarted: ./run down (the next ./run boots a fresh one)';
	readonly installNote =
		'installing in the lab, which keeps its files in RAM: it is all gone at ./run down, and the lab boots with busybox, not systemd, so nothing there loads at boot (./run install is for a machine that loads modules itself; the lab is for trying it)';
	readonly lab: Lab;

	constructor(
		readonly reason: string,
		labName?: string,
	) {
		this.lab = new Lab(labName === undefined ? { root: PROJECT_ROOT } : { root: PROJECT_ROOT, name: labName });
	}

	get place(): string {
		return `the lab "${this.lab.name}"`;
	}

	async headersDir(): Promise<string> {
		return (await this.kernel()).headers;
	}

	async kernelRelease(): Promise<string> {
		// Not a reason to build the debug kernel (20 minutes): ./run status asks this.
		return ((await this.lab.state())?.kernel ?? (await findLabKernel(undefined, { build: false }))).release;
	}

	private async kernel() {
		return (await this.lab.state())?.kernel ?? findLabKernel();
	}

	async prepare(): Promise<void> {
		await this.lab.up();
	}

	async isUp(): Promise<boolean> {
		return (await this.lab.state()) !== undefined;
	}

	stop(): Promise<boolean> {
		return this.lab.down();
	}

	async guest(): Promise<GuestReport> {
		const state = await this.lab.state();
		if (!state) {
			return { running: false, name: this.lab.name, kernelLog: this.lab.kernelLog };
		}
		const clock = await this.exec(['cat', '/sys/devices/system/clocksource/clocksource0/current_clocksource'], { timeoutMs: 10_000 });
		if (clock.exitCode !== 0) {
			throw new UserError(`cannot read the lab's clocksource: ${clock.stderr.trim() || `exit code ${clock.exitCode}`}`);
		}
		const { address, prefixLength, mac } = state.network ?? {};
		return {
			running: true,
			name: this.lab.name,
			pid: state.qemuPid,
			bootedAt: state.bootedAt,
			bootSeconds: state.bootSeconds,
			udpForwards: state.udpForwards,
			...(address && prefixLength && mac ? { network: { address, prefixLength, mac } } : {}),
			clocksource: clock.stdout.trim(),
			kernelLog: this.lab.kernelLog,
		};
	}

	exec(argv: string[], options?: ExecOptions): Promise<ExecResult> {
		return this.lab.exec(argv, options);
	}

	/** The lab's agent reports a missing program itself. */
	checkStarted(): void {}

	async debugKernel(): Promise<DebugKernelStatus> {
		return debugKernelStatus(await usualLabKernel());
	}

	/**
	 * The guest sees this machine's files at the same paths, and buildModule
	 * hands out snapshots named after their content (or their sources), so the
	 * `.ko` is loaded where it is: a new build has a new name, which the
	 * guest's file cache cannot confuse with an older one.
	 */
	async stage(ko: string): Promise<string> {
		if (!path.isAbsolute(ko)) {
			throw new Error(`stage() needs an absolute path, not ${ko}`);
		}
		return ko;
	}

	exposeUdp(hostPort: number, guestPort: number): Promise<void> {
		return this.lab.forwardUdp(hostPort, guestPort);
	}

	unexposeUdp(hostPort: number): Promise<void> {
		return this.lab.unforwardUdp(hostPort);
	}

	async exposedUdp(): Promise<Record<string, number>> {
		return (await this.lab.state())?.udpForwards ?? {};
	}

	async kernelLog(): Promise<KmsgRecord[]> {
		const text = await readFile(this.lab.kernelLog, 'utf8').catch(ignoreMissing(''));
		return text
			.split('\n')
			.map(parseKmsg)
			.filter((record): record is KmsgRecord => record !== undefined);
	}

	/** Tails the host-side mirror of the guest's /dev/kmsg (from its start when `since` is given). */
	async followKernelLog(onRecord: (record: KmsgRecord) => void, signal: AbortSignal, since?: number): Promise<void> {
		let offset = since === undefined && existsSync(this.lab.kernelLog) ? (await stat(this.lab.kernelLog)).size : 0;
		let partial = '';
		let after = since ?? -1;
		while (!signal.aborted) {
			const size = existsSync(this.lab.kernelLog) ? (await stat(this.lab.kernelLog)).size : 0;
			if (size < offset) {
				offset = 0; // The lab rebooted: a new log, numbered from 0 again.
				after = -1;
			}
			if (size > offset) {
				const chunk = await readRange(this.lab.kernelLog, offset, size);
				offset = size;
				const lines = (partial + chunk).split('\n');
				partial = lines.pop() ?? '';
				for (const line of lines) {
					const record = parseKmsg(line);
					if (record && record.sequence > after) {
						onRecord(record);
					}
				}
			}
			await sleep(50, undefined, { signal }).catch(() => undefined);
		}
	}
}

async function readRange(file: string, start: number, end: number): Promise<string> {
	const chunks: Buffer[] = [];
	for await (const chunk of createReadStream(file, { start, end: end - 1 })) {
		chunks.push(chunk as Buffer);
	}
	return Buffer.concat(chunks).toString('utf8');
}

export interface TargetChoice {
	target?: string;
	lab?: string;
}

/** The target asked for, or local where this machine can load modules, else the lab. */
export async function chooseTarget(choice: TargetChoice = {}): Promise<Target> {
	const wanted = choice.target ?? settings.target;
	if (wanted === 'lab') {
		return new LabTarget('the lab (asked for with --target lab)', choice.lab);
	}
	const unfit = await localUnfitness();
	if (wanted === 'local') {
		if (unfit) {
			throw new UserError(`cannot use this machine's kernel: ${unfit}`, {
				hint: 'use --target lab to run the modules in a QEMU guest instead',
			});
		}
		return new LocalTarget(`this machine's kernel ${os.release()} (asked for with --target local)`);
	}
	if (wanted !== 'auto') {
		throw new UserError(`unknown target "${wanted}"`, { hint: 'use --target local, lab or auto', exitCode: 2 });
	}
	return unfit ? new LabTarget(`the lab, because ${unfit}`, choice.lab) : new LocalTarget(`this machine's kernel ${os.release()}`);
}

export { LabTarget };
