/**
 * `./run logs -f` loses nothing between its dump and its follow (issue 18):
 * it used to follow from the end of the log as it was when the follow
 * started, so records logged after the dump was read were never printed.
 * A fake target whose log grows between the two.
 */
import test from 'ava';
import { showLogs } from '../../src/commands/inspect.js';
import type { KmsgRecord } from '../../src/kmsg.js';

const record = (sequence: number): KmsgRecord => ({ priority: 6, sequence, usec: sequence * 1000, text: `line ${sequence}` });

function fakeTarget(up: boolean) {
	const log = [0, 1, 2, 3].map(record);
	return {
		isUp: async () => up,
		kernelLog: async () => {
			const dumped = [...log];
			// Logged after the dump was read, before the follow starts.
			log.push(record(4), record(5));
			return dumped;
		},
		prepare: async () => {},
		followKernelLog: async (onRecord: (record: KmsgRecord) => void, _signal: AbortSignal, since?: number) => {
			// As LabTarget does: without `since`, from the end of the log as it is now.
			const after = since ?? log.at(-1)!.sequence;
			for (const line of [...log, record(6)]) {
				if (line.sequence > after) onRecord(line);
			}
		},
	};
}

async function printed(up: boolean): Promise<string[]> {
	const lines: string[] = [];
	const write = process.stdout.write.bind(process.stdout);
	process.stdout.write = ((chunk: string) => {
		lines.push(String(chunk).trim());
		return true;
	}) as typeof process.stdout.write;
	try {
		await showLogs(fakeTarget(up), { follow: true, raw: true });
	} finally {
		process.stdout.write = write;
	}
	return lines;
}

test('logs -f prints every record once: the dump, then from the last record dumped', async t => {
	t.deepEqual(
		await printed(true),
		[0, 1, 2, 3, 4, 5, 6].map(n => `line ${n}`),
	);
});
