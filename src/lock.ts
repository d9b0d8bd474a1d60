/**
 * A lock between processes, for work that must not overlap: booting the same
 * lab, building the same module directory (parallel test files, two
 * terminals). An O_EXCL file holding the owner's PID; a dead owner's lock is
 * taken over.
 */
import { open, readFile, rm } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { UserError } from './errors.js';

export function isAlive(pid: number): boolean {
	try {
		process.kill(pid, 0);
		return true;
	} catch (error) {
		return (error as NodeJS.ErrnoException).code === 'EPERM';
	}
}

export async function withFileLock<T>(lockPath: string, timeoutMs: number, action: () => Promise<T>): Promise<T> {
	const deadline = Date.now() + timeoutMs;
	for (;;) {
		try {
			const handle = await open(lockPath, 'wx');
			await handle.write(String(process.pid));
			await handle.close();
			break;
		} catch (error) {
			if ((error as NodeJS.ErrnoException).code !== 'EEXIST') {
				throw error;
			}
			const owner = Number(await readFile(lockPath, 'utf8').catch(() => '0'));
			if (!owner || !isAlive(owner)) {
				await rm(lockPath, { force: true });
				continue;
			}
			if (Date.now() > deadline) {
				throw new UserError(`timed out waiting for process ${owner}, which holds ${lockPath}`);
			}
			await sleep(100);
		}
	}
	try {
		return await action();
	} finally {
		await rm(lockPath, { force: true });
	}
}
