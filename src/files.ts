/**
 * Writing shared files safely. Parallel test files and a second terminal may
 * produce the same file at the same moment (the lab's initramfs, a module
 * snapshot): each writer fills a temporary file of its own and renames it
 * into place, so readers see the old file or a whole new one, and two writers
 * never trip over each other's half-written temporary.
 */
import { randomBytes } from 'node:crypto';
import { rename, rm, writeFile } from 'node:fs/promises';

/** A temporary name next to `file` that no other writer uses, in this process or another. */
export function partialPath(file: string): string {
	return `${file}.${process.pid}-${randomBytes(4).toString('hex')}.partial`;
}

/** Writes `file` whole or not at all (rename is atomic within a file system). */
export async function writeFileAtomically(file: string, data: string | Uint8Array, mode = 0o644): Promise<void> {
	const partial = partialPath(file);
	try {
		await writeFile(partial, data, { mode });
		await rename(partial, file);
	} catch (error) {
		await rm(partial, { force: true });
		throw error;
	}
}
