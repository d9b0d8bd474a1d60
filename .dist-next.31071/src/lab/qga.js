/**
 * Runs commands in the lab guest through QEMU's guest agent: Debian's
 * qemu-guest-agent (qemu-ga, written in C) runs in the guest and listens on a
 * virtio-serial port, which QEMU connects to a Unix socket on this machine.
 * It starts in milliseconds under emulation, where a Node agent took seconds.
 *
 * Protocol (QEMU's "QGA" JSON): a command `{"execute": ..., "arguments": ...}`
 * gets one reply line, `{"return": ...}` or `{"error": {"class", "desc"}}`.
 * A command runs with `guest-exec` (argv, environment, base64 stdin, captured
 * output) and is polled with `guest-exec-status` until it has exited.
 *
 * QEMU serves one connection at a time on the socket and queues the others,
 * so several `./run` may share a guest: each holds the connection for short
 * spells only. A client that went away may leave a half-read reply in the
 * pipe; `guest-sync-delimited` with a fresh id skips past it.
 *
 * Output: qemu-ga keeps what it captures in memory, base64 in one reply,
 * and stops at a limit (GUEST_EXEC_MAX_OUTPUT, 16 MiB in QEMU 7.2; 20 MB
 * of output made the agent stop answering here), saying so only in
 * `out-truncated`. So
 * the lab's commands write their stdout and stderr to files in a directory
 * the guest shares with this machine over virtiofs (a Spool), which this
 * side reads as they grow: output streams, and is whole however long. A
 * command run without a spool gets qemu-ga's capture, and fails if it was
 * cut rather than return part of it.
 */
import { randomBytes, randomInt } from 'node:crypto';
import { mkdir, open, rm } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { constants } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { UserError } from '../errors.js';
import { MissingProgramError } from '../programs.js';
/** The virtio-serial port name qemu-ga looks for (and guest-init.sh finds it by). */
export const QGA_PORT_NAME = 'org.qemu.guest_agent.0';
/** What the guest's commands get, as a login shell would set it; ExecOptions.env adds to it. */
const BASE_ENV = { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', HOME: '/root', TERM: 'xterm' };
/** How long one reply may take before the connection is tried again. */
const REPLY_TIMEOUT_MS = 10_000;
/**
 * How long a running command's guest may stay silent, over several fresh
 * connections, before it counts as not answering. An emulated guest on a
 * busy 2-core machine can go quiet for seconds; a stuck one stays quiet.
 */
const SILENCE_LIMIT_MS = 60_000;
/** A connection is released after this long so that other `./run` get their turn during a long command. */
const HOLD_MS = 200;
/** qemu-ga refused a command (its error class and description). */
export class QgaError extends Error {
    errorClass;
    desc;
    constructor(errorClass, desc) {
        super(`${desc} (${errorClass})`);
        this.errorClass = errorClass;
        this.desc = desc;
        this.name = 'QgaError';
    }
}
/** The guest did not answer in time (stuck kernel, or not booted yet). */
export class QgaTimeoutError extends Error {
    name = 'QgaTimeoutError';
}
/** How much of a spool file one read takes. */
const SPOOL_READ = 1024 * 1024;
/** A file the guest command writes and this side reads as it grows. */
class SpoolFile {
    hostPath;
    guestPath;
    handle;
    onChunk;
    offset = 0;
    buffer = Buffer.allocUnsafe(SPOOL_READ);
    chunks = [];
    constructor(hostPath, guestPath, handle, onChunk) {
        this.hostPath = hostPath;
        this.guestPath = guestPath;
        this.handle = handle;
        this.onChunk = onChunk;
    }
    static async create(spool, name, onChunk) {
        const hostPath = path.join(spool.hostDir, name);
        // Created here first, so that it can be read before the guest has written a byte.
        const handle = await open(hostPath, 'w+', 0o600);
        return new SpoolFile(hostPath, path.posix.join(spool.guestDir, name), handle, onChunk);
    }
    /** Reads what was written since the last call. */
    async drain() {
        for (;;) {
            const { bytesRead } = await this.handle.read(this.buffer, 0, this.buffer.length, this.offset);
            if (bytesRead === 0) {
                return;
            }
            this.offset += bytesRead;
            const chunk = Buffer.from(this.buffer.subarray(0, bytesRead));
            this.chunks.push(chunk);
            this.onChunk?.(chunk);
        }
    }
    text() {
        return Buffer.concat(this.chunks).toString('utf8');
    }
    async remove() {
        await this.handle.close();
        await rm(this.hostPath, { force: true });
    }
}
/** qemu-ga cut the output it captured: the caller must not take part of it for all of it. */
export class QgaTruncatedError extends UserError {
    constructor(command, streams) {
        super(`the lab guest agent cut the ${streams.join(' and ')} of ${command}: qemu-ga keeps only so much of a command's output`, {
            hint: "the output is incomplete, so none of it is taken; the lab's exec (a spool on virtiofs) streams output whole",
        });
    }
}
/** One connection to qemu-ga, synchronised (guest-sync-delimited) before use. */
export class QgaConnection {
    socket;
    buffer = Buffer.alloc(0);
    waiting;
    failure;
    synced = false;
    constructor(socket) {
        this.socket = socket;
        socket.on('data', chunk => {
            this.buffer = Buffer.concat([this.buffer, chunk]);
            this.wake();
        });
        socket.on('error', error => this.fail(error));
        socket.on('close', () => this.fail(new Error('qemu-ga closed the connection')));
    }
    fail(error) {
        this.failure ??= error;
        this.wake();
    }
    wake() {
        const waiting = this.waiting;
        this.waiting = undefined;
        waiting?.();
    }
    /**
     * Connects to the socket and waits until qemu-ga answers a sync. Before the
     * guest has started qemu-ga, QEMU holds what we send, so this also waits
     * for a booting guest (up to `timeoutMs`).
     */
    static async open(socketPath, timeoutMs = REPLY_TIMEOUT_MS) {
        const deadline = Date.now() + timeoutMs;
        for (let delay = 2;; delay = Math.min(delay * 2, 50)) {
            const socket = net.connect(socketPath);
            try {
                await new Promise((resolve, reject) => {
                    socket.once('connect', resolve);
                    socket.once('error', reject);
                });
            }
            catch (error) {
                socket.destroy();
                // QEMU's listen backlog is 1: while others are queued, connect says EAGAIN.
                const code = error.code;
                if ((code === 'EAGAIN' || code === 'ECONNREFUSED') && Date.now() < deadline) {
                    await sleep(delay);
                    continue;
                }
                throw error;
            }
            const connection = new QgaConnection(socket);
            try {
                await connection.sync(deadline);
                return connection;
            }
            catch (error) {
                connection.close();
                throw error;
            }
        }
    }
    async sync(deadline) {
        const id = randomInt(1, 2 ** 31);
        // 0xFF makes qemu-ga drop any half-received command; its reply starts with 0xFF too.
        this.socket.write(Buffer.concat([Buffer.from([0xff]), Buffer.from(`${JSON.stringify({ execute: 'guest-sync-delimited', arguments: { id } })}\n`)]));
        for (;;) {
            const marker = this.buffer.indexOf(0xff);
            if (marker >= 0) {
                this.buffer = this.buffer.subarray(marker + 1);
                const reply = await this.readReply(deadline);
                if (reply === id) {
                    this.synced = true;
                    return;
                }
                continue;
            }
            this.buffer = Buffer.alloc(0);
            await this.more(deadline);
        }
    }
    /** Waits for more bytes (or a failure) until the deadline. */
    async more(deadline) {
        if (this.failure) {
            throw this.failure;
        }
        const left = deadline - Date.now();
        if (left <= 0) {
            throw new QgaTimeoutError('qemu-ga did not answer');
        }
        await new Promise(resolve => {
            const timer = setTimeout(resolve, left);
            this.waiting = () => {
                clearTimeout(timer);
                resolve();
            };
        });
        if (this.failure) {
            throw this.failure;
        }
    }
    async readReply(deadline) {
        for (;;) {
            const newline = this.buffer.indexOf(0x0a);
            if (newline >= 0) {
                const line = this.buffer.subarray(0, newline).toString('utf8').trim();
                this.buffer = this.buffer.subarray(newline + 1);
                if (line === '') {
                    continue;
                }
                const reply = JSON.parse(line);
                if (reply.error) {
                    throw new QgaError(reply.error.class ?? 'GenericError', reply.error.desc ?? 'unknown error');
                }
                return reply.return;
            }
            await this.more(deadline);
        }
    }
    /** Sends one command and returns its `return` value. */
    async request(execute, args, timeoutMs = REPLY_TIMEOUT_MS) {
        if (!this.synced) {
            throw new Error('qemu-ga connection used before it was synchronised');
        }
        this.socket.write(`${JSON.stringify(args ? { execute, arguments: args } : { execute })}\n`);
        return (await this.readReply(Date.now() + timeoutMs));
    }
    close() {
        this.socket.destroy();
    }
}
/** Signal number → name (9 → SIGKILL). */
function signalName(signal) {
    return Object.entries(constants.signals).find(([, number]) => number === signal)?.[0] ?? `signal ${signal}`;
}
function noAnswer(error) {
    return new UserError('the lab guest does not answer (qemu-ga)', {
        hint: 'the guest kernel may be stuck; ./run down restarts the lab',
        cause: error,
    });
}
/** Starts a command with guest-exec; returns the connection (for polling) and its PID. */
async function startCommand(socketPath, file, request) {
    let connection;
    try {
        connection = await QgaConnection.open(socketPath);
        const { pid } = await connection.request('guest-exec', request);
        return { connection, pid };
    }
    catch (error) {
        connection?.close();
        if (error instanceof QgaError && /No such file or directory/.test(error.desc)) {
            throw new MissingProgramError(file, { where: 'in the lab guest', cause: error });
        }
        if (error instanceof QgaError) {
            throw new UserError(`the lab guest could not run ${file}: ${error.desc}`, { cause: error });
        }
        throw noAnswer(error);
    }
}
/**
 * Runs argv in the guest and waits for it: ExecOptions/ExecResult as the
 * other targets. Output arrives when the command has exited (onStdout and
 * onStderr are called then); stdin is `input`, given in full up front.
 */
export async function qgaExec(socketPath, argv, options = {}, spool) {
    const [file = 'true', ...args] = argv;
    let command = options.cwd
        ? { path: '/bin/sh', arg: ['-c', 'cd "$1" && shift && exec "$@"', 'sh', options.cwd, file, ...args] }
        : { path: file, arg: args };
    let files;
    if (spool) {
        await mkdir(spool.hostDir, { recursive: true, mode: 0o700 });
        const id = `${process.pid}-${randomBytes(6).toString('hex')}`;
        files = {
            stdout: await SpoolFile.create(spool, `${id}.out`, options.onStdout),
            stderr: await SpoolFile.create(spool, `${id}.err`, options.onStderr),
        };
        // Exit 127 with this line on stderr: the program is missing (guest-exec itself said so before).
        const cwd = options.cwd ? 'cd "$1" || exit; shift; ' : '';
        command = {
            path: '/bin/sh',
            arg: [
                '-c',
                `exec >"$1" 2>"$2" || exit 125; shift 2; ${cwd}command -v "$1" >/dev/null || { echo "kudp-exec: $1: not found" >&2; exit 127; }; exec "$@"`,
                'sh',
                files.stdout.guestPath,
                files.stderr.guestPath,
                ...(options.cwd ? [options.cwd] : []),
                file,
                ...args,
            ],
        };
    }
    try {
        return await runCommand(socketPath, file, command, options, files);
    }
    finally {
        await files?.stdout.remove();
        await files?.stderr.remove();
    }
}
async function runCommand(socketPath, file, command, options, files) {
    const env = Object.entries({ ...BASE_ENV, ...options.env }).map(([name, value]) => `${name}=${value}`);
    const input = options.input === undefined ? undefined : Buffer.from(options.input).toString('base64');
    let { connection, pid } = await startCommand(socketPath, file, {
        ...command,
        env,
        ...(input === undefined ? {} : { 'input-data': input }),
        'capture-output': true,
    });
    const started = Date.now();
    let heldSince = started;
    let timedOut = false;
    let killedAt = 0;
    let answeredAt = started;
    /** Asks for the command's status; a silent guest gets a fresh connection, up to SILENCE_LIMIT_MS. */
    const poll = async () => {
        for (;;) {
            try {
                const status = await connection.request('guest-exec-status', { pid });
                answeredAt = Date.now();
                return status;
            }
            catch (error) {
                if (!(error instanceof QgaTimeoutError) || Date.now() - answeredAt > SILENCE_LIMIT_MS) {
                    throw error;
                }
                connection.close();
                connection = await QgaConnection.open(socketPath, REPLY_TIMEOUT_MS).catch(async (opening) => {
                    if (!(opening instanceof QgaTimeoutError) || Date.now() - answeredAt > SILENCE_LIMIT_MS)
                        throw opening;
                    return QgaConnection.open(socketPath, SILENCE_LIMIT_MS - (Date.now() - answeredAt));
                });
            }
        }
    };
    const drain = async () => {
        await files?.stdout.drain();
        await files?.stderr.drain();
    };
    try {
        for (let delay = 1;; delay = Math.min(delay * 2, Date.now() - started > 2000 ? 50 : 20)) {
            const status = await poll();
            // What the command wrote so far (all of it, once it has exited).
            await drain();
            if (status.exited) {
                const cut = [status['out-truncated'] ? 'stdout' : '', status['err-truncated'] ? 'stderr' : ''].filter(Boolean);
                if (cut.length > 0) {
                    throw new QgaTruncatedError(file, cut);
                }
                // With a spool, these hold only what the wrapper shell itself said.
                const stdout = Buffer.from(status['out-data'] ?? '', 'base64');
                const stderr = Buffer.from(status['err-data'] ?? '', 'base64');
                if (stdout.length > 0)
                    options.onStdout?.(stdout);
                if (stderr.length > 0)
                    options.onStderr?.(stderr);
                const result = {
                    exitCode: status.exitcode ?? null,
                    signal: status.signal === undefined ? null : signalName(status.signal),
                    timedOut,
                    stdout: (files?.stdout.text() ?? '') + stdout.toString('utf8'),
                    stderr: (files?.stderr.text() ?? '') + stderr.toString('utf8'),
                };
                if (files && result.exitCode === 127 && result.stderr === `kudp-exec: ${file}: not found\n`) {
                    throw new MissingProgramError(file, { where: 'in the lab guest' });
                }
                return result;
            }
            if (options.timeoutMs !== undefined && !timedOut && Date.now() - started > options.timeoutMs) {
                timedOut = true;
                killedAt = Date.now();
                // The command and its children (a shell's): like the old agent, SIGKILL.
                await connection.request('guest-exec', {
                    path: '/bin/sh',
                    arg: ['-c', 'pkill -KILL -P "$1"; kill -KILL "$1"', 'kill', String(pid)],
                });
            }
            if (timedOut && Date.now() - killedAt > REPLY_TIMEOUT_MS) {
                // Something else holds its output open: give up on the rest of it.
                return { exitCode: null, signal: 'SIGKILL', timedOut, stdout: files?.stdout.text() ?? '', stderr: files?.stderr.text() ?? '' };
            }
            await sleep(delay);
            if (Date.now() - heldSince > HOLD_MS) {
                connection.close();
                connection = await QgaConnection.open(socketPath);
                heldSince = Date.now();
            }
        }
    }
    catch (error) {
        if (error instanceof UserError) {
            throw error;
        }
        throw noAnswer(error);
    }
    finally {
        connection.close();
    }
}
//# sourceMappingURL=qga.js.map