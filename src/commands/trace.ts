/**
 * `./run trace`: a live view of udp_server's tracepoints (server-module/
 * trace_request.h): requests per second by protocol and operation, drops
 * by reason, and a latency histogram, refreshed each second.
 *
 * Underneath are the kernel's own hist triggers (tracefs, CONFIG_HIST_TRIGGERS):
 * the counting happens in the kernel, per event, and this side reads the
 * totals once a second and shows the difference. Nothing is installed in the
 * target and no event is copied out one by one, so the view costs the
 * server little even under a flood. perf, trace-cmd and bpftrace read the
 * same events (`perf list 'udp_server:*'`).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { UserError } from '../errors.js';
import { isLoaded } from '../lifecycle.js';
import { chooseTarget, type Target, type TargetChoice } from '../targets.js';

const TRACEFS = ['/sys/kernel/tracing', '/sys/kernel/debug/tracing'];

/** The triggers the view sets, on the event that each counts. */
export const TRIGGERS = [
	{ event: 'request', trigger: 'hist:keys=proto,op:vals=hitcount:sort=hitcount.descending' },
	{ event: 'request', trigger: 'hist:keys=ns.log2:vals=hitcount:sort=ns' },
	{ event: 'drop', trigger: 'hist:keys=reason:vals=hitcount:sort=hitcount.descending' },
] as const;

/** One line of a hist file: its keys (`ns` of a log2 key is the bucket's power of two) and its hitcount. */
export interface HistEntry {
	keys: Record<string, number>;
	hits: number;
}

/** Parses a tracefs hist file: `{ proto: 0, op: 4 } hitcount: 12` lines, or `{ ns: ~ 2^12 } hitcount: 3`. */
export function parseHist(text: string): HistEntry[] {
	const entries: HistEntry[] = [];
	for (const [, inside, hits] of text.matchAll(/^\{([^}]*)\}\s+hitcount:\s+(\d+)/gm)) {
		const keys: Record<string, number> = {};
		for (const [, name, value] of inside!.matchAll(/(\w+):\s*(?:~\s*2\^)?\s*(\d+)/g)) {
			keys[name!] = Number(value);
		}
		entries.push({ keys, hits: Number(hits) });
	}
	return entries;
}

/**
 * The names an event's format gives a field's values, from its
 * `__print_symbolic(REC->field, { 0, "text" }, ...)`: the module's own
 * enums, so this side never keeps a copy of them.
 */
export function symbolsOf(format: string, field: string): Map<number, string> {
	const names = new Map<number, string>();
	const start = format.indexOf(`__print_symbolic(REC->${field},`);
	if (start < 0) return names;
	const end = format.indexOf(')', start);
	for (const [, value, name] of format.slice(start, end).matchAll(/\{\s*(\d+),\s*"([^"]*)"\s*\}/g)) {
		names.set(Number(value), name!);
	}
	return names;
}

/** What changed between two readings of a hist file, by key. */
export function delta(now: HistEntry[], before: HistEntry[]): HistEntry[] {
	const id = (entry: HistEntry) => JSON.stringify(entry.keys);
	const old = new Map(before.map(entry => [id(entry), entry.hits]));
	return now.map(entry => ({ keys: entry.keys, hits: entry.hits - (old.get(id(entry)) ?? 0) })).filter(entry => entry.hits > 0);
}

/** A time in ns as people read it, to three figures: 512 ns, 32.8 µs, 1.05 ms. */
function duration(ns: number): string {
	const [unit, size] = ns < 1e3 ? ['ns', 1] : ns < 1e6 ? ['µs', 1e3] : ns < 1e9 ? ['ms', 1e6] : ['s', 1e9];
	return `${Number((ns / (size as number)).toPrecision(3))} ${unit}`;
}

export interface Frame {
	seconds: number;
	requests: HistEntry[];
	latency: HistEntry[];
	drops: HistEntry[];
	names: { proto: Map<number, string>; op: Map<number, string>; reason: Map<number, string> };
}

/** One refresh of the view, as lines. */
export function renderFrame({ seconds, requests, latency, drops, names }: Frame): string[] {
	const perSecond = (hits: number) => {
		const rate = hits / seconds;
		return rate < 10 ? rate.toFixed(1) : Math.round(rate).toLocaleString('en-US');
	};
	const rate = (hits: number) => `${`${perSecond(hits)}/s`.padStart(10)}  (${hits})`;
	const name = (map: Map<number, string>, value: number | undefined) => map.get(value ?? -1) ?? String(value);
	const total = requests.reduce((sum, entry) => sum + entry.hits, 0);
	const lines = [`udp_server: ${perSecond(total)} requests/s (${total} in the last ${seconds.toFixed(1)} s)`, ''];
	lines.push('  requests by protocol and operation');
	if (requests.length === 0) lines.push('    (none)');
	for (const entry of [...requests].sort((a, b) => b.hits - a.hits)) {
		lines.push(`    ${`${name(names.proto, entry.keys.proto)} ${name(names.op, entry.keys.op)}`.padEnd(22)}${rate(entry.hits)}`);
	}
	lines.push('', '  time in the executor (per request)');
	const most = Math.max(1, ...latency.map(entry => entry.hits));
	if (latency.length === 0) lines.push('    (none)');
	for (const entry of [...latency].sort((a, b) => (a.keys.ns ?? 0) - (b.keys.ns ?? 0))) {
		const low = 2 ** (entry.keys.ns ?? 0);
		const bar = '#'.repeat(Math.max(1, Math.round((40 * entry.hits) / most)));
		lines.push(`    ${`${duration(low)} – ${duration(low * 2)}`.padEnd(18)}${String(entry.hits).padStart(8)} ${bar}`);
	}
	lines.push('', '  drops by reason');
	if (drops.length === 0) lines.push('    (none)');
	for (const entry of [...drops].sort((a, b) => b.hits - a.hits)) {
		lines.push(`    ${name(names.reason, entry.keys.reason).padEnd(22)}${rate(entry.hits)}`);
	}
	return lines;
}

/** The tracefs directory of udp_server's events in the target. */
async function eventsDir(target: Target): Promise<string> {
	for (const root of TRACEFS) {
		const dir = `${root}/events/udp_server`;
		if ((await target.exec(['test', '-d', dir], { timeoutMs: 30_000 })).exitCode === 0) return dir;
	}
	throw new UserError(`udp_server's tracepoints are not in ${target.place}'s tracefs`, {
		hint: 'tracefs must be mounted (mount -t tracefs nodev /sys/kernel/tracing)',
	});
}

async function writeFile(target: Target, file: string, text: string): Promise<void> {
	const result = await target.exec(['tee', '-a', file], { input: `${text}\n`, timeoutMs: 30_000 });
	if (result.exitCode !== 0) {
		throw new UserError(`cannot write ${file} in ${target.place}: ${result.stderr.trim()}`);
	}
}

/** Reads each trigger's hist file, in the order of TRIGGERS. */
async function readHists(target: Target, dir: string): Promise<HistEntry[][]> {
	const files = [...new Set(TRIGGERS.map(({ event }) => `${dir}/${event}/hist`))];
	const result = await target.exec(['cat', ...files], { timeoutMs: 30_000 });
	// Each trigger's block starts with "# event histogram" and names its trigger.
	const blocks = result.stdout.split(/^(?=# event histogram)/m);
	return TRIGGERS.map(({ trigger }) => {
		const keys = /keys=([^:]+)/.exec(trigger)![1]!;
		const block = blocks.find(text => new RegExp(`# trigger info: hist:keys=${keys.replace('.', '\\.')}:`).test(text));
		return parseHist(block ?? '');
	});
}

export interface TraceOptions extends TargetChoice {
	/** Stop after this many refreshes (default: until Ctrl-C). */
	count?: number;
	/** Seconds between refreshes. */
	interval?: number;
}

export async function traceCommand(options: TraceOptions): Promise<void> {
	const interval = options.interval ?? 1;
	if (!(interval >= 0.2 && interval <= 60)) {
		throw new UserError(`--interval must be between 0.2 and 60 seconds, not ${options.interval}`, { exitCode: 64 });
	}
	if (options.count !== undefined && !(Number.isInteger(options.count) && options.count > 0)) {
		throw new UserError(`--count must be a whole number above 0, not ${options.count}`, { exitCode: 64 });
	}
	const target = await chooseTarget(options);
	await target.prepare();
	if (!(await isLoaded(target, 'udp_server'))) {
		throw new UserError(`udp_server is not loaded in ${target.place}`, { hint: 'load it first: ./run udp_server -d' });
	}
	const dir = await eventsDir(target);
	const format = (await target.exec(['cat', `${dir}/request/format`, `${dir}/drop/format`], { timeoutMs: 30_000 })).stdout;
	const names = { proto: symbolsOf(format, 'proto'), op: symbolsOf(format, 'op'), reason: symbolsOf(format, 'reason') };

	let stop = false;
	const stopping = new AbortController();
	const onSigint = () => {
		stop = true;
		stopping.abort();
	};
	process.once('SIGINT', onSigint);
	const set: string[] = [];
	try {
		for (const { event, trigger } of TRIGGERS) {
			await writeFile(target, `${dir}/${event}/trigger`, trigger);
			set.push(`${dir}/${event}/trigger\0${trigger}`);
		}
		let before = await readHists(target, dir);
		let then = Date.now();
		const clear = process.stdout.isTTY ? '\x1b[H\x1b[2J' : '';
		for (let shown = 0; !stop && (options.count === undefined || shown < options.count); shown++) {
			await sleep(interval * 1000, undefined, { signal: stopping.signal }).catch(() => {});
			if (stop) break;
			const now = await readHists(target, dir);
			const at = Date.now();
			const [requests, latency, drops] = now.map((hist, i) => delta(hist, before[i]!));
			const lines = renderFrame({ seconds: (at - then) / 1000, requests: requests!, latency: latency!, drops: drops!, names });
			process.stdout.write(`${clear}${lines.join('\n')}\n${clear ? '\n(Ctrl-C to stop)\n' : '\n'}`);
			before = now;
			then = at;
		}
	} finally {
		process.off('SIGINT', onSigint);
		// The triggers go, or the kernel keeps counting for nobody ("!" removes one).
		for (const entry of set) {
			const [file, trigger] = entry.split('\0') as [string, string];
			await writeFile(target, file, `!${trigger}`).catch(() => {});
		}
	}
}
