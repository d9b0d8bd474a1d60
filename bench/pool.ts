/**
 * Throughput of a pool of 1, 2 and 3 udp_servers under one generator
 * (issue 21): `./run pool up 3` boots three labs with a server each, a
 * fourth lab runs memaslap (Debian's memcaslap, memcached's UDP protocol)
 * against the first 1, 2 or 3 servers' memcached ports over the labs'
 * network, taking turns, `--reps` times. memaslap gives each of its threads
 * one server, so it runs as many threads as servers, with the same 12
 * connections in all.
 *
 *   node dist/bench/pool.js [--seconds 5] [--reps 3] [--keep]
 *
 * It prints a Markdown table (median TPS of the repetitions, their range,
 * and the ratio to one server), writes the raw figures to
 * bench/pool-results.json and the table into BENCHMARKS.md between its
 * BEGIN POOL / END POOL lines. Every lab runs under TCG on this machine's
 * cores, so the table also says how loaded the host was.
 */
import { execa } from 'execa';
import { readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { PROJECT_ROOT } from '../src/modules.js';
import { median } from './rows.js';

const PREFIX = 'bpool';
const GENERATOR = 'bpoolgen';
const MC_PORT = 11211;
const CONNECTIONS = 12;
const RUN = path.join(PROJECT_ROOT, 'run');
const RESULTS = path.join(PROJECT_ROOT, 'bench/pool-results.json');
const PAGE = path.join(PROJECT_ROOT, 'BENCHMARKS.md');

const { values } = parseArgs({
	options: {
		seconds: { type: 'string', default: '5' },
		reps: { type: 'string', default: '3' },
		keep: { type: 'boolean', default: false },
	},
});
const seconds = Number(values.seconds);
const reps = Number(values.reps);

/** `./run ARGS`; its standard output. */
async function run(args: string[]): Promise<string> {
	const result = await execa(RUN, args, { all: true });
	return result.stdout;
}

/** The pool members' addresses on the labs' network, from `./run pool status --json`. */
async function addresses(): Promise<string[]> {
	const status = JSON.parse(await run(['pool', 'status', '--prefix', PREFIX, '--json'])) as Array<{ address?: string }>;
	return status.map(member => member.address).filter((address): address is string => Boolean(address));
}

/** One memaslap run against `servers`; its TPS. */
async function measure(servers: string[]): Promise<number> {
	const list = servers.map(address => `${address}:${MC_PORT}`).join(',');
	const out = await run([
		'shell',
		'--lab',
		GENERATOR,
		'--',
		'sh',
		'-c',
		`timeout ${seconds + 60} memcaslap -s ${list} -U -T ${servers.length} -c ${CONNECTIONS} -t ${seconds}s 2>&1`,
	]);
	const tps = /TPS: (\d+)/.exec(out)?.[1];
	if (!tps) throw new Error(`memaslap printed no TPS:\n${out}`);
	return Number(tps);
}

function table(samples: Record<number, number[]>): string {
	const one = median(samples[1] ?? []);
	const rows = Object.entries(samples).map(([count, tps]) => {
		const m = median(tps);
		return `| ${count} | ${Math.round(m).toLocaleString('en-US').replace(/,/g, ' ')} | ${Math.min(...tps)}–${Math.max(...tps)} | ${(m / one).toFixed(2)}× |`;
	});
	return ['| servers | memaslap TPS (median) | range | ÷ one server |', '| ---: | ---: | ---: | ---: |', ...rows].join('\n');
}

const started = new Date();
const loadBefore = os.loadavg()[0]!;
await run(['pool', 'up', '3', '--prefix', PREFIX]);
await run(['shell', '--lab', GENERATOR, '--', 'true']);
const servers = await addresses();
if (servers.length !== 3) throw new Error(`expected 3 pool addresses, got ${servers.join(', ')}`);
const samples: Record<number, number[]> = { 1: [], 2: [], 3: [] };
try {
	for (let rep = 0; rep < reps; rep++) {
		for (const count of [1, 2, 3]) {
			const tps = await measure(servers.slice(0, count));
			samples[count]!.push(tps);
			process.stderr.write(`rep ${rep + 1}: ${count} server(s): ${tps} TPS\n`);
		}
	}
} finally {
	if (!values.keep) {
		await run(['pool', 'down', '--prefix', PREFIX]).catch(() => {});
		await run(['down', '--lab', GENERATOR]).catch(() => {});
	}
}
const loadAfter = os.loadavg()[0]!;
const commit = (await execa('git', ['rev-parse', '--short', 'HEAD'], { cwd: PROJECT_ROOT })).stdout;
await writeFile(
	RESULTS,
	`${JSON.stringify({ commit, date: started.toISOString(), seconds, reps, connections: CONNECTIONS, loadBefore, loadAfter, samples }, null, '\t')}\n`,
);
const text = [
	`commit ${commit}, ${started.toISOString().slice(0, 10)}; ${reps} repetitions of ${seconds} s, taking turns; memaslap (-U, ${CONNECTIONS} connections, its default 9:1 get/set) in a fourth lab; each lab 1 emulated CPU; host load average ${loadBefore.toFixed(1)} before, ${loadAfter.toFixed(1)} after, on ${os.cpus().length} cores`,
	'',
	table(samples),
].join('\n');
process.stdout.write(`${text}\n`);
const page = await readFile(PAGE, 'utf8');
const begin = '<!-- BEGIN POOL: generated from bench/pool-results.json by `node dist/bench/pool.js` -->';
const end = '<!-- END POOL -->';
const from = page.indexOf(begin);
const to = page.indexOf(end);
if (from >= 0 && to > from) {
	await writeFile(PAGE, `${page.slice(0, from + begin.length)}\n\n${text}\n\n${page.slice(to)}`);
}
