/**
 * `./run` exits once its stdout and stderr are out: Node queues what a slow
 * pipe cannot take yet, and `process.exit()` threw that queue away (CI: the
 * shell-output test got 18 590 400 of 20 000 000 bytes, exit status 0).
 */
import test from 'ava';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { pathToFileURL } from 'node:url';
import { PROJECT_ROOT } from '../../src/modules.js';

const FLUSH = pathToFileURL(path.join(PROJECT_ROOT, 'dist/src/flush.js')).href;
const BYTES = 20_000_000;

/** Runs `script` with stdout to a pipe nobody reads for `stallMs`, then reads it all. */
async function throughSlowPipe(script: string, stallMs: number, stopAfter = Number.POSITIVE_INFINITY) {
	const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
	const exited = new Promise<{ code: number | null; stderr: string }>(resolve => {
		let stderr = '';
		child.stderr.on('data', chunk => {
			stderr += chunk;
		});
		child.on('close', code => resolve({ code, stderr }));
	});
	child.stdout.pause();
	await sleep(stallMs);
	let bytes = 0;
	child.stdout.on('data', (chunk: Buffer) => {
		bytes += chunk.length;
		if (bytes >= stopAfter) child.stdout.destroy();
	});
	child.stdout.resume();
	return { ...(await exited), bytes: () => bytes };
}

const write = `for (let i = 0; i < ${BYTES / 1_000_000}; i++) process.stdout.write(Buffer.alloc(1_000_000));`;

test('process.exit() right after writing to a slow pipe loses output (the hazard is real here)', async t => {
	const { code, bytes } = await throughSlowPipe(`${write} process.exit(0);`, 1000);
	t.is(code, 0);
	t.true(bytes() < BYTES, `${bytes()} bytes`);
});

test('exitWhenFlushed() gives a slow pipe every byte, and keeps the exit code', async t => {
	const { code, bytes } = await throughSlowPipe(
		`import { exitWhenFlushed } from '${FLUSH}'; ${write} process.exitCode = 3; await exitWhenFlushed();`,
		1000,
	);
	t.is(code, 3);
	t.is(bytes(), BYTES);
});

test('a reader that goes away (| head) does not keep exitWhenFlushed() waiting', async t => {
	const started = Date.now();
	const { bytes } = await throughSlowPipe(
		`import { exitWhenFlushed } from '${FLUSH}'; process.stdout.on('error', () => {}); ${write} await exitWhenFlushed();`,
		200,
		100_000,
	);
	t.true(bytes() < BYTES);
	t.true(Date.now() - started < 30_000, 'it exited');
});
