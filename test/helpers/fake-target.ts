/**
 * A scripted Target for unit tests of the orchestrator: records every
 * command and answers from a table, so no kernel or lab is needed.
 */
import type { ExecOptions, ExecResult } from '../../src/lab/agent-client.js';
import type { KmsgRecord } from '../../src/kmsg.js';
import { findProgram, MissingProgramError } from '../../src/programs.js';
import type { GuestReport, Target, TargetKind } from '../../src/targets.js';

export type Responder = (argv: string[], options: ExecOptions) => Partial<ExecResult> | undefined;

/** A lab by default; `new FakeTarget(respond, 'local')` plays this machine's kernel. */
export class FakeTarget implements Target {
	readonly reason = 'a fake target for unit tests';
	readonly place = 'a fake target';
	readonly commands: string[][] = [];
	readonly exposed: Array<[number, number]> = [];
	log: KmsgRecord[] = [];

	constructor(
		private readonly respond: Responder,
		readonly kind: TargetKind = 'lab',
	) {}

	get where(): string {
		return this.kind === 'lab' ? 'the lab' : 'this kernel';
	}

	get isGuest(): boolean {
		return this.kind === 'lab';
	}

	get promptHost(): string {
		return this.kind === 'lab' ? 'kudp-lab' : '\\h';
	}

	get installNote(): string | undefined {
		return this.kind === 'lab' ? 'the fake lab forgets what is installed' : undefined;
	}

	get stuckModuleHint(): string {
		return this.kind === 'lab'
			? 'the lab guest has to be restarted: ./run down (the next ./run boots a fresh one)'
			: 'a reboot may be needed; check the kernel log (./run logs)';
	}

	async headersDir(): Promise<string> {
		return '/nonexistent/headers';
	}

	async kernelRelease(): Promise<string> {
		return '6.1.0-fake';
	}

	async prepare(): Promise<void> {}

	async isUp(): Promise<boolean> {
		return true;
	}

	async stop(): Promise<boolean> {
		return this.kind === 'lab';
	}

	async guest(): Promise<GuestReport | undefined> {
		return this.kind === 'lab' ? { running: true, name: 'fake', kernelLog: '/nonexistent/kern.log' } : undefined;
	}

	async exec(argv: string[], options: ExecOptions = {}): Promise<ExecResult> {
		this.commands.push(argv);
		return { exitCode: 0, signal: null, timedOut: false, stdout: '', stderr: '', ...this.respond(argv, options) };
	}

	/** As the real targets do: this machine's kernel finds a program that did not start missing; the lab's agent says so itself. */
	checkStarted(result: ExecResult, program: string): void {
		if (this.kind === 'local' && result.exitCode === null && result.signal === null && !result.timedOut && !findProgram(program)) {
			throw new MissingProgramError(program);
		}
	}

	async debugKernel(): Promise<undefined> {
		return undefined;
	}

	async stage(ko: string): Promise<string> {
		return this.kind === 'lab' ? `/run/kudp/${ko.split('/').at(-1)}` : ko;
	}

	async exposeUdp(hostPort: number, guestPort: number): Promise<void> {
		this.exposed.push([hostPort, guestPort]);
	}

	async unexposeUdp(hostPort: number): Promise<void> {
		const index = this.exposed.findIndex(([port]) => port === hostPort);
		if (index >= 0) this.exposed.splice(index, 1);
	}

	async exposedUdp(): Promise<Record<string, number>> {
		return Object.fromEntries(this.exposed.map(([host, guest]) => [String(host), guest]));
	}

	async kernelLog(): Promise<KmsgRecord[]> {
		return this.log;
	}

	async followKernelLog(): Promise<void> {}
}
