/**
 * The protocol between `./run` on the host and the agent in the lab guest.
 *
 * One TCP connection per command. Both sides send newline-delimited JSON.
 * The host sends an ExecRequest first, then any number of HostFrames; the
 * agent answers with GuestFrames and closes after the `exit` frame.
 * Bytes travel base64-encoded so binary output survives.
 */
export const AGENT_GUEST_PORT = 7000;
export function encodeFrame(frame) {
    return `${JSON.stringify(frame)}\n`;
}
/** Splits a byte stream into JSON frames; returns a function to feed chunks to. */
export function frameReader(onFrame) {
    let pending = '';
    return chunk => {
        pending += chunk.toString('utf8');
        for (let newline = pending.indexOf('\n'); newline >= 0; newline = pending.indexOf('\n')) {
            const line = pending.slice(0, newline);
            pending = pending.slice(newline + 1);
            if (line.trim() !== '') {
                onFrame(JSON.parse(line));
            }
        }
    };
}
//# sourceMappingURL=agent-protocol.js.map