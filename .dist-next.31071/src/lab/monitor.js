/**
 * QEMU's human monitor (HMP) over its unix socket: used to add and remove
 * port forwards at run time and to quit the guest.
 */
import net from 'node:net';
const PROMPT = '(qemu) ';
/** Sends one HMP command and returns what QEMU printed in reply. */
export async function hmp(socketPath, command, timeoutMs = 5000) {
    return new Promise((resolve, reject) => {
        const socket = net.connect(socketPath);
        let buffer = '';
        let sent = false;
        const timer = setTimeout(() => {
            socket.destroy();
            reject(new Error(`QEMU's monitor did not answer "${command}" within ${timeoutMs} ms`));
        }, timeoutMs);
        const finish = () => {
            clearTimeout(timer);
            socket.destroy();
            // The reply is what follows the echoed command, up to the next prompt.
            const afterEcho = buffer.slice(buffer.indexOf(command) + command.length);
            resolve(afterEcho
                .replace(PROMPT, '')
                // biome-ignore lint/suspicious/noControlCharactersInRegex: ESC starts the terminal codes removed here
                .replace(/\x1b\[[0-9;]*[A-Za-z]/g, '')
                .trim());
        };
        socket.on('data', chunk => {
            buffer += chunk.toString('utf8');
            if (!sent && buffer.includes(PROMPT)) {
                sent = true;
                buffer = '';
                socket.write(`${command}\n`);
            }
            else if (sent && buffer.endsWith(PROMPT)) {
                finish();
            }
        });
        // `quit` closes the socket instead of printing a prompt.
        socket.on('close', () => {
            if (sent) {
                finish();
            }
        });
        socket.on('error', error => {
            clearTimeout(timer);
            reject(error);
        });
    });
}
//# sourceMappingURL=monitor.js.map