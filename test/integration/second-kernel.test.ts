/**
 * The same modules on a second kernel: Debian 12 also ships 6.12 cloud
 * kernels (the project installs one), whose networking and module code has
 * moved on since 6.1. The whole suite runs on the distribution's own kernel;
 * here the heart of it runs on the other one: the greeting both ways, the
 * key-value protocol, /proc, the backup daemon, prompt unloads, and the
 * fast paths (softirq=1 and rx_dev).
 * KUDP_LAB_KERNEL=<release> ./run test runs every test on a chosen kernel.
 */
import { installedLabKernels, usualLabKernel } from '../../src/lab/kernel.js';
import { unload } from '../../src/lifecycle.js';
import { request } from '../../user-client/client.js';
import {
	assertPromptUnload,
	guest,
	labTest,
	loadClient,
	loadServer,
	pipelined,
	timedRmmod,
	useLab,
	waitForLog,
	writersMatchModel,
} from '../helpers/lab.js';

/** The newest installed cloud kernel that is not the lab's default one. */
async function secondKernel(): Promise<string> {
	const usual = await usualLabKernel();
	const other = (await installedLabKernels()).map(kernel => kernel.release).filter(release => release !== usual);
	if (other.length === 0) {
		throw new Error(`only ${usual} is installed: ./run setup installs the second kernel (linux-image-6.12-cloud-amd64)`);
	}
	return other.at(-1)!;
}

useLab(import.meta.url, { kernel: secondKernel });

labTest('the lab runs the second kernel', async t => {
	const release = (await guest(t, 'uname -r')).trim();
	t.is(release, process.env['KUDP_LAB_KERNEL'] ?? '(unset)');
	t.not(release, await usualLabKernel());
	t.log(`guest kernel: ${release}`);
});

labTest('HELLO both ways, the key-value protocol and /proc on the second kernel', async (t, since) => {
	const server = await loadServer(t, ['port=3000', 'len=64']);
	const ask = async (message: string) =>
		(await request(message, { host: '127.0.0.1', port: server.port, timeoutMs: 2000, retries: 2 })).toString();
	t.is(await ask('HELLO'), 'GOT IT\n');
	t.is(await ask('insert dog baileys the dog'), 'OK\n');
	t.is(await ask('lookup dog'), 'OK baileys the dog\n');
	t.is(await ask('lookup cat'), 'NOT FOUND\n');
	t.is(await ask(`insert k ${'v'.repeat(64)}`), 'ERR too long\n');
	t.is(await ask('delete dog'), 'OK\n');
	t.is(await guest(t, 'echo "insert fox fred" > /proc/ht && cat /proc/hashtable'), 'fox fred\n');
	t.is(await guest(t, 'echo "lookup fox" | nc -u -w1 127.0.0.1 3000'), 'OK fred\n');
	t.is(await guest(t, 'cat /proc/ht'), 'insert dog baileys the dog\ndelete dog\ninsert fox fred\n');

	await loadClient(t, ['destip=127.0.0.1', 'port=3000']);
	await waitForLog(t.context.target, since, /^udp_client: got GOT IT from 127\.0\.0\.1:3000$/);
	for (const name of ['udp_client', 'udp_server'] as const) {
		assertPromptUnload(t, await timedRmmod(t, name), `rmmod ${name}`);
	}
	t.is(await guest(t, 'grep -c "^udp_" /proc/modules || true'), '0\n');
});

labTest('the backup daemon keeps the table across a reload on the second kernel', async t => {
	const backup = '/var/tmp/second-kernel-backup.txt';
	await guest(t, `rm -f ${backup}`);
	let server = await loadServer(t, [], { daemon: true, backup });
	for (let i = 0; i < 200; i++) {
		t.is(
			(await request(`insert key${i} value${i}`, { host: '127.0.0.1', port: server.port, timeoutMs: 2000, retries: 2 })).toString(),
			'OK\n',
		);
	}
	await unload(t.context.target, 'udp_server');
	server = await loadServer(t, [], { daemon: true, backup });
	const lines = (await guest(t, 'cat /proc/hashtable')).split('\n').filter(Boolean);
	t.is(lines.length, 200);
	t.true(lines.includes('key199 value199'));
	await unload(t.context.target, 'udp_server');
});

labTest(
	'softirq=1 and rx_dev=eth0 on the second kernel: 8 concurrent clients match a model, a pipelined sender keeps its order, unload is prompt',
	async t => {
		const server = await loadServer(t, ['softirq=1', 'threads=2', 'len=64', 'rx_dev=eth0']);
		await writersMatchModel(t, server.port);
		await guest(t, "echo 'insert dog baileys' > /proc/ht");
		// Over len, so the thread answers it; the lookup sent right behind it must come second.
		const tooLong = `insert k ${'v'.repeat(80)}`;
		t.deepEqual(await pipelined(server.port, [tooLong, 'lookup dog', tooLong, 'lookup dog']), [
			'ERR too long\n',
			'OK baileys\n',
			'ERR too long\n',
			'OK baileys\n',
		]);
		assertPromptUnload(t, await timedRmmod(t, 'udp_server'), 'rmmod with rx_dev');
	},
);
