/**
 * The walking skeleton end to end, with the real modules in the lab's real
 * kernel and real datagrams from this machine.
 */
import { execa } from 'execa';
import dgram from 'node:dgram';
import { mkdtemp, rename, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { UserError } from '../../src/errors.js';
import { freePort } from '../../src/lab/free-port.js';
import { Lab } from '../../src/lab/lab.js';
import { PROJECT_ROOT } from '../../src/modules.js';
import { load } from '../../src/lifecycle.js';
import { request } from '../../user-client/client.js';
import {
	assertPromptUnload,
	guest,
	kernelProblems,
	labTest,
	loadClient,
	loadServer,
	markTestStart,
	test,
	timedRmmod,
	useLab,
	waitForLog,
	writeKernelLog,
} from '../helpers/lab.js';

useLab(import.meta.url);

labTest('the server answers HELLO from this machine with GOT IT, and logs both', async (t, since) => {
	const server = await loadServer(t, ['port=3000']);
	const reply = await request('HELLO', { host: '127.0.0.1', port: server.port, timeoutMs: 2000, retries: 2 });
	t.is(reply.toString(), 'GOT IT\n');
	await waitForLog(t.context.target, since, /^udp_server: received HELLO from 10\.0\.2\.2:\d+$/);
	await waitForLog(t.context.target, since, /^udp_server: sent GOT IT to 10\.0\.2\.2:\d+$/);
	assertPromptUnload(t, await timedRmmod(t, 'udp_server'), 'rmmod udp_server');
	await t.context.target.unexposeUdp(server.port);
});

labTest('the kernel client says HELLO to the kernel server and logs GOT IT', async (t, since) => {
	await loadServer(t, ['port=3000']);
	await loadClient(t, ['destip=127.0.0.1', 'port=3000']);
	await waitForLog(t.context.target, since, /^udp_client: sent HELLO to 127\.0\.0\.1:3000$/);
	await waitForLog(t.context.target, since, /^udp_server: received HELLO from 127\.0\.0\.1:\d+$/);
	await waitForLog(t.context.target, since, /^udp_client: got GOT IT from 127\.0\.0\.1:3000$/);
	for (const name of ['udp_client', 'udp_server'] as const) {
		assertPromptUnload(t, await timedRmmod(t, name), `rmmod ${name}`);
	}
	t.is(await guest(t, 'grep -c "^udp_" /proc/modules || true'), '0\n');
});

labTest('the client reports a server that never answers, and unloads at once mid-wait', async (t, since) => {
	// Nothing listens on 127.0.0.1:3999 in the guest: every try is refused or times out.
	await loadClient(t, ['destip=127.0.0.1', 'port=3999', 'timeout_ms=300', 'retries=2']);
	await waitForLog(t.context.target, since, /^udp_client: no reply from 127\.0\.0\.1:3999 after 3 tries/);
	assertPromptUnload(t, await timedRmmod(t, 'udp_client'), 'rmmod after the tries');

	// Unload in the middle of a long wait.
	await loadClient(t, ['destip=127.0.0.1', 'port=3999', 'timeout_ms=60000', 'retries=100']);
	assertPromptUnload(t, await timedRmmod(t, 'udp_client'), 'rmmod during a wait');
});

for (const [module, params, message] of [
	['udp_server', ['port=70000'], /port must be between 1 and 65535, not 70000/],
	['udp_server', ['port=abc'], /port must be a whole number, not "abc"/],
	['udp_server', ['colour=red'], /udp_server has no parameter "colour"/],
	['udp_client', ['destip=999.1.1.1'], /destip must be an IPv4 address/],
] as const) {
	labTest(`./run refuses ${module} ${params.join(' ')} before loading`, async t => {
		const built = module === 'udp_server' ? t.context.server : t.context.client;
		const error = await t.throwsAsync(load(t.context.target, built, { name: module, params: [...params] }), {
			instanceOf: UserError,
		});
		t.regex(error?.message ?? '', message);
		t.regex(error?.hint ?? '', /takes these parameters/);
		t.is(await guest(t, 'grep -c "^udp_" /proc/modules || true'), '0\n');
	});
}

for (const [ko, params] of [
	['server-module/udp_server.ko', 'port=70000'],
	['server-module/udp_server.ko', 'port=abc'],
	['server-module/udp_server.ko', 'port=0'],
	['server-module/udp_server.ko', 'len=5'],
	['server-module/udp_server.ko', 'bind=1.2.3'],
	['client-module/udp_client.ko', 'destip=999.1.1.1'],
	['client-module/udp_client.ko', 'port=65536'],
] as const) {
	labTest(`the kernel itself refuses insmod ${ko.split('/')[1]} ${params}`, async t => {
		const built = ko.startsWith('server') ? t.context.server : t.context.client;
		const staged = await t.context.target.stage(built.ko);
		const result = await t.context.target.exec(['insmod', staged, params], { timeoutMs: 20_000 });
		t.not(result.exitCode, 0);
		t.regex(result.stderr, /Invalid (argument|parameters)|Numerical result out of range|Invalid/);
		t.is(await guest(t, 'grep -c "^udp_" /proc/modules || true'), '0\n');
	});
}

labTest('a busy port makes insmod fail with the reason, leaving nothing loaded', async (t, since) => {
	await guest(t, '(nc -u -l 127.0.0.1 3000 >/dev/null 2>&1 &) ; sleep 0.5');
	try {
		const error = await t.throwsAsync(loadServer(t, ['port=3000', 'bind=127.0.0.1']), { instanceOf: UserError });
		t.regex(error?.message ?? '', /insmod udp_server failed/);
		await waitForLog(t.context.target, since, /^udp_server: .*(bind|in use)/i);
		t.is(await guest(t, 'grep -c "^udp_" /proc/modules || true'), '0\n');
	} finally {
		await guest(t, 'pkill -x nc || true');
	}
});

/** `./run` itself, as a user runs it, against this file's lab. */
function runCli(t: Parameters<typeof guest>[0], args: string[]) {
	return execa(process.execPath, [path.join(PROJECT_ROOT, 'dist/src/bin/run.js'), ...args, '--lab', t.context.target.lab.name], {
		reject: false,
		stdin: 'pipe',
		all: true,
	});
}

const PROMPT = 'Press Enter to remove the module or Ctrl+C to exit...';

/**
 * Resolves once `./run` shows its Enter/Ctrl-C prompt; rejects, with what it
 * printed, when it exits first or when no prompt comes within `timeoutMs`
 * (then it is killed, so the test ends instead of hanging).
 */
/** A running `./run` (execa with `all: true, reject: false`), as far as `prompted` needs it. */
interface Running extends PromiseLike<{ exitCode?: number | undefined; signal?: string | undefined; all?: string | undefined }> {
	all?: Readable | undefined;
	kill(signal: 'SIGKILL'): unknown;
}

function prompted(child: Running, timeoutMs = 180_000): Promise<void> {
	return new Promise((resolve, reject) => {
		let output = '';
		let settled = false;
		const settle = (error?: Error) => {
			if (settled) {
				return;
			}
			settled = true;
			clearTimeout(timer);
			child.all?.off('data', watch);
			if (error) {
				reject(error);
			} else {
				resolve();
			}
		};
		const watch = (chunk: Buffer) => {
			output += chunk.toString();
			if (output.includes(PROMPT)) {
				settle();
			}
		};
		const timer = setTimeout(() => {
			child.kill('SIGKILL');
			settle(new Error(`./run showed no prompt within ${timeoutMs} ms; it printed:\n${output}`));
		}, timeoutMs);
		child.all?.on('data', watch);
		// With reject: false the child's promise resolves however it ends.
		child.then(
			result =>
				settle(new Error(`./run exited (${result.exitCode ?? result.signal}) before its prompt; it printed:\n${result.all ?? output}`)),
			(error: unknown) => settle(new Error(`./run failed before its prompt: ${String(error)}; it printed:\n${output}`)),
		);
	});
}

test('prompted() rejects with the output when ./run exits before its prompt', async t => {
	const child = execa(process.execPath, ['-e', 'console.log("udp_server did not build"); process.exit(2)'], { reject: false, all: true });
	const error = await t.throwsAsync(prompted(child, 60_000));
	t.regex(error?.message ?? '', /exited \(2\) before its prompt; it printed:\nudp_server did not build/);
});

test('prompted() gives up on a ./run that never prompts, and kills it', async t => {
	const child = execa(process.execPath, ['-e', 'console.log("loading..."); setInterval(() => {}, 1000)'], { reject: false, all: true });
	const error = await t.throwsAsync(prompted(child, 2000));
	t.regex(error?.message ?? '', /no prompt within 2000 ms; it printed:\nloading\.\.\./);
	t.is((await child).signal, 'SIGKILL');
});

test('prompted() resolves at the prompt', async t => {
	const child = execa(process.execPath, ['-e', `console.log(${JSON.stringify(PROMPT)}); setTimeout(() => {}, 500)`], {
		reject: false,
		all: true,
	});
	await prompted(child, 60_000);
	t.is((await child).exitCode, 0);
});

test.serial('the kernel-problem gate catches a WARNING logged just before a test ends', async t => {
	// Not a labTest: its own gate would fail it for this WARNING. The next
	// labTest starts after it, so the WARNING is before that test's start.
	t.timeout(120_000);
	const start = await markTestStart(t.context.target);
	await writeKernelLog(t.context.target, '<4>WARNING: kudp gate self-test, not a real problem');
	const problems = await kernelProblems(t.context.target, start);
	t.deepEqual(
		problems.map(record => record.text),
		['WARNING: kudp gate self-test, not a real problem'],
	);
	t.is(problems[0]?.priority, 4);
});

labTest('./run udp_server streams the log, and Enter unloads the module', async t => {
	const child = runCli(t, ['udp_server', 'port=3000', '--no-daemon', '--host-port', String(await freePort('udp'))]);
	await prompted(child);
	await new Promise(resolve => setTimeout(resolve, 1000));
	child.stdin?.write('\n');
	const result = await child;
	t.is(result.exitCode, 0, result.all);
	t.regex(result.all ?? '', /udp_server is loaded in the lab with port=3000 bind=0\.0\.0\.0/);
	t.regex(result.all ?? '', /\] udp_server: listening on 0\.0\.0\.0:3000 \(len 50\)/);
	t.regex(result.all ?? '', /unloaded udp_server in \d+ ms/);
	t.is(await guest(t, 'grep -c "^udp_server" /proc/modules || true'), '0\n');
});

labTest('./run udp_server: Ctrl-C leaves the module loaded', async t => {
	const child = runCli(t, ['udp_server', 'port=3000', '--no-daemon', '--host-port', String(await freePort('udp'))]);
	await prompted(child);
	child.kill('SIGINT');
	const result = await child;
	t.is(result.exitCode, 0, result.all);
	t.regex(result.all ?? '', /left udp_server loaded; \.\/run unload udp_server removes it/);
	t.is(await guest(t, 'grep -c "^udp_server" /proc/modules || true'), '1\n');
	const unloaded = await runCli(t, ['unload', 'udp_server']);
	t.regex(unloaded.stdout, /unloaded udp_server in \d+ ms/);
});

labTest('a UDP port already taken on this machine is a clear error, and nothing is loaded', async t => {
	const squatter = dgram.createSocket('udp4');
	await new Promise<void>(resolve => squatter.bind(0, '127.0.0.1', resolve));
	try {
		const taken = squatter.address().port;
		const error = await t.throwsAsync(
			load(t.context.target, t.context.server, { name: 'udp_server', params: [], hostPort: taken, daemon: false }),
			{ instanceOf: UserError },
		);
		t.regex(error?.message ?? '', new RegExp(`cannot forward UDP port ${taken} from the host to the lab`));
		t.regex(error?.hint ?? '', /already using UDP port/);
		t.is(await guest(t, 'grep -c "^udp_server" /proc/modules || true'), '0\n');
	} finally {
		squatter.close();
	}
});

labTest('a file replaced on this machine by a rebuild is seen whole by the running lab', async t => {
	// bin/bootstrap.sh replaces dist/ files by rename; the guest's overlay kept
	// the old names ("Stale file handle", "Cannot find module") until the lab
	// learned to drop them after each rebuild (dist/.build-stamp).
	const dir = await mkdtemp(path.join(tmpdir(), 'kudp-rebuilt-'));
	try {
		const file = path.join(dir, 'compiled.js');
		await writeFile(file, 'old\n');
		t.is(await guest(t, `cat ${file}`), 'old\n');
		await writeFile(`${file}.next`, 'new\n');
		await rename(`${file}.next`, file);
		// A rebuild as the lab sees it: a build stamp newer than the last it saw. A copy, never
		// the real dist/.build-stamp: set to now, that one would tell bootstrap that sources
		// edited during this run are compiled.
		const realStamp = path.join(PROJECT_ROOT, 'dist', '.build-stamp');
		const realBefore = (await stat(realStamp)).mtimeMs;
		const stamp = path.join(dir, '.build-stamp');
		await writeFile(stamp, '');
		const rebuilt = new Lab({ root: PROJECT_ROOT, name: t.context.target.lab.name, buildStamp: stamp });
		await rebuilt.up();
		t.is(await guest(t, `cat ${file}`), 'new\n');
		t.is((await stat(realStamp)).mtimeMs, realBefore, 'the real build stamp is left as bootstrap set it');
	} finally {
		await rm(dir, { recursive: true, force: true });
	}
});
