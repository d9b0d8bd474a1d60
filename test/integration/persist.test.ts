/**
 * The backup daemon kvd: no acknowledged write is lost across a module
 * reload, a daemon restart, a lab restart; at most the last moments are lost
 * when the guest is killed; bad backups are refused whole; one kvd at a time.
 */
import type { ExecutionContext } from 'ava';
import { startDaemon, stopLab, unload } from '../../src/lifecycle.js';
import { PROJECT_ROOT } from '../../src/modules.js';
import { request } from '../../user-client/client.js';
import { guest, labTest, loadServer, useLab, type LabContext } from '../helpers/lab.js';

useLab(import.meta.url);

type T = ExecutionContext<LabContext>;
const BACKUP = '/var/tmp/persist-test-backup.txt';

async function send(port: number, message: string): Promise<string> {
	return (await request(message, { host: '127.0.0.1', port, timeoutMs: 3000, retries: 3 })).toString();
}

async function table(t: T): Promise<Map<string, string>> {
	const entries = new Map<string, string>();
	for (const line of (await guest(t, 'cat /proc/hashtable')).split('\n').filter(Boolean)) {
		const space = line.indexOf(' ');
		entries.set(line.slice(0, space), line.slice(space + 1));
	}
	return entries;
}

function assertTable(t: T, actual: Map<string, string>, model: Map<string, string>, when: string) {
	const missing = [...model].filter(([key, value]) => actual.get(key) !== value).length;
	const extra = [...actual.keys()].filter(key => !model.has(key)).length;
	t.is(missing, 0, `${when}: ${missing} acknowledged writes lost`);
	t.is(extra, 0, `${when}: ${extra} deleted keys came back`);
}

/** 5 000 acknowledged inserts and deletes over UDP, tracked in a model. */
async function writeMany(port: number, model: Map<string, string>, count: number, tag: string): Promise<void> {
	for (let i = 0; i < count; i++) {
		const key = `${tag}${i % 1500}`;
		if (i % 4 === 3) {
			const reply = await send(port, `delete ${key}`);
			if (reply === 'OK\n' || reply === 'NOT FOUND\n') model.delete(key);
		} else if ((await send(port, `insert ${key} value-${i}`)) === 'OK\n') {
			model.set(key, `value-${i}`);
		}
	}
}

labTest('every acknowledged write survives a module reload, a kvd restart and a lab restart', async t => {
	await guest(t, `rm -f ${BACKUP}`);
	const model = new Map<string, string>();
	let server = await loadServer(t, [], { daemon: true, backup: BACKUP });
	await writeMany(server.port, model, 5000, 'k');

	// 1. Unload (kvd saves once more, then rmmod) and load again.
	await unload(t.context.target, 'udp_server');
	server = await loadServer(t, [], { daemon: true, backup: BACKUP });
	assertTable(t, await table(t), model, 'after a module reload');

	// 2. The daemon dies hard and comes back: the table stays authoritative.
	await writeMany(server.port, model, 500, 'd');
	await guest(t, 'kill -9 "$(cat /run/kvd.pid)"; rm -f /run/kvd.pid; sleep 0.3');
	await startDaemon(t.context.target, BACKUP);
	assertTable(t, await table(t), model, 'after a kvd restart');
	await writeMany(server.port, model, 200, 'e');

	// 3. The lab goes down as `./run down` does it, and a fresh guest boots.
	await stopLab(t.context.target);
	await t.context.target.prepare();
	server = await loadServer(t, [], { daemon: true, backup: BACKUP });
	assertTable(t, await table(t), model, 'after a lab restart');
	await unload(t.context.target, 'udp_server');
});

labTest('a hard kill of the guest loses at most the writes of the last moments', async t => {
	await guest(t, `rm -f ${BACKUP}`);
	let server = await loadServer(t, [], { daemon: true, backup: BACKUP });
	const acked: Array<{ key: string; at: number }> = [];
	// At least 1 000 inserts over at least 4 s: writes older than the 2 s bound
	// must be there after the kill, so a kvd that never saves fails the test.
	const started = Date.now();
	for (let i = 0; i < 20_000 && (i < 1000 || Date.now() - started < 4000); i++) {
		if ((await send(server.port, `insert hk${i} v${i}`)) === 'OK\n') acked.push({ key: `hk${i}`, at: Date.now() });
	}
	const killedAt = Date.now();
	t.true(killedAt - acked[0]!.at > 2000, 'the inserts must span more than the bound');
	const { qemuPid } = (await t.context.target.lab.state())!;
	process.kill(qemuPid, 'SIGKILL');
	await t.context.target.lab.down();
	await t.context.target.prepare();
	server = await loadServer(t, [], { daemon: true, backup: BACKUP });
	const restored = await table(t);
	const lost = acked.filter(entry => !restored.has(entry.key));
	t.true(lost.length < acked.length, 'nothing was saved before the kill');
	const window = lost.length > 0 ? killedAt - Math.min(...lost.map(entry => entry.at)) : 0;
	t.log(`guest killed after ${acked.length} acknowledged inserts: ${lost.length} lost, all within the last ${window} ms`);
	t.true(window <= 2000, `writes acknowledged ${window} ms before the kill were lost`);
	await unload(t.context.target, 'udp_server');
});

labTest('a corrupt or truncated backup is reported and never loaded half', async t => {
	await guest(t, `rm -f ${BACKUP}`);
	const server = await loadServer(t, [], { daemon: true, backup: BACKUP });
	for (let i = 0; i < 50; i++) await send(server.port, `insert c${i} v${i}`);
	await unload(t.context.target, 'udp_server');
	const good = await guest(t, `cat ${BACKUP}`);

	for (const [what, content] of [
		['truncated', good.slice(0, Math.floor(good.length / 2))],
		['edited', good.replace('c7 v7', 'c7 evil')],
		['not a backup', 'dog baileys\n'],
	] as const) {
		await t.context.target.exec(['sh', '-c', `cat > ${BACKUP}`], { input: content, timeoutMs: 10_000 });
		const error = await t.throwsAsync(loadServer(t, [], { daemon: true, backup: BACKUP }));
		t.regex(error?.message ?? '', /kvd did not start: the backup .* is corrupt/, what);
		t.is((await table(t)).size, 0, `${what}: nothing was loaded`);
		await unload(t.context.target, 'udp_server');
	}
});

labTest('a second kvd is refused, and a burst of 10 000 inserts costs a handful of saves', async t => {
	await guest(t, `rm -f ${BACKUP} /var/log/kvd.log`);
	await loadServer(t, [], { daemon: true, backup: BACKUP });
	const second = await t.context.target.exec(
		['sh', '-c', `${process.execPath} ${PROJECT_ROOT}/dist/daemon/kvd.js --backup ${BACKUP} --pid-file /run/kvd2.pid`],
		{ timeoutMs: 60_000 },
	);
	t.is(second.exitCode, 1);
	t.regex(second.stderr, /another kvd \(pid \d+\) is already running/);

	await guest(
		t,
		`${process.execPath} -e 'const fs=require("fs"); const fd=fs.openSync("/proc/ht","w"); for (let i=0;i<10000;i++) fs.writeSync(fd, "insert burst"+i+" v"+i);'`,
		300_000,
	);
	// Wait for the last save, then count them.
	let saves: Array<{ entries: number }> = [];
	for (let i = 0; i < 100; i++) {
		saves = (await guest(t, 'grep \'"msg":"saved"\' /var/log/kvd.log || true'))
			.split('\n')
			.filter(Boolean)
			.map(line => JSON.parse(line) as { entries: number });
		if (saves.at(-1)?.entries === 10_000) break;
		await new Promise(resolve => setTimeout(resolve, 200));
	}
	t.log(`10 000 inserts caused ${saves.length} saves`);
	t.is(saves.at(-1)?.entries, 10_000, 'the last save holds every insert');
	t.true(saves.length <= 100, `${saves.length} saves`);
	await unload(t.context.target, 'udp_server');
	t.is((await guest(t, `grep -c '^burst' ${BACKUP}`)).trim(), '10000');
});
