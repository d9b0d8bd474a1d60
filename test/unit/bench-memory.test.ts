/**
 * Memory per entry (bench/memory.ts) reads the servers' stats replies and
 * /proc's "Name: N kB" fields: what it takes from each.
 */
import test from 'ava';
import { kibFields, parseStats } from '../../bench/memory.js';

test("parseStats: udp_server's one line and memcached's STAT lines", t => {
	t.deepEqual(parseStats('OK entries=100000 bytes=61234567 requests=100012 drops=0\n'), { entries: 100000, bytes: 61234567 });
	const memcached =
		'STAT pid 42\r\nSTAT curr_items 10000\r\nSTAT total_items 10000\r\nSTAT bytes 5801234\r\nSTAT limit_maxbytes 536870912\r\nEND\r\n';
	t.deepEqual(parseStats(memcached), { entries: 10000, bytes: 5801234 });
	t.true(Number.isNaN(parseStats('ERR unknown command\n').entries));
});

test('kibFields: the sum of the named fields, in bytes', t => {
	const meminfo = 'MemTotal:        1004256 kB\nSlab:              41236 kB\nSReclaimable:       9000 kB\nVmallocUsed:        7000 kB\n';
	t.is(kibFields(meminfo, 'Slab', 'VmallocUsed'), (41236 + 7000) * 1024);
	t.is(kibFields('Name:\tmemcached\nVmRSS:\t    3120 kB\n', 'VmRSS'), 3120 * 1024);
	t.true(Number.isNaN(kibFields(meminfo, 'Missing')));
});
