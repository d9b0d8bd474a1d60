/**
 * A reference model of the server's replies, written from PROTOCOL.md
 * independently of the C code: how it classifies one datagram
 * (expectedReply), and the exact reply it must send (modelReply). The fuzz
 * test holds every reply of the real module to it.
 */

export const MAX_KEY = 250;
export const MAX_VALUE = 4096;

export type Expected =
	/** Itself a reply (PROTOCOL.md, "Reflection and loops"): it gets no answer at all. */
	| { kind: 'reply' }
	| { kind: 'error'; reason: string }
	/** Well-formed: the reply depends on the table (see modelReply). */
	| { kind: 'valid'; command: 'HELLO' | 'insert' | 'lookup' | 'delete' | 'stats'; key?: string; value?: string };

const isControl = (byte: number) => byte < 0x20 || byte === 0x7f;

/** The words that begin a reply of either protocol (PROTOCOL.md, rule 1). */
const REPLY_WORDS = new Set(
	'OK ERR GOT NOT VALUE END STORED NOT_STORED EXISTS NOT_FOUND DELETED TOUCHED ERROR CLIENT_ERROR SERVER_ERROR VERSION STAT'.split(' '),
);

function startsWithReplyWord(bytes: Buffer): boolean {
	let end = 0;
	while (end < bytes.length && bytes[end] !== 0x20 && bytes[end] !== 0x0d && bytes[end] !== 0x0a) end++;
	return REPLY_WORDS.has(bytes.subarray(0, end).toString('latin1'));
}

/** A reply of either protocol: at the start, or after a memcached frame header (count ≥ 1, then two zero bytes). */
export function isReply(datagram: Buffer): boolean {
	if (startsWithReplyWord(datagram)) return true;
	return (
		datagram.length > 8 &&
		(datagram[4] !== 0 || datagram[5] !== 0) &&
		datagram[6] === 0 &&
		datagram[7] === 0 &&
		startsWithReplyWord(datagram.subarray(8))
	);
}

export function expectedReply(datagram: Buffer, len: number): Expected {
	const error = (reason: string): Expected => ({ kind: 'error', reason });
	if (isReply(datagram)) return { kind: 'reply' };
	if (datagram.length > len) return error('too long');
	let end = datagram.length;
	if (end > 0 && datagram[end - 1] === 0x0a) {
		end--;
		if (end > 0 && datagram[end - 1] === 0x0d) end--;
	}
	const body = datagram.subarray(0, end);
	if (body.length === 0) return error('empty');
	if (body.some(isControl)) return error('control bytes');

	// Words are separated by runs of spaces; the value is the rest after the key's spaces.
	const text = body.toString('latin1');
	const words: Array<{ start: number; end: number }> = [];
	for (let i = 0; i < text.length; ) {
		while (i < text.length && text[i] === ' ') i++;
		if (i >= text.length) break;
		const start = i;
		while (i < text.length && text[i] !== ' ') i++;
		words.push({ start, end: i });
	}
	const word = (n: number) => {
		const w = words[n];
		return w ? body.subarray(w.start, w.end).toString('latin1') : undefined;
	};
	const command = word(0);
	if (command === undefined) return error('unknown command');
	if (command === 'HELLO' || command === 'stats') {
		return words.length > 1 ? error('unexpected argument') : { kind: 'valid', command };
	}
	if (command !== 'insert' && command !== 'lookup' && command !== 'delete') return error('unknown command');
	const key = word(1);
	if (key === undefined) return error('missing key');
	if (key.length > MAX_KEY) return error('key too long');
	if (command !== 'insert') {
		return words.length > 2 ? error('unexpected argument') : { kind: 'valid', command, key };
	}
	const valueStart = words[2]?.start;
	if (valueStart === undefined) return error('missing value');
	const value = text.slice(valueStart);
	if (value.length > MAX_VALUE) return error('value too long');
	return { kind: 'valid', command, key, value };
}

export const REFLECT_RATIO = 3;
export const MIN_LEN = 32;

/** The longest reply the server may send to a sender off its host for a request of `requestSize` bytes. */
export function reflectBound(requestSize: number): number {
	return Math.max(REFLECT_RATIO * requestSize, MIN_LEN);
}

/** The stats line, whose numbers no single client can predict: only its form and size are known. */
const STATS = /^OK( (entries|bytes|requests|hits|misses|errors|drops)=\d+)*\n$/;
const STATS_OR_PAD = /^(OK( (entries|bytes|requests|hits|misses|errors|drops)=\d+)*|ERR pad to \d+)\n$/;

/**
 * The exact reply to `datagram` from a server whose table holds `table` for
 * the keys this client owns (updated in place, as the server's is), sent to
 * a sender off the server's host: replies longer than reflectBound() become
 * `ERR pad to N`. The table is big enough for every insert (no ERR full).
 * Returns a RegExp only for `stats`, whose counters are the server's own.
 */
export function modelReply(datagram: Buffer, len: number, table: Map<string, string>): string | RegExp | undefined {
	const expected = expectedReply(datagram, len);
	if (expected.kind === 'reply') return undefined;
	const bound = reflectBound(datagram.length);
	const bounded = (reply: string) => (reply.length <= bound ? reply : `ERR pad to ${Math.ceil(reply.length / REFLECT_RATIO)}\n`);
	if (expected.kind === 'error') return bounded(`ERR ${expected.reason}\n`);
	switch (expected.command) {
		case 'HELLO':
			return bounded('GOT IT\n');
		case 'stats':
			// The line's length is the server's: whole, or replaced when it passes the bound.
			return bound >= len ? STATS : STATS_OR_PAD;
		case 'insert':
			table.set(expected.key!, expected.value!);
			return 'OK\n';
		case 'lookup': {
			const value = table.get(expected.key!);
			return bounded(value === undefined ? 'NOT FOUND\n' : `OK ${value}\n`);
		}
		case 'delete':
			return table.delete(expected.key!) ? 'OK\n' : 'NOT FOUND\n';
	}
}
