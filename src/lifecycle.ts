/**
 * Loading and unloading our modules in a target: the make → insmod → rmmod
 * of the original run.sh, with every step checked.
 */
import { UserError } from './errors.js';
import type { KmsgRecord } from './kmsg.js';
import { log } from './log.js';
import { buildModule, moduleParams, type ModuleName } from './modules.js';
import { effectiveValue, validateParams, type ParamAssignment, type ParamSpec } from './params.js';
import { ROLES } from './roles.js';
import type { Target } from './targets.js';

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
	/** Server only (its role, roles.ts): start the backup daemon kvd beside it (default true). */
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
	// An argument list, no shell: find exits non-zero (nothing printed) when the module is not loaded.
	const dir = `/sys/module/${name}/parameters`;
	const result = await target.exec(['find', dir, '-type', 'f', '-exec', 'grep', '-H', '.', '{}', '+'], { timeoutMs: 10_000 });
	const values: Record<string, string> = {};
	for (const line of result.stdout.split('\n')) {
		const colon = line.indexOf(':');
		if (colon > dir.length + 1 && line.startsWith(`${dir}/`)) {
			values[line.slice(dir.length + 1, colon)] = line.slice(colon + 1);
		}
	}
	return values;
}

/** The sequence number of the newest kernel log record (-1 for none): "since now". */
export async function lastLogSequence(target: Target): Promise<number> {
	return (await target.kernelLog()).at(-1)?.sequence ?? -1;
}

/** The module's own kernel log lines among `records`. */
export function moduleLines(records: KmsgRecord[], name: ModuleName): KmsgRecord[] {
	return records.filter(record => record.text.startsWith(`${name}: `));
}

/**
 * Stops the target the way `./run down` does: each module's role gets its
 * word first (kvd confirms every change, so no acknowledged write is lost),
 * then the lab guest powers off. Returns whether it was running.
 */
export async function stopTarget(target: Target): Promise<boolean> {
	if (await target.isUp()) {
		for (const role of Object.values(ROLES)) {
			await role.beforeStop?.(target);
		}
	}
	return target.stop();
}

/**
 * Unloads a module; returns how long rmmod took, or undefined if it was not
 * loaded. The server's unload waits for its backup daemon to save the last
 * changes (up to 5 s); the daemon stays up for the next load.
 */
export async function unload(target: Target, name: ModuleName): Promise<number | undefined> {
	if (!(await isLoaded(target, name))) {
		return undefined;
	}
	const started = performance.now();
	const result = await target.exec(['rmmod', name], { timeoutMs: UNLOAD_TIMEOUT_MS });
	const elapsed = performance.now() - started;
	target.checkStarted(result, 'rmmod');
	if (result.timedOut) {
		throw new UserError(`rmmod ${name} did not finish within ${UNLOAD_TIMEOUT_MS / 1000} s: the module is stuck`, {
			hint: target.stuckModuleHint,
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
	const role = ROLES[module.name];
	const params = validateParams(module.name, module.specs, request.params);
	const loaded: Loaded = { module, params };
	const context = { target, daemon: request.daemon, backup: request.backup };

	if (target.isGuest) {
		for (const [name, value] of Object.entries(role.labParams ?? {})) {
			if (!params.some(param => param.name === name)) params.push({ name, value });
		}
	}

	await target.prepare();
	const unloadTime = await unload(target, module.name);
	if (unloadTime !== undefined) {
		log.info(`unloaded the ${module.name} that was already loaded (${unloadTime.toFixed(0)} ms)`);
	}
	await role.beforeLoad?.(context);

	if (role.udpPort) {
		const guestPort = Number(effectiveValue(module.specs, params, role.udpPort.param) ?? role.udpPort.fallback);
		const hostPort = request.hostPort ?? guestPort;
		await target.exposeUdp(hostPort, guestPort);
		loaded.udp = { hostPort, guestPort };
	}

	const staged = await target.stage(module.ko);
	const before = await lastLogSequence(target);
	const result = await target.exec(['insmod', staged, ...params.map(param => `${param.name}=${param.value}`)], {
		timeoutMs: 30_000,
	});
	target.checkStarted(result, 'insmod');
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
	Object.assign(loaded, await role.afterLoad?.(context));
	return loaded;
}
