/**
 * Writing files whole or not at all. Parallel test files and a second
 * terminal may produce the same file at the same moment (the lab's initramfs,
 * a module snapshot): each writer fills a temporary file of its own and
 * renames it into place, so readers see the old file or a whole new one, and
 * two writers never trip over each other's half-written temporary.
 */
import { randomBytes } from 'node:crypto';
import { link, open, rename, rm } from 'node:fs/promises';
import path from 'node:path';
/** A temporary name next to `file` that no other writer uses, in this process or another. */
export function partialPath(file) {
    return `${file}.${process.pid}-${randomBytes(4).toString('hex')}.partial`;
}
/**
 * Writes `file` whole unless it already exists, and never replaces it: for
 * files named after their content, which a lab guest may have open (over
 * virtiofs, a replaced file is a stale handle to the guest that opened the
 * old one). Returns whether this call wrote it.
 */
export async function writeFileIfAbsent(file, data, mode = 0o644) {
    const partial = partialPath(file);
    try {
        const handle = await open(partial, 'w', mode);
        try {
            await handle.writeFile(data);
        }
        finally {
            await handle.close();
        }
        // link(2) fails with EEXIST where rename(2) would replace.
        await link(partial, file);
        return true;
    }
    catch (error) {
        if (error.code === 'EEXIST') {
            return false;
        }
        throw error;
    }
    finally {
        await rm(partial, { force: true });
    }
}
/** Writes `file` whole or not at all (rename is atomic within a file system). */
export async function writeFileAtomically(file, data, { mode = 0o644, durable = false, onStep } = {}) {
    const partial = partialPath(file);
    try {
        const handle = await open(partial, 'w', mode);
        try {
            await handle.writeFile(data);
            if (durable) {
                await handle.sync();
            }
        }
        finally {
            await handle.close();
        }
        onStep?.('written');
        await rename(partial, file);
    }
    catch (error) {
        await rm(partial, { force: true });
        throw error;
    }
    if (durable) {
        const directory = await open(path.dirname(file), 'r');
        try {
            await directory.sync();
        }
        finally {
            await directory.close();
        }
    }
    onStep?.('renamed');
}
//# sourceMappingURL=files.js.map