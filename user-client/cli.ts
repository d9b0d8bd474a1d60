/**
 * The kvclient command line. kvclient.ts only calls main(); tests call
 * main() or buildProgram() with their own output streams.
 *
 * stdout carries replies only; messages, errors and --verbose logs go to stderr.
 */
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { pino, type Logger } from 'pino';
import { prettyFactory } from 'pino-pretty';
import {
	type KvClient,
	type KvError,
	KvNetworkError,
	KvProtocolError,
	KvServerError,
	KvTimeoutError,
	request,
	type RequestOptions,
} from './client.js';
import type { PoolServer } from './ketama.js';
import { mapLimit, parseServers, Pool, ServerListError, serverName } from './pool.js';
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
	/** --servers: a pool, each key on its ketama server (wins over --host and --port). */
	servers?: PoolServer[];
	verbose?: boolean;
}

/** Requests in flight to one server at a time, for commands of many keys. */
const PER_SERVER_WINDOW = 8;

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

function serverList(value: string): PoolServer[] {
	try {
		return parseServers(value);
	} catch (error) {
		if (error instanceof ServerListError) throw new InvalidArgumentError(`${error.message}.`);
		throw error;
	}
}

/** The key a request line is placed by (insert, lookup, delete KEY), if it has one. */
function keyOfRequest(line: string): string | undefined {
	const [command, name] = line.trim().split(/ +/);
	return name !== undefined && (command === CMD_INSERT || command === CMD_LOOKUP || command === CMD_DELETE) ? name : undefined;
}

/** The most serious of two exit codes: no answer (3), then ERR (2), then not found (1). */
function worse(a: number, b: number): number {
	const rank = (code: number) => [EXIT.ok, EXIT.notFound, EXIT.serverError, EXIT.network].indexOf(code as 0);
	return rank(b) > rank(a) ? b : a;
}

function exitCodeOf(error: unknown): number {
	if (error instanceof KvTimeoutError || error instanceof KvNetworkError) return EXIT.network;
	if (error instanceof KvServerError || error instanceof KvProtocolError) return EXIT.serverError;
	throw error;
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

A pool (--servers HOST:PORT,HOST:PORT,...): each key goes to the server
libmemcached's ketama gives it (MEMCACHED_BEHAVIOR_KETAMA_WEIGHTED), so
kvclient and a libmemcached client given the same list agree, as written:
the hosts and ports are hashed. insert, lookup and delete go to the key's
server; lookup of several keys and load ask each server in parallel; stats
asks every server; send places a request by its key (HELLO and stats need
--host). A server that does not answer fails its keys with an error that
names it; the keys on the others are served.

Environment:
  KVCLIENT_HOST, KVCLIENT_PORT   defaults for --host and --port
  KVCLIENT_SERVERS               default for --servers

Examples:
  kvclient send HELLO                      prints GOT IT
  kvclient insert dog baileys the dog      prints OK
  kvclient lookup dog                      prints baileys the dog
  kvclient delete dog                      prints OK
  kvclient stats --json
  printf 'HELLO\\nlookup dog\\n' | kvclient send      one datagram per line, like nc -u
  kvclient --port 3001 --timeout 200 --retries 0 send lookup dog
  kvclient -w 2 send HELLO                 wait up to 2 s per try, as nc -w 2
  kvclient --servers 10.0.9.2:3000,10.0.9.3:3000 insert dog baileys
  kvclient --servers 10.0.9.2:3000,10.0.9.3:3000 load keys.txt   one KEY VALUE a line
  kvclient --servers 10.0.9.2:3000,10.0.9.3:3000 lookup dog cat  prints KEY VALUE lines`;

export function buildProgram(io: Io = defaultIo): Command {
	const program = new Command('kvclient');
	let log: Logger | undefined;
	const prettify = prettyFactory({ colorize: false, translateTime: 'HH:MM:ss.l', singleLine: true });
	const logger = (): Logger =>
		(log ??= pino(
			{ level: program.opts<GlobalOptions>().verbose ? 'debug' : 'silent', base: undefined },
			{ write: (line: string) => io.stderr(prettify(line)) },
		));

	/** The servers: --servers, or the one of --host and --port. */
	const servers = (): PoolServer[] => {
		const { host, port, servers: list } = program.opts<GlobalOptions>();
		return list ?? [{ host, port }];
	};
	const connection = (server: PoolServer = servers()[0]!): RequestOptions => {
		const { timeout, wait, retries } = program.opts<GlobalOptions>();
		return {
			host: server.host,
			port: server.port,
			timeoutMs: wait === undefined ? timeout : Math.round(wait * 1000),
			retries,
			onSend: (attempt, tries) => logger().debug({ to: serverName(server), attempt, tries }, 'send'),
		};
	};
	let pool: Pool | undefined;
	const getPool = (): Pool => {
		if (!pool) {
			const { host: _host, port: _port, ...options } = connection();
			pool = new Pool(servers(), {
				...options,
				onSend: (server, attempt, tries) => logger().debug({ to: serverName(server), attempt, tries }, 'send'),
			});
		}
		return pool;
	};
	/** The client of the server that holds `name`, wrapped so that a silent server is named. */
	const forKey = <T>(name: string, call: (client: KvClient) => Promise<T>) => getPool().forKey(name, call);
	const send = async (message: string) => {
		// A request goes to its key's server; one without a key only to a single server.
		const list = servers();
		const placedBy = keyOfRequest(message);
		if (placedBy === undefined && list.length > 1) {
			throw new InvalidRequestError(
				`"${message.split(' ')[0]}" has no key to place it by among the ${list.length} --servers; send it to one of them with --host and --port`,
			);
		}
		const index = placedBy === undefined ? 0 : getPool().indexFor(placedBy);
		logger().debug({ message, to: serverName(list[index]!) }, 'request');
		const started = performance.now();
		const reply = await getPool().onServer(
			index,
			client => request(message, client.options),
			`${placedBy === undefined ? 'server' : `key ${placedBy} is on`}`,
		);
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
		.addOption(
			new Option('--servers <list>', 'a pool: HOST:PORT,HOST:PORT,... each key on its ketama server (instead of --host/--port)')
				.env('KVCLIENT_SERVERS')
				.argParser(serverList),
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
		.addHelpText('after', HELP_AFTER)
		.hook('preAction', () => {
			// --host and --port typed beside --servers: which did the user mean? (Their env defaults just yield.)
			const typed = ['host', 'port'].filter(name => program.getOptionValueSource(name) === 'cli');
			if (program.opts<GlobalOptions>().servers && typed.length > 0) {
				program.error(`error: --servers names every server: leave out --${typed.join(' and --')}`, {
					code: 'kvclient.conflictingServers',
					exitCode: EXIT.usage,
				});
			}
		});

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
			let unplaced = 0;
			for await (const line of createInterface({ input: io.stdin, crlfDelay: Infinity })) {
				number++;
				let error: KvError | undefined;
				try {
					error = print(await send(line));
				} catch (caught) {
					if (caught instanceof InvalidRequestError) {
						io.stderr(`kvclient: line ${number}: ${caught.message}\n`);
						unplaced++;
						continue;
					}
					if (!(caught instanceof KvTimeoutError || caught instanceof KvNetworkError)) throw caught;
					error = caught;
				}
				if (error) {
					io.stderr(`kvclient: line ${number}: ${error.message}\n`);
					if (!(worst instanceof KvTimeoutError || worst instanceof KvNetworkError)) worst = error;
				}
			}
			if (!worst && unplaced > 0) throw new KvExit(`${unplaced} lines had no key to place them by (see above)`, EXIT.usage);
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
			await forKey(name, client => client.insert(name, value));
			io.stdout('OK\n');
		});

	program
		.command(CMD_LOOKUP)
		.description(
			'print the value stored under KEY (exit 1 if there is none); of several keys, print `KEY VALUE` for each found, asking each server in parallel',
		)
		.argument('<keys...>', 'the key, or several', (value: string, previous: string[] | undefined) => [...(previous ?? []), key(value)])
		.action(async (names: string[]) => {
			if (names.length === 1) {
				const name = names[0]!;
				const value = await forKey(name, client => client.lookup(name));
				if (value === undefined) throw new KvExit('not found', EXIT.notFound);
				io.stdout(`${value}\n`);
				return;
			}
			// Each server gets its own keys, a window of them at a time; output in the order given.
			const results = await perServer(names, name =>
				forKey(name, client => client.lookup(name)).then(
					value => ({ value }),
					(error: unknown) => ({ error }),
				),
			);
			let code: number = EXIT.ok;
			names.forEach((name, index) => {
				const result = results[index]!;
				if ('error' in result) {
					io.stderr(`kvclient: ${name}: ${(result.error as Error).message}\n`);
					code = worse(code, exitCodeOf(result.error));
				} else if (result.value === undefined) {
					io.stderr(`kvclient: ${name}: not found\n`);
					code = worse(code, EXIT.notFound);
				} else {
					io.stdout(`${name} ${result.value}\n`);
				}
			});
			if (code !== EXIT.ok)
				throw new KvExit(
					`${results.filter(r => !('value' in r) || r.value === undefined).length} of ${names.length} keys not read (see above)`,
					code,
				);
		});

	program
		.command(CMD_DELETE)
		.description('remove KEY; prints OK (exit 1 if there was none)')
		.argument('<key>', 'the key', key)
		.action(async (name: string) => {
			const outcome = await forKey(name, client => client.remove(name));
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
			const format = (stats: Record<string, number>, indent = '') =>
				Object.entries(stats)
					.map(([name, number]) => `${indent}${name}: ${number}\n`)
					.join('');
			const list = servers();
			if (list.length === 1) {
				const stats = await getPool().client(0).stats();
				io.stdout(options.json ? `${JSON.stringify(stats)}\n` : format(stats));
				return;
			}
			// Every server of the pool, in the order of --servers.
			const answers = await Promise.all(
				list.map((_, index) =>
					getPool()
						.onServer(index, client => client.stats())
						.then(
							stats => ({ stats }),
							(error: unknown) => ({ error }),
						),
				),
			);
			let code: number = EXIT.ok;
			const all: Record<string, Record<string, number> | null> = {};
			answers.forEach((answer, index) => {
				const name = serverName(list[index]!);
				if ('error' in answer) {
					io.stderr(`kvclient: ${(answer.error as Error).message}\n`);
					code = worse(code, exitCodeOf(answer.error));
					all[name] = null;
				} else {
					all[name] = answer.stats;
				}
			});
			io.stdout(
				options.json
					? `${JSON.stringify(all)}\n`
					: Object.entries(all)
							.filter((entry): entry is [string, Record<string, number>] => entry[1] !== null)
							.map(([name, stats]) => `${name}\n${format(stats, '  ')}`)
							.join(''),
			);
			if (code !== EXIT.ok) throw new KvExit('some servers did not answer (see above)', code);
		});

	program
		.command('load')
		.description(
			'insert every `KEY VALUE` line of FILE (stdin without one), each on its server, in parallel; prints what each server stored',
		)
		.argument('[file]', 'the lines, e.g. "dog baileys the dog"; - or none for stdin')
		.action(async (file: string | undefined) => {
			const text = file === undefined || file === '-' ? await readAll(io.stdin) : await readFile(file, 'utf8');
			const entries: Array<{ name: string; value: string }> = [];
			// Check every line before anything is sent: a bad line 2 999 must not leave 2 998 stored.
			for (const [index, line] of text.split('\n').entries()) {
				if (line.trim() === '') continue;
				const space = line.indexOf(' ');
				const name = space < 0 ? line : line.slice(0, space);
				const value = space < 0 ? '' : line.slice(space + 1);
				const problem = checkKey(name) ?? (value === '' ? 'the value is missing (KEY VALUE)' : checkValue(value));
				if (problem) throw new KvExit(`line ${index + 1}: ${problem}`, EXIT.usage);
				entries.push({ name, value });
			}
			const started = performance.now();
			const results = await perServer(
				entries.map(entry => entry.name),
				(_, index) => {
					const { name, value } = entries[index]!;
					return forKey(name, client => client.insert(name, value)).then(
						() => undefined,
						(error: unknown) => error,
					);
				},
			);
			const seconds = (performance.now() - started) / 1000;
			const list = servers();
			const stored = list.map(() => 0);
			const failed = list.map(() => [] as unknown[]);
			results.forEach((error, index) => {
				const server = getPool().indexFor(entries[index]!.name);
				if (error === undefined) stored[server]!++;
				else failed[server]!.push(error);
			});
			let code: number = EXIT.ok;
			list.forEach((server, index) => {
				const errors = failed[index]!;
				io.stdout(`${serverName(server)}: ${stored[index]} stored${errors.length > 0 ? `, ${errors.length} failed` : ''}\n`);
				if (errors.length > 0) {
					io.stderr(`kvclient: ${errors.length} keys not stored on ${serverName(server)}; the first: ${(errors[0] as Error).message}\n`);
					code = worse(code, exitCodeOf(errors[0]));
				}
			});
			io.stdout(`${entries.length} keys in ${seconds.toFixed(1)} s\n`);
			if (code !== EXIT.ok) throw new KvExit('some keys were not stored (see above)', code);
		});

	/** Runs `task` for each key, grouped by server: the servers in parallel, PER_SERVER_WINDOW keys of each at once. */
	async function perServer<R>(names: string[], task: (name: string, index: number) => Promise<R>): Promise<R[]> {
		const groups = new Map<number, number[]>();
		names.forEach((name, index) => {
			const server = getPool().indexFor(name);
			const group = groups.get(server);
			if (group) group.push(index);
			else groups.set(server, [index]);
		});
		const results = new Array<R>(names.length);
		await Promise.all(
			[...groups.values()].map(indexes =>
				mapLimit(indexes, PER_SERVER_WINDOW, async index => {
					results[index] = await task(names[index]!, index);
				}),
			),
		);
		return results;
	}

	return program;
}

async function readAll(stream: NodeJS.ReadableStream): Promise<string> {
	const chunks: Buffer[] = [];
	for await (const chunk of stream) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk));
	return Buffer.concat(chunks).toString('utf8');
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
