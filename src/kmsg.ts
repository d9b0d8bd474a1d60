/**
 * Kernel log records as /dev/kmsg gives them ("pri,seq,usec,flags;text"),
 * and the lines that mean the kernel is unhappy.
 */

export interface KmsgRecord {
	priority: number;
	sequence: number;
	/** Microseconds since boot. */
	usec: number;
	text: string;
}

export function parseKmsg(line: string): KmsgRecord | undefined {
	// A console may turn "\n" into "\r\n" on the way.
	const match = /^(\d+),(\d+),(\d+),[^;]*;(.*?)\r?$/.exec(line);
	if (!match) {
		return undefined;
	}
	return {
		priority: Number(match[1]) & 7,
		sequence: Number(match[2]),
		usec: Number(match[3]),
		text: match[4] ?? '',
	};
}

/** Like dmesg: "[   12.345678] text". */
export function formatKmsg(record: KmsgRecord): string {
	const seconds = (record.usec / 1e6).toFixed(6).padStart(12);
	return `[${seconds}] ${record.text}`;
}

/**
 * Kernel log lines that fail every integration test: oopses, warnings,
 * lockdep reports, hung tasks, soft lockups, KASAN/UBSAN and friends.
 */
const PROBLEMS = [
	/\bBUG:/,
	/\bWARNING:/,
	/\bOops\b/,
	/\bCall Trace:/,
	/possible (recursive|circular) locking dependency/,
	/\blockdep\b/i,
	/inconsistent lock state/,
	/blocked for more than \d+ seconds/,
	/\bsoft lockup\b/,
	/\brcu_sched self-detected stall\b|\brcu: INFO: rcu_\w+ (self-)?detected stall/,
	/\bgeneral protection fault\b/,
	/\bKernel panic\b/,
	/\bUBSAN:/,
	/\bKASAN:/,
	/\bkernel BUG at\b/,
	/\bunregister_netdevice: waiting\b/,
];

export function isProblem(text: string): boolean {
	return PROBLEMS.some(pattern => pattern.test(text));
}
