/**
 * Where does kvd's fdatasync land? (issue 18) The backup is on virtiofs: the
 * guest's /var/tmp is this machine's .lab/NAME/var-tmp, served by a
 * virtiofsd started with cache=auto (src/lab/lab.ts). A guest fsync or
 * fdatasync is a FUSE_FSYNC request, which QEMU's virtiofsd answers by
 * calling fsync/fdatasync on its own descriptor of the host file
 * (passthrough_ll.c, lo_fsync; no option turns that off, and the cache
 * options only decide what the guest may cache, not what a sync does).
 * This test watches that virtiofsd with strace while kvd saves, in both
 * modes: each group commit's fdatasync in the guest is an fdatasync of the
 * host's BACKUP.log, and a new base is fsynced (file and directory) before
 * and after its rename. What this machine's disk does with a flush is
 * beyond the lab.
 */
import { execa } from 'execa';
import { readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { unload } from '../../src/lifecycle.js';
import { requireProgram } from '../../src/programs.js';
import { request } from '../../user-client/client.js';
import { guest, labTest, loadServer, useLab } from '../helpers/lab.js';

useLab(import.meta.url);

const BACKUP = '/var/tmp/fsync-test-backup.txt';

/** The virtiofsd serving `dir` (its -o source=). */
async function virtiofsdOf(dir: string, pids: number[]): Promise<number> {
	for (const pid of pids) {
		const cmdline = (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).split('\0');
		if (cmdline.includes(`source=${dir}`)) return pid;
	}
	throw new Error(`no virtiofsd serves ${dir} (pids ${pids.join(', ')})`);
}

for (const mode of ['default', 'durable'] as const) {
	labTest(`${mode}: kvd's fdatasync in the guest is an fdatasync of the host file by virtiofsd`, async t => {
		requireProgram('strace');
		const lab = t.context.target.lab;
		await guest(t, `rm -f ${BACKUP} ${BACKUP}.*`);
		const server = await loadServer(t, mode === 'durable' ? ['durable=1'] : [], { daemon: true, backup: BACKUP });
		await guest(t, 'sleep 1'); // the snapshot after registering is done
		const state = (await lab.state())!;
		const pid = await virtiofsdOf(lab.persistentDir, state.virtiofsdPids);
		const traceFile = path.join(tmpdir(), `kudp-fsync-${process.pid}-${mode}.strace`);
		t.teardown(() => rm(traceFile, { force: true }));
		const strace = execa('strace', ['-f', '-y', '-T', '-e', 'trace=fsync,fdatasync', '-p', String(pid), '-o', traceFile], {
			reject: false,
			stdin: 'ignore',
		});
		// strace says "attached" per thread on stderr: wait for it before writing.
		for (let i = 0; i < 100 && !/attached/.test(await readFile(traceFile, 'utf8').catch(() => '')); i++) await sleep(50);
		await sleep(300);

		// 20 inserts, one at a time. With durable=1 each waits for its own group commit;
		// by default replies come at once and kvd groups what it finds queued.
		for (let i = 0; i < 20; i++) {
			t.is((await request(`insert k${i} v${i}`, { host: '127.0.0.1', port: server.port, timeoutMs: 3000, retries: 3 })).toString(), 'OK\n');
		}
		await guest(t, 'sleep 0.5');
		const logFile = path.join(lab.persistentDir, `${path.basename(BACKUP)}.log`);
		// One "# batch" trailer per group commit, each written and fdatasynced once.
		const commits = ((await readFile(logFile, 'latin1')).match(/^# batch /gm) ?? []).length;
		t.true(mode === 'default' ? commits >= 1 : commits === 20, `${commits} group commits`);
		// A new base: a reload makes kvd register again, and a snapshot writes the base.
		await unload(t.context.target, 'udp_server');
		await loadServer(t, mode === 'durable' ? ['durable=1'] : [], { daemon: true, backup: BACKUP });
		await guest(t, 'sleep 1');
		strace.kill('SIGINT');
		await strace;

		const trace = await readFile(traceFile, 'utf8');
		const onLog = trace.split('\n').filter(line => line.includes('fdatasync(') && line.includes(`<${logFile}>`) && / = 0 </.test(line));
		const times = onLog.map(line => Number(/<([\d.]+)>$/.exec(line)?.[1]) * 1000).sort((a, b) => a - b);
		t.log(
			`${mode}: ${onLog.length} fdatasync of ${path.basename(logFile)} on this machine; ` +
				`median ${times[Math.floor(times.length / 2)]?.toFixed(2)} ms, max ${times.at(-1)?.toFixed(2)} ms`,
		);
		t.log(`${mode}: ${commits} group commits in the guest`);
		t.true(
			onLog.length >= commits,
			`${onLog.length} host fdatasync calls of the change log for ${commits} commits:\n${trace.slice(0, 2000)}`,
		);
		// The base: its temporary file fsynced before the rename, the directory after.
		t.regex(trace, new RegExp(`fsync\\(\\d+<${lab.persistentDir}/${path.basename(BACKUP)}\\.\\d+-[0-9a-f]+\\.partial>\\) = 0`));
		t.regex(trace, new RegExp(`fsync\\(\\d+<${lab.persistentDir}>\\) = 0`));
		t.deepEqual(
			(await readdir(lab.persistentDir)).filter(name => name.endsWith('.partial')),
			[],
			'no temporary base left',
		);
		await unload(t.context.target, 'udp_server');
	});
}
