/**
 * Kernel log records as /dev/kmsg gives them ("pri,seq,usec,flags;text"),
 * reading and following /dev/kmsg itself, and the lines that mean the
 * kernel is unhappy.
 */
import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
import { StringDecoder } from 'node:string_decoder';
import { setTimeout as sleep } from 'node:timers/promises';
import { log } from './log.js';
export function parseKmsg(line) {
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
export function formatKmsg(record) {
    const seconds = (record.usec / 1e6).toFixed(6).padStart(12);
    return `[${seconds}] ${record.text}`;
}
/**
 * Kernel log lines that fail every integration test: oopses, warnings,
 * lockdep reports, hung tasks, soft lockups, KASAN/UBSAN and friends.
 * kmemleak is not among them: its "new suspected memory leaks" line counts
 * the kernel's own leaks too, so the debug kernel's leak check reads its
 * reports instead (test/helpers/lab.ts).
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
    // The debug kernel's checkers (lab/debug-kernel.ts). Most say "BUG:" or "WARNING:" too; these name them.
    /\bsuspicious RCU usage\b|\bsuspicious rcu_dereference\w*\(\) usage/,
    /\bsleeping function called from invalid context\b/,
    /\bODEBUG:/,
    /\bkernel BUG at\b/,
    /\bunregister_netdevice: waiting\b/,
];
export function isProblem(text) {
    return PROBLEMS.some(pattern => pattern.test(text));
}
export const KMSG_DEVICE = '/dev/kmsg';
/**
 * One read of /dev/kmsg returns exactly one record, and fails with EINVAL if
 * the buffer is smaller than the record: the kernel formats a record into at
 * most CONSOLE_EXT_LOG_MAX (8 KiB) bytes.
 */
const READ_SIZE = 8192;
function openNonBlocking(path) {
    return open(path, constants.O_RDONLY | constants.O_NONBLOCK);
}
/**
 * Reads a non-blocking kernel log: each call returns the records that are
 * there now, in order. On /dev/kmsg a read returns EAGAIN at the end and
 * EPIPE when the records this reader was about to get were overwritten
 * before it got them; the kernel has then moved it on to the oldest record
 * it still has, so reading goes on from there. Anything else is an error.
 */
class KmsgReader {
    file;
    /** Records lost to overwriting (EPIPE) so far. */
    overwritten = 0;
    buffer = Buffer.alloc(READ_SIZE);
    decoder = new StringDecoder('utf8');
    partial = '';
    constructor(file) {
        this.file = file;
    }
    async available() {
        const records = [];
        for (;;) {
            let bytesRead;
            try {
                ({ bytesRead } = await this.file.read(this.buffer, 0, READ_SIZE, null));
            }
            catch (error) {
                const code = error.code;
                if (code === 'EAGAIN') {
                    break;
                }
                if (code === 'EPIPE') {
                    this.overwritten++;
                    continue;
                }
                throw error;
            }
            // A FIFO or file (tests) ends with 0 bytes where /dev/kmsg says EAGAIN.
            if (bytesRead === 0) {
                break;
            }
            // /dev/kmsg gives whole records, a FIFO gives whatever was written:
            // split on newlines either way. A record's dictionary lines
            // (" KEY=value") are not records and parse to nothing.
            const lines = (this.partial + this.decoder.write(this.buffer.subarray(0, bytesRead))).split('\n');
            this.partial = lines.pop() ?? '';
            for (const line of lines) {
                const record = parseKmsg(line);
                if (record) {
                    records.push(record);
                }
            }
        }
        return records;
    }
}
/** All the kernel log records still in the kernel's buffer, oldest first. */
export async function readKmsg(source = {}) {
    const file = await (source.open ?? openNonBlocking)(source.path ?? KMSG_DEVICE);
    try {
        return await new KmsgReader(file).available();
    }
    finally {
        await file.close();
    }
}
/**
 * Calls onRecord for every new kernel log record until `signal` aborts, and
 * returns within one poll of the abort. The device is read non-blocking and
 * polled: a blocking read would hold a libuv thread until the kernel's next
 * record, and neither closing the file nor destroying a stream ends it.
 */
export async function followKmsg(onRecord, signal, options = {}) {
    const file = await (options.open ?? openNonBlocking)(options.path ?? KMSG_DEVICE);
    try {
        const reader = new KmsgReader(file);
        const since = options.since ?? (await reader.available()).at(-1)?.sequence ?? -1;
        let reported = reader.overwritten;
        while (!signal.aborted) {
            for (const record of await reader.available()) {
                if (record.sequence > since) {
                    onRecord(record);
                }
            }
            if (reader.overwritten > reported) {
                log.warn('some kernel log records were overwritten before they could be read (the kernel logs faster than we follow)');
                reported = reader.overwritten;
            }
            await sleep(options.pollMs ?? 50, undefined, { signal }).catch(() => undefined);
        }
    }
    finally {
        await file.close();
    }
}
//# sourceMappingURL=kmsg.js.map