/**
 * udp_server's tracepoints (issue 21): perf sees them, counts exactly the
 * requests and drops sent, the journal's commit shows up with kvd, and
 * `./run trace` shows a live view and takes its triggers away when it ends.
 */
import { execa } from 'execa';
import path from 'node:path';
import { PROJECT_ROOT } from '../../src/modules.js';
import { request } from '../../user-client/client.js';
import { guest, labTest, loadServer, useLab } from '../helpers/lab.js';

useLab(import.meta.url);

const TRACEFS = '/sys/kernel/debug/tracing/events/udp_server';

/** Lines of `perf stat -x,` → count by event name. */
function counts(csv: string): Record<string, number> {
	const out: Record<string, number> = {};
	for (const line of csv.split('\n')) {
		const [value, , event] = line.split(',');
		if (event?.startsWith('udp_server:')) out[event] = Number(value);
	}
	return out;
}

labTest("perf lists udp_server's four tracepoints and counts exactly the requests and drops sent", async t => {
	await loadServer(t, ['port=3000']);
	const listed = await guest(t, "perf list 'udp_server:*' 2>&1");
	for (const event of ['request', 'drop', 'commit', 'send']) t.regex(listed, new RegExp(`udp_server:${event}\\b`));

	// 40 lookups and a HELLO are requests; 6 datagrams that look like replies are dropped (a loop).
	const send = [
		'for i in $(seq 40); do printf "lookup k%d" "$i" >/dev/udp/127.0.0.1/3000; done',
		'printf HELLO >/dev/udp/127.0.0.1/3000',
		'for i in $(seq 6); do printf "GOT IT\\n" >/dev/udp/127.0.0.1/3000; done',
		'sleep 1', // the server's threads answer after the last send
	].join('; ');
	const perf = await t.context.target.exec(
		['perf', 'stat', '-x,', '-a', '-e', 'udp_server:request,udp_server:drop', '--', 'bash', '-c', send],
		{ timeoutMs: 120_000 },
	);
	t.is(perf.exitCode, 0, perf.stderr);
	t.deepEqual(counts(perf.stderr), { 'udp_server:request': 41, 'udp_server:drop': 6 }, perf.stderr);
});

labTest('each event carries its fields: protocol, operation, lengths, result, time; and the commit of kvd', async t => {
	const { port } = await loadServer(t, ['port=3000'], { daemon: true, backup: '/var/tmp/trace-test-backup.txt' });
	await guest(t, `echo > ${TRACEFS}/../../trace; echo 1 > ${TRACEFS}/enable`);
	try {
		for (const line of ['insert dog baileys', 'lookup dog', 'lookup cat', 'bogus']) {
			await request(line, { host: '127.0.0.1', port, timeoutMs: 5000 });
		}
		await guest(t, 'sleep 2'); // kvd's confirmation of the insert
	} finally {
		await guest(t, `echo 0 > ${TRACEFS}/enable`);
	}
	const trace = await guest(t, `grep -v '^#' ${TRACEFS}/../../trace`);
	t.regex(trace, /request: proto=text op=store klen=3 vlen=7 result=0 ns=\d+/);
	t.regex(trace, /request: proto=text op=lookup klen=3 vlen=7 result=0 ns=\d+/);
	t.regex(trace, /request: proto=text op=lookup klen=3 vlen=0 result=-2 ns=\d+/);
	t.regex(trace, /request: proto=text op=invalid klen=0 vlen=0 result=-22 ns=\d+/);
	t.regex(trace, /commit: seq=\d+ batch=1 ns=\d+/);
});

labTest('./run trace shows requests by operation and a latency histogram, then removes its triggers', async t => {
	const { port } = await loadServer(t, ['port=3000']);
	const run = execa(
		process.execPath,
		[path.join(PROJECT_ROOT, 'dist/src/bin/run.js'), 'trace', '--lab', t.context.target.lab.name, '--count', '3', '--interval', '2'],
		{ reject: false, timeout: 180_000 },
	);
	// Sends until the view has ended: every frame after the first has traffic to show.
	let sending = true;
	const sender = (async () => {
		for (let i = 0; sending; i++) {
			await request(`lookup k${i % 5}`, { host: '127.0.0.1', port, timeoutMs: 2000 }).catch(() => {});
		}
	})();
	const result = await run;
	sending = false;
	await sender;
	t.is(result.exitCode, 0, result.stderr);
	t.log(result.stdout.split('\n\n').slice(-4).join('\n\n'));
	t.regex(result.stdout, /text lookup\s+[\d.,]+\/s\s+\(\d+\)/);
	t.regex(result.stdout, /\d+(\.\d+)? (ns|µs|ms) – \d+(\.\d+)? (ns|µs|ms)\s+\d+ #+/);
	const triggers = await guest(t, `cat ${TRACEFS}/request/trigger ${TRACEFS}/drop/trigger`);
	t.notRegex(triggers, /^hist:/m, 'no trigger left behind');
});
