/**
 * The lab agent: runs inside the QEMU guest as root and executes the commands
 * that `./run` sends it (see agent-protocol.ts). Started by guest-init.sh.
 *
 * It uses only Node's standard library so it starts fast under TCG.
 */
import { spawn } from 'node:child_process';
import { timingSafeEqual } from 'node:crypto';
import net from 'node:net';
import { parseArgs } from 'node:util';
import { encodeFrame, frameReader, type ExecRequest, type GuestFrame, type HostFrame } from './agent-protocol.js';

const { values } = parseArgs({
	options: {
		port: { type: 'string', default: '7000' },
		token: { type: 'string', default: '' },
	},
});
const token = Buffer.from(values.token ?? '');

function tokenMatches(candidate: string): boolean {
	const given = Buffer.from(candidate);
	return token.length > 0 && given.length === token.length && timingSafeEqual(given, token);
}

function serve(socket: net.Socket): void {
	const send = (frame: GuestFrame) => {
		if (!socket.destroyed) {
			socket.write(encodeFrame(frame));
		}
	};
	let child: ReturnType<typeof spawn> | undefined;
	const pendingInput: HostFrame[] = [];

	const feed = (frame: HostFrame) => {
		if (!child) {
			pendingInput.push(frame);
		} else if ('stdin' in frame) {
			child.stdin?.write(Buffer.from(frame.stdin, 'base64'));
		} else if ('stdinEnd' in frame) {
			child.stdin?.end();
		} else if ('signal' in frame) {
			child.kill(frame.signal);
		}
	};

	let request: ExecRequest | undefined;
	const read = frameReader<ExecRequest | HostFrame>(frame => {
		if (request) {
			feed(frame as HostFrame);
			return;
		}
		request = frame as ExecRequest;
		if (typeof request.token !== 'string' || !tokenMatches(request.token)) {
			send({ error: 'bad token' });
			socket.end();
			return;
		}
		child = start(request, send, () => socket.end());
		for (const queued of pendingInput.splice(0)) {
			feed(queued);
		}
	});
	// A frame that is not JSON must not throw out of the 'data' event and kill the agent.
	socket.on('data', (chunk: Buffer) => {
		try {
			read(chunk);
		} catch (error) {
			send({ error: `bad frame: ${(error as Error).message}` });
			child?.kill('SIGKILL');
			socket.end();
		}
	});
	socket.on('error', () => child?.kill('SIGKILL'));
	// The host went away (Ctrl-C on `./run shell`): do not leave the command behind.
	socket.on('close', () => {
		if (child && child.exitCode === null && child.signalCode === null) {
			child.kill('SIGHUP');
		}
	});
}

function start(request: ExecRequest, send: (frame: GuestFrame) => void, done: () => void): ReturnType<typeof spawn> {
	let argv = request.argv;
	if (request.tty) {
		// util-linux `script` gives the command a real pseudo-terminal.
		const { rows, cols } = request.tty;
		const command = argv.map(arg => `'${arg.replaceAll("'", "'\\''")}'`).join(' ');
		argv = ['script', '-qfec', `stty rows ${rows} cols ${cols}; exec ${command}`, '/dev/null'];
	}

	const [file, ...args] = argv;
	const child = spawn(file ?? 'true', args, {
		cwd: request.cwd ?? '/',
		env: { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', HOME: '/root', TERM: 'xterm', ...request.env },
		stdio: ['pipe', 'pipe', 'pipe'],
	});
	let timedOut = false;
	const timer =
		request.timeoutMs === undefined
			? undefined
			: setTimeout(() => {
					timedOut = true;
					child.kill('SIGKILL');
				}, request.timeoutMs);

	child.stdout.on('data', (chunk: Buffer) => send({ stdout: chunk.toString('base64') }));
	child.stderr.on('data', (chunk: Buffer) => send({ stderr: chunk.toString('base64') }));
	child.stdin.on('error', () => {});
	child.on('error', (error: NodeJS.ErrnoException) => {
		clearTimeout(timer);
		send({ error: `cannot run ${file}: ${error.message}`, ...(error.code ? { code: error.code, program: argv[0] ?? 'true' } : {}) });
		done();
	});
	child.on('close', (code, signal) => {
		clearTimeout(timer);
		send({ exit: code, signal, timedOut });
		done();
	});
	return child;
}

const server = net.createServer(serve);
server.listen(Number(values.port), '0.0.0.0', () => {
	process.stderr.write(`kudp-agent: listening on port ${values.port}\n`);
});
