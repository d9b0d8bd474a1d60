/**
 * A reference model of how the server must classify one datagram, written
 * from PROTOCOL.md independently of the C code. The fuzz test holds every
 * reply of the real module to it.
 */

export const MAX_KEY = 250;
export const MAX_VALUE = 4096;

export type Expected =
	| { kind: 'error'; reason: string }
	/** Well-formed: the reply depends on the table (OK, OK value, NOT FOUND, or ERR full). */
	| { kind: 'valid'; command: 'HELLO' | 'insert' | 'lookup' | 'delete' | 'stats'; key?: string; value?: string };

const isControl = (byte: number) => byte < 0x20 || byte === 0x7f;

export function expectedReply(datagram: Buffer, len: number): Expected {
	const error = (reason: string): Expected => ({ kind: 'error', reason });
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
