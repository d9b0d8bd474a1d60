/**
 * `./run MODULE [name=value ...]`: build, load, stream the module's kernel
 * log, then wait: Enter unloads, Ctrl-C leaves it loaded.
 */
import { createInterface } from 'node:readline';
import { formatKmsg, isProblem } from '../kmsg.js';
import { build, currentParams, lastLogSequence, load, moduleLines, unload, type Loaded, type LoadRequest } from '../lifecycle.js';
import { log } from '../log.js';
import { checkModuleName } from '../modules.js';
import { ROLES } from '../roles.js';
import { chooseTarget, type Target, type TargetChoice } from '../targets.js';

export interface LoadOptions extends TargetChoice {
	detach?: boolean;
	hostPort?: number;
	daemon?: boolean;
	backup?: string;
}

export function describeLoaded(target: Target, loaded: Loaded): string {
	const params = loaded.params.map(param => `${param.name}=${param.value}`).join(' ');
	let text = `${loaded.module.name} is loaded in ${target.where}${params ? ` with ${params}` : ''}`;
	if (loaded.udp && target.isGuest) {
		text += `; 127.0.0.1:${loaded.udp.hostPort} on this machine reaches its UDP port ${loaded.udp.guestPort}`;
	}
	if (loaded.daemonPid) {
		text += `\nthe backup daemon kvd (pid ${loaded.daemonPid}) keeps its table in ${loaded.backup}`;
	}
	return text;
}

export async function loadCommand(moduleName: string, params: string[], options: LoadOptions): Promise<void> {
	const name = checkModuleName(moduleName);
	const target = await chooseTarget(options);
	log.info(`target: ${target.reason}`);
	const module = await build(target, name);
	const request: LoadRequest = { name, params, daemon: options.daemon !== false };
	if (options.hostPort !== undefined) request.hostPort = options.hostPort;
	if (options.backup !== undefined) request.backup = options.backup;

	// Stream the module's log lines from before insmod, so its first words show.
	const following = new AbortController();
	let ready = false;
	const early: string[] = [];
	const show = (line: string) => (ready ? process.stdout.write(`${line}\n`) : early.push(line));
	await target.prepare();
	const since = await lastLogSequence(target);
	const follower = options.detach
		? Promise.resolve()
		: target
				.followKernelLog(
					record => {
						if (moduleLines([record], name).length > 0 || isProblem(record.text)) {
							show(formatKmsg(record));
						}
					},
					following.signal,
					since,
				)
				.catch(error => log.warn(`stopped following the kernel log: ${(error as Error).message}`));

	let loaded: Loaded;
	try {
		loaded = await load(target, module, request);
	} catch (error) {
		following.abort();
		await follower;
		throw error;
	}
	process.stdout.write(`${describeLoaded(target, loaded)}\n`);
	if (options.detach) {
		return;
	}
	ready = true;
	for (const line of early.splice(0)) {
		process.stdout.write(`${line}\n`);
	}

	const choice = await waitForEnterOrInterrupt();
	following.abort();
	await follower;
	if (choice === 'interrupt') {
		process.stdout.write(`\nleft ${name} loaded; ./run unload ${name} removes it\n`);
		return;
	}
	const elapsed = await unload(target, name);
	if (loaded.udp) {
		await target.unexposeUdp(loaded.udp.hostPort);
	}
	process.stdout.write(`unloaded ${name}${elapsed === undefined ? ' (it was already gone)' : ` in ${elapsed.toFixed(0)} ms`}\n`);
}

/** Resolves 'enter' on a line (or end of input, like run.sh's `read`), 'interrupt' on Ctrl-C. */
function waitForEnterOrInterrupt(): Promise<'enter' | 'interrupt'> {
	return new Promise(resolve => {
		const lines = createInterface({ input: process.stdin });
		const finish = (choice: 'enter' | 'interrupt') => {
			process.removeListener('SIGINT', onInterrupt);
			lines.removeAllListeners('close');
			lines.close();
			resolve(choice);
		};
		const onInterrupt = () => finish('interrupt');
		process.once('SIGINT', onInterrupt);
		// readline turns Ctrl-C on a terminal into its own SIGINT event.
		lines.once('SIGINT', onInterrupt);
		lines.once('line', () => finish('enter'));
		lines.once('close', () => finish('enter'));
		// Only now, with the handlers in place: a Ctrl-C that follows the
		// prompt must never meet Node's default action (death by SIGINT).
		process.stdout.write('Press Enter to remove the module or Ctrl+C to exit...\n');
	});
}

export async function unloadCommand(moduleName: string, options: TargetChoice): Promise<void> {
	const name = checkModuleName(moduleName);
	const target = await chooseTarget(options);
	if (!(await target.isUp())) {
		process.stdout.write(`${name} is not loaded (the lab is not running)\n`);
		return;
	}
	const port = ROLES[name].udpPort;
	const params = port ? await currentParams(target, name) : {};
	const elapsed = await unload(target, name);
	if (elapsed === undefined) {
		process.stdout.write(`${name} is not loaded\n`);
		return;
	}
	if (port) {
		// The forwards to its port go with it (the lab's; this kernel has none).
		const served = Number(params[port.param] ?? port.fallback);
		for (const [hostPort, targetPort] of Object.entries(await target.exposedUdp())) {
			if (targetPort === served) await target.unexposeUdp(Number(hostPort));
		}
	}
	process.stdout.write(`unloaded ${name} in ${elapsed.toFixed(0)} ms\n`);
}
