/**
 * The backup daemon kvd (daemon/) as seen from `./run`: start it in a
 * target, make it leave a module before rmmod, stop it, and read what it
 * says of itself. Used by udp_server's role (roles.ts).
 */
import path from 'node:path';
import { DEFAULT_BACKUP, type Status } from '../daemon/status.js';
import { UserError } from './errors.js';
import { log } from './log.js';
import { PROJECT_ROOT } from './modules.js';
import type { Target } from './targets.js';

export { DEFAULT_BACKUP };
const KVD_LOG = '/var/log/kvd.log'; // kvd_log in kvd-control.sh
const KVD_SCRIPT = path.join(PROJECT_ROOT, 'dist/daemon/kvd.js');
/**
 * What runs in the target: a shell file, not compiled (tsc copies no .sh to
 * dist/), found in src/ like lab/guest-init.sh. The target sees this
 * machine's files at the same paths (the lab shares them over virtiofs).
 */
const CONTROL_SCRIPT = path.join(PROJECT_ROOT, 'src/kvd-control.sh');

/** `sh kvd-control.sh COMMAND ARGS...` in the target. */
function control(command: 'pid' | 'start' | 'stop', ...args: string[]): string[] {
	return ['sh', CONTROL_SCRIPT, command, ...args];
}

/** What kvd says of itself in /run/kvd.status (daemon/status.ts, shared with kvd). */
export type DaemonStatus = Status;

/** The backup daemon's PID in the target, if it is running. */
export async function daemonPid(target: Target): Promise<number | undefined> {
	const result = await target.exec(control('pid'), { timeoutMs: 10_000 });
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
	const run = () =>
		// Node's first start in an emulated guest can take a while on a busy machine.
		target.exec(control('start', backup, process.execPath, KVD_SCRIPT, JSON.stringify(backup)), { timeoutMs: 150_000 });
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

/** Stops kvd: it confirms every change it has read first (SIGTERM). */
export async function stopDaemon(target: Target): Promise<boolean> {
	const pid = await daemonPid(target);
	if (!pid) {
		return false;
	}
	const result = await target.exec(control('stop', String(pid)), { timeoutMs: 30_000 });
	if (result.exitCode !== 0) {
		throw new UserError(`the backup daemon (pid ${pid}) did not stop within 15 s`, {
			hint: `the module is left loaded so no write is lost; see ${KVD_LOG} in the target`,
		});
	}
	return true;
}
