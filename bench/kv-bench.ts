/**
 * Benchmark: requests per second against udp_server for 1 and 8 clients,
 * side by side with a user-space Node server in the same lab guest, and the
 * kernel memory one table entry costs. Prints a table: `./run bench`.
 *
 * Absolute numbers on a shared machine under QEMU's software emulation are
 * noisy; compare the rows of one run with each other.
 */
import dgram from 'node:dgram';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort } from '../src/lab/lab.js';
import { build, load, unload } from '../src/lifecycle.js';
import { PROJECT_ROOT } from '../src/modules.js';
import { chooseTarget, LabTarget } from '../src/targets.js';

const SECONDS = Number(process.env['BENCH_SECONDS'] ?? 5);

/** `clients` sockets, each doing request → reply back to back for SECONDS. */
async function measure(port: number, clients: number): Promise<number> {
	const deadline = Date.now() + SECONDS * 1000;
	const counts = await Promise.all(
		Array.from(
			{ length: clients },
			(_, client) =>
				new Promise<number>(resolve => {
					const socket = dgram.createSocket('udp4');
					let done = 0;
					let timer: NodeJS.Timeout | undefined;
					const next = () => {
						if (Date.now() >= deadline) {
							clearTimeout(timer);
							socket.close();
							resolve(done);
							return;
						}
						const key = `c${client}k${done % 500}`;
						const message = done % 2 === 0 ? `insert ${key} value${done}` : `lookup ${key}`;
						socket.send(message);
						// A lost datagram must not stall the client.
						clearTimeout(timer);
						timer = setTimeout(next, 500);
					};
					socket.on('message', () => {
						done++;
						next();
					});
					socket.connect(port, '127.0.0.1', next);
				}),
		),
	);
	return counts.reduce((sum, count) => sum + count, 0) / SECONDS;
}

export async function runBenchmark(): Promise<void> {
	const target = await chooseTarget({ target: 'lab', lab: 'bench' });
	if (!(target instanceof LabTarget)) throw new Error('the benchmark runs in the lab');
	try {
		await target.prepare();
		const server = await build(target, 'udp_server');
		const kernelPort = await freePort('udp');
		await load(target, server, { name: 'udp_server', params: ['port=3000'], hostPort: kernelPort, daemon: false });

		const userPort = await freePort('udp');
		await target.exposeUdp(userPort, 3001);
		await target.exec(['sh', '-c', `setsid ${process.execPath} ${PROJECT_ROOT}/dist/bench/userspace-server.js 3001 >/dev/null 2>&1 &`], {
			timeoutMs: 10_000,
		});
		await sleep(5000); // Node's first start in the guest is slow under emulation.

		const rows: Array<[string, number, number]> = [];
		for (const clients of [1, 8]) {
			rows.push(['udp_server.ko (kernel)', clients, await measure(kernelPort, clients)]);
			rows.push(['node dgram (user space)', clients, await measure(userPort, clients)]);
		}

		// Memory per entry: unreclaimable slab before and after 100 000 inserts.
		const slab = async () => Number((await target.exec(['sh', '-c', "sync; awk '/^SUnreclaim/ {print $2}' /proc/meminfo"])).stdout);
		await unload(target, 'udp_server');
		await load(target, server, { name: 'udp_server', params: ['port=3000'], hostPort: kernelPort, daemon: false });
		const before = await slab();
		await target.exec(
			[
				'sh',
				'-c',
				`${process.execPath} -e 'const fs=require("fs"); const fd=fs.openSync("/proc/ht","w"); for (let i=0;i<100000;i++) fs.writeSync(fd, "insert key"+String(i).padStart(6,"0")+" value"+String(i).padStart(6,"0"));'`,
			],
			{ timeoutMs: 600_000 },
		);
		const after = await slab();

		const baseline = rows[0]?.[2] ?? 1;
		console.log(`\nkernel-udp benchmark: ${SECONDS} s per row, mixed insert/lookup, client on the host via the lab's port forward\n`);
		console.log('| server | clients | requests/s | vs kernel, 1 client |');
		console.log('| --- | ---: | ---: | ---: |');
		for (const [name, clients, rate] of rows) {
			console.log(`| ${name} | ${clients} | ${rate.toFixed(0)} | ${(rate / baseline).toFixed(2)}× |`);
		}
		const perEntry = ((after - before) * 1024) / 100_000;
		console.log(
			`\nmemory: 100 000 entries (12-byte keys, 12-byte values) took ${after - before} kB of kernel slab, ${perEntry.toFixed(0)} bytes per entry`,
		);
	} finally {
		await target.lab.down();
	}
}
