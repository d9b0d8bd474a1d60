/**
 * A lab guest as the bench uses it: commands that must succeed, and loadgen
 * (bench/loadgen.c) run there, whose subcommands this file turns into typed
 * calls: probe and preload a server, run a row, ask for stats, and watch the
 * server's side of a run whose generator is in another guest.
 */
import { log } from '../src/log.js';
import type { Target } from '../src/targets.js';
import type { GuestFacts } from './render.js';
import { type Measured, type ServerSide, type Workload, workloadArgs } from './rows.js';

/** The protocols loadgen speaks: ours, memcached's UDP frames, and the echo's "any reply counts". */
export type Protocol = 'text' | 'memcached' | 'echo';

/** loadgen's PROTO for a protocol. */
export function wireOf(protocol: Protocol): string {
	return protocol === 'memcached' ? 'mc' : protocol;
}

const CLOCKSOURCE = '/sys/devices/system/clocksource/clocksource0/current_clocksource';
/** The guests' NIC on the labs' network (src/lab/network.ts). */
export const LAB_NIC = 'eth1';

export class BenchGuest {
	constructor(
		readonly target: Target,
		readonly loadgen: string,
	) {}

	/** Runs argv in the guest; its stdout, or an error with everything it printed. */
	async run(argv: string[], timeoutMs = 60_000): Promise<string> {
		return (await this.runBoth(argv, timeoutMs)).stdout;
	}

	/** Runs argv in the guest; its stdout and stderr, or an error with everything it printed. */
	private async runBoth(argv: string[], timeoutMs: number): Promise<{ stdout: string; stderr: string }> {
		const result = await this.target.exec(argv, { timeoutMs });
		if (result.exitCode !== 0 || result.timedOut) {
			throw new Error(
				`in ${this.target.place}, \`${argv.join(' ')}\` failed (${result.timedOut ? 'timed out' : `exit ${result.exitCode}`}):\n${result.stderr}${result.stdout}`,
			);
		}
		return result;
	}

	/** Waits until a server at `address` answers on `port` (Node starts slowly). */
	async probe(address: string, port: number, protocol: Protocol, seconds = 60): Promise<void> {
		await this.run([this.loadgen, 'probe', '-a', address, String(port), wireOf(protocol), String(seconds)], (seconds + 10) * 1000);
	}

	/** Inserts every key of the workload once, from this guest. */
	async preload(address: string, port: number, protocol: Protocol, workload: Workload): Promise<void> {
		await this.run([this.loadgen, 'preload', ...workloadArgs(workload), '-a', address, String(port), wireOf(protocol)], 300_000);
	}

	/** `loadgen run ARGS` with the server's threads named `comm`: what it measured. */
	async loadgen_(args: (string | number)[], seconds: number, comm = ''): Promise<Measured> {
		const { stdout, stderr } = await this.runBoth(
			['env', `LOADGEN_SERVER=${comm}`, this.loadgen, 'run', ...args.map(String)],
			(seconds + 60) * 1000,
		);
		// "loadgen: N replies were refusals, e.g. ...": what the errors counted in `refused` were.
		if (stderr.trim()) log.warn(stderr.trim());
		return JSON.parse(stdout.trim().split('\n').at(-1) ?? '') as Measured;
	}

	/** The server's reply to "stats" (memcached's STAT lines, or udp_server's one line). */
	async stats(address: string, port: number, protocol: Protocol): Promise<string> {
		return this.run([this.loadgen, 'stats', '-a', address, String(port), wireOf(protocol)]);
	}

	/**
	 * Starts `loadgen watch` on the labs' NIC for a row of `run` seconds, at
	 * most `seconds`: `ready` settles once it is sampling, `result` when the
	 * row it saw is over.
	 */
	watch(seconds: number, run: number, comm: string): { ready: Promise<void>; result: Promise<ServerSide> } {
		let onReady = () => {};
		const ready = new Promise<void>(resolve => {
			onReady = resolve;
		});
		let printed = '';
		const result = this.target
			.exec(['env', `LOADGEN_SERVER=${comm}`, this.loadgen, 'watch', LAB_NIC, String(seconds), String(run)], {
				timeoutMs: (seconds + 30) * 1000,
				onStdout: chunk => {
					printed += chunk.toString();
					if (printed.includes('ready\n')) onReady();
				},
			})
			.then(done => {
				onReady();
				if (done.exitCode !== 0) throw new Error(`loadgen watch failed (exit ${done.exitCode}):\n${done.stderr}${done.stdout}`);
				return JSON.parse(done.stdout.trim().split('\n').at(-1) ?? '') as ServerSide;
			});
		return { ready, result };
	}

	/** The guest's address on the labs' network. */
	async address(): Promise<string> {
		const address = (await this.target.guest())?.network?.address;
		if (!address) throw new Error(`${this.target.place} has no address on the labs' network`);
		return address;
	}

	async facts(): Promise<GuestFacts> {
		const cpus = Number(await this.run(['nproc']));
		const clocksource = (await this.run(['cat', CLOCKSOURCE])).trim();
		const kernel = (await this.run(['uname', '-r'])).trim();
		const perf = await this.target.exec(['perf', 'stat', '-e', 'instructions', 'true'], { timeoutMs: 60_000 });
		const perfLine = perf.exitCode === 0 ? 'works' : `fails: ${`${perf.stderr}${perf.stdout}`.trim().split('\n').slice(-1)[0] ?? ''}`;
		return { cpus, clocksource, kernel, perf: perfLine };
	}
}
