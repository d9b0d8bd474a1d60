/**
 * The module's side of the backup daemon, at its edges (issue 17): an
 * unload with a /proc/ht writer waiting for a stopped kvd returns, a dead
 * kvd wakes the writers waiting for it, a zombie kvd is no daemon, a dead
 * one is forgotten with durable=0 too, replies to one sender keep their
 * order with durable=1, and memcached entries with an expiry time are gone
 * when they expire: from the table's limits at once, and from the backup.
 */
import type { ExecutionContext } from 'ava';
import { setTimeout as sleep } from 'node:timers/promises';
import { unload } from '../../src/lifecycle.js';
import { assertPromptUnload, guest, type LabContext, labTest, loadServer, timedRmmod, useLab, SLOWDOWN } from '../helpers/lab.js';

useLab(import.meta.url);

type T = ExecutionContext<LabContext>;

const BACKUP = '/var/tmp/daemon-edges-backup.txt';
const FILES = `${BACKUP} ${BACKUP}.log ${BACKUP}.rejected-* ${BACKUP}.damaged-*`;
const MC_PORT = 11211;

async function python(t: T, script: string, timeoutMs = 120_000): Promise<string> {
	const result = await t.context.target.exec(['python3', '-c', script], { timeoutMs });
	if (result.exitCode !== 0) throw new Error(`python3 in the guest failed:\n${result.stderr}`);
	return result.stdout;
}

/** Runs memcached commands from one socket in the guest; the replies' text, one per command. */
async function memcached(t: T, commands: string[]): Promise<string[]> {
	const script = [
		'import json, socket, struct, sys',
		's = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)',
		's.settimeout(3.0)',
		'out = []',
		`for i, body in enumerate(json.loads(${JSON.stringify(JSON.stringify(commands))})):`,
		`    s.sendto(struct.pack('>HHHH', i, 0, 1, 0) + body.encode('latin1'), ('127.0.0.1', ${MC_PORT}))`,
		'    out.append(s.recv(65536)[8:].decode("latin1"))',
		'print(json.dumps(out))',
	].join('\n');
	return JSON.parse(await python(t, script)) as string[];
}

const set = (key: string, value: string, exptime = 0) => `set ${key} 0 ${exptime} ${value.length}\r\n${value}\r\n`;

labTest('durable=1: rmmod returns with a /proc/ht writer waiting for a stopped kvd; the writer is told', async t => {
	await guest(t, `rm -f ${FILES}`);
	await loadServer(t, ['durable=1'], { daemon: true, backup: BACKUP });
	const times = await timedRmmod(
		t,
		'udp_server',
		['kill -STOP "$(cat /run/kvd.pid)"', '(echo "insert a b" > /proc/ht; echo "writer: $?" > /tmp/writer.out) &', 'sleep 0.5'].join('\n'),
	);
	t.log(`rmmod with a writer waiting and kvd stopped: module_exit ${times.exitMs} ms, the command ${times.commandMs} ms`);
	// The unload gives a stuck kvd its 5 s to save, then wakes the writer.
	t.true(times.exitMs < 7000 * SLOWDOWN, `module_exit took ${times.exitMs} ms`);
	await sleep(500);
	t.regex(await guest(t, 'cat /tmp/writer.out'), /^writer: [1-9]\d*$/m, 'the write failed: its change is not known to be on disk');
	await guest(t, 'kill -CONT "$(cat /run/kvd.pid)"');
});

labTest('durable=1: a kvd that dies wakes the /proc/ht writers waiting for it at once', async t => {
	await guest(t, `rm -f ${FILES}`);
	await loadServer(t, ['durable=1'], { daemon: true, backup: BACKUP });
	const out = await guest(
		t,
		[
			'kill -STOP "$(cat /run/kvd.pid)"',
			'(s=$(date +%s%N); echo "insert a b" > /proc/ht; r=$?; e=$(date +%s%N); echo "$r $(( (e - s) / 1000000 ))" > /tmp/writer.out) &',
			'sleep 1',
			'kill -9 "$(cat /run/kvd.pid)"; rm -f /run/kvd.pid',
			'wait',
			'cat /tmp/writer.out',
		].join('\n'),
		60_000,
	);
	const [status, ms] = out.trim().split(' ').map(Number);
	t.log(`the writer returned ${status} after ${ms} ms (kvd killed at 1 000 ms)`);
	t.not(status, 0, 'the change is not on disk: the write fails');
	t.true(ms! < 3000 * SLOWDOWN, `the writer waited ${ms} ms`);
	assertPromptUnload(t, await timedRmmod(t, 'udp_server'), 'rmmod with kvd dead');
});

labTest('durable=1: a zombie is no daemon: changes are refused, not parked for ever', async t => {
	await loadServer(t, ['durable=1']);
	const out = await python(
		t,
		[
			'import errno, os, time',
			'pid = os.fork()',
			'if pid == 0:',
			"    with open('/proc/daemonpid', 'w') as f: f.write(str(os.getpid()))",
			'    os._exit(0)',
			'time.sleep(0.5)  # the child is a zombie now: not reaped',
			"state = open(f'/proc/{pid}/stat').read().split(')')[1].split()[0]",
			"registered = open('/proc/daemonpid').read().strip()",
			'try:',
			"    with open('/proc/ht', 'w') as f: f.write('insert a b')",
			"    result = 'written'",
			'except OSError as e:',
			'    result = errno.errorcode[e.errno]',
			'os.waitpid(pid, 0)',
			'print(state, registered, result)',
		].join('\n'),
		30_000,
	);
	t.is(out.trim(), 'Z 0 ENOLINK', 'state of the child, /proc/daemonpid, the insert');
	await unload(t.context.target, 'udp_server');
});

labTest('durable=0: a daemon that died is forgotten; no journal lines are queued for nobody', async t => {
	await loadServer(t, []);
	// A "daemon" that registers and exits at once: the shell writes its own PID.
	await guest(t, "sh -c 'echo $$ > /proc/daemonpid'; sleep 0.3");
	await guest(t, 'for i in 1 2 3 4 5; do echo "insert k$i v$i" > /proc/ht; sleep 0.05; done');
	t.is(await guest(t, 'cat /proc/daemonpid'), '0\n');
	const queued = await python(
		t,
		[
			'import os',
			"fd = os.open('/proc/kvjournal', os.O_RDONLY | os.O_NONBLOCK)",
			'try:',
			'    print(os.read(fd, 65536).decode())',
			'except BlockingIOError:',
			"    print('')",
		].join('\n'),
	);
	t.notRegex(queued, /insert k/, `lines queued for a dead daemon: ${JSON.stringify(queued)}`);
	await unload(t.context.target, 'udp_server');
});

labTest('durable=1: replies to one sender keep their order (a read waits behind its sender’s write)', async t => {
	await guest(t, `rm -f ${FILES}`);
	await loadServer(t, ['durable=1'], { daemon: true, backup: BACKUP });
	const out = await python(
		t,
		[
			'import socket',
			's = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)',
			's.settimeout(5.0)',
			'wrong = 0',
			'for i in range(100):',
			"    s.sendto(f'insert k{i} v{i}'.encode(), ('127.0.0.1', 3000))",
			"    s.sendto(f'lookup k{i}'.encode(), ('127.0.0.1', 3000))",
			'    got = [s.recv(100).decode(), s.recv(100).decode()]',
			"    if got != ['OK\\n', f'OK v{i}\\n']:",
			'        wrong += 1',
			'        if wrong < 4: print(i, got)',
			"print('wrong', wrong)",
		].join('\n'),
	);
	t.regex(out, /^wrong 0$/m, out);
	await unload(t.context.target, 'udp_server');
});

labTest('memcached entries with an expiry time: not in the backup, and gone from max_entries once expired', async t => {
	await guest(t, `rm -f ${FILES}`);
	await loadServer(t, [`memcached_port=${MC_PORT}`, 'max_entries=10', 'len=200'], { daemon: true, backup: BACKUP });
	t.deepEqual(await memcached(t, [set('lasting', 'p'), set('brief', 'b', 60), set('shadow', 'old'), set('shadow', 'new', 60)]), [
		'STORED\r\n',
		'STORED\r\n',
		'STORED\r\n',
		'STORED\r\n',
	]);
	t.is(await guest(t, 'cat /proc/kvsnapshot'), 'lasting p\n', 'what the backup keeps');
	t.is(await guest(t, 'sort /proc/hashtable'), 'brief b\nlasting p\nshadow new\n', 'the whole table');

	// Entries that expire in a few seconds fill max_entries; once expired, as many more fit.
	await unload(t.context.target, 'udp_server');
	await loadServer(t, [`memcached_port=${MC_PORT}`, 'max_entries=10', 'len=200'], { daemon: true, backup: BACKUP });
	t.is(
		await guest(t, 'cat /proc/hashtable'),
		'lasting p\n',
		'after a reload: the expiring entries do not come back, nor the value they replaced',
	);
	const nine = (tag: string, exptime: number) => Array.from({ length: 9 }, (_, i) => set(`${tag}${i}`, 'v', exptime));
	t.deepEqual(
		await memcached(t, [...nine('a', 4), set('over', 'v', 4)]),
		[...Array(9).fill('STORED\r\n'), 'SERVER_ERROR out of memory storing object\r\n'],
		'the table is full',
	);
	await sleep(5500);
	t.deepEqual(await memcached(t, nine('b', 1)), Array(9).fill('STORED\r\n'), 'expired entries make room');
	await sleep(3000);
	t.regex(await guest(t, 'echo stats | nc -u -w1 127.0.0.1 3000'), /^OK entries=1 /, 'the reaper took them out');
	await unload(t.context.target, 'udp_server');
});
