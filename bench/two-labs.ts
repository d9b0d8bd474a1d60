/**
 * The rows whose generator is in a second lab ("lab b"): the servers stay
 * in the bench lab ("lab a") and listen on its address on the labs' network
 * (10.0.9.0/24, virtio-net between two QEMU guests), and loadgen runs in lab
 * b. The servers' CPU per request then comes from lab a alone: `loadgen
 * watch` there measures the guest's busy time over the row, so the softirq
 * work of a request (charged to the generator in the same-guest rows) is
 * counted for every server alike, softirq=1 included.
 *
 * A sender in lab b is not on the servers' host: udp_server bounds its
 * replies to 3× the request, so loadgen pads its text lookups (-P), and
 * counts every error reply (a `refused` of a row); the bench loads it with
 * reply_rate=0 (servers.ts), so its per-/24 reply limit caps nothing.
 */
import { log } from '../src/log.js';
import { type BenchGuest, LAB_NIC, type Protocol } from './guest.js';
import { type Bench, logRow, phase } from './measure.js';
import { bestMemcached, groupRows, placementOf, type Row, type Workload } from './rows.js';
import type { Server, ServerKit } from './servers.js';

/**
 * The name of the generator's lab beside the servers' lab `name`: NAME-b;
 * for a name that ends in a number (a test's lab, test-FILE-PID), -b goes
 * before the number, so that `./run test` sweeps it with its first lab when
 * that test process is gone.
 */
export function secondLab(name: string): string {
	const numbered = /^(.*)-(\d+)$/.exec(name);
	return numbered ? `${numbered[1]}-b-${numbered[2]}` : `${name}-b`;
}

/** The longest a watch waits for its row beyond the row's own seconds (the generator's start in the other lab included). */
const WATCH_SLACK_SECONDS = 30;

/**
 * One row with the generator in lab b: watch starts in lab a and, once it
 * samples, loadgen runs in lab b against the server's address there.
 */
async function remoteRun(
	bench: Bench,
	generator: BenchGuest,
	server: Server,
	protocol: Protocol,
	clients: number,
	workload: Workload,
): Promise<Row> {
	const watch = bench.guest.watch(bench.seconds + WATCH_SLACK_SECONDS, bench.seconds, server.comm);
	await watch.ready;
	const measured = await generator.loadgen_(
		['-a', server.address, '-P', ...bench.rowArgs(server, protocol, clients, workload)],
		bench.seconds,
	);
	const serverSide = await watch.result;
	if (serverSide.late) log.warn(`${server.name}: lab a's watch started after the row's first datagrams; its CPU figures miss them`);
	const row: Row = { ...bench.loadgenRow(measured, server, protocol, clients, workload), placement: 'lab b', serverSide };
	logRow(row);
	return row;
}

/**
 * The two-lab rows, a few on purpose (the whole bench is long): each
 * workload at `threads` threads and the most clients, udp_server on both
 * protocols (threads, then softirq=1 in its place, then softirq=1 with
 * rx_dev on the labs' network device: the BMC design), memcached at its best
 * setting for that workload and clients in the same-guest rows, and the bare
 * echo, the ceiling of the network between the labs.
 */
export async function twoLabRows(
	bench: Bench,
	kit: ServerKit,
	generator: BenchGuest,
	sameGuest: Row[],
	workloads: Workload[],
	threads: number,
): Promise<Row[]> {
	const clients = bench.clients.at(-1)!;
	const groups = groupRows(sameGuest.filter(row => placementOf(row) === 'same guest'));
	const rows: Row[] = [];
	for (const workload of workloads) {
		const probe = { workload: workload.name, generator: 'loadgen', clients } as Row;
		const mcThreads = bestMemcached(groups, probe)?.[0]?.threads ?? 1;
		const kernel = kit.ours(threads, workload);
		const user = kit.memcached(mcThreads, workload);
		const ceiling = kit.echo(threads);
		const fast = kit.oursSoftirq(threads, workload);
		const from = (server: Server, protocol: Protocol) => () => remoteRun(bench, generator, server, protocol, clients, workload);
		const jobs = [
			from(kernel, 'text'),
			from(kernel, 'memcached'),
			from(user, 'memcached'),
			async () => ({ ...(await from(ceiling, 'echo')()), protocol: 'text' as const }),
		];
		const fastJobs = (['text', 'memcached'] as const).map(protocol => async () => ({ ...(await from(fast, protocol)()), softirq: true }));
		const device = kit.oursRxDev(threads, workload, LAB_NIC);
		const deviceJobs = (['text', 'memcached'] as const).map(protocol => async () => ({
			...(await from(device, protocol)()),
			softirq: true,
		}));
		const variants = [
			{ server: fast, jobs: fastJobs },
			{ server: device, jobs: deviceJobs },
		];
		rows.push(...(await phase(bench.reps, [kernel, user, ceiling], kernel, jobs, variants)));
	}
	return rows;
}
