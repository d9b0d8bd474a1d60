/**
 * Two hosts, as the original pair was meant to run: the client module on one
 * machine says HELLO to the server module on another. Here the machines are
 * two lab guests, a (useLab's) and b (booted below), on the labs' private
 * network 10.0.9.0/24 (src/lab/network.ts), which must reach nothing off this
 * machine.
 */
import type { ExecutionContext } from 'ava';
import { execa } from 'execa';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { formatKmsg } from '../../src/kmsg.js';
import { hubOf } from '../../src/lab/network.js';
import { lastLogSequence, load } from '../../src/lifecycle.js';
import { PROJECT_ROOT } from '../../src/modules.js';
import { chooseTarget, LabTarget } from '../../src/targets.js';
import { guest, kernelProblems, type LabContext, labTest, loadServer, markTestStart, test, useLab, waitForLog } from '../helpers/lab.js';

useLab(import.meta.url);

type T = ExecutionContext<LabContext>;

const B_NAME = `test-two-hosts-b-${process.pid}`;
let peer: LabTarget | undefined;

// The second host, booted after useLab's; stopped whatever happens.
test.before(async () => {
	const target = await chooseTarget({ target: 'lab', lab: B_NAME });
	if (!(target instanceof LabTarget)) {
		throw new Error('expected the lab target');
	}
	peer = target;
	await target.prepare();
});

test.after.always(async () => {
	await peer?.lab.down();
});

function labB(): LabTarget {
	if (!peer) {
		throw new Error('lab b did not boot');
	}
	return peer;
}

async function addressOf(target: LabTarget): Promise<string> {
	const address = (await target.lab.state())?.network?.address;
	if (!address) {
		throw new Error(`the lab "${target.lab.name}" has no address on the labs' network`);
	}
	return address;
}

/** Runs a shell command in lab b; fails on a non-zero exit. */
async function inB(script: string, timeoutMs = 60_000): Promise<string> {
	const result = await labB().exec(['sh', '-c', script], { timeoutMs });
	if (result.exitCode !== 0) {
		throw new Error(`command in lab b failed (${result.exitCode ?? result.signal}): ${script}\n${result.stderr}`);
	}
	return result.stdout;
}

/** A regular expression matching exactly `text`. */
function literal(text: string): string {
	return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * A test that uses both labs: labTest's kernel-problem gate covers lab a;
 * lab b gets the same gate here. `sinceB` is lab b's last kernel log record
 * before the test.
 */
function twoHostTest(title: string, implementation: (t: T, since: number, sinceB: number) => Promise<void>): void {
	labTest(title, async (t, since) => {
		const b = labB();
		const sinceB = await lastLogSequence(b);
		const start = await markTestStart(b);
		await implementation(t, since, sinceB);
		const problems = await kernelProblems(b, start);
		t.deepEqual(
			problems.map(record => formatKmsg(record)),
			[],
			'the kernel of lab b logged a problem during this test',
		);
	});
}

/** The devices on which this machine has joined the multicast group `group` (/proc/net/igmp). */
async function devicesJoined(group: string): Promise<string[]> {
	// /proc/net/igmp prints a group as the hex of its bytes in host (little-endian) order.
	const hex = Buffer.from(group.split('.').map(Number).reverse()).toString('hex').toUpperCase();
	const devices: string[] = [];
	let device = '';
	for (const line of (await readFile('/proc/net/igmp', 'utf8')).split('\n').slice(1)) {
		const header = /^\d+\s+(\S+)\s*:/.exec(line);
		if (header) {
			device = header[1]!;
		} else if (line.trim().split(/\s+/)[0] === hex) {
			devices.push(device);
		}
	}
	return devices;
}

twoHostTest('each guest has its own address on 10.0.9.0/24, and the network reaches nothing off this machine', async t => {
	const a = t.context.target;
	const b = labB();
	const [addressA, addressB] = [await addressOf(a), await addressOf(b)];
	t.regex(addressA, /^10\.0\.9\.\d+$/);
	t.regex(addressB, /^10\.0\.9\.\d+$/);
	t.not(addressA, addressB);
	t.not((await a.lab.state())?.network?.mac, (await b.lab.state())?.network?.mac);

	// ./run status shows it, as text and as JSON.
	const run = path.join(PROJECT_ROOT, 'run');
	const json = JSON.parse((await execa(run, ['status', '--json', '--lab', b.lab.name])).stdout) as {
		lab?: { network?: { address: string; prefixLength: number } };
	};
	t.like(json.lab?.network, { address: addressB, prefixLength: 24 });
	t.regex((await execa(run, ['status', '--lab', b.lab.name])).stdout, new RegExp(`labs' network: ${literal(addressB)}/24 on eth1`));

	// In the guest: eth1 holds the /24, and nothing routes off this machine.
	t.regex(await inB('ip -4 -o addr show dev eth1'), new RegExp(`inet ${literal(addressB)}/24 `));
	t.is(await inB('ip route show default'), '', 'no default route');
	t.regex(await inB(`ip route get ${addressA}`), /dev eth1/);
	const outside = await b.exec(['ip', 'route', 'get', '1.1.1.1'], { timeoutMs: 10_000 });
	t.not(outside.exitCode, 0, `ip route get 1.1.1.1 found a route: ${outside.stdout}`);
	t.regex(outside.stderr, /unreachable/i);
	t.regex(await inB(`busybox ping -c 1 -W 10 ${addressA}`), /1 packets received/, 'b reaches a over the labs network');

	// On this machine: no 10.0.9.x address, and the frames' multicast group is joined on lo only.
	const hostAddresses = (await execa('ip', ['-4', '-o', 'addr'])).stdout;
	t.notRegex(hostAddresses, /inet 10\.0\.9\./);
	const { group } = hubOf(path.join(PROJECT_ROOT, '.lab'));
	t.deepEqual([...new Set(await devicesJoined(group))], ['lo'], `the group ${group} must be joined on lo only`);
});

twoHostTest('the client module in lab b says HELLO to the server module in lab a', async (t, since, sinceB) => {
	const b = labB();
	const [addressA, addressB] = [await addressOf(t.context.target), await addressOf(b)];
	await loadServer(t, ['port=3000']);
	await load(b, t.context.client, { name: 'udp_client', params: [`destip=${addressA}`, 'port=3000'] });
	await waitForLog(t.context.target, since, new RegExp(`^udp_server: received HELLO from ${literal(addressB)}:\\d+$`));
	await waitForLog(t.context.target, since, new RegExp(`^udp_server: sent GOT IT to ${literal(addressB)}:\\d+$`));
	await waitForLog(b, sinceB, new RegExp(`^udp_client: got GOT IT from ${literal(addressA)}:3000$`));
	await inB('rmmod udp_client');
	await guest(t, 'rmmod udp_server');
});

twoHostTest('kvclient in lab b gets GOT IT from the server in lab a and works with its table', async (t, since) => {
	const b = labB();
	const [addressA, addressB] = [await addressOf(t.context.target), await addressOf(b)];
	await loadServer(t, ['port=3000', 'len=1024']);
	// A value whose reply is more than 3× the request: a sender off the
	// server's host must pad the lookup (PROTOCOL.md "Reflection"), which kvclient does.
	const long = 'l'.repeat(150);
	await guest(t, `echo "insert dog ${long}" > /proc/ht`);
	// Node straight, not bin/kvclient: its bootstrap would check (and maybe compile) the TypeScript under emulation.
	const kvclient = `'${process.execPath}' '${path.join(PROJECT_ROOT, 'dist/user-client/kvclient.js')}' --host ${addressA} --timeout 5000`;
	const out = await inB(`${kvclient} send HELLO && ${kvclient} insert cat tom the cat && ${kvclient} lookup dog`, 180_000);
	t.is(out, `GOT IT\nOK\n${long}\n`);
	t.regex(await guest(t, 'cat /proc/hashtable'), /^cat tom the cat$/m, 'the insert from lab b is in the table of lab a');
	await waitForLog(t.context.target, since, new RegExp(`^udp_server: received HELLO from ${literal(addressB)}:\\d+$`));
	await guest(t, 'rmmod udp_server');
});
