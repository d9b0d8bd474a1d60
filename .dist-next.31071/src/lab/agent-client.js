/**
 * The host side of the agent protocol: run one command in the lab guest.
 */
import net from 'node:net';
import { UserError } from '../errors.js';
import { MissingProgramError } from '../programs.js';
import { encodeFrame, frameReader } from './agent-protocol.js';
export async function agentExec(agent, argv, options = {}) {
    const socket = net.connect({ host: '127.0.0.1', port: agent.port });
    const stdout = [];
    const stderr = [];
    return new Promise((resolve, reject) => {
        let settled = false;
        const finish = (outcome) => {
            if (settled) {
                return;
            }
            settled = true;
            clearTimeout(watchdog);
            socket.destroy();
            if (options.stdin) {
                options.stdin.removeListener('data', forwardInput);
                options.stdin.removeListener('end', endInput);
            }
            if (outcome instanceof Error) {
                reject(outcome);
            }
            else {
                resolve(outcome);
            }
        };
        const forwardInput = (chunk) => socket.write(encodeFrame({ stdin: Buffer.from(chunk).toString('base64') }));
        const endInput = () => socket.write(encodeFrame({ stdinEnd: true }));
        // The agent enforces timeoutMs; this catches a guest that stopped answering at all.
        const watchdog = options.timeoutMs === undefined
            ? undefined
            : setTimeout(() => finish(new UserError(`the lab did not answer within ${Math.round(options.timeoutMs / 1000) + 10} s`, {
                hint: 'the guest kernel may be stuck; ./run down restarts the lab',
            })), options.timeoutMs + 10_000);
        socket.on('connect', () => {
            const request = { token: agent.token, argv };
            if (options.timeoutMs !== undefined)
                request.timeoutMs = options.timeoutMs;
            if (options.env)
                request.env = options.env;
            if (options.cwd)
                request.cwd = options.cwd;
            if (options.tty)
                request.tty = options.tty;
            socket.write(encodeFrame(request));
            if (options.stdin) {
                options.stdin.on('data', forwardInput);
                options.stdin.on('end', endInput);
            }
            else {
                if (options.input !== undefined) {
                    forwardInput(options.input);
                }
                endInput();
            }
        });
        const read = frameReader(frame => {
            if ('stdout' in frame) {
                const chunk = Buffer.from(frame.stdout, 'base64');
                stdout.push(chunk);
                options.onStdout?.(chunk);
            }
            else if ('stderr' in frame) {
                const chunk = Buffer.from(frame.stderr, 'base64');
                stderr.push(chunk);
                options.onStderr?.(chunk);
            }
            else if ('error' in frame) {
                finish(frame.code === 'ENOENT' && (frame.program ?? argv[0])
                    ? new MissingProgramError((frame.program ?? argv[0]), { where: 'in the lab guest' })
                    : new UserError(`the lab agent refused the command: ${frame.error}`));
            }
            else {
                finish({
                    exitCode: frame.exit,
                    signal: frame.signal,
                    timedOut: frame.timedOut,
                    stdout: Buffer.concat(stdout).toString('utf8'),
                    stderr: Buffer.concat(stderr).toString('utf8'),
                });
            }
        });
        // A frame that is not JSON would throw out of the 'data' event, uncaught: fail this command instead.
        socket.on('data', (chunk) => {
            try {
                read(chunk);
            }
            catch (error) {
                finish(new UserError(`the lab agent sent a bad frame: ${error.message}`, { cause: error }));
            }
        });
        socket.on('error', error => finish(new UserError(`lost the connection to the lab agent: ${error.message}`, { cause: error })));
        socket.on('close', () => finish(new UserError('the lab agent closed the connection before the command finished')));
    });
}
//# sourceMappingURL=agent-client.js.map