/**
 * A pool of kernel-udp servers: each key lives on the one server that
 * libmemcached's ketama gives it (ketama.ts), so any client with the same
 * server list finds it there. `kvclient --servers` is built on this.
 *
 * A server that does not answer is remembered for the life of the Pool: the
 * rest of its keys fail at once with the same error, which names it, instead
 * of each waiting out its own timeout. Keys on the other servers go on.
 */
import { isIPv6 } from 'node:net';
import { formatAddress, KvClient, type KvError, KvNetworkError, KvTimeoutError, type RequestOptions } from './client.js';
import { Continuum, type PoolServer } from './ketama.js';

/** A --servers list that cannot be used; the message says why. */
export class ServerListError extends Error {}

/**
 * Parses `HOST:PORT,HOST:PORT,...` (an IPv6 address in brackets:
 * `[::1]:3000`). The hosts are kept as written: ketama hashes them.
 */
export function parseServers(text: string): PoolServer[] {
	if (text.trim() === '') {
		throw new ServerListError('the server list is empty: give HOST:PORT,HOST:PORT,...');
	}
	const servers: PoolServer[] = [];
	const seen = new Set<string>();
	for (const [index, entry] of text.split(',').entries()) {
		const where = `server ${index + 1} ("${entry}")`;
		if (entry === '') {
			throw new ServerListError(`${where} is empty: a comma too many?`);
		}
		const match = /^(\[[^\]]+\]|[^:[\]\s]+):(\d+)$/.exec(entry);
		if (!match) {
			throw new ServerListError(`${where} is not HOST:PORT (an IPv6 address goes in brackets: [::1]:3000)`);
		}
		const [, bracketed = '', portText = ''] = match;
		const host = bracketed.startsWith('[') ? bracketed.slice(1, -1) : bracketed;
		if (bracketed.startsWith('[') && !isIPv6(host)) {
			throw new ServerListError(`${where}: ${host} in brackets is not an IPv6 address`);
		}
		const port = Number(portText);
		if (port < 1 || port > 65535) {
			throw new ServerListError(`${where}: the port must be from 1 to 65535`);
		}
		const name = formatAddress(host, port);
		if (seen.has(name)) {
			throw new ServerListError(`${name} is listed twice: each server once, or ketama would never use the second`);
		}
		seen.add(name);
		servers.push({ host, port });
	}
	return servers;
}

/** A server of the pool, as the user wrote it: "10.0.9.2:3000". */
export function serverName(server: PoolServer): string {
	return formatAddress(server.host, server.port);
}

/** The connection settings shared by every server of a pool. */
export type PoolOptions = Omit<RequestOptions, 'host' | 'port' | 'onSend'> & {
	onSend?: (server: PoolServer, attempt: number, tries: number) => void;
};

export class Pool {
	readonly continuum: Continuum;
	private readonly clients: KvClient[];
	private readonly down = new Map<number, KvTimeoutError | KvNetworkError>();

	constructor(
		readonly servers: readonly PoolServer[],
		options: PoolOptions,
	) {
		this.continuum = new Continuum(servers);
		this.clients = servers.map(server => {
			const { onSend, ...rest } = options;
			return new KvClient({
				...rest,
				host: server.host,
				port: server.port,
				...(onSend && { onSend: (attempt: number, tries: number) => onSend(server, attempt, tries) }),
			});
		});
	}

	/** The index of the server that holds `key`. */
	indexFor(key: string): number {
		return this.continuum.indexFor(key);
	}

	/** The client of server `index`. */
	client(index: number): KvClient {
		const client = this.clients[index];
		if (!client) throw new RangeError(`no server ${index} in a pool of ${this.servers.length}`);
		return client;
	}

	/**
	 * Runs `call` with the client of the server that holds `key`. With more
	 * than one server, a server that does not answer (timeout or network
	 * error) is named with the key, and marked down: the pool's later calls
	 * to it fail at once with that error.
	 */
	async forKey<T>(key: string, call: (client: KvClient) => Promise<T>): Promise<T> {
		const index = this.indexFor(key);
		return this.onServer(index, call, `key ${key} is on`);
	}

	/** Runs `call` on server `index`, with the same marking down as forKey. */
	async onServer<T>(index: number, call: (client: KvClient) => Promise<T>, what = 'server'): Promise<T> {
		const client = this.client(index);
		if (this.servers.length === 1) return call(client);
		const known = this.down.get(index);
		if (known) throw this.unreachable(index, what, known, true);
		try {
			return await call(client);
		} catch (error) {
			if (!(error instanceof KvTimeoutError || error instanceof KvNetworkError)) throw error;
			this.down.set(index, error);
			throw this.unreachable(index, what, error, false);
		}
	}

	/** The error for a server that did not answer (`earlier`: an earlier request, so this one was not sent). */
	private unreachable(index: number, what: string, error: KvTimeoutError | KvNetworkError, earlier: boolean): KvError {
		const server = this.servers[index]!;
		const place = `${what} ${serverName(server)} (server ${index + 1} of ${this.servers.length} in --servers)`;
		const why = earlier ? ', not asked: it did not answer an earlier request' : '';
		if (error instanceof KvTimeoutError) {
			return new KvTimeoutError(`${place}, which does not answer${why}: ${error.message}`, error.tries, error.timeoutMs);
		}
		return new KvNetworkError(`${place}, which cannot be reached${why}: ${error.message}`, error.cause as NodeJS.ErrnoException);
	}
}

/** Runs `task` on every item, at most `limit` at once; results in the items' order. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, task: (item: T, index: number) => Promise<R>): Promise<R[]> {
	const results = new Array<R>(items.length);
	let next = 0;
	const worker = async () => {
		while (next < items.length) {
			const index = next++;
			results[index] = await task(items[index]!, index);
		}
	};
	await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
	return results;
}
