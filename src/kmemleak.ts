/**
 * kmemleak's reports (/sys/kernel/debug/kmemleak on the lab's debug kernel)
 * and which of them are ours. A report reads:
 *
 *   unreferenced object 0xffff888003a1c000 (size 64):
 *     comm "insmod", pid 123, jiffies 4294937000 (age 12.345s)
 *     hex dump (first 32 bytes):
 *       6b 65 79 ...
 *     backtrace:
 *       [<00000000c3b1f0a2>] __kmalloc+0x4b/0x90
 *       [<0000000012ab34cd>] kv_insert+0x1f/0x2a0 [udp_server]
 *
 * A frame in a module that is still loaded names it in brackets; once the
 * module is unloaded (the check runs after rmmod, to see what module_exit
 * left behind) the frame is a bare address in the modules area. The debug
 * kernel has every other driver built in, so a bare module address there is
 * one of our modules.
 */

export interface KmemleakReport {
	object: string;
	size: number;
	comm: string;
	/** The backtrace's symbols, one per frame ("kv_insert+0x1f/0x2a0 [udp_server]", "0xffffffffc0201234"). */
	frames: string[];
	/** The whole report, as kmemleak printed it. */
	text: string;
}

export function parseKmemleak(text: string): KmemleakReport[] {
	const reports: KmemleakReport[] = [];
	let current: KmemleakReport | undefined;
	for (const line of text.split('\n')) {
		const start = /^unreferenced object (0x[0-9a-f]+) \(size (\d+)\):/.exec(line);
		if (start) {
			current = { object: start[1]!, size: Number(start[2]), comm: '', frames: [], text: line };
			reports.push(current);
			continue;
		}
		if (!current || line.trim() === '') {
			continue;
		}
		current.text += `\n${line}`;
		const comm = /^\s+comm "([^"]*)"/.exec(line);
		if (comm) {
			current.comm = comm[1]!;
			continue;
		}
		const frame = /^\s+\[<[0-9a-f]+>\] (.+)$/.exec(line);
		if (frame) {
			current.frames.push(frame[1]!.trim());
		}
	}
	return reports;
}

/** x86-64's module area (MODULES_VADDR to MODULES_END, Documentation/x86/x86_64/mm.rst). */
const MODULES_START = 0xffffffffa0000000n;
const MODULES_END = 0xfffffffffeffffffn;

/** Whether a frame is in one of `modules` (loaded) or is a bare address in the modules area (unloaded). */
function isOurFrame(frame: string, modules: readonly string[]): boolean {
	if (modules.some(name => frame.includes(`[${name}]`))) {
		return true;
	}
	const bare = /^0x([0-9a-f]{1,16})$/.exec(frame)?.[1];
	if (bare) {
		const address = BigInt(`0x${bare}`);
		return address >= MODULES_START && address <= MODULES_END;
	}
	return false;
}

/** Reports whose backtrace passes through our modules, and the rest (the kernel's own). */
export function splitKmemleak(reports: KmemleakReport[], modules: readonly string[]): { ours: KmemleakReport[]; others: KmemleakReport[] } {
	const ours = reports.filter(report => report.frames.some(frame => isOurFrame(frame, modules)));
	return { ours, others: reports.filter(report => !ours.includes(report)) };
}
