/**
 * `./run trace`'s reading of tracefs: hist files, the names in an event's
 * format, the difference between two readings, and the frame it prints.
 */
import test from 'ava';
import { delta, parseHist, renderFrame, symbolsOf } from '../../src/commands/trace.js';

const OPS = `# event histogram
#
# trigger info: hist:keys=proto,op:vals=hitcount:sort=hitcount.descending:size=2048 [active]
#

{ proto:          0, op:          4 } hitcount:        120
{ proto:          1, op:          5 } hitcount:          3

Totals:
    Hits: 123
`;
const LATENCY = `# trigger info: hist:keys=ns.log2:vals=hitcount:sort=ns.log2:size=2048 [active]
{ ns: ~ 2^10  } hitcount:         20
{ ns: ~ 2^11  } hitcount:         40
`;
const FORMAT = `print fmt: "proto=%s op=%s", __print_symbolic(REC->proto, { 0, "text" }, { 1, "memcached" }, { 2, "proc" }), __print_symbolic(REC->op, { 0, "invalid" }, { 4, "lookup" }, { 5, "store" })`;

test('hist lines become keys and counts; a log2 key gives its power of two', t => {
	t.deepEqual(parseHist(OPS), [
		{ keys: { proto: 0, op: 4 }, hits: 120 },
		{ keys: { proto: 1, op: 5 }, hits: 3 },
	]);
	t.deepEqual(parseHist(LATENCY), [
		{ keys: { ns: 10 }, hits: 20 },
		{ keys: { ns: 11 }, hits: 40 },
	]);
	t.deepEqual(parseHist('# nothing yet\n'), []);
});

test("the names come from the event's own format, so the module's enums are not copied here", t => {
	t.deepEqual(
		[...symbolsOf(FORMAT, 'op')],
		[
			[0, 'invalid'],
			[4, 'lookup'],
			[5, 'store'],
		],
	);
	t.is(symbolsOf(FORMAT, 'proto').get(1), 'memcached');
	t.is(symbolsOf(FORMAT, 'reason').size, 0);
});

test('a frame shows what changed since the last reading, as rates, with a bar per latency bucket', t => {
	const before = parseHist(OPS);
	const now = [{ keys: { proto: 0, op: 4 }, hits: 320 }, ...before.slice(1), { keys: { proto: 2, op: 0 }, hits: 1 }];
	const requests = delta(now, before);
	t.deepEqual(requests, [
		{ keys: { proto: 0, op: 4 }, hits: 200 },
		{ keys: { proto: 2, op: 0 }, hits: 1 },
	]);
	const lines = renderFrame({
		seconds: 2,
		requests,
		latency: parseHist(LATENCY),
		drops: [],
		names: { proto: symbolsOf(FORMAT, 'proto'), op: symbolsOf(FORMAT, 'op'), reason: new Map() },
	});
	t.is(lines[0], 'udp_server: 101 requests/s (201 in the last 2.0 s)');
	t.true(lines.includes('    text lookup                100/s  (200)'), lines.join('\n'));
	t.true(lines.includes('    proc invalid               0.5/s  (1)'), lines.join('\n'));
	t.true(lines.includes(`    1.02 µs – 2.05 µs       20 ${'#'.repeat(20)}`), lines.join('\n'));
	t.true(lines.includes(`    2.05 µs – 4.1 µs        40 ${'#'.repeat(40)}`), lines.join('\n'));
	t.is(lines.at(-1), '    (none)', 'no drops');
});
