/**
 * Memory per entry: what udp_server's and memcached's tables take for the
 * same keys and values, read in the servers' guest around the insertion of
 * the get-heavy workload's keys (the first start of each server in that
 * phase). udp_server: its stats `bytes=` (what max_bytes charges) and the
 * kernel's Slab + VmallocUsed growth; memcached: its stats `bytes` and its
 * RSS growth.
 */
import { log } from '../src/log.js';
import type { BenchGuest } from './guest.js';
import type { MemoryPoint, Workload } from './rows.js';
import type { AroundPreload, Server } from './servers.js';

/** Fields "Name:   123 kB" of /proc/meminfo or /proc/PID/status, in bytes. */
export function kibFields(text: string, ...names: string[]): number {
	return names.reduce((sum, name) => sum + Number(new RegExp(`^${name}:\\s+(\\d+) kB$`, 'm').exec(text)?.[1] ?? Number.NaN) * 1024, 0);
}

/** udp_server's "OK entries=N bytes=M ..." or memcached's "STAT curr_items N" and "STAT bytes M". */
export function parseStats(reply: string): { entries: number; bytes: number } {
	const field = (...patterns: RegExp[]) => Number(patterns.map(pattern => pattern.exec(reply)?.[1]).find(Boolean) ?? Number.NaN);
	return {
		entries: field(/\bentries=(\d+)/, /^STAT curr_items (\d+)\r?$/m),
		bytes: field(/\bbytes=(\d+)/, /^STAT bytes (\d+)\r?$/m),
	};
}

/** An AroundPreload that measures udp_server and memcached on workloads with long values into `points`. */
export function measureMemory(guest: BenchGuest, points: MemoryPoint[]): AroundPreload {
	return async (server: Server, workload: Workload, preload: () => Promise<void>) => {
		const kernel = server.name === 'udp_server';
		if (!workload.values || !(kernel || server.name === 'memcached')) return preload();
		const read = async () =>
			kernel
				? kibFields(await guest.run(['cat', '/proc/meminfo']), 'Slab', 'VmallocUsed')
				: kibFields(await guest.run(['cat', `/proc/${server.pid?.()}/status`]), 'VmRSS');
		const before = await read();
		await preload();
		const grown = (await read()) - before;
		const [protocol, port] = kernel ? (['text', server.ports.text!] as const) : (['memcached', server.ports.memcached!] as const);
		const { entries, bytes } = parseStats(await guest.stats(server.address, port, protocol));
		points.push({
			workload: workload.name,
			server: server.name,
			threads: server.threads,
			entries,
			statsBytes: bytes,
			grownBytes: grown,
			grownHow: kernel ? 'Slab + VmallocUsed' : 'RSS',
		});
		log.info(
			`memory: ${server.name} ${entries} entries, ${(bytes / entries).toFixed(0)} B/entry by its stats, ${(grown / entries).toFixed(0)} B/entry grown`,
		);
	};
}
