/**
 * Throughput of a pool of 1, 2 and 3 udp_servers under one generator
 * (issue 21): `./run pool up 3` boots three labs with a server each, and a
 * fourth lab runs loadgen in its pool mode (`-s`: each request to its key's
 * ketama server, as kvclient --servers places it) against the memcached
 * ports of the first 1, 2 or 3 servers over the labs' network, taking
 * turns, `--reps` times: 8 closed-loop clients with 4 requests in flight,
 * 90% gets of 10 000 keys (all inserted first), memcached's protocol.
 *
 *   node dist/bench/pool.js [--seconds 5] [--reps 3] [--keep]
 *
 * It prints a Markdown table (median req/s of the repetitions, their range,
 * the ratio to one server, loss), writes the raw figures to
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
import { compileLoadgen } from './programs.js';
import { median } from './rows.js';

const PREFIX = 'bpool';
const GENERATOR = 'bpoolgen';
const MC_PORT = 11211;
const CLIENTS = 8;
const WINDOW = 4;
const KEYS = 10_000;
const SERVER_PARAMS = ['reply_rate=0', 'softirq=1'];
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
	const result = await execa(RUN, args, { all: true, stdin: 'ignore' });
	return result.stdout;
}

/** The pool members' addresses on the labs' network, from `./run pool status --json`. */
async function addresses(): Promise<string[]> {
	const status = JSON.parse(await run(['pool', 'status', '--prefix', PREFIX, '--json'])) as { members: Array<{ address?: string }> };
	return status.members.map(member => member.address).filter((address): address is string => Boolean(address));
}

interface Sample {
	reqPerSec: number;
	lost: number;
}

/** `loadgen ARGS` in the generator's lab; the JSON line it prints. */
async function loadgen(binary: string, args: string[]): Promise<string> {
	return run(['shell', '--lab', GENERATOR, '--', binary, ...args]);
}

/** Every key inserted on its server, once per pool size (the servers keep them). */
async function preload(binary: string, list: string): Promise<void> {
	await loadgen(binary, ['preload', '-k', String(KEYS), '-s', list, 'mc']);
}

/** One closed-loop run against `list`; requests answered per second, and lost. */
async function measure(binary: string, list: string): Promise<Sample> {
	const out = await loadgen(binary, ['run', '-k', String(KEYS), '-s', list, 'mc', 'r90', String(CLIENTS), String(WINDOW), String(seconds)]);
	const line = out.split('\n').find(text => text.startsWith('{'));
	if (!line) throw new Error(`loadgen printed no result:\n${out}`);
	const result = JSON.parse(line) as { answered: number; lost: number; seconds: number };
	return { reqPerSec: result.answered / result.seconds, lost: result.lost };
}

function table(samples: Record<number, Sample[]>): string {
	const one = median((samples[1] ?? []).map(sample => sample.reqPerSec));
	const rows = Object.entries(samples).map(([count, runs]) => {
		const rates = runs.map(sample => sample.reqPerSec);
		const m = median(rates);
		const fmt = (n: number) => Math.round(n).toLocaleString('en-US').replace(/,/g, ' ');
		const lost = runs.reduce((sum, sample) => sum + sample.lost, 0);
		return `| ${count} | ${fmt(m)} | ${fmt(Math.min(...rates))}–${fmt(Math.max(...rates))} | ${(m / one).toFixed(2)}× | ${lost} |`;
	});
	return ['| servers | req/s (median) | range | ÷ one server | lost (all runs) |', '| ---: | ---: | ---: | ---: | ---: |', ...rows].join(
		'\n',
	);
}

const started = new Date();
const loadBefore = os.loadavg()[0]!;
// No per-source reply limit (the generator is another host to them: PROTOCOL.md), reads and writes in softirq.
await run(['pool', 'up', '3', ...SERVER_PARAMS, '--prefix', PREFIX]);
await run(['shell', '--lab', GENERATOR, '--', 'true']);
const servers = await addresses();
if (servers.length !== 3) throw new Error(`expected 3 pool addresses, got ${servers.join(', ')}`);
const binary = await compileLoadgen();
const lists = [1, 2, 3].map(count =>
	servers
		.slice(0, count)
		.map(address => `${address}:${MC_PORT}`)
		.join(','),
);
const samples: Record<number, Sample[]> = { 1: [], 2: [], 3: [] };
try {
	for (const list of lists) await preload(binary, list);
	for (let rep = 0; rep < reps; rep++) {
		for (const [index, list] of lists.entries()) {
			const sample = await measure(binary, list);
			samples[index + 1]!.push(sample);
			process.stderr.write(`rep ${rep + 1}: ${index + 1} server(s): ${sample.reqPerSec.toFixed(0)} req/s, ${sample.lost} lost\n`);
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
	`${JSON.stringify({ commit, date: started.toISOString(), seconds, reps, clients: CLIENTS, window: WINDOW, keys: KEYS, loadBefore, loadAfter, samples }, null, '\t')}\n`,
);
const text = [
	`commit ${commit}, ${started.toISOString().slice(0, 10)}; ${reps} repetitions of ${seconds} s, taking turns; loadgen -s (ketama) in a fourth lab, ${CLIENTS} clients × ${WINDOW} in flight, 90% gets of ${KEYS} keys, memcached's protocol over the labs' network; servers with ${SERVER_PARAMS.join(' ')}, each in a lab of 1 emulated CPU; host load average ${loadBefore.toFixed(1)} before, ${loadAfter.toFixed(1)} after, on ${os.cpus().length} cores`,
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
