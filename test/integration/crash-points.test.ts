/**
 * kvd crashed at each step of a save and of a new base (issue 18), as ALICE
 * and CrashMonkey crash a program between its writes, fsyncs and renames:
 * KVD_CRASH_AT names the step (daemon/crash-points.ts) and kvd SIGKILLs
 * itself there. After each crash the backup on this machine's disk reads
 * without a problem, and a reload has every acknowledged write; with
 * durable=1 the backup itself already holds every acknowledged write. Also:
 * two ./run starting kvd at once get one kvd (kvd-control.ts's lock).
 */
import type { ExecutionContext } from 'ava';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseTable } from '../../daemon/backup.js';
import { loadBackup, restoreText } from '../../daemon/store.js';
import { daemonPid, startDaemon, stopDaemon } from '../../src/kvd-control.js';
import { unload } from '../../src/lifecycle.js';
import { PROJECT_ROOT } from '../../src/modules.js';
import { request } from '../../user-client/client.js';
import { guest, labTest, loadServer, useLab, type LabContext } from '../helpers/lab.js';

useLab(import.meta.url);

type T = ExecutionContext<LabContext>;
type Mode = 'default' | 'durable';
const BACKUP = '/var/tmp/crash-test-backup.txt';
const KVD = path.join(PROJECT_ROOT, 'dist/daemon/kvd.js');

const SAVE_STEPS = ['before-fdatasync', 'after-append', 'after-confirm'];
const BASE_STEPS = ['after-base-write', 'after-rename', 'before-log-remove'];

const params = (mode: Mode) => ['len=8192', ...(mode === 'durable' ? ['durable=1'] : [])];

/** Starts kvd by hand, as startDaemon does, with the fault hook set; returns its PID once it is ready or dead. */
async function startCrashingKvd(t: T, crashAt: string): Promise<number> {
	const script = [
		'rm -f /run/kvd.pid /run/kvd.ready',
		'KVD_CRASH_AT="$1" setsid "$2" "$3" --backup "$4" >>/var/log/kvd.log 2>&1 </dev/null &',
		'kvd=$!',
		'for i in $(seq 6000); do [ -s /run/kvd.ready ] && break; kill -0 $kvd 2>/dev/null || break; sleep 0.02; done',
		'echo $kvd',
	].join('\n');
	const out = await t.context.target.exec(['sh', '-c', script, 'sh', crashAt, process.execPath, KVD, BACKUP], { timeoutMs: 180_000 });
	return Number(out.stdout.trim());
}

async function kvdAlive(t: T, pid: number): Promise<boolean> {
	return (await t.context.target.exec(['kill', '-0', String(pid)], { timeoutMs: 10_000 })).exitCode === 0;
}

/**
 * Inserts from this machine, `clients` at a time, until `count` are sent or
 * `stop()` says so; returns the acknowledged ones (OK replies).
 */
async function insert(port: number, keys: string[], value: (key: string) => string, stop: () => Promise<boolean>, clients = 4) {
	const acked = new Map<string, string>();
	let next = 0;
	let stopped = false;
	await Promise.all(
		Array.from({ length: clients }, async () => {
			while (!stopped && next < keys.length) {
				const key = keys[next++]!;
				try {
					const reply = await request(`insert ${key} ${value(key)}`, { host: '127.0.0.1', port, timeoutMs: 2000, retries: 0 });
					if (reply.toString() === 'OK\n') acked.set(key, value(key));
				} catch {
					// No reply (durable: kvd died before confirming): not acknowledged.
				}
				if (next % 20 === 0 && (await stop())) stopped = true;
			}
		}),
	);
	return acked;
}

async function backupOnDisk(t: T) {
	return loadBackup(path.join(t.context.target.lab.persistentDir, path.basename(BACKUP)));
}

async function table(t: T): Promise<Map<string, string>> {
	return parseTable(Buffer.from(await guest(t, 'base64 -w0 /proc/hashtable'), 'base64').toString('latin1'));
}

function missing(actual: Map<string, string>, acked: Map<string, string>): string[] {
	return [...acked].filter(([key, value]) => actual.get(key) !== value).map(([key]) => key);
}

/** The modes whose backup of 50 entries is kept in TEMPLATE (one per mode, made by the first crash). */
const templates = new Set<Mode>();
const template = (mode: Mode) => `/var/tmp/crash-test-template-${mode}`;

/**
 * A backup with 50 saved entries, and the module loaded without kvd: the
 * first time by inserts through kvd, then from a copy of that backup (each
 * kvd start costs ~4 s of the emulated CPU; the crashing kvd restores the
 * copy into the module before its first batch).
 */
async function backupOf50(t: T, mode: Mode): Promise<{ acked: Map<string, string>; port: number }> {
	await stopDaemon(t.context.target);
	const files = ['', '.log'];
	if (!templates.has(mode)) {
		await guest(t, `rm -f ${BACKUP} ${BACKUP}.*`);
		const server = await loadServer(t, params(mode), { daemon: true, backup: BACKUP });
		const acked = await insert(
			server.port,
			Array.from({ length: 50 }, (_, i) => `base${i}`),
			key => `v-${key}`,
			async () => false,
		);
		t.is(acked.size, 50, `${mode}: the first 50 inserts`);
		await stopDaemon(t.context.target); // confirms everything it read
		await guest(
			t,
			files.map(f => `rm -f ${template(mode)}${f}; [ ! -e ${BACKUP}${f} ] || cp ${BACKUP}${f} ${template(mode)}${f}`).join('\n'),
		);
		templates.add(mode);
		return { acked, port: server.port };
	}
	await guest(
		t,
		[`rm -f ${BACKUP} ${BACKUP}.*`, ...files.map(f => `[ ! -e ${template(mode)}${f} ] || cp ${template(mode)}${f} ${BACKUP}${f}`)].join(
			'\n',
		),
	);
	const server = await loadServer(t, params(mode), { daemon: false });
	const acked = new Map(Array.from({ length: 50 }, (_, i) => [`base${i}`, `v-base${i}`] as const));
	return { acked, port: server.port };
}

/** One crash: a backup with 50 saved entries, then kvd started with the hook, writes until it has crashed, and the checks. */
async function crashAt(t: T, mode: Mode, step: string): Promise<void> {
	const started = Date.now();
	const { acked, port } = await backupOf50(t, mode);
	const kvd = await startCrashingKvd(t, step);
	// A save step needs a batch; a compaction needs the log past 1 MiB (4 KB values).
	const compact = step.startsWith('compact-');
	const keys = Array.from({ length: compact ? 600 : 200 }, (_, i) => `${step}-${i}`);
	const big = 'x'.repeat(4000);
	let dead = !(await kvdAlive(t, kvd));
	if (!dead) {
		const more = await insert(
			port,
			keys,
			key => (compact ? `${key}-${big}` : `v-${key}`),
			async () => (dead = !(await kvdAlive(t, kvd))),
		);
		for (const [key, value] of more) acked.set(key, value);
	}
	for (let i = 0; i < 100 && (await kvdAlive(t, kvd)); i++) await sleep(100);
	t.false(await kvdAlive(t, kvd), `${mode} ${step}: kvd crashed`);
	t.regex(await guest(t, 'tail -n 20 /var/log/kvd.log'), new RegExp(`KVD_CRASH_AT=${step}: crashing`), `${mode} ${step}: at the step`);

	// The backup as the crash left it: readable, and (durable) holding every acknowledged write.
	const left = await backupOnDisk(t);
	t.deepEqual(left.problems, [], `${mode} ${step}: the backup reads without a problem`);
	t.deepEqual(left.rejected, [], `${mode} ${step}: nothing in it rejected`);
	if (mode === 'durable') {
		const lost = missing(parseTable(restoreText(left, new Map())), acked);
		t.deepEqual(lost.slice(0, 5), [], `${mode} ${step}: ${lost.length} acknowledged writes not in the backup`);
	} else {
		// Default mode acknowledges before saving: a kvd that comes back beside the module saves the table.
		await startDaemon(t.context.target, BACKUP);
	}
	await unload(t.context.target, 'udp_server');
	await loadServer(t, params(mode), { daemon: true, backup: BACKUP });
	const lost = missing(await table(t), acked);
	t.deepEqual(lost.slice(0, 5), [], `${mode} ${step}: ${lost.length} of ${acked.size} acknowledged writes lost after the reload`);
	// The crashed kvd's own (BACKUP.<pid>-<random>.partial, src/files.ts): the next kvd may be writing one of its own.
	const partials = (await readdir(t.context.target.lab.persistentDir)).filter(
		name => name.includes(`.${kvd}-`) && name.endsWith('.partial'),
	);
	t.deepEqual(partials, [], `${mode} ${step}: the next kvd removed the temporary files the crash left`);
	t.log(`${mode} ${step}: ${acked.size} acknowledged, all back after the reload (${((Date.now() - started) / 1000).toFixed(1)} s)`);
}

labTest('two ./run starting kvd at once get one kvd, and both see it ready', async t => {
	await loadServer(t, [], { daemon: false });
	await stopDaemon(t.context.target);
	const [first, second] = await Promise.all([startDaemon(t.context.target, BACKUP), startDaemon(t.context.target, BACKUP)]);
	t.is(first, second, 'the same kvd');
	t.is(await daemonPid(t.context.target), first, 'its pid file names it');
	t.is((await guest(t, 'pgrep -fc "[d]aemon/kvd.js"')).trim(), '1', 'one kvd runs');
	await stopDaemon(t.context.target);
	await unload(t.context.target, 'udp_server');
});

for (const mode of ['default', 'durable'] as const) {
	labTest(`${mode}: kvd crashed at each step of a save loses no acknowledged write`, async t => {
		for (const step of SAVE_STEPS) await crashAt(t, mode, step);
	});
	labTest(`${mode}: kvd crashed at each step of a snapshot's new base loses no acknowledged write`, async t => {
		for (const step of BASE_STEPS) await crashAt(t, mode, `snapshot-${step}`);
	});
	labTest(`${mode}: kvd crashed at each step of a compaction loses no acknowledged write`, async t => {
		for (const step of BASE_STEPS) await crashAt(t, mode, `compact-${step}`);
	});
}
