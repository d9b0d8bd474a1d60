/**
 * `./run logs`, `./run status`, `./run shell`, `./run down`: looking into
 * and managing the target.
 */
import { formatKmsg } from '../kmsg.js';
import { DEBUG_KERNEL, DebugKernelNotBuiltError, type DebugKernelStatus } from '../lab/debug-kernel.js';
import { type DaemonStatus, daemonPid, daemonStatus } from '../kvd-control.js';
import { currentParams, isLoaded, stopTarget } from '../lifecycle.js';
import { MODULES, type ModuleName } from '../modules.js';
import { chooseTarget, type GuestReport, type Target, type TargetChoice } from '../targets.js';

export interface LogsOptions extends TargetChoice {
	follow?: boolean;
	module?: string;
	raw?: boolean;
}

export async function logsCommand(options: LogsOptions): Promise<void> {
	await showLogs(await chooseTarget(options), options);
}

/**
 * Prints the kernel log, then (`follow`) what comes after: from the last
 * record printed, by sequence number, so that nothing logged between the
 * dump and the start of the follow is lost.
 */
export async function showLogs(
	target: Pick<Target, 'isUp' | 'kernelLog' | 'prepare' | 'followKernelLog'>,
	options: LogsOptions,
): Promise<void> {
	const wanted = (text: string) => !options.module || text.startsWith(`${options.module}: `);
	const print = (record: { text: string; usec: number; priority: number; sequence: number }) => {
		if (wanted(record.text)) {
			process.stdout.write(`${options.raw ? record.text : formatKmsg(record)}\n`);
		}
	};
	const up = await target.isUp();
	if (!up && !options.follow) {
		process.stderr.write('the lab is not running; this is the log of its last boot\n');
	}
	let last = -1;
	for (const record of await target.kernelLog()) {
		print(record);
		last = Math.max(last, record.sequence);
	}
	if (options.follow) {
		await target.prepare();
		const stop = new AbortController();
		process.once('SIGINT', () => stop.abort());
		// A lab that was down boots with a new log, numbered from 0 again: follow it from its start.
		await target.followKernelLog(print, stop.signal, up ? last : -1);
	}
}

export interface StatusReport {
	target: string;
	reason: string;
	kernel: string;
	lab?: GuestReport;
	/** The lab's debug kernel (KUDP_LAB_KERNEL=debug): whether it is built and cached, and whether the lab runs it. */
	debugKernel?: DebugKernelStatus & { inUse: boolean };
	modules: Record<string, { loaded: boolean; params?: Record<string, string> }>;
	daemon?: { pid: number; status?: DaemonStatus };
}

export async function statusCommand(options: TargetChoice & { json?: boolean }): Promise<void> {
	const target = await chooseTarget(options);
	const report: StatusReport = {
		target: target.kind,
		reason: target.reason,
		kernel: await target.kernelRelease().catch(error => {
			if (error instanceof DebugKernelNotBuiltError) {
				return `${DEBUG_KERNEL} (not built yet)`;
			}
			throw error;
		}),
		modules: {},
	};
	const debug = await target.debugKernel();
	if (debug) {
		report.debugKernel = { ...debug, inUse: report.kernel === debug.build?.release || report.kernel.startsWith(`${DEBUG_KERNEL} `) };
	}
	const guest = await target.guest();
	if (guest) {
		report.lab = guest;
	}
	const reachable = await target.isUp();
	for (const name of Object.keys(MODULES) as ModuleName[]) {
		const loaded = reachable && (await isLoaded(target, name));
		report.modules[name] = loaded ? { loaded, params: await currentParams(target, name) } : { loaded };
	}
	const kvd = reachable ? await daemonPid(target) : undefined;
	if (kvd) {
		const status = await daemonStatus(target);
		report.daemon = status ? { pid: kvd, status } : { pid: kvd };
	}
	if (options.json) {
		process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
		return;
	}
	const debugKernel = report.debugKernel;
	const lines = [
		`target:  ${report.target} — ${report.reason}`,
		`kernel:  ${report.kernel}${debugKernel?.inUse && debugKernel.built ? ` (${DEBUG_KERNEL}: KASAN, lockdep, kmemleak, UBSAN)` : ''}`,
	];
	if (debugKernel) {
		const build = debugKernel.build;
		lines.push(
			build
				? `debug kernel: built (${build.release}, in ${(build.buildSeconds / 60).toFixed(1)} min on ${build.builtAt.slice(0, 10)}), cached in ${debugKernel.dir}`
				: `debug kernel: not built${debugKernel.problem ? `: ${debugKernel.problem}` : ` (KUDP_LAB_KERNEL=${DEBUG_KERNEL} builds it once, into ${debugKernel.dir})`}`,
		);
	}
	if (report.lab) {
		lines.push(
			report.lab.running
				? `lab:     "${report.lab.name}" running (QEMU pid ${report.lab.pid}, up since ${report.lab.bootedAt}, booted in ${report.lab.bootSeconds?.toFixed(1)} s)`
				: `lab:     "${report.lab.name}" not running (it boots when a module is loaded)`,
		);
		if (report.lab.clocksource) {
			const coarse = report.lab.clocksource === 'tsc' ? '' : ' (coarse: times measured in the guest move in steps)';
			lines.push(`         clock: ${report.lab.clocksource}${coarse}`);
		}
		for (const [hostPort, guestPort] of Object.entries(report.lab.udpForwards ?? {})) {
			lines.push(`         UDP 127.0.0.1:${hostPort} → guest port ${guestPort}`);
		}
		if (report.lab.network) {
			const { address, prefixLength, mac } = report.lab.network;
			lines.push(`         labs' network: ${address}/${prefixLength} on eth1 (MAC ${mac}), reaches the other lab guests only`);
		}
		lines.push(`         kernel log mirrored to ${report.lab.kernelLog}`);
	}
	for (const [name, module] of Object.entries(report.modules)) {
		const params = Object.entries(module.params ?? {})
			.map(([key, value]) => `${key}=${value}`)
			.join(' ');
		lines.push(`${name.padEnd(11)}${module.loaded ? `loaded  ${params}` : 'not loaded'}`);
	}
	lines.push(`kvd        ${report.daemon ? `running (pid ${report.daemon.pid}, log /var/log/kvd.log in the target)` : 'not running'}`);
	const kvdStatus = report.daemon?.status;
	if (kvdStatus) {
		lines.push(`           ${kvdStatus.state}, backup ${kvdStatus.backup}; last restore: ${kvdStatus.restored} entries`);
		if (kvdStatus.rejected > 0) {
			lines.push(`           ${kvdStatus.rejected} entries could not be restored: kept in ${kvdStatus.rejectsFile}`);
		}
		for (const problem of kvdStatus.problems) {
			lines.push(`           ${problem}`);
		}
	}
	process.stdout.write(`${lines.join('\n')}\n`);
}

/** The lab kernel's current clocksource (tsc, refined-jiffies...). */
export async function shellCommand(command: string[], options: TargetChoice): Promise<void> {
	const target = await chooseTarget(options);
	await target.prepare();
	const interactive = command.length === 0;
	// No rc files: the host's ~/.bashrc is visible in the guest and may run
	// things that crawl under emulation. The prompt says where you are.
	const argv = interactive ? ['env', `PS1=${target.promptHost}:\\w# `, 'bash', '--noprofile', '--norc', '-i'] : command;
	const tty = interactive && process.stdin.isTTY ? { rows: process.stdout.rows || 24, cols: process.stdout.columns || 80 } : undefined;
	if (tty) {
		process.stdin.setRawMode(true);
	}
	try {
		// A command given on a terminal gets no input, like `ssh host cmd` would wait for.
		const forwardInput = interactive || !process.stdin.isTTY;
		const result = await target.exec(argv, {
			...(forwardInput ? { stdin: process.stdin } : {}),
			...(tty ? { tty } : {}),
			onStdout: chunk => process.stdout.write(chunk),
			onStderr: chunk => process.stderr.write(chunk),
		});
		process.exitCode = result.exitCode ?? 1;
	} finally {
		if (tty) {
			process.stdin.setRawMode(false);
		}
		process.stdin.pause();
	}
}

export async function downCommand(options: TargetChoice): Promise<void> {
	const target = await chooseTarget({ ...options, target: 'lab' });
	// Only names: a stuck guest must not keep ./run down from stopping it.
	const wasRunning = await stopTarget(target);
	process.stdout.write(wasRunning ? `stopped ${target.place}\n` : `${target.place} was not running\n`);
}
