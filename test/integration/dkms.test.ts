/**
 * `./run install` and `./run uninstall` for real, on the local target:
 * ./run runs INSIDE a lab guest with KUDP_TARGET=local, as on a user's
 * Debian machine that loads modules. DKMS (this machine's dkms, seen through
 * the shared root) builds the modules there against the guest kernel's
 * headers (/lib/modules/RELEASE/build, the cloud kernel's headers installed
 * on this machine), modprobe loads the installed one with the modprobe.d
 * options, kvclient gets GOT IT, and uninstall leaves nothing behind. All the
 * guest writes (/usr/src, /lib/modules, /etc, /var/lib/dkms) is in its RAM.
 *
 * The guest runs busybox init, not systemd: kvd's unit is checked with
 * systemd-analyze verify (this machine's, when it has one) and by content,
 * never started by systemd here.
 *
 * One pass, in order: a DKMS build under emulation takes minutes.
 */
import type { ExecutionContext } from 'ava';
import path from 'node:path';
import { PROJECT_ROOT } from '../../src/modules.js';
import { guest, labTest, useLab, type LabContext } from '../helpers/lab.js';
import { inGuest, type Run } from '../helpers/local-in-guest.js';

// Two emulated CPUs (DKMS's make and openssl starve qemu-ga on one) and 1 GB: gcc, dkms and
// ./run's Node together do not fit in the default 256 MB.
useLab(import.meta.url, { cpus: 2, memoryMb: 1024 });

/** What uninstall must leave as it found: every path under these, before install and after uninstall. */
const WATCHED =
	'{ find /usr/src "/lib/modules/$(uname -r)" -maxdepth 1; find /etc/modprobe.d /etc/modules-load.d /etc/systemd/system /var/lib/dkms -maxdepth 3; ' +
	'find "/lib/modules/$(uname -r)/updates"; } 2>/dev/null | sort';

/**
 * What DKMS itself makes on first use and keeps for every package: its
 * module-signing key (dkms's, not ours; the next DKMS package reuses it).
 */
const DKMS_OWN = /^\/var\/lib\/dkms\/mok\.(key|pub)$/;

/**
 * `./run ARGS` in the guest, niced: with one emulated CPU and a busy
 * machine, dkms's make and openssl otherwise starve the guest's qemu-ga
 * until it stops answering the polls (seen at load average 15).
 */
async function run(t: ExecutionContext<LabContext>, args: string[], timeoutMs?: number): Promise<Run> {
	const result = await inGuest(t, ['nice', '-n', '19', './run', ...args], timeoutMs);
	t.log(`./run ${args.join(' ')}: exit ${result.exitCode} in ${result.seconds.toFixed(1)} s`);
	return result;
}

let before: string[] = [];
let release = '';

labTest('install refuses a bad parameter before it installs anything', async t => {
	release = (await guest(t, 'uname -r')).trim();
	t.regex(await guest(t, 'readlink -f "/lib/modules/$(uname -r)/build"'), /^\/usr\/src\/linux-headers-/, 'DKMS finds the headers');
	before = (await guest(t, WATCHED)).split('\n');
	const refused = await run(t, ['install', 'port=70000', 'udp_client.colour=red']);
	t.is(refused.exitCode, 64, refused.output);
	t.regex(refused.output, /run: port must be between 1 and 65535, not 70000\n/);
	t.regex(refused.output, /udp_server takes these parameters:/);
	t.deepEqual((await guest(t, WATCHED)).split('\n'), before, 'nothing written');
});

labTest('install registers both modules with DKMS, builds them for this kernel and writes the conf files and the unit', async t => {
	t.timeout(1_500_000); // a DKMS build of both modules under emulation, on a busy machine
	const installed = await run(t, ['install', 'port=3002', 'udp_client.destip=127.0.0.1', 'udp_client.port=3002'], 1_400_000);
	t.log(installed.output);
	t.is(installed.exitCode, 0, installed.output);
	t.regex(installed.output, /target: this machine's kernel .* \(asked for with --target local\)/);
	t.regex(installed.output, new RegExp(`installed kernel-udp \\S+ with DKMS for ${release.replace(/[.+]/g, '\\$&')}`));

	const status = await guest(t, 'dkms status kernel-udp');
	t.regex(status, new RegExp(`^kernel-udp/\\S+, ${release.replace(/[.+]/g, '\\$&')}, x86_64: installed`, 'm'));
	for (const name of ['udp_server', 'udp_client']) {
		t.regex(
			await guest(t, `modinfo -n ${name}`),
			new RegExp(`^/lib/modules/${release.replace(/[.+]/g, '\\$&')}/updates/dkms/${name}\\.ko\\n$`),
		);
	}
	t.is(
		await guest(t, "grep -v '^#' /etc/modprobe.d/kernel-udp.conf"),
		'options udp_server port=3002\noptions udp_client destip=127.0.0.1 port=3002\n',
	);
	t.is(await guest(t, "grep -v '^#' /etc/modules-load.d/kernel-udp.conf"), 'udp_server\n');

	const unitPath = '/etc/systemd/system/kernel-udp-kvd.service';
	t.is(await guest(t, 'readlink /etc/systemd/system/multi-user.target.wants/kernel-udp-kvd.service'), `${unitPath}\n`, 'enabled');
	const unit = await guest(t, `cat ${unitPath}`);
	const execStart = /^ExecStart=(.*)$/m.exec(unit)?.[1] ?? '';
	const words = [...execStart.matchAll(/"((?:[^"\\]|\\.)*)"/g)].map(match => match[1] ?? '');
	t.is(words.length, 4, execStart);
	t.deepEqual(words.slice(2), ['--backup', '/var/tmp/hashtable_backup.txt']);
	// The node and kvd.js it names exist in the target (the checkout's compiled daemon).
	await guest(t, `test -x '${words[0]}' && test -f '${words[1]}'`);
	const verify = await t.context.target.exec(['sh', '-c', `command -v systemd-analyze && systemd-analyze verify ${unitPath}`], {
		timeoutMs: 120_000,
	});
	if (verify.stdout.trim() === '') {
		t.log('no systemd-analyze on this machine: the unit was checked by its content only');
	} else {
		t.is(verify.exitCode, 0, `systemd-analyze verify: ${verify.stderr}`);
		t.log(`systemd-analyze verify ${unitPath}: exit ${verify.exitCode}${verify.stderr.trim() ? `: ${verify.stderr.trim()}` : ''}`);
	}
});

labTest('modprobe loads the DKMS-built server with the installed options; kvclient gets GOT IT', async t => {
	await guest(t, 'modprobe udp_server');
	t.is(await guest(t, 'cat /sys/module/udp_server/parameters/port'), '3002\n', 'the modprobe.d options');
	const hello = await t.context.target.exec([path.join(PROJECT_ROOT, 'bin/kvclient'), '--port', '3002', '-w', '10', 'send', 'HELLO'], {
		timeoutMs: 180_000,
	});
	t.is(hello.stdout, 'GOT IT\n', hello.stderr);
	t.is(hello.exitCode, 0);
});

labTest('uninstall unloads and removes all of it, leaves nothing behind, and a second one has nothing to do', async t => {
	const removed = await run(t, ['uninstall']);
	t.log(removed.output);
	t.is(removed.exitCode, 0, removed.output);
	t.regex(removed.output, /unloaded udp_server/);
	t.regex(removed.output, /dkms remove --all: kernel-udp\//);
	t.is(await guest(t, 'grep -c "^udp_" /proc/modules || true'), '0\n');
	t.is(await guest(t, 'dkms status kernel-udp'), '');
	// The kernel's own udp_diag.ko and udp_tunnel.ko stay; ours are gone.
	t.is(await guest(t, 'find "/lib/modules/$(uname -r)" -name "udp_server.ko*" -o -name "udp_client.ko*"'), '');
	const modprobe = await t.context.target.exec(['modprobe', '-n', 'udp_server'], { timeoutMs: 60_000 });
	t.not(modprobe.exitCode, 0, 'modprobe no longer finds udp_server');
	const after = (await guest(t, WATCHED)).split('\n');
	t.deepEqual(
		after.filter(file => !before.includes(file) && !DKMS_OWN.test(file)),
		[],
		'left behind',
	);
	t.deepEqual(
		before.filter(file => !after.includes(file)),
		[],
		'removed what was there before',
	);

	const again = await run(t, ['uninstall']);
	t.is(again.exitCode, 0, again.output);
	t.regex(again.output, /kernel-udp was not installed in this machine's kernel: nothing to remove\n/);
});
