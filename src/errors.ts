/**
 * Errors the user can act on. The top-level handler in bin/run.ts prints
 * `message` (and `hint`, when there is one) without a stack trace and exits
 * with `exitCode`; any other error is a bug and is printed in full.
 */
export class UserError extends Error {
	readonly hint: string | undefined;
	readonly exitCode: number;

	constructor(message: string, options: { hint?: string; exitCode?: number; cause?: unknown } = {}) {
		super(message, { cause: options.cause });
		this.name = 'UserError';
		this.hint = options.hint;
		this.exitCode = options.exitCode ?? 1;
	}
}

/** The message of whatever was thrown. */
export function messageOf(error: unknown): string {
	return error instanceof Error ? error.message : String(error);
}

/**
 * For `.catch()` on a file read where only a missing file is expected:
 * `readFile(f, 'utf8').catch(ifMissing(''))` gives '' for ENOENT and rethrows
 * anything else (EACCES, EISDIR, EIO...), which a catch-all would hide.
 */
export function ifMissing<T>(fallback: T): (error: unknown) => T {
	return error => {
		if ((error as NodeJS.ErrnoException | undefined)?.code === 'ENOENT') {
			return fallback;
		}
		throw error;
	};
}
