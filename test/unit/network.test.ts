/**
 * The labs' network (src/lab/network.ts): addresses that are stable per lab,
 * never shared between labs, even when they are asked for at once, and given
 * back when a lab is gone; and QEMU options that keep the frames on loopback.
 */
import test from 'ava';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { assignHost, hubOf, networkOf, qemuNetworkArgs } from '../../src/lab/network.js';

async function labRoot(t: { teardown(fn: () => Promise<void>): void }, labs: string[] = []): Promise<string> {
	const root = await mkdtemp(path.join(tmpdir(), 'kudp-network-'));
	t.teardown(() => rm(root, { recursive: true, force: true }));
	for (const name of labs) {
		await mkdir(path.join(root, name));
	}
	return root;
}

const running = async () => true;

test('a lab gets the lowest free host number and keeps it', async t => {
	const root = await labRoot(t, ['a', 'b']);
	t.is(await assignHost(root, 'a', running), 2);
	t.is(await assignHost(root, 'b', running), 3);
	t.is(await assignHost(root, 'a', running), 2, 'the same lab, the same address');
	t.deepEqual(JSON.parse(await readFile(path.join(root, 'network.json'), 'utf8')).hosts, { a: 2, b: 3 });
});

test('labs asking at once all get different numbers', async t => {
	const names = Array.from({ length: 30 }, (_, i) => `lab${i}`);
	const root = await labRoot(t, names);
	const hosts = await Promise.all(names.map(name => assignHost(root, name, running)));
	t.is(new Set(hosts).size, names.length, `numbers shared: ${hosts.join(' ')}`);
	t.deepEqual(
		[...hosts].sort((x, y) => x - y),
		names.map((_, i) => i + 2),
	);
});

test('a lab whose directory is gone gives its number back', async t => {
	const root = await labRoot(t, ['a', 'b']);
	await assignHost(root, 'a', running);
	await assignHost(root, 'b', running);
	await rm(path.join(root, 'a'), { recursive: true });
	await mkdir(path.join(root, 'c'));
	t.is(await assignHost(root, 'c', running), 2);
	t.is(await assignHost(root, 'b', running), 3);
});

test('when every number is taken, one of a lab that is down is reused; else a clear error', async t => {
	const names = Array.from({ length: 253 }, (_, i) => `lab${i}`);
	const root = await labRoot(t, [...names, 'late']);
	const hosts = Object.fromEntries(names.map((name, i) => [name, i + 2]));
	await writeFile(path.join(root, 'network.json'), JSON.stringify({ network: '10.0.9.0/24', hosts }));
	await t.throwsAsync(assignHost(root, 'late', running), { message: /no free address on the labs' network 10\.0\.9\.0\/24/ });
	t.is(await assignHost(root, 'late', async name => name !== 'lab7'), 9);
	t.is(JSON.parse(await readFile(path.join(root, 'network.json'), 'utf8')).hosts.lab7, undefined);
});

test('a corrupt registry is an error that says which file', async t => {
	const root = await labRoot(t, ['a']);
	await writeFile(path.join(root, 'network.json'), '{"hosts": {"a": "two"}}');
	await t.throwsAsync(assignHost(root, 'a', running), { message: /network\.json is corrupt/ });
});

test('a guest on the network: its address, its MAC, and a hub on loopback only', t => {
	const network = networkOf('/somewhere/.lab', 20);
	t.like(network, { address: '10.0.9.20', prefixLength: 24, mac: '52:54:00:0a:09:14' });
	t.regex(network.hub.group, /^239\.255\.\d+\.\d+$/);
	t.deepEqual(hubOf('/somewhere/.lab'), network.hub, 'one checkout, one hub');
	t.notDeepEqual(hubOf('/elsewhere/.lab'), network.hub, 'another checkout, another hub');
	const args = qemuNetworkArgs(network).join(' ');
	t.regex(args, /remote\.host=239\.255\.\d+\.\d+,remote\.port=\d+,local\.type=inet,local\.host=127\.0\.0\.1,/);
	t.regex(args, /mac=52:54:00:0a:09:14/);
	t.throws(() => networkOf('/somewhere/.lab', 255), { message: /bad host number 255/ });
});
