/**
 * Exit codes, one scheme for ./run and kvclient (sysexits.h for 64 and 70):
 * 0 success; 1 the operation failed; 64 a usage error (bad option or
 * argument, unknown module or target, bad module parameter); 70 an internal
 * error, a bug. kvclient adds 2 (the server answered ERR) and 3 (no reply, or
 * a network error); its 1 is "the key is not there".
 */
export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 64;
export const EXIT_INTERNAL = 70;
/** The "Exit codes" part of ./run --help. */
export const RUN_EXIT_CODES_HELP = `Exit codes:
  0   success
  1   the operation failed (a build, a load, the lab...)
  64  a usage error: bad option or argument, unknown module, bad parameter
  70  an internal error (a bug; please report it)`;
/**
 * Errors the user can act on. The top-level handler in bin/run.ts prints
 * `message` (and `hint`, when there is one) without a stack trace and exits
 * with `exitCode` (EXIT_FAILURE unless said otherwise); any other error is a
 * bug, printed in full with EXIT_INTERNAL.
 */
export class UserError extends Error {
    hint;
    exitCode;
    constructor(message, options = {}) {
        super(message, { cause: options.cause });
        this.name = 'UserError';
        this.hint = options.hint;
        this.exitCode = options.exitCode ?? EXIT_FAILURE;
    }
}
/** The message of whatever was thrown. */
export function messageOf(error) {
    return error instanceof Error ? error.message : String(error);
}
/**
 * For `.catch()` on a file read where only a missing file is expected:
 * `readFile(f, 'utf8').catch(ifMissing(''))` gives '' for ENOENT and rethrows
 * anything else (EACCES, EISDIR, EIO...), which a catch-all would hide.
 */
export function ifMissing(fallback) {
    return error => {
        if (error?.code === 'ENOENT') {
            return fallback;
        }
        throw error;
    };
}
//# sourceMappingURL=errors.js.map