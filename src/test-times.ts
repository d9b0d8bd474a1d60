/**
 * Each lab test file's times (test/helpers/lab.ts writes one record when the
 * file ends), which `./run test` reads to start the suite when the debug
 * kernel's part is nearly done, and to print the slowest files at the end.
 * One JSON file per test process in .lab/test-times; records older than a
 * day are removed at the start of a full run.
 */
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { PROJECT_ROOT } from './modules.js';

export const TEST_TIMES_DIR = path.join(PROJECT_ROOT, '.lab/test-times');

/** How long a record is kept: past any run that could still be reading it. */
const KEEP_MS = 24 * 60 * 60 * 1000;

export interface FileTimes {
	file: string;
	/** The lab kernel the file ran on ('' for the default). */
	kernel: string;
	setupMs: number;
	totalMs: number;
	ended: number;
}

/** Leaves the record of one test file (process `pid`). */
export async function recordTimes(record: FileTimes, pid = process.pid, dir = TEST_TIMES_DIR): Promise<void> {
	await mkdir(dir, { recursive: true });
	await writeFile(path.join(dir, `${record.file}-${pid}.json`), JSON.stringify(record));
}

async function readTimes(since: number, dir: string): Promise<FileTimes[]> {
	const names = await readdir(dir).catch(() => [] as string[]);
	const records: FileTimes[] = [];
	for (const name of names.filter(name => name.endsWith('.json'))) {
		try {
			const record = JSON.parse(await readFile(path.join(dir, name), 'utf8')) as FileTimes;
			if (record.ended >= since) {
				records.push(record);
			}
		} catch {
			// Half-written by a file killed mid-way: its time is not known.
		}
	}
	return records;
}

/** Removes the records that ended over a day before `now`, and the unreadable ones. */
export async function pruneTimes(now = Date.now(), dir = TEST_TIMES_DIR): Promise<void> {
	const names = await readdir(dir).catch(() => [] as string[]);
	for (const name of names.filter(name => name.endsWith('.json'))) {
		const file = path.join(dir, name);
		const ended = await readFile(file, 'utf8')
			.then(text => (JSON.parse(text) as FileTimes).ended)
			.catch(() => 0);
		if (now - ended > KEEP_MS) {
			await rm(file, { force: true });
		}
	}
}

/** Resolves once `count` lab test files on `kernel` have ended since `since` (polled each second). */
export async function filesEnded(kernel: string, count: number, since: number, dir = TEST_TIMES_DIR): Promise<void> {
	while ((await readTimes(since, dir)).filter(record => record.kernel === kernel).length < count) {
		await sleep(1000);
	}
}

/**
 * The lab test files that ended since `since`, slowest first, as comment
 * lines: where the suite's time goes (its budget is 25 minutes).
 */
export async function slowestFiles(since: number, count = 10, dir = TEST_TIMES_DIR): Promise<string[]> {
	const records = await readTimes(since, dir);
	records.sort((a, b) => b.totalMs - a.totalMs);
	const seconds = (ms: number) => `${Math.round(ms / 1000)} s`.padStart(6);
	return records
		.slice(0, count)
		.map(
			r => `#   ${seconds(r.totalMs)} ${r.file}${r.kernel ? ` (${r.kernel})` : ''}: ${seconds(r.setupMs).trim()} to boot its lab and build`,
		);
}
