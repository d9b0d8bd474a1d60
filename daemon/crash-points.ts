import { writeSync } from 'node:fs';

/**
 * A fault hook for the crash-point tests (as ALICE and CrashMonkey crash a
 * program between its writes, fsyncs and renames): KVD_CRASH_AT names a
 * step, and kvd kills itself with SIGKILL the first time it gets there, as
 * a crash would stop it (no handler, no clean-up). The steps:
 *
 *   a group commit:  before-fdatasync (appended, not synced)
 *                    after-append (synced, not confirmed to the module)
 *                    after-confirm
 *   a new base:      after-base-write (the temporary file written and synced)
 *                    after-rename (the base in place, the old log still there)
 *                    before-log-remove (the new log written, not yet in the old one's place)
 *
 * A base step alone stops at the first base, whether a snapshot's or a
 * compaction's; `snapshot-STEP` or `compact-STEP` stops at that one's only.
 */
const CRASH_AT = process.env['KVD_CRASH_AT'];
export type BaseKind = 'snapshot' | 'compact';

export function crashPoint(step: string, kind?: BaseKind): void {
	if (CRASH_AT && (CRASH_AT === step || CRASH_AT === `${kind}-${step}`)) {
		writeSync(2, `kvd: KVD_CRASH_AT=${CRASH_AT}: crashing at ${kind ? `${kind} ` : ''}${step}\n`);
		process.kill(process.pid, 'SIGKILL');
	}
}

/** writeFileAtomically's steps, as crash points of a base (see crashPoint). */
export const baseSteps = (kind: BaseKind) => (step: 'written' | 'renamed') =>
	crashPoint(step === 'written' ? 'after-base-write' : 'after-rename', kind);
