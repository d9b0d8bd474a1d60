/**
 * Starting the Node agent (agent.ts) in the guest, for interactive commands:
 * qemu-ga cannot run them (it takes input up front and returns output at the
 * end). Started on the first interactive use and left running. Starting Node
 * under emulation takes seconds, a price paid only by a person at a terminal.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { UserError } from '../errors.js';
import { log } from '../log.js';
import { agentExec } from './agent-client.js';
import { AGENT_GUEST_PORT } from './agent-protocol.js';
import { qgaExec } from './qga.js';
const NODE_BINARY = process.execPath;
const AGENT_SCRIPT = fileURLToPath(new URL('./agent.js', import.meta.url));
/** Makes sure the agent answers at `agent`, starting it through qemu-ga (at `qgaSocket`) if it does not. */
export async function ensureAgent(qgaSocket, agent) {
    const reachable = async () => {
        try {
            return (await agentExec(agent, ['true'], { timeoutMs: 5000 })).exitCode === 0;
        }
        catch {
            // Not listening yet: slirp accepts the connection and drops it.
            return false;
        }
    };
    if (await reachable()) {
        return;
    }
    log.info('starting the interactive agent in the lab (Node, a few seconds under emulation)');
    const started = await qgaExec(qgaSocket, [
        'sh',
        '-c',
        'setsid "$1" "$2" --port "$3" --token "$4" </dev/null >>/var/log/kudp-agent.log 2>&1 &',
        'agent',
        NODE_BINARY,
        AGENT_SCRIPT,
        String(AGENT_GUEST_PORT),
        agent.token,
    ], { timeoutMs: 10_000 });
    if (started.exitCode !== 0) {
        throw new UserError(`cannot start the interactive agent in the lab: ${started.stderr.trim()}`);
    }
    const deadline = Date.now() + 120_000;
    while (!(await reachable())) {
        if (Date.now() > deadline) {
            throw new UserError('the interactive agent did not start in the lab within 120 s', {
                hint: './run shell -- cat /var/log/kudp-agent.log',
            });
        }
        await sleep(250);
    }
}
//# sourceMappingURL=agent-start.js.map