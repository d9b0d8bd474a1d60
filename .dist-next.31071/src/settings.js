/**
 * Every setting that `./run`, the tests and the bench take from the
 * environment, in one place: this is the only module that reads
 * process.env (test/unit/architecture.test.ts checks it). The rest ask
 * `settings`; a child process that needs a setting gets it in its
 * environment, built by settingsEnv() or childEnv().
 *
 * | variable         | meaning                                                   | default                          |
 * | ---------------- | --------------------------------------------------------- | -------------------------------- |
 * | KUDP_TARGET      | where modules run: local, lab or auto (also --target)     | auto: local if it can, else lab  |
 * | KUDP_LAB         | which lab guest: its state is in .lab/NAME (also --lab)   | default                          |
 * | KUDP_LAB_KERNEL  | the lab's kernel: an installed release, or "debug"        | the distribution's cloud kernel  |
 * | KUDP_LAB_CPUS    | the lab guest's vCPUs when it boots                       | 2                                |
 * | KUDP_LAB_MEMORY  | the lab guest's memory in MB when it boots                | 256                              |
 * | KUDP_LOG_LEVEL   | the log level (a pino level, or silent); -v wins          | info                             |
 * | KUDP_LOG_JSON    | 1: logs as JSON lines (also --log-json)                   | human-readable lines             |
 * | KUDP_CACHE_DIR   | where built debug kernels are kept, for every checkout    | see cacheDir below               |
 * | XDG_CACHE_HOME   | the user's cache directory, under which that cache goes   | ~/.cache                         |
 * | PATH             | where programs are looked for                             | (none)                           |
 * | BENCH_SECONDS    | bench/durable.ts: seconds per measurement                 | 3                                |
 * | BENCH_ROUNDS     | bench/durable.ts: rounds of every row                     | 3                                |
 *
 * Each is read when asked, not once at startup: the tests and the bench set
 * some of them (applySettings) before they make a lab, for this process and
 * for the `./run` processes they start.
 */
import { homedir } from 'node:os';
import path from 'node:path';
/** The environment variable of each setting. */
export const ENV = {
    target: 'KUDP_TARGET',
    lab: 'KUDP_LAB',
    labKernel: 'KUDP_LAB_KERNEL',
    labCpus: 'KUDP_LAB_CPUS',
    labMemory: 'KUDP_LAB_MEMORY',
    logLevel: 'KUDP_LOG_LEVEL',
    logJson: 'KUDP_LOG_JSON',
    cacheDir: 'KUDP_CACHE_DIR',
    xdgCacheHome: 'XDG_CACHE_HOME',
    path: 'PATH',
    benchSeconds: 'BENCH_SECONDS',
    benchRounds: 'BENCH_ROUNDS',
};
function read(name) {
    return process.env[ENV[name]];
}
export const settings = {
    /** KUDP_TARGET as given: `local`, `lab` or `auto` (anything else is refused by chooseTarget). */
    get target() {
        return read('target') ?? 'auto';
    },
    /** KUDP_LAB: the lab's name. */
    get lab() {
        return read('lab') ?? 'default';
    },
    /** KUDP_LAB_KERNEL: a kernel release or "debug"; undefined: the usual kernel (lab/kernel.ts). */
    get labKernel() {
        return read('labKernel');
    },
    /** KUDP_LAB_CPUS: a number; anything else (or 0) is the default, 2. */
    get labCpus() {
        return Number(read('labCpus')) || 2;
    },
    /** KUDP_LAB_MEMORY: megabytes; anything else (or 0) is the default, 256. */
    get labMemory() {
        return Number(read('labMemory')) || 256;
    },
    /** KUDP_LOG_LEVEL: empty or unset is info; an unknown level is warned about by log.ts. */
    get logLevel() {
        return read('logLevel') || 'info';
    },
    /** KUDP_LOG_JSON=1. */
    get logJson() {
        return read('logJson') === '1';
    },
    /**
     * The machine's cache of kernel-udp, outside the checkout: KUDP_CACHE_DIR,
     * else /var/cache/kernel-udp for root, else $XDG_CACHE_HOME/kernel-udp
     * (~/.cache/kernel-udp).
     */
    get cacheDir() {
        return (read('cacheDir') ??
            (process.getuid?.() === 0 ? '/var/cache/kernel-udp' : path.join(read('xdgCacheHome') ?? path.join(homedir(), '.cache'), 'kernel-udp')));
    },
    /** PATH, or empty. */
    get path() {
        return read('path') ?? '';
    },
    /** BENCH_SECONDS (bench/durable.ts). */
    get benchSeconds() {
        return Number(read('benchSeconds') ?? 3);
    },
    /** BENCH_ROUNDS (bench/durable.ts). */
    get benchRounds() {
        return Number(read('benchRounds') ?? 3);
    },
};
/** The environment variables that give a child process these settings. */
export function settingsEnv(values) {
    const env = {};
    for (const [name, value] of Object.entries(values)) {
        if (value !== undefined)
            env[ENV[name]] = String(value);
    }
    return env;
}
/** This process's environment with these settings and `extra` variables on top: for a child that must see both. */
export function childEnv(values, extra = {}) {
    return { ...process.env, ...settingsEnv(values), ...extra };
}
/**
 * Sets settings for this process and for every child it starts (they are
 * environment variables). `keep`: a setting already in the environment
 * stays as it is (the user's word wins).
 */
export function applySettings(values, { keep = false } = {}) {
    for (const [variable, value] of Object.entries(settingsEnv(values))) {
        if (keep && process.env[variable] !== undefined)
            continue;
        process.env[variable] = value;
    }
}
//# sourceMappingURL=settings.js.map