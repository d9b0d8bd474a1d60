/**
 * virtiofsd: the host side of the guest's shared directories (this machine's
 * root, read-only under an overlay, and the persistent /var/tmp). One
 * detached process per directory, serving QEMU on a Unix socket.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { open, rm } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { UserError } from '../errors.js';

export const VIRTIOFSD = '/usr/lib/qemu/virtiofsd';

export interface VirtiofsShare {
	/** The tag the guest mounts it by (guest-init.sh). */
	tag: string;
	/** The directory on this machine. */
	source: string;
	/** virtiofsd's cache options (`cache=always`, `timeout=1`...). */
	cache: string[];
}

/** The socket QEMU reaches a share's virtiofsd on. */
export function virtiofsSocket(socketDir: string, tag: string): string {
	return path.join(socketDir, `${tag}.sock`);
}

/** Starts virtiofsd for `share`, logging into `logDir`; returns its PID once its socket is there. */
export async function startVirtiofsd(share: VirtiofsShare, socketDir: string, logDir: string): Promise<number> {
	const { tag, source, cache } = share;
	const socket = virtiofsSocket(socketDir, tag);
	await rm(socket, { force: true });
	const logPath = path.join(logDir, `virtiofsd-${tag}.log`);
	const logFile = await open(logPath, 'w');
	const args = [`--socket-path=${socket}`, '-o', `source=${source}`, ...cache.flatMap(option => ['-o', option]), '-o', 'sandbox=chroot'];
	// Detached: it must outlive this `./run` and serve the guest until `./run down`.
	const child = spawn(VIRTIOFSD, args, {
		detached: true,
		stdio: ['ignore', logFile.fd, logFile.fd],
	});
	child.unref();
	await logFile.close();
	for (let i = 0; i < 400 && !existsSync(socket); i++) {
		await sleep(5);
	}
	if (!existsSync(socket) || child.pid === undefined) {
		// Not recorded anywhere yet: stop it here, or it outlives this ./run.
		child.kill('SIGKILL');
		throw new UserError(`virtiofsd did not start for ${source}`, {
			hint: `see ${logPath}`,
		});
	}
	return child.pid;
}
