/**
 * `./run pool up N | status | down`: a pool of udp_servers for clients that
 * spread keys over several servers (kvclient --servers, memcached clients
 * with ketama). Each server is a lab of its own, named PREFIX1..PREFIXN
 * (`pool1`, ...), on the labs' network 10.0.9.0/24, with both the text port
 * and the memcached port. The labs are the same as `./run udp_server --lab
 * NAME --detach` makes and `./run down --lab NAME` stops: this only does it
 * for N labs at once, in parallel.
 */
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { messageOf, UserError } from '../errors.js';
import { freePort } from '../lab/free-port.js';
import { build, currentParams, isLoaded, load, stopTarget } from '../lifecycle.js';
import { log } from '../log.js';
import { PROJECT_ROOT } from '../modules.js';
import { applySettings } from '../settings.js';
import { chooseTarget, type Target } from '../targets.js';
import { KvClient } from '../../user-client/client.js';

export const POOL_PREFIX = 'pool';
/** The ports every server of a pool serves, on every lab alike (ketama hashes HOST:PORT). */
export const POOL_TEXT_PORT = 3000;
export const POOL_MEMCACHED_PORT = 11211;

export interface PoolOptions {
	prefix?: string;
}

export interface PoolUpOptions extends PoolOptions {
	/** Start the backup daemon kvd in each lab (a pool is a cache: off by default). */
	daemon?: boolean;
}

/** One lab of the pool, as `pool status` reports it. */
export interface PoolMember {
	lab: string;
	running: boolean;
	/** On the labs' network. */
	address?: string;
	loaded: boolean;
	params?: Record<string, string>;
	/** The port on this machine's 127.0.0.1 forwarded to its text port. */
	hostPort?: number;
	/** Whether it answered HELLO (through that forward), and its entries. */
	answers: boolean;
	entries?: number;
	problem?: string;
}

function labName(prefix: string, number: number): string {
	return `${prefix}${number}`;
}

function checkPrefix(prefix: string): string {
	if (!/^[\w.-]+$/.test(prefix) || /\d$/.test(prefix)) {
		throw new UserError(`bad pool prefix "${prefix}": letters, digits, dot, dash or underscore, not ending in a digit`, { exitCode: 64 });
	}
	return prefix;
}

async function labTarget(name: string): Promise<Target> {
	return chooseTarget({ target: 'lab', lab: name });
}

/** The numbers of the pool's labs that exist in .lab (running or not), in order. */
async function poolNumbers(prefix: string): Promise<number[]> {
	const entries = await readdir(path.join(PROJECT_ROOT, '.lab')).catch(() => [] as string[]);
	const pattern = new RegExp(`^${prefix.replace(/[.]/g, '\\.')}(\\d+)$`);
	return entries
		.map(entry => pattern.exec(entry)?.[1])
		.filter((number): number is string => number !== undefined)
		.map(Number)
		.sort((a, b) => a - b);
}

/** `--servers` for the running members: the text port, or the memcached port. */
export function serverList(members: PoolMember[], port: number): string {
	return members
		.filter(member => member.address)
		.map(member => `${member.address}:${port}`)
		.join(',');
}

/** Whether the loaded server already has every parameter asked for (then it is kept, with its table). */
function serves(current: Record<string, string>, wanted: string[]): boolean {
	return wanted.every(word => {
		const [name = '', value = ''] = word.split('=');
		return current[name] === value;
	});
}

async function bringUp(name: string, params: string[], options: PoolUpOptions): Promise<string> {
	const target = await labTarget(name);
	const started = performance.now();
	await target.prepare();
	if ((await isLoaded(target, 'udp_server')) && serves(await currentParams(target, 'udp_server'), params)) {
		return `${name}: udp_server was already serving; kept it (and its table)`;
	}
	const module = await build(target, 'udp_server');
	// A forward to the text port that is already there is kept: its port is what status shows.
	const forwarded = Object.entries(await target.exposedUdp()).find(([, guestPort]) => guestPort === POOL_TEXT_PORT)?.[0];
	const hostPort = forwarded === undefined ? await freePort('udp') : Number(forwarded);
	await load(target, module, { name: 'udp_server', params, hostPort, daemon: options.daemon === true });
	return `${name}: udp_server loaded in ${((performance.now() - started) / 1000).toFixed(1)} s`;
}

export async function poolUpCommand(count: number, params: string[], options: PoolUpOptions): Promise<void> {
	const prefix = checkPrefix(options.prefix ?? POOL_PREFIX);
	// Several labs on a machine of few cores: one emulated CPU each, unless KUDP_LAB_CPUS says otherwise.
	applySettings({ labCpus: 1 }, { keep: true });
	const wanted = [`port=${POOL_TEXT_PORT}`, `memcached_port=${POOL_MEMCACHED_PORT}`, ...params];
	const names = Array.from({ length: count }, (_, i) => labName(prefix, i + 1));
	const started = performance.now();
	log.info(`starting ${count} labs at once: ${names.join(' ')}`);
	const results = await Promise.allSettled(names.map(name => bringUp(name, wanted, options)));
	const failures: string[] = [];
	results.forEach((result, index) => {
		if (result.status === 'fulfilled') log.info(result.value);
		else failures.push(`${names[index]}: ${messageOf(result.reason)}`);
	});
	if (failures.length > 0) {
		throw new UserError(`could not start the whole pool:\n  ${failures.join('\n  ')}`, {
			hint: `the labs that started are still running: ./run pool status${prefix === POOL_PREFIX ? '' : ` --prefix ${prefix}`}; ./run pool down stops them`,
		});
	}
	const members = await Promise.all(names.map(member));
	process.stdout.write(`${formatMembers(members)}\n`);
	const others = (await poolNumbers(prefix)).filter(number => number > count).map(number => labName(prefix, number));
	for (const other of others) {
		if (await (await labTarget(other)).isUp()) {
			process.stdout.write(`(${other} is running too, outside this list; ./run pool down stops every lab of the pool)\n`);
		}
	}
	process.stdout.write(
		`pool of ${count} up in ${((performance.now() - started) / 1000).toFixed(1)} s. From a lab guest (the labs' network):\n` +
			`  kvclient --servers ${serverList(members, POOL_TEXT_PORT)} ...\n` +
			`  memcached clients: ${serverList(members, POOL_MEMCACHED_PORT)}\n` +
			`e.g. ./run shell --lab ${names[0]} -- kvclient --servers ${serverList(members, POOL_TEXT_PORT)} insert dog baileys\n`,
	);
}

/** Looks at one lab of the pool: running, its address, its server, and whether that answers. */
async function member(name: string): Promise<PoolMember> {
	const target = await labTarget(name);
	const report: PoolMember = { lab: name, running: false, loaded: false, answers: false };
	const guest = await target.guest();
	if (!guest?.running) return report;
	report.running = true;
	if (guest.network) report.address = guest.network.address;
	report.loaded = await isLoaded(target, 'udp_server');
	if (!report.loaded) return report;
	report.params = await currentParams(target, 'udp_server');
	const port = Number(report.params['port'] ?? POOL_TEXT_PORT);
	const forward = Object.entries(guest.udpForwards ?? {}).find(([, guestPort]) => guestPort === port);
	if (!forward) {
		report.problem = `no port forward from this machine to its port ${port}`;
		return report;
	}
	report.hostPort = Number(forward[0]);
	try {
		const client = new KvClient({ host: '127.0.0.1', port: report.hostPort, timeoutMs: 2000, retries: 1 });
		await client.hello();
		report.answers = true;
		report.entries = (await client.stats()).entries;
	} catch (error) {
		report.problem = messageOf(error);
	}
	return report;
}

function formatMembers(members: PoolMember[]): string {
	return members
		.map(m => {
			if (!m.running) return `${m.lab.padEnd(8)} not running`;
			const where = (m.address ?? 'no address').padEnd(10);
			if (!m.loaded) return `${m.lab.padEnd(8)} ${where} running, udp_server not loaded`;
			const ports = `text ${m.params?.['port']}, memcached ${m.params?.['memcached_port']}`;
			const state = m.answers ? `answers (${m.entries ?? '?'} entries)` : `does not answer${m.problem ? `: ${m.problem}` : ''}`;
			return `${m.lab.padEnd(8)} ${where} udp_server ${ports}; ${state}; 127.0.0.1:${m.hostPort ?? '-'} here`;
		})
		.join('\n');
}

export async function poolStatusCommand(options: PoolOptions & { json?: boolean }): Promise<void> {
	const prefix = checkPrefix(options.prefix ?? POOL_PREFIX);
	const numbers = await poolNumbers(prefix);
	const members = await Promise.all(numbers.map(number => member(labName(prefix, number))));
	const running = members.filter(m => m.running);
	if (options.json) {
		process.stdout.write(`${JSON.stringify({ members, servers: serverList(running, POOL_TEXT_PORT) }, null, 2)}\n`);
		return;
	}
	if (running.length === 0) {
		process.stdout.write(`no lab of the pool "${prefix}" is running (./run pool up N starts one)\n`);
		return;
	}
	process.stdout.write(`${formatMembers(members)}\n--servers ${serverList(running, POOL_TEXT_PORT)}\n`);
}

export async function poolDownCommand(options: PoolOptions): Promise<void> {
	const prefix = checkPrefix(options.prefix ?? POOL_PREFIX);
	const names = (await poolNumbers(prefix)).map(number => labName(prefix, number));
	// As ./run down --lab NAME, for each at once.
	const stopped = await Promise.all(names.map(async name => ((await stopTarget(await labTarget(name))) ? name : undefined)));
	const which = stopped.filter(Boolean);
	process.stdout.write(which.length > 0 ? `stopped ${which.join(' ')}\n` : `no lab of the pool "${prefix}" was running\n`);
}
