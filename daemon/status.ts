/**
 * What kvd and `./run` (src/kvd-control.ts) share: kvd's options and the
 * status it writes to RUN_DIR/kvd.status as one JSON line.
 */

export const DEFAULT_BACKUP = '/var/tmp/hashtable_backup.txt';

export interface KvdOptions {
	backup: string;
	proc: string;
	module: string;
	runDir: string;
}

export type State = 'waiting' | 'restoring' | 'following' | 'detached' | 'stopped' | 'failed';

export interface Status {
	pid: number;
	state: State;
	backup: string;
	/** The loaded copy of the module followed or last left. */
	instance?: string;
	restored: number;
	rejected: number;
	rejectsFile?: string;
	problems: string[];
	error?: string;
	since: string;
}
