/**
 * A lock between processes, for work that must not overlap: booting the same
 * lab, building the same module directory (parallel test files, two
 * terminals), one kvd per backup file.
 *
 * The lock is a file holding "<pid> <boot id> <nonce> <start time>" (the
 * start time tells the owner from a later process that got its PID). It appears whole or
 * not at all: the content is written to a private temporary file, which is
 * then hard-linked to the lock path; link(2) fails with EEXIST when the lock
 * is taken. (Creating the lock file first and writing the PID after let a
 * waiter read an empty file, call it stale and take the lock too.)
 *
 * A lock whose owner is dead (or ran before the last reboot: the lab keeps
 * /var/tmp on the host) is stale and taken over. Removing it is guarded by a
 * lock of its own, named after the stale lock's nonce and taken the same way,
 * so only one waiter removes a given stale lock, and only after checking that
 * the lock path still holds that same lock: a waiter that was slow can never
 * remove a lock someone else has just taken. A waiter that dies while
 * removing leaves a stale guard, which is taken over the same way.
 *
 * Hand-rolled rather than proper-lockfile: that library judges staleness by
 * mtime (a lock held across a long boot or build must be refreshed on a
 * timer), knows nothing of PIDs or boot ids, and removes a stale lock with a
 * plain rm, the same check-then-act race as before.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync, readlinkSync } from 'node:fs';
import { link, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { UserError } from './errors.js';
/** The start time of a process (field 22 of /proc/PID/stat), or undefined if there is none. */
export function processStart(pid) {
    let stat;
    try {
        stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    }
    catch {
        return undefined;
    }
    // Field 2, the command name, is in parentheses and may hold spaces and parentheses itself.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
}
/** A live process's identity, or undefined when the PID names none (or one we may not look at). */
export function processIdentity(pid) {
    if (!Number.isInteger(pid) || pid <= 0) {
        return undefined;
    }
    const start = processStart(pid);
    let exe;
    try {
        // A program replaced on disk (a package upgrade) reads "PATH (deleted)": still the same process.
        exe = readlinkSync(`/proc/${pid}/exe`).replace(/ \(deleted\)$/, '');
    }
    catch {
        return undefined;
    }
    return start === undefined ? undefined : { pid, exe, start };
}
/**
 * Whether `recorded` (taken on boot `boot`) is still the process its PID
 * names now: same boot, same executable, same start time. Only such a
 * process may be signalled: after a reboot, or once it has exited, its PID
 * may be anyone's.
 */
export function isSameProcess(recorded, boot) {
    const now = processIdentity(recorded.pid);
    return boot === bootId() && now !== undefined && now.exe === recorded.exe && now.start === recorded.start;
}
/**
 * Whether a process with this PID exists (kill(pid, 0); EPERM: it does, of
 * another user). Says nothing of which process it is: never signal a PID on
 * this alone (see isSameProcess).
 */
export function isAlive(pid) {
    try {
        process.kill(pid, 0);
        return true;
    }
    catch (error) {
        return error.code === 'EPERM';
    }
}
let cachedBootId;
/** This boot of the machine: a PID means nothing across a reboot. */
export function bootId() {
    if (cachedBootId === undefined) {
        try {
            cachedBootId = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
        }
        catch (error) {
            if (error.code !== 'ENOENT') {
                throw error;
            }
            cachedBootId = '-';
        }
    }
    return cachedBootId;
}
/** Nonces of the locks this process holds: its own PID in a lock file is not proof that it holds it. */
const held = new Set();
function isErrno(error, code) {
    return error?.code === code;
}
/**
 * Who holds the lock at `lockPath`, or undefined if there is none. A file
 * this code did not write (an older version's format) gets a nonce from its
 * inode, which is enough to take it over once.
 */
export async function lockOwner(lockPath) {
    let text;
    let inode;
    try {
        text = await readFile(lockPath, 'utf8');
        inode = (await stat(lockPath, { bigint: true })).ino;
    }
    catch (error) {
        if (isErrno(error, 'ENOENT')) {
            return undefined;
        }
        throw error;
    }
    const [pid, boot, nonce, start] = text.trim().split(' ');
    if (/^\d+$/.test(pid ?? '') && boot && nonce && /^[0-9a-f]+$/.test(nonce)) {
        return { pid: Number(pid), boot, nonce, ...(start && /^\d+$/.test(start) ? { start } : {}) };
    }
    return { pid: 0, boot: '', nonce: `inode${inode}` };
}
function isStale(owner) {
    if (owner.boot !== bootId() || owner.pid <= 0) {
        return true;
    }
    if (owner.pid === process.pid) {
        return !held.has(owner.nonce);
    }
    if (owner.start !== undefined) {
        // Another process that got the owner's PID does not hold the lock.
        return processStart(owner.pid) !== owner.start;
    }
    return !isAlive(owner.pid);
}
/** Creates the lock with its content in one step; false if it is taken. */
async function create(lockPath, owner) {
    const temporary = `${lockPath}.${owner.pid}-${owner.nonce}.new`;
    await writeFile(temporary, `${owner.pid} ${owner.boot} ${owner.nonce}${owner.start ? ` ${owner.start}` : ''}\n`, { mode: 0o644 });
    try {
        await link(temporary, lockPath);
        return true;
    }
    catch (error) {
        if (isErrno(error, 'EEXIST')) {
            return false;
        }
        throw error;
    }
    finally {
        await rm(temporary, { force: true });
    }
}
/**
 * One attempt: takes the lock (returns its owner record, ours) or returns
 * who holds it. A stale lock is removed on the way, race-free (see above).
 */
async function tryTake(lockPath) {
    for (;;) {
        const start = processStart(process.pid);
        const mine = { pid: process.pid, boot: bootId(), nonce: randomBytes(8).toString('hex'), ...(start ? { start } : {}) };
        held.add(mine.nonce);
        if (await create(lockPath, mine)) {
            return { taken: mine };
        }
        held.delete(mine.nonce);
        const owner = await lockOwner(lockPath);
        if (owner === undefined) {
            continue; // Released in between: try again.
        }
        if (!isStale(owner)) {
            return { holder: owner };
        }
        const guardPath = `${lockPath}.stale-${owner.nonce}`;
        const guard = await tryTake(guardPath);
        if ('holder' in guard) {
            // Another live waiter is removing this stale lock right now.
            return { holder: guard.holder };
        }
        try {
            // Only the guard's holder removes this lock, and only if it is still there.
            if ((await lockOwner(lockPath))?.nonce === owner.nonce) {
                await rm(lockPath, { force: true });
            }
        }
        finally {
            await release(guardPath, guard.taken);
        }
    }
}
async function release(lockPath, owner) {
    // Forget the nonce only once the file is gone: until then a waiter in this
    // process would judge the lock stale and remove it through a guard lock,
    // whose own release would open the same window again (with many waiters,
    // a chain of .stale-<nonce> guards until the name is too long).
    try {
        // Nobody removes a live owner's lock, so it is still ours; check anyway.
        if ((await lockOwner(lockPath))?.nonce === owner.nonce) {
            await rm(lockPath, { force: true });
        }
    }
    finally {
        held.delete(owner.nonce);
    }
}
/**
 * Takes the lock at `lockPath`, waiting up to `timeoutMs` for a live owner
 * (0: do not wait). `describe` words the error when it stays taken.
 */
export async function acquireLock(lockPath, timeoutMs, describe = holder => `timed out waiting for process ${holder.pid}, which holds ${lockPath}`) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
        const attempt = await tryTake(lockPath);
        if ('taken' in attempt) {
            const owner = attempt.taken;
            return { path: lockPath, release: () => release(lockPath, owner) };
        }
        if (Date.now() >= deadline) {
            throw new UserError(describe(attempt.holder));
        }
        await sleep(Math.min(100, Math.max(1, deadline - Date.now())));
    }
}
export async function withFileLock(lockPath, timeoutMs, action) {
    const lock = await acquireLock(lockPath, timeoutMs);
    try {
        return await action();
    }
    finally {
        await lock.release();
    }
}
//# sourceMappingURL=lock.js.map