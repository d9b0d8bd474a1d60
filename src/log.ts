/**
 * The orchestrator's diagnostic log: pino to stderr, so stdout stays for
 * command output that scripts may pipe. Pretty on a terminal, JSON lines
 * with --log-json (or when stderr is not a terminal and KUDP_LOG_JSON=1).
 */
import { pino, type Logger } from 'pino';
import pretty from 'pino-pretty';

export type { Logger };

export interface LogOptions {
	level?: string;
	json?: boolean;
}

export function createLogger(options: LogOptions = {}): Logger {
	const level = options.level ?? process.env['KUDP_LOG_LEVEL'] ?? 'info';
	const json = options.json ?? process.env['KUDP_LOG_JSON'] === '1';
	if (json) {
		return pino({ level, base: undefined }, pino.destination(2));
	}
	return pino(
		{ level, base: undefined },
		pretty({
			destination: 2,
			sync: true,
			colorize: process.stderr.isTTY,
			ignore: 'pid,hostname,time',
			messageFormat: '{msg}',
			singleLine: true,
		}),
	);
}

/** A logger shared by the whole process, replaced by the CLI once options are parsed. */
export let log: Logger = createLogger();

export function setLogger(logger: Logger): void {
	log = logger;
}
