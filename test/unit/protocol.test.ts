/**
 * include/kudp_protocol.h is the one description of the wire protocol; the
 * TypeScript side must agree with every #define in it.
 */
import test from 'ava';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import * as protocol from '../../user-client/protocol.js';

// This file runs as dist/test/unit/protocol.test.js: the repository is three levels up.
const HEADER = fileURLToPath(new URL('../../../include/kudp_protocol.h', import.meta.url));
const header = readFileSync(HEADER, 'utf8');

/** Every `#define NAME VALUE` line; a value that is not a plain number or "string" is kept as text and fails below. */
const defines = new Map<string, string | number>();
const unparsable: string[] = [];
for (const match of header.matchAll(/^[ \t]*#[ \t]*define[ \t]+(\w+)[ \t]+(.*?)[ \t]*$/gm)) {
	const [, name = '', raw = ''] = match;
	if (raw === '') continue; // a flag such as the include guard
	if (/^-?\d+$/.test(raw)) defines.set(name, Number(raw));
	else if (/^"(?:[^"\\]|\\.)*"$/.test(raw)) defines.set(name, JSON.parse(raw) as string);
	else unparsable.push(`${name} ${raw}`);
}

const MIRROR: Record<string, string | number> = {
	KUDP_DEFAULT_PORT: protocol.DEFAULT_PORT,
	KUDP_DEFAULT_LEN: protocol.DEFAULT_LEN,
	KUDP_MIN_LEN: protocol.MIN_LEN,
	KUDP_MAX_LEN: protocol.MAX_LEN,
	KUDP_MAX_KEY: protocol.MAX_KEY,
	KUDP_MAX_VALUE: protocol.MAX_VALUE,
	KUDP_HELLO: protocol.HELLO,
	KUDP_GOT_IT: protocol.GOT_IT,
	KUDP_CMD_INSERT: protocol.CMD_INSERT,
	KUDP_CMD_LOOKUP: protocol.CMD_LOOKUP,
	KUDP_CMD_DELETE: protocol.CMD_DELETE,
	KUDP_CMD_STATS: protocol.CMD_STATS,
	KUDP_OK: protocol.OK,
	KUDP_NOT_FOUND: protocol.NOT_FOUND,
	KUDP_ERR: protocol.ERR,
	KUDP_ERR_EMPTY: protocol.ERR_REASONS.empty,
	KUDP_ERR_TOO_LONG: protocol.ERR_REASONS.tooLong,
	KUDP_ERR_UNKNOWN: protocol.ERR_REASONS.unknown,
	KUDP_ERR_NO_KEY: protocol.ERR_REASONS.noKey,
	KUDP_ERR_NO_VALUE: protocol.ERR_REASONS.noValue,
	KUDP_ERR_EXTRA: protocol.ERR_REASONS.extra,
	KUDP_ERR_KEY_LONG: protocol.ERR_REASONS.keyLong,
	KUDP_ERR_VALUE_LONG: protocol.ERR_REASONS.valueLong,
	KUDP_ERR_CONTROL: protocol.ERR_REASONS.control,
	KUDP_ERR_FULL: protocol.ERR_REASONS.full,
	KUDP_ERR_BUSY: protocol.ERR_REASONS.busy,
	KUDP_ERR_NOMEM: protocol.ERR_REASONS.noMemory,
	KUDP_ERR_PAD: protocol.ERR_REASONS.pad,
	KUDP_ERR_NO_BACKUP: protocol.ERR_REASONS.noBackup,
	KUDP_REFLECT_RATIO: protocol.REFLECT_RATIO,
};

test('the header was parsed, and every value is a plain literal', t => {
	t.true(defines.size >= 20, HEADER);
	t.deepEqual(unparsable, [], 'kudp_protocol.h: keep each value a plain number or "string" on its #define line');
	t.false(defines.has('KUDP_PROTOCOL_H'), 'the include guard has no value and is not a constant');
});

test('every #define of the header has the same value in protocol.ts', t => {
	for (const [name, value] of defines) {
		t.true(name in MIRROR, `${name} is in the header but not mirrored in protocol.ts`);
		t.is(MIRROR[name], value, name);
	}
	for (const name of Object.keys(MIRROR)) {
		t.true(defines.has(name), `${name} is mirrored but no longer in the header`);
	}
});

test('replies are parsed by kind', t => {
	t.deepEqual(protocol.parseReply('GOT IT\n'), { kind: 'gotIt' });
	t.deepEqual(protocol.parseReply('OK\n'), { kind: 'ok' });
	t.deepEqual(protocol.parseReply(Buffer.from('OK tom the cat\n')), { kind: 'ok', value: 'tom the cat' });
	t.deepEqual(protocol.parseReply('NOT FOUND\n'), { kind: 'notFound' });
	t.deepEqual(protocol.parseReply('ERR key too long\n'), { kind: 'err', reason: 'key too long' });
	t.deepEqual(protocol.parseReply('hello?'), { kind: 'other', text: 'hello?' });
	t.deepEqual(protocol.parseReply('OK x\n\n'), { kind: 'ok', value: 'x\n' }, 'only one line end is stripped');
});

test('keys are checked before anything is sent', t => {
	t.is(protocol.checkKey('dog'), undefined);
	t.regex(protocol.checkKey('') ?? '', /empty/);
	t.regex(protocol.checkKey('a b') ?? '', /spaces/);
	t.regex(protocol.checkKey('k'.repeat(251)) ?? '', /at most 250 bytes/);
	t.regex(protocol.checkKey('a\tb') ?? '', /control/);
	t.is(protocol.checkKey('é'.repeat(125)), undefined, '250 bytes of UTF-8');
	t.regex(protocol.checkKey('é'.repeat(126)) ?? '', /252/);
});

test('formatRequest builds the request line and refuses what the server would refuse', t => {
	t.is(protocol.formatRequest(protocol.HELLO), 'HELLO');
	t.is(protocol.formatRequest(protocol.CMD_STATS), 'stats');
	t.is(protocol.formatRequest(protocol.CMD_LOOKUP, 'dog'), 'lookup dog');
	t.is(protocol.formatRequest(protocol.CMD_DELETE, 'dog'), 'delete dog');
	t.is(protocol.formatRequest(protocol.CMD_INSERT, 'dog', 'baileys the dog'), 'insert dog baileys the dog');
	t.throws(() => protocol.formatRequest(protocol.CMD_LOOKUP, 'a b'), { instanceOf: protocol.InvalidRequestError, message: /spaces/ });
	t.throws(() => protocol.formatRequest(protocol.CMD_INSERT, 'k', ''), { message: /empty/ });
	t.throws(() => protocol.formatRequest(protocol.CMD_INSERT, 'k', 'x'.repeat(protocol.MAX_VALUE + 1)), { message: /at most 4096 bytes/ });
	t.throws(() => protocol.formatRequest(protocol.CMD_INSERT, 'k', 'a\nb'), { message: /control/ });
	t.throws(() => protocol.formatRequest(protocol.CMD_INSERT, 'k', ' lead'), { message: /space/ });
});

test('stats values are parsed, including a line cut short by len', t => {
	t.deepEqual(protocol.parseStats('entries=1 bytes=10 requests=3 hits=1 misses=0 errors=2 drops=0'), {
		entries: 1,
		bytes: 10,
		requests: 3,
		hits: 1,
		misses: 0,
		errors: 2,
		drops: 0,
	});
	t.deepEqual(protocol.parseStats('entries=1 bytes=10'), { entries: 1, bytes: 10 });
	t.is(protocol.parseStats('entries=1 bytes'), undefined);
	t.is(protocol.parseStats('garbage'), undefined);
});
