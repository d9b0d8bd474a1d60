/**
 * `./run demo`: the whole exchange in one command. Loads the server, says
 * HELLO to it from this machine (as `kvclient send HELLO` would), loads the
 * kernel client so the two modules talk inside one kernel, stores and reads
 * a key, prints what both sides logged, and cleans up.
 */
import { request } from '../../user-client/client.js';
import { messageOf, UserError } from '../errors.js';
import { formatKmsg, isProblem, type KmsgRecord } from '../kmsg.js';
import { build, lastLogSequence, load, moduleLines, unload } from '../lifecycle.js';
import { log } from '../log.js';
import { chooseTarget, type Target, type TargetChoice } from '../targets.js';
import { ensureSystemPackages, putCommandsOnPath } from './setup.js';

const DEMO_PORT = 3000;

async function say(message: string, port: number): Promise<string> {
	process.stdout.write(`$ kvclient send ${message}\n`);
	const reply = (await request(message, { host: '127.0.0.1', port, timeoutMs: 2000, retries: 2 })).toString('utf8');
	process.stdout.write(reply.endsWith('\n') ? reply : `${reply}\n`);
	return reply.trim();
}

async function waitForLine(target: { kernelLog(): Promise<KmsgRecord[]> }, pattern: RegExp, timeoutMs: number) {
	const deadline = Date.now() + timeoutMs;
	while (Date.now() < deadline) {
		const found = (await target.kernelLog()).find(record => pattern.test(record.text));
		if (found) {
			return found;
		}
		await new Promise(resolve => setTimeout(resolve, 200));
	}
	return undefined;
}

export async function demoCommand(options: TargetChoice): Promise<void> {
	await ensureSystemPackages();
	// What the demo shows, the user tries next: run and kvclient on PATH.
	await putCommandsOnPath();
	const target = await chooseTarget(options);
	log.info(`target: ${target.reason}`);
	const wasUp = await target.isUp();
	const server = await build(target, 'udp_server');
	const client = await build(target, 'udp_client');
	await target.prepare();
	const firstRecord = (await lastLogSequence(target)) + 1;

	let succeeded = false;
	try {
		process.stdout.write(`\n$ ./run udp_server port=${DEMO_PORT} --detach\n`);
		await load(target, server, { name: 'udp_server', params: [`port=${DEMO_PORT}`] });
		process.stdout.write(`udp_server listens on UDP port ${DEMO_PORT}\n\n`);

		const hello = await say('HELLO', DEMO_PORT);
		await say('insert dog baileys', DEMO_PORT);
		await say('lookup dog', DEMO_PORT);

		process.stdout.write(`\n$ ./run udp_client destip=127.0.0.1 port=${DEMO_PORT} --detach\n`);
		await load(target, client, { name: 'udp_client', params: ['destip=127.0.0.1', `port=${DEMO_PORT}`] });
		const gotIt = await waitForLine(target, /^udp_client: (got GOT IT|no reply)/, 20_000);

		const records = (await target.kernelLog()).filter(record => record.sequence >= firstRecord);
		process.stdout.write('\nWhat the modules logged (./run logs):\n');
		for (const record of [...moduleLines(records, 'udp_server'), ...moduleLines(records, 'udp_client')].sort(
			(a, b) => a.sequence - b.sequence,
		)) {
			process.stdout.write(`  ${formatKmsg(record)}\n`);
		}
		const problems = records.filter(record => isProblem(record.text));
		if (hello !== 'GOT IT' || !gotIt?.text.includes('got GOT IT') || problems.length > 0) {
			throw new UserError('the demo did not go as expected', {
				hint: problems.map(record => formatKmsg(record)).join('\n') || 'see ./run logs',
			});
		}
		process.stdout.write(
			'\nThe demo worked: the server answered HELLO from this machine and from the kernel client.\n' +
				`Try it yourself: ./run udp_server port=${DEMO_PORT}, then from another terminal: kvclient send HELLO\n\n`,
		);
		succeeded = true;
	} finally {
		// Cleaning-up failures are logged; they fail the demo only if nothing failed before.
		await cleanUp(target, wasUp).catch(error => {
			if (succeeded) {
				throw error;
			}
		});
	}
}

/**
 * Unloads both modules, removes the port forward and stops a lab the demo
 * booted. Every step is tried even if one fails (a stuck rmmod); each failure
 * is reported, and the first one fails the demo.
 */
export async function cleanUp(target: Target, wasUp: boolean, unloadModule: typeof unload = unload): Promise<void> {
	const failures: unknown[] = [];
	const attempt = async (what: string, step: () => Promise<void>) => {
		try {
			await step();
		} catch (error) {
			failures.push(error);
			const hint = error instanceof UserError && error.hint ? ` (${error.hint})` : '';
			log.error(`cleaning up: ${what} failed: ${messageOf(error)}${hint}`);
		}
	};
	for (const name of ['udp_client', 'udp_server'] as const) {
		await attempt(`unloading ${name}`, async () => {
			const elapsed = await unloadModule(target, name);
			if (elapsed !== undefined) {
				process.stdout.write(`unloaded ${name} in ${elapsed.toFixed(0)} ms\n`);
			}
		});
	}
	await attempt(`removing the forward of UDP port ${DEMO_PORT}`, () => target.unexposeUdp(DEMO_PORT));
	if (!wasUp) {
		await attempt('stopping the lab', async () => {
			if (await target.stop()) process.stdout.write('stopped the lab\n');
		});
	}
	if (failures.length > 0) {
		throw failures[0];
	}
}
