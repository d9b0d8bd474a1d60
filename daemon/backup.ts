/**
 * The backup file format (kvd writes it with src/files.ts, durably).
 *
 *   # kernel-udp backup v1
 *   # instance <boot id>:<module load time>
 *   # entries <N> sha256 <hex digest of the entry lines>
 *   KEY VALUE
 *   ...
 *
 * The header makes a truncated or corrupt file detectable (entry count and
 * digest), so a bad backup is refused whole instead of being loaded half.
 * The instance line says which loaded copy of the module the file was taken
 * from (see kvd.ts for why that matters).
 */
import { createHash } from 'node:crypto';

export const MAGIC = '# kernel-udp backup v1';

export interface Backup {
	instance: string;
	entries: Map<string, string>;
}

export class CorruptBackupError extends Error {
	constructor(file: string, reason: string) {
		super(`the backup ${file} is corrupt (${reason}); it was not loaded`);
		this.name = 'CorruptBackupError';
	}
}

/** Parses `KEY VALUE` lines as /proc/hashtable prints them. */
export function parseTable(text: string): Map<string, string> {
	const entries = new Map<string, string>();
	for (const line of text.split('\n')) {
		if (line === '') {
			continue;
		}
		const space = line.indexOf(' ');
		if (space <= 0) {
			throw new Error(`not a KEY VALUE line: ${JSON.stringify(line.slice(0, 80))}`);
		}
		entries.set(line.slice(0, space), line.slice(space + 1));
	}
	return entries;
}

function body(entries: Map<string, string>): string {
	let text = '';
	for (const [key, value] of entries) {
		text += `${key} ${value}\n`;
	}
	return text;
}

export function serialize(backup: Backup): string {
	const lines = body(backup.entries);
	const digest = createHash('sha256').update(lines).digest('hex');
	return `${MAGIC}\n# instance ${backup.instance}\n# entries ${backup.entries.size} sha256 ${digest}\n${lines}`;
}

export function deserialize(file: string, text: string): Backup {
	const header = text.split('\n', 3);
	if (header[0] !== MAGIC) {
		throw new CorruptBackupError(file, 'it does not start with the kernel-udp header');
	}
	const instance = /^# instance (\S+)$/.exec(header[1] ?? '')?.[1];
	const counted = /^# entries (\d+) sha256 ([0-9a-f]{64})$/.exec(header[2] ?? '');
	if (!instance || !counted) {
		throw new CorruptBackupError(file, 'its header is incomplete');
	}
	const headerLength = header.join('\n').length + 1;
	const lines = text.slice(headerLength);
	if (createHash('sha256').update(lines).digest('hex') !== counted[2]) {
		throw new CorruptBackupError(file, 'its checksum does not match: truncated or edited');
	}
	let entries: Map<string, string>;
	try {
		entries = parseTable(lines);
	} catch (error) {
		throw new CorruptBackupError(file, (error as Error).message);
	}
	if (entries.size !== Number(counted[1])) {
		throw new CorruptBackupError(file, `it holds ${entries.size} entries, its header says ${counted[1]}`);
	}
	return { instance, entries };
}
