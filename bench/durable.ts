/**
 * Benchmark: insert throughput of udp_server with durable=1 (each reply waits
 * for kvd's fdatasync) against the default (replies at once, kvd follows),
 * for 1, 8 and 32 closed-loop clients, with kvd running in both. The load
 * generator is bench/kvload.c, compiled here with gcc and run inside the lab
 * guest over loopback, so QEMU's user network is not what is measured.
 *
 *   node dist/bench/durable.js      (BENCH_SECONDS=5 by default)
 *
 * Prints a table; compare the rows of one run (the machine is shared and
 * the guest's CPU is emulated).
 */
import { execFile } from 'node:child_process';
import { mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { freePort } from '../src/lab/lab.js';
import { stopDaemon } from '../src/kvd-control.js';
import { build, load, unload } from '../src/lifecycle.js';
import { PROJECT_ROOT } from '../src/modules.js';
import { chooseTarget, type Target } from '../src/targets.js';

const SECONDS = Number(process.env['BENCH_SECONDS'] ?? 5);
const PORT = 3300;
const BACKUP = '/var/tmp/bench-durable-backup.txt';
// Outside dist/ (./run drops files there that tsc did not make), and a name
// of its own each run: a guest that saw an older binary under the same name
// gets "Stale file handle" from its cached virtiofs lookup.
const KVLOAD = path.join(PROJECT_ROOT, `.lab/kvload-${process.pid}`);

interface Row {
	mode: 'default' | 'durable';
	clients: number;
	perSecond: number;
	notOk: number;
	timedOut: number;
}

async function compileLoadGenerator(): Promise<void> {
	await mkdir(path.dirname(KVLOAD), { recursive: true });
	await promisify(execFile)('gcc', ['-O2', '-Wall', '-pthread', '-o', KVLOAD, path.join(PROJECT_ROOT, 'bench/kvload.c')]);
}

async function measure(target: Target, mode: Row['mode'], clients: number): Promise<Row> {
	const result = await target.exec([KVLOAD, String(PORT), String(clients), String(SECONDS), `${mode}${clients}-`], {
		timeoutMs: (SECONDS + 30) * 1000,
	});
	const fields = result.stdout.trim().split(' ').map(Number);
	if (result.exitCode !== 0 || fields.length !== 4 || fields.some(Number.isNaN)) {
		throw new Error(`kvload failed (${result.exitCode}): ${result.stderr.trim() || result.stdout.trim()}`);
	}
	const [ok, notOk, timedOut, seconds] = fields as [number, number, number, number];
	return { mode, clients, perSecond: ok / seconds, notOk, timedOut };
}

export async function runDurableBenchmark(): Promise<Row[]> {
	await compileLoadGenerator();
	const target = await chooseTarget({ target: 'lab', lab: 'bench-durable' });
	await target.prepare();
	const server = await build(target, 'udp_server');
	await target.exec(['sh', '-c', `rm -f ${BACKUP} ${BACKUP}.log`], { timeoutMs: 10_000 });
	const rows: Row[] = [];
	try {
		for (const mode of ['default', 'durable'] as const) {
			await load(target, server, {
				name: 'udp_server',
				params: [`port=${PORT}`, 'bind=127.0.0.1', ...(mode === 'durable' ? ['durable=1'] : [])],
				// The port forward is not used (the load is generated in the guest): any free host port.
				hostPort: await freePort('udp'),
				daemon: true,
				backup: BACKUP,
			});
			for (const clients of [1, 8, 32]) {
				rows.push(await measure(target, mode, clients));
			}
			await unload(target, 'udp_server');
		}
	} finally {
		await stopDaemon(target);
		await rm(KVLOAD, { force: true });
	}
	return rows;
}

function table(rows: Row[]): string {
	const lines = ['| clients | default (inserts/s) | durable=1 (inserts/s) | durable / default |', '|---:|---:|---:|---:|'];
	for (const clients of [1, 8, 32]) {
		const base = rows.find(row => row.mode === 'default' && row.clients === clients)!;
		const durable = rows.find(row => row.mode === 'durable' && row.clients === clients)!;
		lines.push(
			`| ${clients} | ${base.perSecond.toFixed(0)} | ${durable.perSecond.toFixed(0)} | ${((100 * durable.perSecond) / base.perSecond).toFixed(0)}% |`,
		);
	}
	const trouble = rows.filter(row => row.notOk || row.timedOut);
	for (const row of trouble) {
		lines.push(`(${row.mode}, ${row.clients} clients: ${row.notOk} replies not OK, ${row.timedOut} timed out)`);
	}
	return lines.join('\n');
}

const rows = await runDurableBenchmark();
process.stdout.write(`udp_server inserts, ${SECONDS} s each, kvd running, load generated inside the lab guest\n${table(rows)}\n`);
