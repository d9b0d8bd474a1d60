/**
 * A small UDP client for the kernel-udp server: one datagram out, one reply
 * back, with a timeout and retries. Used by kvclient, ./run demo, the
 * integration tests and the benchmark.
 */
import dgram from 'node:dgram';
import { isIPv6 } from 'node:net';
import {
	CMD_DELETE,
	CMD_INSERT,
	CMD_LOOKUP,
	CMD_STATS,
	formatRequest,
	HELLO,
	padRequest,
	padSize,
	parseReply,
	parseStats,
	type Reply,
	type Stats,
} from './protocol.js';

export { parseStats, type Reply, type Stats } from './protocol.js';

export interface RequestOptions {
	/** An IPv4 or IPv6 address (with or without [brackets]) or a host name (resolved over IPv4). */
	host: string;
	port: number;
	/** How long to wait for each reply; default 1000 ms. */
	timeoutMs?: number;
	/** Extra tries after the first, each sending the datagram again; default 2. */
	retries?: number;
	/** Aborting rejects with the signal's reason and closes the socket. */
	signal?: AbortSignal;
	/** Name resolution to use instead of dns.lookup (as for dgram.createSocket). */
	lookup?: dgram.SocketOptions['lookup'];
	/** Called just before each datagram is sent (try 1 of `tries`, 2 of `tries`, ...). */
	onSend?: (attempt: number, tries: number) => void;
}

/** The base of every error this client throws on purpose. */
export class KvError extends Error {
	constructor(message: string, options?: { cause?: unknown }) {
		super(message, options);
		this.name = new.target.name;
	}
}

/** No reply came after every try. */
export class KvTimeoutError extends KvError {
	constructor(
		message: string,
		readonly tries: number,
		readonly timeoutMs: number,
	) {
		super(message);
	}
}

/** The datagram could not be sent or was refused; `cause` holds the system error. */
export class KvNetworkError extends KvError {
	/** The system error code: ECONNREFUSED, ENOTFOUND, ... */
	readonly code: string | undefined;
	constructor(message: string, cause: NodeJS.ErrnoException) {
		super(message, { cause });
		this.code = cause.code;
	}
}

/** The server answered `ERR reason`. */
export class KvServerError extends KvError {
	constructor(readonly reason: string) {
		super(`server error: ${reason}`);
	}
}

/** The server answered something the protocol does not allow here. */
export class KvProtocolError extends KvError {
	constructor(
		message: string,
		readonly reply: Reply,
	) {
		super(message);
	}
}

/** "127.0.0.1:3000", "[::1]:3000". */
export function formatAddress(host: string, port: number): string {
	const bare = unbracket(host);
	return isIPv6(bare) ? `[${bare}]:${port}` : `${bare}:${port}`;
}

function unbracket(host: string): string {
	return host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
}

const NAME_ERRORS: Record<string, string> = {
	ENOTFOUND: 'unknown host',
	EAI_NONAME: 'unknown host',
	EAI_NODATA: 'the host has no IPv4 address',
	EAI_AGAIN: 'name lookup failed (DNS not reachable?)',
	EAI_FAIL: 'name lookup failed',
};

function networkError(where: string, error: NodeJS.ErrnoException, connecting: boolean): KvNetworkError {
	const code = error.code ?? '';
	if (code === 'ECONNREFUSED') {
		return new KvNetworkError(`${where} refused the datagram (nothing listening?)`, error);
	}
	if (connecting && code in NAME_ERRORS) {
		return new KvNetworkError(`cannot reach ${where}: ${NAME_ERRORS[code]} (${code})`, error);
	}
	return new KvNetworkError(`cannot ${connecting ? 'reach' : 'talk to'} ${where}: ${error.message}`, error);
}

/**
 * Sends `message` as one datagram from a fresh socket and resolves with the
 * first reply's bytes. Without a reply within `timeoutMs` the datagram is sent
 * again, `retries` times; then it rejects with KvTimeoutError. Network
 * failures reject with KvNetworkError. The socket is always closed.
 */
export function request(message: string | Buffer, options: RequestOptions): Promise<Buffer> {
	const timeoutMs = options.timeoutMs ?? 1000;
	const tries = 1 + (options.retries ?? 2);
	const host = unbracket(options.host);
	const where = formatAddress(host, options.port);
	const { signal } = options;
	if (!Number.isInteger(options.port) || options.port < 1 || options.port > 65535) {
		return Promise.reject(new RangeError(`port must be a whole number from 1 to 65535, not ${options.port}`));
	}
	if (!(timeoutMs > 0) || !Number.isInteger(tries) || tries < 1) {
		return Promise.reject(new RangeError(`timeoutMs must be > 0 and retries a whole number >= 0`));
	}
	if (signal?.aborted) {
		return Promise.reject(signal.reason);
	}

	return new Promise<Buffer>((resolve, reject) => {
		const socket = dgram.createSocket({ type: isIPv6(host) ? 'udp6' : 'udp4', ...(options.lookup && { lookup: options.lookup }) });
		let timer: NodeJS.Timeout | undefined;
		let attempt = 0;
		let done = false;

		const finish = (error: unknown, reply?: Buffer) => {
			if (done) return;
			done = true;
			clearTimeout(timer);
			signal?.removeEventListener('abort', onAbort);
			try {
				socket.close();
			} catch {
				// already closed
			}
			if (reply) resolve(reply);
			else reject(error);
		};
		const onAbort = () => finish(signal?.reason);
		const send = () => {
			if (done) return;
			if (attempt === tries) {
				finish(
					new KvTimeoutError(
						`no reply from ${where} after ${tries} ${tries === 1 ? 'try' : 'tries'} (timeout ${timeoutMs} ms each)`,
						tries,
						timeoutMs,
					),
				);
				return;
			}
			attempt++;
			options.onSend?.(attempt, tries);
			socket.send(message, error => {
				if (error) finish(networkError(where, error, false));
			});
			// setImmediate: a reply already waiting in the socket (event loop busy) still counts.
			timer = setTimeout(() => setImmediate(send), timeoutMs);
		};

		signal?.addEventListener('abort', onAbort, { once: true });
		socket.on('message', data => finish(undefined, data));
		// A connected socket gets ICMP port-unreachable as ECONNREFUSED here.
		socket.on('error', (error: NodeJS.ErrnoException) => finish(networkError(where, error, false)));
		// A failed name lookup arrives as the callback's argument, not as 'error'.
		const connected = (error?: NodeJS.ErrnoException) => {
			if (error) finish(networkError(where, error, true));
			else send();
		};
		socket.connect(options.port, host, connected as () => void);
	});
}

/** Bytes of padding beyond what `ERR pad to N` asks for. */
const PAD_MARGIN = 4;

/**
 * Typed calls for each command of PROTOCOL.md. `ERR` replies reject with
 * KvServerError, replies that make no sense for the command with
 * KvProtocolError, and keys or values the server would refuse with
 * InvalidRequestError (before anything is sent).
 */
export class KvClient {
	constructor(readonly options: RequestOptions) {}

	/** Sends any text and parses the reply (no checks, no error for ERR). */
	async send(message: string | Buffer, overrides?: Partial<RequestOptions>): Promise<Reply> {
		return parseReply(await request(message, { ...this.options, ...overrides }));
	}

	/**
	 * Sends a request that takes trailing spaces (not an insert). When the
	 * server asks for a longer request (`ERR pad to N`: it bounds replies to
	 * senders off its host to a few times the request, against reflection
	 * attacks), sends it again padded with spaces, a few bytes more than
	 * asked since counters may grow in between.
	 */
	private async ask(message: string, overrides?: Partial<RequestOptions>): Promise<Reply> {
		let reply = await this.send(message, overrides);
		for (let again = 0; again < 3 && reply.kind === 'err'; again++) {
			const size = padSize(reply.reason);
			if (size === undefined || size <= Buffer.byteLength(message)) break;
			message = padRequest(message, size + PAD_MARGIN);
			reply = await this.send(message, overrides);
		}
		return reply;
	}

	/** Resolves when the server answers GOT IT. */
	async hello(overrides?: Partial<RequestOptions>): Promise<void> {
		const reply = await this.ask(formatRequest(HELLO), overrides);
		if (reply.kind !== 'gotIt') unexpected(HELLO, reply);
	}

	/** Stores `value` under `key` (overwriting). */
	async insert(key: string, value: string, overrides?: Partial<RequestOptions>): Promise<void> {
		const reply = await this.send(formatRequest(CMD_INSERT, key, value), overrides);
		if (reply.kind !== 'ok' || reply.value !== undefined) unexpected(CMD_INSERT, reply);
	}

	/** The value stored under `key`, or undefined for NOT FOUND. */
	async lookup(key: string, overrides?: Partial<RequestOptions>): Promise<string | undefined> {
		const reply = await this.ask(formatRequest(CMD_LOOKUP, key), overrides);
		if (reply.kind === 'notFound') return undefined;
		if (reply.kind !== 'ok' || reply.value === undefined) unexpected(CMD_LOOKUP, reply);
		return reply.value;
	}

	/** True when `key` was there and is now gone, false for NOT FOUND. */
	async delete(key: string, overrides?: Partial<RequestOptions>): Promise<boolean> {
		return (await this.remove(key, overrides)) === 'deleted';
	}

	/**
	 * Deletes `key` and says what is known: `deleted`; `absent` (NOT FOUND
	 * to the first try); or `absent-after-retry`: NOT FOUND to a retry sent
	 * because an earlier try got no reply, which that try may have caused
	 * (its reply was lost, not its request). The key is gone in all three.
	 */
	async remove(key: string, overrides?: Partial<RequestOptions>): Promise<'deleted' | 'absent' | 'absent-after-retry'> {
		let retried = false;
		const onSend = overrides?.onSend ?? this.options.onSend;
		const reply = await this.ask(formatRequest(CMD_DELETE, key), {
			...overrides,
			onSend: (attempt, total) => {
				retried ||= attempt > 1;
				onSend?.(attempt, total);
			},
		});
		if (reply.kind === 'notFound') return retried ? 'absent-after-retry' : 'absent';
		if (reply.kind !== 'ok' || reply.value !== undefined) unexpected(CMD_DELETE, reply);
		return 'deleted';
	}

	/** The server's counters (fields that did not fit in `len` are missing). */
	async stats(overrides?: Partial<RequestOptions>): Promise<Stats> {
		const reply = await this.ask(formatRequest(CMD_STATS), overrides);
		const stats = reply.kind === 'ok' ? parseStats(reply.value ?? '') : undefined;
		if (!stats) unexpected(CMD_STATS, reply);
		return stats;
	}
}

function unexpected(command: string, reply: Reply): never {
	if (reply.kind === 'err') throw new KvServerError(reply.reason);
	throw new KvProtocolError(`unexpected reply to ${command}: ${JSON.stringify(describe(reply))}`, reply);
}

function describe(reply: Reply): string {
	switch (reply.kind) {
		case 'ok':
			return reply.value === undefined ? 'OK' : `OK ${reply.value}`;
		case 'notFound':
			return 'NOT FOUND';
		case 'gotIt':
			return 'GOT IT';
		case 'err':
			return `ERR ${reply.reason}`;
		case 'other':
			return reply.text;
	}
}
