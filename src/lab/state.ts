/**
 * The lab's state file, `.lab/<name>/state.json`: what a boot recorded (the
 * PIDs of QEMU and virtiofsd, the agent's port, the kernel, the UDP
 * forwards), read and written by every `./run` that uses the lab.
 */
import { readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { ifMissing, messageOf, UserError } from '../errors.js';
import { writeFileAtomically } from '../files.js';
import { isSameProcess, type ProcessIdentity, processIdentity, withFileLock } from '../lock.js';
import type { LabKernel } from './kernel.js';
import type { LabNetwork } from './network.js';

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

/** The state file of the lab `name` in `dir`. */
export class LabStateFile {
	readonly path: string;

	constructor(
		private readonly dir: string,
		private readonly name: string,
	) {
		this.path = path.join(dir, 'state.json');
	}

	/**
	 * What the last boot recorded, whether or not QEMU still runs. A state
	 * file that cannot be parsed is an error, not "down": a lab may still be
	 * running, and booting another beside it would fight it for its sockets.
	 */
	async read(): Promise<LabState | undefined> {
		const text = await readFile(this.path, 'utf8').catch(ifMissing(undefined));
		if (text === undefined) {
			return undefined;
		}
		let state: Partial<LabState>;
		try {
			state = JSON.parse(text) as Partial<LabState>;
		} catch (error) {
			throw this.corrupt(messageOf(error));
		}
		if (typeof state !== 'object' || state === null || typeof state.qemuPid !== 'number' || !Array.isArray(state.virtiofsdPids)) {
			throw this.corrupt('it does not hold a QEMU PID');
		}
		return state as LabState;
	}

	private corrupt(reason: string): UserError {
		const pidFile = path.join(this.dir, 'qemu.pid');
		return new UserError(`the lab "${this.name}" cannot be used: its state file ${this.path} is corrupt (${reason})`, {
			hint:
				`if a QEMU of this lab still runs, stop it first (its PID is in ${pidFile}); then remove the state file:\n` + `  rm '${this.path}'`,
		});
	}

	async write(state: LabState): Promise<void> {
		await writeFileAtomically(this.path, JSON.stringify(state, null, 2), { mode: 0o600 });
	}

	async remove(): Promise<void> {
		await rm(this.path, { force: true });
	}

	/**
	 * The state file's udpForwards is read, changed in QEMU and written back:
	 * two ./run forwarding at once each wrote back what it had read, and one
	 * forward was lost from the record. One at a time, under this lock.
	 */
	locked<T>(action: () => Promise<T>): Promise<T> {
		return withFileLock(path.join(this.dir, 'state.lock'), 30_000, action);
	}
}
