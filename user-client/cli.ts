/**
 * The kvclient command line. kvclient.ts only calls main(); tests call
 * main() or buildProgram() with their own output streams.
 *
 * stdout carries replies only; messages, errors and --verbose logs go to stderr.
 */
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { pino, type Logger } from 'pino';
import { prettyFactory } from 'pino-pretty';
import {
	KvClient,
	type KvError,
	KvNetworkError,
	KvProtocolError,
	KvServerError,
	KvTimeoutError,
	request,
	type RequestOptions,
} from './client.js';
import { EXIT_INTERNAL, EXIT_OK, EXIT_USAGE } from '../src/errors.js';
import { PROJECT_ROOT } from '../src/modules.js';
import {
	checkKey,
	checkValue,
	CMD_DELETE,
	CMD_INSERT,
	CMD_LOOKUP,
	CMD_STATS,
	DEFAULT_PORT,
	InvalidRequestError,
	MAX_KEY,
	parseReply,
} from './protocol.js';

/**
 * Exit codes: 0 ok, 1 not found, 2 the server said ERR, 3 no answer / network;
 * 64 bad usage and 70 a bug, as for ./run (src/errors.ts).
 */
export const EXIT = { ok: EXIT_OK, notFound: 1, serverError: 2, network: 3, usage: EXIT_USAGE, internal: EXIT_INTERNAL } as const;

/** Ends the command with a message on stderr and an exit code. */
export class KvExit extends Error {
	constructor(
		message: string,
		readonly exitCode: number,
	) {
		super(message);
	}
}

export interface Io {
	stdout: (data: string | Uint8Array) => void;
	stderr: (text: string) => void;
	stdin: NodeJS.ReadableStream;
}

const defaultIo: Io = {
	stdout: data => process.stdout.write(data),
	stderr: text => process.stderr.write(text),
	// A getter: touching process.stdin opens fd 0, which would keep the process alive.
	get stdin() {
		return process.stdin;
	},
};

export interface GlobalOptions {
	host: string;
	port: number;
	timeout: number;
	/** -w, as nc has it: the timeout in seconds (wins over --timeout). */
	wait?: number;
	retries: number;
	verbose?: boolean;
}

/** The project's version (package.json), for --version. */
function version(): string {
	try {
		return (JSON.parse(readFileSync(path.join(PROJECT_ROOT, 'package.json'), 'utf8')) as { version?: string }).version ?? 'unknown';
	} catch {
		return 'unknown';
	}
}

function seconds(value: string): number {
	const number = Number(value);
	if (!/^\d+(\.\d+)?$/.test(value.trim()) || number <= 0 || number > 600) {
		throw new InvalidArgumentError('seconds must be a number above 0, at most 600.');
	}
	return number;
}

function integer(name: string, min: number, max: number) {
	return (value: string): number => {
		const number = Number(value);
		if (!/^\d+$/.test(value.trim()) || number < min || number > max) {
			throw new InvalidArgumentError(`${name} must be a whole number from ${min} to ${max}.`);
		}
		return number;
	};
}

function key(value: string): string {
	const problem = checkKey(value);
	if (problem) throw new InvalidArgumentError(`${problem}.`);
	return value;
}

const HELP_AFTER = `
Exit codes:
  0  success (delete: also NOT FOUND after a try that got no reply, with a
     note on stderr: that try may have deleted it; the key is gone either way)
  1  lookup/delete: the key is not there
  2  the server answered ERR (reason on stderr; send prints the reply too)
  3  no reply after every try, or a network error (send from stdin goes on
     with the next line and exits 3 at the end)
  64 a usage error (bad option, argument or key)
  70 an internal error (a bug; please report it)

Environment:
  KVCLIENT_HOST, KVCLIENT_PORT   defaults for --host and --port

Examples:
  kvclient send HELLO                      prints GOT IT
  kvclient insert dog baileys the dog      prints OK
  kvclient lookup dog                      prints baileys the dog
  kvclient delete dog                      prints OK
  kvclient stats --json
  printf 'HELLO\\nlookup dog\\n' | kvclient send      one datagram per line, like nc -u
  kvclient --port 3001 --timeout 200 --retries 0 send lookup dog
  kvclient -w 2 send HELLO                 wait up to 2 s per try, as nc -w 2`;

export function buildProgram(io: Io = defaultIo): Command {
	const program = new Command('kvclient');
	let log: Logger | undefined;
	const prettify = prettyFactory({ colorize: false, translateTime: 'HH:MM:ss.l', singleLine: true });
	const logger = (): Logger =>
		(log ??= pino(
			{ level: program.opts<GlobalOptions>().verbose ? 'debug' : 'silent', base: undefined },
			{ write: (line: string) => io.stderr(prettify(line)) },
		));

	const connection = (): RequestOptions => {
		const { host, port, timeout, wait, retries } = program.opts<GlobalOptions>();
		return {
			host,
			port,
			timeoutMs: wait === undefined ? timeout : Math.round(wait * 1000),
			retries,
			onSend: (attempt, tries) => logger().debug({ to: `${host}:${port}`, attempt, tries }, 'send'),
		};
	};
	const client = () => new KvClient(connection());
	const send = async (message: string) => {
		logger().debug({ message }, 'request');
		const started = performance.now();
		const reply = await request(message, connection());
		logger().debug({ reply: reply.toString(), ms: Math.round(performance.now() - started) }, 'reply');
		return reply;
	};

	program
		.description('Talk to the kernel-udp key-value server over UDP: one datagram per request (see PROTOCOL.md).')
		.addOption(new Option('--host <host>', 'server address or name').default('127.0.0.1').env('KVCLIENT_HOST'))
		.addOption(
			new Option('--port <port>', 'server UDP port (1-65535)')
				.default(DEFAULT_PORT)
				.env('KVCLIENT_PORT')
				.argParser(integer('port', 1, 65535)),
		)
		.addOption(new Option('--timeout <ms>', 'how long to wait for each reply').default(1000).argParser(integer('timeout', 1, 600_000)))
		.addOption(new Option('-w, --wait <seconds>', 'the same in seconds, as nc -w (wins over --timeout)').argParser(seconds))
		.addOption(
			new Option('--retries <n>', 'how many times to send again when no reply comes').default(2).argParser(integer('retries', 0, 100)),
		)
		.option('-v, --verbose', 'log what is sent and received (stderr)')
		.version(version(), '-V, --version', 'print the version and exit')
		.configureOutput({ writeOut: io.stdout, writeErr: io.stderr })
		.showHelpAfterError('(kvclient --help for usage)')
		.addHelpText('after', HELP_AFTER);

	program
		.command('send')
		.description(
			'send the words, joined by spaces, as one datagram and print the raw reply; without words, send each line of stdin as one datagram',
		)
		.argument('[message...]', 'the request, e.g. "lookup dog"')
		.action(async (words: string[]) => {
			// The reply as received (a newline is added only if it has none), like nc;
			// unlike nc, an ERR reply is a failure (exit 2, the reason on stderr).
			const print = (reply: Buffer) => {
				io.stdout(reply.at(-1) === 0x0a ? reply : Buffer.concat([reply, Buffer.from('\n')]));
				const parsed = parseReply(reply);
				return parsed.kind === 'err' ? new KvServerError(parsed.reason) : undefined;
			};
			if (words.length > 0) {
				const error = print(await send(words.join(' ')));
				if (error) throw error;
				return;
			}
			// One datagram per line; a line that gets no reply (or ERR) is reported and the
			// next one is sent. The exit code is the worst: 3 (no reply) over 2 (ERR).
			let worst: KvError | undefined;
			let number = 0;
			for await (const line of createInterface({ input: io.stdin, crlfDelay: Infinity })) {
				number++;
				let error: KvError | undefined;
				try {
					error = print(await send(line));
				} catch (caught) {
					if (!(caught instanceof KvTimeoutError || caught instanceof KvNetworkError)) throw caught;
					error = caught;
				}
				if (error) {
					io.stderr(`kvclient: line ${number}: ${error.message}\n`);
					if (!(worst instanceof KvTimeoutError || worst instanceof KvNetworkError)) worst = error;
				}
			}
			if (worst)
				throw new KvExit(
					`${worst instanceof KvServerError ? 'the server answered ERR' : 'no reply'} to some lines (see above)`,
					worst instanceof KvServerError ? EXIT.serverError : EXIT.network,
				);
		});

	program
		.command(CMD_INSERT)
		.description('store VALUE under KEY (an existing key is overwritten); prints OK')
		.argument('<key>', `1-${MAX_KEY} bytes, no spaces or control characters`, key)
		.argument('<value...>', 'the value; several words are joined by single spaces')
		.action(async (name: string, words: string[], _options: unknown, command: Command) => {
			const value = words.join(' ');
			const problem = checkValue(value);
			if (problem) command.error(`error: ${problem}.`, { code: 'kvclient.invalidValue' });
			await client().insert(name, value);
			io.stdout('OK\n');
		});

	program
		.command(CMD_LOOKUP)
		.description('print the value stored under KEY (exit 1 if there is none)')
		.argument('<key>', 'the key', key)
		.action(async (name: string) => {
			const value = await client().lookup(name);
			if (value === undefined) throw new KvExit('not found', EXIT.notFound);
			io.stdout(`${value}\n`);
		});

	program
		.command(CMD_DELETE)
		.description('remove KEY; prints OK (exit 1 if there was none)')
		.argument('<key>', 'the key', key)
		.action(async (name: string) => {
			const outcome = await client().remove(name);
			if (outcome === 'absent') throw new KvExit('not found', EXIT.notFound);
			if (outcome === 'absent-after-retry') {
				io.stderr(
					`kvclient: note: NOT FOUND came to a retry after a try that got no reply; that try may have deleted ${name}. It is gone either way.\n`,
				);
			}
			io.stdout('OK\n');
		});

	program
		.command(CMD_STATS)
		.description("print the server's counters, one `name: value` per line")
		.option('--json', 'print them as one JSON object')
		.action(async (options: { json?: boolean }) => {
			const stats = await client().stats();
			io.stdout(
				options.json
					? `${JSON.stringify(stats)}\n`
					: Object.entries(stats)
							.map(([name, number]) => `${name}: ${number}\n`)
							.join(''),
			);
		});

	return program;
}

/** Runs kvclient with `argv` (without node and script); resolves with the exit code, never rejects. */
export async function main(argv: string[], io: Io = defaultIo): Promise<number> {
	const program = buildProgram(io);
	// Subcommands report their own usage errors: they must throw, not exit, too.
	for (const command of [program, ...program.commands]) {
		command.exitOverride();
	}
	const fail = (message: string, code: number) => {
		io.stderr(`kvclient: ${message}\n`);
		return code;
	};
	try {
		await program.parseAsync(argv, { from: 'user' });
		return EXIT.ok;
	} catch (error) {
		// commander printed it already. Usage errors get their own code, so a
		// script can tell "not found" (1) from a mistyped command line.
		if (error instanceof CommanderError) return error.exitCode === 0 ? 0 : EXIT.usage;
		if (error instanceof KvExit) return fail(error.message, error.exitCode);
		if (error instanceof KvServerError || error instanceof KvProtocolError) return fail(error.message, EXIT.serverError);
		if (error instanceof KvTimeoutError || error instanceof KvNetworkError) return fail(error.message, EXIT.network);
		if (error instanceof InvalidRequestError) return fail(error.message, EXIT.usage);
		return fail(`unexpected error: ${error instanceof Error ? error.message : String(error)}`, EXIT.internal);
	}
}
