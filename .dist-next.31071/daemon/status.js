/**
 * What kvd and `./run` (src/kvd-control.ts) share: kvd's options and the
 * status it writes to RUN_DIR/kvd.status as one JSON line.
 */
export const DEFAULT_BACKUP = '/var/tmp/hashtable_backup.txt';
//# sourceMappingURL=status.js.map