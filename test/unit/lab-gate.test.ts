/**
 * The kernel-problem gate of the lab tests (test/helpers/lab.ts), against a
 * fake guest whose kernel log reaches the host's mirror late, as it can on
 * a loaded machine under emulation.
 */
import test from 'ava';
import type { ExecResult } from '../../src/lab/agent-client.js';
import type { KmsgRecord } from '../../src/kmsg.js';
import { kernelProblems, type LogTarget, markTestStart, recordsSince, writeKernelLog } from '../helpers/lab.js';

/** A guest whose /dev/kmsg writes show up in the mirror `delayMs` later. */
class SlowMirror implements LogTarget {
	private readonly mirror: KmsgRecord[] = [];
	private sequence: number;

	constructor(
		private readonly delayMs: number,
		firstSequence = 100,
	) {
		this.sequence = firstSequence;
	}

	/** What the kernel itself logs (a driver, a module): reaches the mirror `delayMs` later too. */
	log(text: string, priority = 6): void {
		const record = { priority, sequence: this.sequence++, usec: Date.now() * 1000, text };
		setTimeout(() => this.mirror.push(record), this.delayMs);
	}

	async exec(argv: string[]): Promise<ExecResult> {
		// writeKernelLog runs: sh -c 'printf "%s\n" "$1" > /dev/kmsg' sh LINE
		const line = argv[4] ?? '';
		const prefix = /^<(\d)>/.exec(line);
		this.log(prefix ? line.slice(prefix[0].length) : line, prefix ? Number(prefix[1]) : 4);
		return { exitCode: 0, signal: null, timedOut: false, stdout: '', stderr: '' };
	}

	async kernelLog(): Promise<KmsgRecord[]> {
		return [...this.mirror];
	}
}

test('a WARNING logged just before the end is caught, however late the mirror delivers it', async t => {
	const guest = new SlowMirror(600);
	const start = await markTestStart(guest);
	guest.log('udp_server: listening on 127.0.0.1:3000');
	await writeKernelLog(guest, '<4>WARNING: CPU: 0 PID: 42 at kv.c:10 kv_insert+0x1/0x2');
	const problems = await kernelProblems(guest, start, { timeoutMs: 5000 });
	t.deepEqual(
		problems.map(record => record.text),
		['WARNING: CPU: 0 PID: 42 at kv.c:10 kv_insert+0x1/0x2'],
	);
});

test('what came before the start or after the end is not blamed on the test', async t => {
	const guest = new SlowMirror(50);
	guest.log('BUG: the previous test did this');
	const start = await markTestStart(guest);
	guest.log('udp_server: stopped in 12 us');
	const judged = kernelProblems(guest, start, { timeoutMs: 5000 });
	// Logged once the end marker is written: the next test's.
	guest.log('WARNING: the next test did this');
	t.deepEqual(await judged, []);
});

test('an end marker that never reaches the mirror fails loudly', async t => {
	const guest = new SlowMirror(60_000);
	const start = await markTestStart(guest);
	const error = await t.throwsAsync(kernelProblems(guest, start, { timeoutMs: 300 }));
	t.regex(error?.message ?? '', /did not show the marker "kudp-test-end [^"]+" within 300 ms, so nobody can tell/);
});

test('a guest that rebooted during the test is judged on everything since the boot', async t => {
	const guest = new SlowMirror(10, 0);
	guest.log('Linux version 6.1.0-56-cloud-amd64');
	guest.log('WARNING: during the boot');
	t.deepEqual(
		(await kernelProblems(guest, 'kudp-test-start of a log that is gone', { timeoutMs: 5000 })).map(record => record.text),
		['WARNING: during the boot'],
	);
	// A log that does not begin at the boot yet lacks the start marker: the gate cannot tell where the test began.
	const other = new SlowMirror(10, 500);
	const error = await t.throwsAsync(kernelProblems(other, 'kudp-test-start never written', { timeoutMs: 5000 }));
	t.regex(error?.message ?? '', /not the start marker "kudp-test-start never written"/);
});

test('recordsSince waits for everything logged before the call', async t => {
	const guest = new SlowMirror(400);
	guest.log('udp_server: sent GOT IT to 10.0.2.2:4000');
	const records = await recordsSince(guest, 99);
	t.deepEqual(
		records.map(record => record.text),
		['udp_server: sent GOT IT to 10.0.2.2:4000'],
	);
});
