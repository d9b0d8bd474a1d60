/**
 * Benchmark: insert throughput of udp_server with durable=1 (each reply waits
 * for the daemon's fdatasync) against the default (replies at once, kvd
 * follows), for 1, 8 and 32 closed-loop clients; and, as the designs to beat,
 * two floors of any durable daemon: bench/commitloop.c, one C thread doing
 * only blocking read → write → fdatasync → confirm, with its log on the
 * lab's virtiofs /var/tmp (where kvd's backup lives), and the same with its
 * log on the guest's tmpfs (no flush that leaves the guest: what the
 * hand-offs alone cost). The load generator is the benchmark's own
 * (bench/loadgen.c: inserts only, one in flight per client), run inside the
 * lab guest over loopback, so QEMU's user network is not what is measured.
 *
 *   ./run --help >/dev/null && node dist/bench/durable.js
 *   (BENCH_SECONDS=3 per row, BENCH_ROUNDS=3)
 *
 * Every round measures every row once, the modes one after another, and the
 * ratios are taken within a round: the table gives each ratio's median and
 * its range over the rounds (the machine is shared, the guest's CPU is
 * emulated, so absolute rates drift between rounds).
 */
import { freePort } from '../src/lab/free-port.js';
import { stopDaemon } from '../src/kvd-control.js';
import { build, load, unload } from '../src/lifecycle.js';
import { settings } from '../src/settings.js';
import { chooseTarget, type Target } from '../src/targets.js';
import { compileBenchProgram, compileLoadgen } from './programs.js';

const SECONDS = settings.benchSeconds;
const ROUNDS = settings.benchRounds;
const CLIENTS = [1, 8, 32];
const PORT = 3300;
const BACKUP = '/var/tmp/bench-durable-backup.txt';

const MODES = {
	default: { label: 'default, kvd following', durable: false, daemon: 'kvd' },
	durable: { label: 'durable=1, kvd', durable: true, daemon: 'kvd' },
	floor: { label: 'durable=1, commitloop, log on virtiofs', durable: true, daemon: '/var/tmp/bench-commitloop.log' },
	noflush: { label: 'durable=1, commitloop, log on tmpfs', durable: true, daemon: '/run/bench-commitloop.log' },
} as const;
type Mode = keyof typeof MODES;

interface Row {
	round: number;
	mode: Mode;
	clients: number;
	perSecond: number;
	notOk: number;
	timedOut: number;
}

/** Closed-loop inserts (bench/loadgen.c, one request in flight per client) for SECONDS. */
async function measure(target: Target, loadgen: string, round: number, mode: Mode, clients: number): Promise<Row> {
	const result = await target.exec([loadgen, 'run', String(PORT), 'text', 'w', String(clients), '1', String(SECONDS)], {
		timeoutMs: (SECONDS + 30) * 1000,
	});
	const line = result.stdout.trim().split('\n').at(-1) ?? '';
	if (result.exitCode !== 0 || !line.startsWith('{')) {
		throw new Error(`loadgen failed (${result.exitCode}): ${result.stderr.trim() || result.stdout.trim()}`);
	}
	const { answered, refused, lost, seconds } = JSON.parse(line) as { answered: number; refused: number; lost: number; seconds: number };
	return { round, mode, clients, perSecond: (answered - refused) / seconds, notOk: refused, timedOut: lost };
}

/** Starts commitloop in the guest, registered with the loaded module, and waits until it says so. */
async function startCommitloop(target: Target, commitloop: string, log: string): Promise<void> {
	// It exits by itself when the module is unloaded (the journal reads end of file).
	const started = await target.exec(
		[
			'sh',
			'-c',
			'rm -f "$2"; setsid "$1" "$2" >/run/bench-commitloop.out 2>&1 </dev/null & ' +
				'for i in $(seq 100); do grep -q ready /run/bench-commitloop.out && exit 0; sleep 0.1; done; ' +
				'cat /run/bench-commitloop.out; exit 1',
			'sh',
			commitloop,
			log,
		],
		{ timeoutMs: 30_000 },
	);
	if (started.exitCode !== 0) throw new Error(`commitloop did not start: ${started.stdout.trim()}`);
}

export async function runDurableBenchmark(): Promise<Row[]> {
	const [loadgen, commitloop] = [await compileLoadgen(), await compileBenchProgram('commitloop')];
	const target = await chooseTarget({ target: 'lab', lab: 'bench-durable' });
	await target.prepare();
	const server = await build(target, 'udp_server');
	await target.exec(['rm', '-f', BACKUP, `${BACKUP}.log`], { timeoutMs: 10_000 });
	const rows: Row[] = [];
	try {
		for (let round = 1; round <= ROUNDS; round++) {
			for (const mode of Object.keys(MODES) as Mode[]) {
				const { durable, daemon } = MODES[mode];
				if (daemon !== 'kvd') await stopDaemon(target);
				await load(target, server, {
					name: 'udp_server',
					params: [`port=${PORT}`, 'bind=127.0.0.1', ...(durable ? ['durable=1'] : [])],
					// The port forward is not used (the load is generated in the guest): any free host port.
					hostPort: await freePort('udp'),
					daemon: daemon === 'kvd',
					backup: BACKUP,
				});
				if (daemon !== 'kvd') await startCommitloop(target, commitloop, daemon);
				for (const clients of CLIENTS) {
					rows.push(await measure(target, loadgen, round, mode, clients));
				}
				await unload(target, 'udp_server');
			}
		}
	} finally {
		await stopDaemon(target);
	}
	return rows;
}

function median(values: number[]): number {
	const sorted = [...values].sort((a, b) => a - b);
	const middle = Math.floor(sorted.length / 2);
	return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/** Each mode's rate and its share of the default's, per client count: medians and ranges over the rounds. */
export function table(rows: Row[]): string {
	const percent = (value: number) => `${(100 * value).toFixed(0)}%`;
	const lines = ['| clients | mode | inserts/s (median, range) | of the default (median, range) |', '|---:|---|---:|---:|'];
	for (const clients of CLIENTS) {
		for (const mode of Object.keys(MODES) as Mode[]) {
			const mine = rows.filter(row => row.mode === mode && row.clients === clients);
			const rates = mine.map(row => row.perSecond);
			const ratios = mine.map(row => {
				const base = rows.find(other => other.mode === 'default' && other.clients === clients && other.round === row.round)!;
				return row.perSecond / base.perSecond;
			});
			const rate = `${median(rates).toFixed(0)} (${Math.min(...rates).toFixed(0)}–${Math.max(...rates).toFixed(0)})`;
			const share =
				mode === 'default' ? '' : `${percent(median(ratios))} (${percent(Math.min(...ratios))}–${percent(Math.max(...ratios))})`;
			lines.push(`| ${clients} | ${MODES[mode].label} | ${rate} | ${share} |`);
		}
	}
	for (const row of rows.filter(row => row.notOk || row.timedOut)) {
		lines.push(`(round ${row.round}, ${row.mode}, ${row.clients} clients: ${row.notOk} replies not OK, ${row.timedOut} timed out)`);
	}
	return lines.join('\n');
}

const rows = await runDurableBenchmark();
process.stdout.write(
	`udp_server inserts, ${SECONDS} s per row, ${ROUNDS} rounds, load generated inside the lab guest\n${table(rows)}\n` +
		`raw rows (inserts/s): ${JSON.stringify(rows.map(({ round, mode, clients, perSecond }) => [round, mode, clients, Math.round(perSecond)]))}\n`,
);
