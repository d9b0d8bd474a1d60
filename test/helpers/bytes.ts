/**
 * Keys and values that between them hold every byte the server takes
 * (PROTOCOL.md): 0x21-0x7e and 0x80-0xff in text-protocol keys, space too in
 * values; control bytes other than NUL, \n and \r, and 0x7f, through the
 * memcached port. As latin1 strings: one character per byte.
 */
export const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);
export const bytes = (values: number[]) => Buffer.from(values).toString('latin1');

/** Control bytes the memcached port lets into keys and values (not NUL, \n, \r), and DEL. */
export const CONTROL = [...range(0x01, 0x1f).filter(b => b !== 0x0a && b !== 0x0d), 0x7f];

/** Entries the text protocol can store (no control byte, no space in a key, a value not starting with one). */
export const TEXT_ENTRIES = new Map<string, string>([
	[bytes(range(0x21, 0x7e)), bytes([0x41, ...range(0x20, 0x7e)])],
	[bytes(range(0x80, 0xff)), bytes([0x41, ...range(0x80, 0xff)])],
	// Half a UTF-8 character, as a read of a UTF-8 journal could cut one.
	[bytes([0xc3]), bytes([0xa9, 0xe2, 0x82])],
	// 0xa0 is a space to JavaScript's \s in latin1: a key holding it is one word all the same.
	[bytes([0x6b, 0xa0, 0x6b]), bytes([0xa0, 0x85, 0xa0])],
]);

/** Entries only the memcached port can store. */
export const MEMCACHED_ENTRIES = new Map<string, string>([
	[bytes([0x6d, ...CONTROL]), bytes([0x41, 0xa0, ...CONTROL, 0x20, 0xff])],
	[bytes([0x6d, 0x09]), bytes([0x09, 0x7f])],
]);

export const ALL_BYTES = new Map([...TEXT_ENTRIES, ...MEMCACHED_ENTRIES]);

/** An entry as hex, for messages and comparisons a reader can make sense of. */
export const hexLine = (key: string, value: string) => Buffer.from(`${key} ${value}`, 'latin1').toString('hex');
