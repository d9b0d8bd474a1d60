/**
 * The protocol between `./run` on the host and the agent in the lab guest.
 *
 * One TCP connection per command. Both sides send newline-delimited JSON.
 * The host sends an ExecRequest first, then any number of HostFrames; the
 * agent answers with GuestFrames and closes after the `exit` frame.
 * Bytes travel base64-encoded so binary output survives.
 */

export const AGENT_GUEST_PORT = 7000;

export interface ExecRequest {
	/** Shared secret from the kernel command line: only our `./run` may drive the guest. */
	token: string;
	argv: string[];
	cwd?: string;
	env?: Record<string, string>;
	/** Kill the command after this long (the agent reports `timedOut`). */
	timeoutMs?: number;
	/** Run under a pseudo-terminal of this size (interactive `./run shell`). */
	tty?: { rows: number; cols: number };
}

export type HostFrame = { stdin: string } | { stdinEnd: true } | { signal: NodeJS.Signals };

export type GuestFrame =
	| { stdout: string }
	| { stderr: string }
	| { exit: number | null; signal: string | null; timedOut: boolean }
	/** The command could not start; `code` is the errno name (ENOENT: no such program). */
	| { error: string; code?: string; program?: string };

export function encodeFrame(frame: ExecRequest | HostFrame | GuestFrame): string {
	return `${JSON.stringify(frame)}\n`;
}

/** Splits a byte stream into JSON frames; returns a function to feed chunks to. */
export function frameReader<T>(onFrame: (frame: T) => void): (chunk: Buffer) => void {
	let pending = '';
	return chunk => {
		pending += chunk.toString('utf8');
		for (let newline = pending.indexOf('\n'); newline >= 0; newline = pending.indexOf('\n')) {
			const line = pending.slice(0, newline);
			pending = pending.slice(newline + 1);
			if (line.trim() !== '') {
				onFrame(JSON.parse(line) as T);
			}
		}
	};
}
