/**
 * Loading and unloading our modules in a target: the make → insmod → rmmod
 * of the original run.sh, with every step checked.
 */
import path from 'node:path';
import { UserError } from './errors.js';
import type { KmsgRecord } from './kmsg.js';
import { log } from './log.js';
import { buildModule, moduleParams, PROJECT_ROOT, type ModuleName } from './modules.js';
import { findProgram, MissingProgramError } from './programs.js';
import { effectiveValue, validateParams, type ParamAssignment, type ParamSpec } from './params.js';
import type { ExecResult } from './lab/agent-client.js';
import type { LabTarget, Target } from './targets.js';

/** How long rmmod may take before we call the module stuck. */
export const UNLOAD_TIMEOUT_MS = 10_000;

export interface BuiltModule {
	name: ModuleName;
	ko: string;
	specs: ParamSpec[];
}

export interface LoadRequest {
	name: ModuleName;
	/** `name=value` words as the user typed them. */
	params: string[];
	/** Lab only: the host port that reaches the server's UDP port (default: the same number). */
	hostPort?: number;
	/** Server only: start the backup daemon kvd beside it (default true). */
	daemon?: boolean;
	/** Server only: kvd's backup file in the target. */
	backup?: string;
}

export interface Loaded {
	module: BuiltModule;
	params: ParamAssignment[];
	/** For the server: where on this machine it can be reached. */
	udp?: { hostPort: number; guestPort: number };
	/** For the server: the backup daemon's PID in the target, and its file. */
	daemonPid?: number;
	backup?: string;
}

export async function build(target: Target, name: ModuleName): Promise<BuiltModule> {
	const ko = await buildModule(name, await target.headersDir());
	return { name, ko, specs: await moduleParams(ko) };
}

export async function isLoaded(target: Target, name: ModuleName): Promise<boolean> {
	const result = await target.exec(['test', '-d', `/sys/module/${name}`], { timeoutMs: 10_000 });
	return result.exitCode === 0;
}

/** The module's current parameter values, from /sys/module/NAME/parameters. */
export async function currentParams(target: Target, name: ModuleName): Promise<Record<string, string>> {
	const result = await target.exec(['sh', '-c', `cd /sys/module/${name}/parameters 2>/dev/null && grep -H . * 2>/dev/null`], {
		timeoutMs: 10_000,
	});
	const values: Record<string, string> = {};
	for (const line of result.stdout.split('\n')) {
		const colon = line.indexOf(':');
		if (colon > 0) {
			values[line.slice(0, colon)] = line.slice(colon + 1);
		}
	}
	return values;
}

/**
 * A command that neither exited nor was killed did not start: on this
 * machine's kernel that is a program missing from PATH. (The lab's agent
 * reports it itself.)
 */
function checkStarted(target: Target, result: ExecResult, program: string): void {
	if (target.kind === 'local' && result.exitCode === null && result.signal === null && !result.timedOut && !findProgram(program)) {
		throw new MissingProgramError(program);
	}
}

/** The sequence number of the newest kernel log record (-1 for none): "since now". */
export async function lastLogSequence(target: Target): Promise<number> {
	return (await target.kernelLog()).at(-1)?.sequence ?? -1;
}

/** The module's own kernel log lines among `records`. */
export function moduleLines(records: KmsgRecord[], name: ModuleName): KmsgRecord[] {
	return records.filter(record => record.text.startsWith(`${name}: `));
}

export const DEFAULT_BACKUP = '/var/tmp/hashtable_backup.txt';
const KVD_PID_FILE = '/run/kvd.pid';
const KVD_LOG = '/var/log/kvd.log';
const KVD_SCRIPT = path.join(PROJECT_ROOT, 'dist/daemon/kvd.js');
/** Shell: the loaded copy of udp_server, as kvd names it (boot id + sysfs inode). */
const KVD_INSTANCE = 'echo "$(cat /proc/sys/kernel/random/boot_id):$(stat -c %i /sys/module/udp_server 2>/dev/null)"';

/** What kvd says of itself in /run/kvd.status (see daemon/kvd.ts). */
export interface DaemonStatus {
	pid: number;
	state: string;
	backup: string;
	restored: number;
	rejected: number;
	rejectsFile?: string;
	problems: string[];
	error?: string;
}

/** The backup daemon's PID in the target, if it is running. */
export async function daemonPid(target: Target): Promise<number | undefined> {
	const result = await target.exec(['sh', '-c', `p=$(cat ${KVD_PID_FILE} 2>/dev/null) && kill -0 "$p" && echo "$p"`], {
		timeoutMs: 10_000,
	});
	const pid = Number(result.stdout.trim());
	return result.exitCode === 0 && pid > 0 ? pid : undefined;
}

/** kvd's status file, if it has one (it stays after kvd stops, saying so). */
export async function daemonStatus(target: Target): Promise<DaemonStatus | undefined> {
	const result = await target.exec(['cat', '/run/kvd.status'], { timeoutMs: 10_000 });
	return result.exitCode === 0 && result.stdout.trim() ? (JSON.parse(result.stdout) as DaemonStatus) : undefined;
}

/**
 * Makes sure kvd runs in the target (it starts once per boot and follows
 * every udp_server loaded after it), then waits until it has registered with
 * the loaded server, restored the backup into it and saved it: kvd names that
 * copy of the module in /run/kvd.ready. Its log is /var/log/kvd.log.
 */
export async function startDaemon(target: Target, backup = DEFAULT_BACKUP): Promise<number> {
	// One trip to the target when kvd runs already (the usual case): each costs ~0.2 s in the lab.
	const script = [
		'kvd=$(cat /run/kvd.pid 2>/dev/null)',
		'if [ -n "$kvd" ] && kill -0 "$kvd" 2>/dev/null; then',
		// A kvd that keeps another backup file: the caller restarts it ($4 is the file as JSON).
		'  grep -qF "\\"backup\\":$4," /run/kvd.status || exit 3',
		'else',
		// A kvd killed outright leaves its files: they are not the new one's word.
		'  rm -f /run/kvd.pid /run/kvd.ready',
		// Paths as arguments, never in the script's text: the project path may have spaces.
		`  setsid "$2" "$3" --backup "$1" >>${KVD_LOG} 2>&1 </dev/null &`,
		'  kvd=$!',
		'fi',
		`want=$(${KVD_INSTANCE})`,
		'for i in $(seq 1200); do',
		'  [ "$(cat /run/kvd.ready 2>/dev/null)" = "$want" ] && { echo "$kvd"; cat /run/kvd.status; exit 0; }',
		`  kill -0 $kvd 2>/dev/null || { tail -n 5 ${KVD_LOG} >&2; exit 1; }`,
		'  sleep 0.05',
		'done',
		'exit 2',
	].join('\n');
	const run = () =>
		// Node's first start in an emulated guest can take a while on a busy machine.
		target.exec(['sh', '-c', script, 'kvd-start', backup, process.execPath, KVD_SCRIPT, JSON.stringify(backup)], {
			timeoutMs: 150_000,
		});
	let result = await run();
	if (result.exitCode === 3) {
		log.info(`the running kvd keeps another backup file: restarting it for ${backup}`);
		await stopDaemon(target);
		result = await run();
	}
	if (result.exitCode !== 0) {
		const reason = result.stderr
			.split('\n')
			.map(line => line.trim())
			.filter(line => line.startsWith('kvd: '))
			.at(-1);
		const why = result.exitCode === 2 ? ': it was not ready within 60 s' : reason ? `: ${reason.slice(5)}` : '';
		throw new UserError(`the backup daemon kvd did not start${why}`, {
			hint: `its log in the target: ${KVD_LOG} (./run shell -- tail ${KVD_LOG})`,
		});
	}
	const [pidLine = '', statusLine = ''] = result.stdout.split('\n');
	const pid = Number(pidLine);
	const status = statusLine ? (JSON.parse(statusLine) as DaemonStatus) : undefined;
	if (status?.rejected) {
		log.warn(`kvd could not restore ${status.rejected} entries; they are kept in ${status.rejectsFile} in the target`);
	}
	return pid;
}

/**
 * Before rmmod: kvd (SIGUSR2) confirms every change it has read, leaves the
 * module, and says so in /run/kvd.detached; it stays up for the next load.
 * Returns whether kvd was there to leave.
 */
export async function detachDaemon(target: Target): Promise<boolean> {
	const script = [
		'pid=$(cat /run/kvd.pid 2>/dev/null) && kill -0 "$pid" 2>/dev/null || exit 3',
		`want=$(${KVD_INSTANCE})`,
		'rm -f /run/kvd.detached',
		'kill -USR2 "$pid" || exit 3',
		'for i in $(seq 300); do',
		'  [ "$(cat /run/kvd.detached 2>/dev/null)" = "$want" ] && exit 0',
		'  kill -0 "$pid" 2>/dev/null || exit 0',
		'  sleep 0.05',
		'done',
		'echo "$pid"',
		'exit 1',
	].join('\n');
	const result = await target.exec(['sh', '-c', script], { timeoutMs: 30_000 });
	if (result.exitCode === 3) {
		return false;
	}
	if (result.exitCode !== 0) {
		throw new UserError(`the backup daemon (pid ${result.stdout.trim()}) did not confirm its last changes within 15 s`, {
			hint: `the module is left loaded so no write is lost; see ${KVD_LOG} in the target`,
		});
	}
	return true;
}

/** Stops kvd: it confirms every change it has read first (SIGTERM). */
export async function stopDaemon(target: Target): Promise<boolean> {
	const pid = await daemonPid(target);
	if (!pid) {
		return false;
	}
	const result = await target.exec(
		['sh', '-c', `kill -TERM ${pid}; for i in $(seq 300); do kill -0 ${pid} 2>/dev/null || exit 0; sleep 0.05; done; exit 1`],
		{ timeoutMs: 30_000 },
	);
	if (result.exitCode !== 0) {
		throw new UserError(`the backup daemon (pid ${pid}) did not stop within 15 s`, {
			hint: `the module is left loaded so no write is lost; see ${KVD_LOG} in the target`,
		});
	}
	return true;
}

/**
 * Stops the lab the way `./run down` does: kvd saves once more first, so no
 * acknowledged write is lost, then the guest powers off.
 */
export async function stopLab(target: LabTarget): Promise<boolean> {
	if (await target.lab.state()) {
		await stopDaemon(target).catch(error => log.warn(`could not stop kvd: ${(error as Error).message}`));
	}
	return target.lab.down();
}

/**
 * Unloads a module; returns how long rmmod took, or undefined if it was not
 * loaded. The server's backup daemon leaves it first, with every change on
 * disk, and stays up for the next load.
 */
export async function unload(target: Target, name: ModuleName): Promise<number | undefined> {
	if (!(await isLoaded(target, name))) {
		return undefined;
	}
	if (name === 'udp_server' && (await detachDaemon(target))) {
		log.info('the backup daemon kvd has every change on disk and left the module');
	}
	const started = performance.now();
	const result = await target.exec(['rmmod', name], { timeoutMs: UNLOAD_TIMEOUT_MS });
	const elapsed = performance.now() - started;
	checkStarted(target, result, 'rmmod');
	if (result.timedOut) {
		throw new UserError(`rmmod ${name} did not finish within ${UNLOAD_TIMEOUT_MS / 1000} s: the module is stuck`, {
			hint:
				target.kind === 'lab'
					? 'the lab guest has to be restarted: ./run down (the next ./run boots a fresh one)'
					: 'a reboot may be needed; check the kernel log (./run logs)',
		});
	}
	if (result.exitCode !== 0) {
		throw new UserError(`rmmod ${name} failed: ${result.stderr.trim() || `exit code ${result.exitCode}`}`);
	}
	return elapsed;
}

/**
 * Validates the parameters against the built module, unloads an old copy,
 * and loads the module. On failure the module's own kernel log lines (its
 * reason, e.g. "cannot bind") are part of the error.
 */
export async function load(target: Target, module: BuiltModule, request: LoadRequest): Promise<Loaded> {
	const params = validateParams(module.name, module.specs, request.params);
	const loaded: Loaded = { module, params };

	if (target.kind === 'lab' && module.name === 'udp_server' && !params.some(param => param.name === 'bind')) {
		// Port forwards arrive on the guest's eth0, not its loopback; the guest
		// itself cannot route off this machine, so listening on all of its
		// addresses exposes nothing beyond this machine's 127.0.0.1.
		params.push({ name: 'bind', value: '0.0.0.0' });
	}

	await target.prepare();
	const unloadTime = await unload(target, module.name);
	if (unloadTime !== undefined) {
		log.info(`unloaded the ${module.name} that was already loaded (${unloadTime.toFixed(0)} ms)`);
	}

	// --no-daemon: a running kvd would register with the new module on its own.
	if (module.name === 'udp_server' && request.daemon === false && (await stopDaemon(target))) {
		log.info('stopped the backup daemon kvd (--no-daemon), after it confirmed every change');
	}

	if (module.name === 'udp_server') {
		const guestPort = Number(effectiveValue(module.specs, params, 'port') ?? 3000);
		const hostPort = request.hostPort ?? guestPort;
		await target.exposeUdp(hostPort, guestPort);
		loaded.udp = { hostPort, guestPort };
	}

	const staged = await target.stage(module.ko);
	const before = await lastLogSequence(target);
	const result = await target.exec(['insmod', staged, ...params.map(param => `${param.name}=${param.value}`)], {
		timeoutMs: 30_000,
	});
	checkStarted(target, result, 'insmod');
	if (result.exitCode !== 0 || result.timedOut) {
		if (loaded.udp) {
			await target.unexposeUdp(loaded.udp.hostPort);
		}
		// Give the kernel log mirror a moment to deliver the module's reason.
		await new Promise(resolve => setTimeout(resolve, 300));
		const reasons = moduleLines(await target.kernelLog(), module.name)
			.filter(record => record.sequence > before)
			.map(record => `  kernel: ${record.text}`);
		throw new UserError(
			`insmod ${module.name} failed: ${result.stderr.trim() || (result.timedOut ? 'timed out' : `exit code ${result.exitCode}`)}`,
			{ hint: reasons.length > 0 ? reasons.join('\n') : 'see ./run logs' },
		);
	}
	if (module.name === 'udp_server' && request.daemon !== false) {
		loaded.backup = request.backup ?? DEFAULT_BACKUP;
		loaded.daemonPid = await startDaemon(target, loaded.backup);
	}
	return loaded;
}
