/**
 * The wire protocol, as TypeScript. Mirrors include/kudp_protocol.h, the one
 * source of truth: test/unit/protocol.test.ts fails when the two disagree.
 * PROTOCOL.md describes the format in prose.
 */

/* Module parameter defaults and bounds (KUDP_DEFAULT_PORT ... KUDP_MAX_LEN). */
export const DEFAULT_PORT = 3000;
export const DEFAULT_LEN = 50;
export const MIN_LEN = 32;
export const MAX_LEN = 65507;

/**
 * To a sender not on the server's host, a reply is at most REFLECT_RATIO
 * times the request (or MIN_LEN bytes); a longer one is replaced by
 * `ERR pad to N` (see padRequest).
 */
export const REFLECT_RATIO = 3;

/* Limits of the key-value table, in bytes. */
export const MAX_KEY = 250;
export const MAX_VALUE = 4096;

/* The greeting. */
export const HELLO = 'HELLO';
export const GOT_IT = 'GOT IT';

/* Commands. */
export const CMD_INSERT = 'insert';
export const CMD_LOOKUP = 'lookup';
export const CMD_DELETE = 'delete';
export const CMD_STATS = 'stats';

/* Reply words. */
export const OK = 'OK';
export const NOT_FOUND = 'NOT FOUND';
export const ERR = 'ERR';

/** The reasons after "ERR " (KUDP_ERR_*). */
export const ERR_REASONS = {
	empty: 'empty',
	tooLong: 'too long',
	unknown: 'unknown command',
	noKey: 'missing key',
	noValue: 'missing value',
	extra: 'unexpected argument',
	keyLong: 'key too long',
	valueLong: 'value too long',
	control: 'control bytes',
	full: 'full',
	busy: 'busy',
	noMemory: 'out of memory',
	pad: 'pad to',
	noBackup: 'no backup',
} as const;

export type ErrReason = (typeof ERR_REASONS)[keyof typeof ERR_REASONS];

/** The counters of a `stats` reply, in the order the server sends them. */
export const STATS_FIELDS = ['entries', 'bytes', 'requests', 'hits', 'misses', 'errors', 'drops'] as const;
export type StatsField = (typeof STATS_FIELDS)[number];
/** A line that does not fit in `len` ends early, so every field may be missing. */
export type Stats = Partial<Record<StatsField, number>> & Record<string, number>;

/** One parsed reply datagram. */
export type Reply =
	| { kind: 'ok'; value?: string }
	| { kind: 'notFound' }
	| { kind: 'err'; reason: string }
	| { kind: 'gotIt' }
	| { kind: 'other'; text: string };

/** A request that must not be sent: thrown by formatRequest before anything goes out. */
export class InvalidRequestError extends Error {
	constructor(message: string) {
		super(message);
		this.name = 'InvalidRequestError';
	}
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it finds
const CONTROL = /[\x00-\x1f\x7f]/;

/** Why `key` cannot be sent as a key, or undefined when it can. */
export function checkKey(key: string): string | undefined {
	const bytes = Buffer.byteLength(key);
	if (bytes === 0) return 'a key must not be empty';
	if (bytes > MAX_KEY) return `a key is at most ${MAX_KEY} bytes, this one is ${bytes}`;
	if (key.includes(' ')) return 'a key must not contain spaces';
	if (CONTROL.test(key)) return 'a key must not contain control characters';
	return undefined;
}

/** Why `value` cannot be sent as a value, or undefined when it can. */
export function checkValue(value: string): string | undefined {
	const bytes = Buffer.byteLength(value);
	if (bytes === 0) return 'a value must not be empty';
	if (bytes > MAX_VALUE) return `a value is at most ${MAX_VALUE} bytes, this one is ${bytes}`;
	if (value.startsWith(' ')) return 'a value must not start with a space (the server skips the spaces after the key)';
	if (CONTROL.test(value)) return 'a value must not contain control characters';
	return undefined;
}

/**
 * The text of one request datagram (no line end: the server does not need
 * one). Throws InvalidRequestError for a key or value the server would refuse
 * anyway, so that nothing is sent. Whether the request fits in the server's
 * `len` is not checked here: `len` is a module parameter.
 */
export function formatRequest(command: typeof HELLO | typeof CMD_STATS): string;
export function formatRequest(command: typeof CMD_LOOKUP | typeof CMD_DELETE, key: string): string;
export function formatRequest(command: typeof CMD_INSERT, key: string, value: string): string;
export function formatRequest(command: string, key?: string, value?: string): string {
	const words = [command];
	if (key !== undefined) {
		const problem = checkKey(key);
		if (problem) throw new InvalidRequestError(problem);
		words.push(key);
	}
	if (value !== undefined) {
		const problem = checkValue(value);
		if (problem) throw new InvalidRequestError(problem);
		words.push(value);
	}
	return words.join(' ');
}

/** Parses one reply datagram ("OK baileys\n", "NOT FOUND\n", "ERR full\n", ...). */
export function parseReply(datagram: Buffer | string): Reply {
	const text = datagram.toString().replace(/\n$/, '');
	if (text === GOT_IT) return { kind: 'gotIt' };
	if (text === OK) return { kind: 'ok' };
	if (text.startsWith(`${OK} `)) return { kind: 'ok', value: text.slice(OK.length + 1) };
	if (text === NOT_FOUND) return { kind: 'notFound' };
	if (text.startsWith(`${ERR} `)) return { kind: 'err', reason: text.slice(ERR.length + 1) };
	return { kind: 'other', text };
}

/**
 * For an `ERR pad to N` reason: N, the size the request must be padded to.
 * Undefined for any other reason.
 */
export function padSize(reason: string): number | undefined {
	const match = new RegExp(`^${ERR_REASONS.pad} (\\d+)$`).exec(reason);
	return match ? Number(match[1]) : undefined;
}

/**
 * `request` padded with spaces to at least `size` bytes, which the server
 * skips after the last word of HELLO, stats, lookup and delete. Never for an
 * insert, whose value would take the spaces in (its replies are short and
 * never need padding).
 */
export function padRequest(request: string, size: number): string {
	return request + ' '.repeat(Math.max(0, size - Buffer.byteLength(request)));
}

/**
 * The value of a `stats` reply ("entries=3 bytes=42 ...") as numbers. Returns
 * undefined when a field is not `name=number`.
 */
export function parseStats(value: string): Stats | undefined {
	const stats: Stats = {};
	if (value === '') return stats;
	for (const pair of value.split(' ')) {
		const match = /^(\w+)=(\d+)$/.exec(pair);
		if (!match?.[1] || match[2] === undefined) return undefined;
		stats[match[1]] = Number(match[2]);
	}
	return stats;
}
