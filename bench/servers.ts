/**
 * The servers the bench compares, as things it can start and stop in a lab
 * guest: udp_server (threads, or softirq=1), memcached, the Node reference
 * server and the bare echo module, each on its own port at one address
 * (127.0.0.1 when the generator shares the guest; the guest's address on the
 * labs' network when it is in another lab).
 */
import path from 'node:path';
import { PROJECT_ROOT } from '../src/modules.js';
import type { BenchGuest, Protocol } from './guest.js';
import type { Workload } from './rows.js';

export const TEXT_PORT = 3000;
export const MC_PORT = 11311;
export const MEMCACHED_PORT = 11211;
export const NODE_PORT = 3001;
export const ECHO_PORT = 3400;

export interface Server {
	name: string;
	/** What its processes are called (kernel threads: "udp_server/0"...): loadgen measures their CPU time. */
	comm: string;
	threads: number;
	/** Where it listens, and the protocols it answers on which port. */
	address: string;
	ports: Partial<Record<Protocol, number>>;
	/** A process's pid while it runs (memcached, node); kernel modules have none. */
	pid?(): string;
	start(): Promise<void>;
	stop(): Promise<void>;
}

/**
 * Wraps the insertion of a workload's keys on a server's first start: the
 * memory measurement (memory.ts) reads the guest before and after it.
 */
export type AroundPreload = (server: Server, workload: Workload, preload: () => Promise<void>) => Promise<void>;

/**
 * udp_server's settings for a workload: the longest request and reply
 * (`len`: a 1 000-byte value and its framing), and a table that holds every
 * key (`max_bytes`: about 1 KB of slab per entry of these sizes; `max_entries`).
 * `reply_rate=0`: no limit on the reply bytes to one /24 of senders not on
 * the guest (PROTOCOL.md), which would otherwise cap a generator in another
 * lab at 1 MiB of replies a second; senders on the guest are never limited.
 */
function serverParams(workload: Workload): string[] {
	return [
		'reply_rate=0',
		...(workload.values ? ['len=1200', `max_bytes=${512 << 20}`, `max_entries=${Math.max(131_072, workload.keys * 2)}`] : []),
	];
}

/** The servers of one guest at one address, built from the modules given. */
export class ServerKit {
	constructor(
		readonly guest: BenchGuest,
		readonly address: string,
		readonly modules: { server: string; echo: string },
		readonly aroundPreload?: AroundPreload,
	) {}

	/** udp_server with worker threads, its text and memcached ports on one table. */
	ours(threads: number, workload: Workload): Server {
		return this.kernel(
			'udp_server',
			this.modules.server,
			threads,
			[...serverParams(workload)],
			{
				text: TEXT_PORT,
				memcached: MC_PORT,
			},
			workload,
		);
	}

	/** softirq=1 (server-module/fastpath.c): the same module, so it takes the place of `ours` in turn. */
	oursSoftirq(threads: number, workload: Workload): Server {
		return this.kernel(
			'udp_server softirq',
			this.modules.server,
			threads,
			['softirq=1', ...serverParams(workload)],
			{
				text: TEXT_PORT,
				memcached: MC_PORT,
			},
			workload,
		);
	}

	/**
	 * softirq=1 with rx_dev (server-module/devhook.c): served in the receive
	 * handler of `device` (the labs' network), before the IP and UDP layers.
	 * Only a generator in another guest reaches it there.
	 */
	oursRxDev(threads: number, workload: Workload, device: string): Server {
		return this.kernel(
			'udp_server rx_dev',
			this.modules.server,
			threads,
			['softirq=1', `rx_dev=${device}`, ...serverParams(workload)],
			{
				text: TEXT_PORT,
				memcached: MC_PORT,
			},
			workload,
		);
	}

	echo(threads: number): Server {
		return this.kernel('udp_echo', this.modules.echo, threads, [], { echo: ECHO_PORT });
	}

	memcached(threads: number, workload: Workload): Server {
		const argv = ['memcached', '-U', String(MEMCACHED_PORT), '-p', '0', '-l', this.address, '-t', String(threads), '-u', 'root'];
		return this.process(
			'memcached',
			'memcached',
			threads,
			{ memcached: MEMCACHED_PORT },
			[...argv, '-m', workload.values ? '512' : '64'],
			workload,
		);
	}

	node(workload: Workload): Server {
		return this.process(
			'node dgram',
			'node',
			1,
			{ text: NODE_PORT },
			[process.execPath, path.join(PROJECT_ROOT, 'dist/bench/userspace-server.js'), String(NODE_PORT)],
			workload,
		);
	}

	/** Waits until the server answers on each port, then inserts the workload's keys through `preload` (on its first start around aroundPreload). */
	private async ready(server: Server, workload: Workload | undefined, preload: Protocol | undefined, first: boolean): Promise<void> {
		for (const [protocol, port] of Object.entries(server.ports) as Array<[Protocol, number]>) {
			await this.guest.probe(this.address, port, protocol);
		}
		if (!workload || !preload) return;
		const insert = () => this.guest.preload(this.address, server.ports[preload]!, preload, workload);
		await (first && this.aroundPreload ? this.aroundPreload(server, workload, insert) : insert());
	}

	private kernel(name: string, ko: string, threads: number, params: string[], ports: Server['ports'], workload?: Workload): Server {
		const module = path.basename(ko).startsWith('udp_echo') ? 'udp_echo' : 'udp_server';
		const portParams = module === 'udp_echo' ? [`port=${ECHO_PORT}`] : [`port=${TEXT_PORT}`, `memcached_port=${MC_PORT}`];
		let started = 0;
		const server: Server = {
			name,
			comm: module,
			threads,
			address: this.address,
			ports,
			start: async () => {
				await this.guest.run(['insmod', ko, `threads=${threads}`, `bind=${this.address}`, ...portParams, ...params]);
				// Both of udp_server's ports share one table: the keys are inserted once.
				await this.ready(server, workload, module === 'udp_server' ? 'text' : undefined, started++ === 0);
			},
			stop: async () => {
				await this.guest.run(['rmmod', module], 30_000);
			},
		};
		return server;
	}

	private process(name: string, comm: string, threads: number, ports: Server['ports'], argv: string[], workload: Workload): Server {
		let pid = '';
		let started = 0;
		const server: Server = {
			name,
			comm,
			threads,
			address: this.address,
			ports,
			start: async () => {
				pid = (await this.guest.run(['sh', '-c', START_DETACHED, 'sh', ...argv])).trim();
				const [protocol] = Object.keys(ports) as Protocol[];
				await this.ready(server, workload, protocol, started++ === 0);
			},
			stop: async () => {
				await this.guest.run(['sh', '-c', KILL_AND_WAIT, 'sh', pid], 30_000);
			},
		};
		server.pid = () => pid;
		return server;
	}
}

/** Starts its arguments in the background, detached from the agent, and prints the pid. A fixed script: the words are its arguments. */
const START_DETACHED = 'setsid "$@" </dev/null >/dev/null 2>&1 & echo $!';
/** Kills process $1 and waits until it is gone. */
const KILL_AND_WAIT = 'kill "$1"; while kill -0 "$1" 2>/dev/null; do sleep 0.1; done';

/** Runs `work` with `other` loaded in the place of `server` (two copies of one module cannot be loaded at once). */
export async function inPlaceOf(server: Server, other: Server, work: () => Promise<void>): Promise<void> {
	await server.stop();
	await other.start();
	await work();
	await other.stop();
	await server.start();
}
