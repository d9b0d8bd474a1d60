/**
 * Benchmark: insert throughput of udp_server with durable=1 (each reply waits
 * for kvd's fdatasync) against the default (replies at once, kvd follows),
 * for 1, 8 and 32 closed-loop clients, with kvd running in both. The load
 * generator is the benchmark's own (bench/loadgen.c: inserts only, one in
 * flight per client), run inside the lab guest over loopback, so QEMU's user
 * network is not what is measured.
 *
 *   node dist/bench/durable.js      (BENCH_SECONDS=5 by default)
 *
 * Prints a table; compare the rows of one run (the machine is shared and
 * the guest's CPU is emulated).
 */
import { freePort } from '../src/lab/free-port.js';
import { stopDaemon } from '../src/kvd-control.js';
import { build, load, unload } from '../src/lifecycle.js';
import { settings } from '../src/settings.js';
import { chooseTarget, type Target } from '../src/targets.js';
import { compileLoadgen } from './kv-bench.js';

const SECONDS = settings.benchSeconds;
const PORT = 3300;
const BACKUP = '/var/tmp/bench-durable-backup.txt';
interface Row {
	mode: 'default' | 'durable';
	clients: number;
	perSecond: number;
	notOk: number;
	timedOut: number;
}

/** Closed-loop inserts (bench/loadgen.c, one request in flight per client) for SECONDS. */
async function measure(target: Target, loadgen: string, mode: Row['mode'], clients: number): Promise<Row> {
	const result = await target.exec([loadgen, 'run', String(PORT), 'text', 'w', String(clients), '1', String(SECONDS)], {
		timeoutMs: (SECONDS + 30) * 1000,
	});
	const line = result.stdout.trim().split('\n').at(-1) ?? '';
	if (result.exitCode !== 0 || !line.startsWith('{')) {
		throw new Error(`loadgen failed (${result.exitCode}): ${result.stderr.trim() || result.stdout.trim()}`);
	}
	const { answered, refused, lost, seconds } = JSON.parse(line) as { answered: number; refused: number; lost: number; seconds: number };
	return { mode, clients, perSecond: (answered - refused) / seconds, notOk: refused, timedOut: lost };
}

export async function runDurableBenchmark(): Promise<Row[]> {
	const loadgen = await compileLoadgen();
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
				rows.push(await measure(target, loadgen, mode, clients));
			}
			await unload(target, 'udp_server');
		}
	} finally {
		await stopDaemon(target);
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
