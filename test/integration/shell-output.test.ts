/**
 * `./run shell` output streams whole however long (issue 18): qemu-ga cut a
 * command's captured output at 64 KiB, exit status 0, no warning. The lab's
 * commands now write to a spool on the virtiofs share, read as it grows.
 */
import { execa } from 'execa';
import path from 'node:path';
import { PROJECT_ROOT } from '../../src/modules.js';
import { labTest, useLab } from '../helpers/lab.js';

useLab(import.meta.url);

labTest('./run shell -- head -c 20000000 /dev/zero gives all 20 000 000 bytes', async t => {
	const run = execa(
		process.execPath,
		[
			path.join(PROJECT_ROOT, 'dist/src/bin/run.js'),
			'shell',
			'--lab',
			t.context.target.lab.name,
			'--',
			'head',
			'-c',
			'20000000',
			'/dev/zero',
		],
		{
			stdin: 'ignore',
			stdout: 'pipe',
			stderr: 'pipe',
			encoding: 'buffer',
			// Read here only, and late: a slow reader once made ./run exit before its stdout was out.
			buffer: { stdout: false },
			reject: false,
			timeout: 300_000,
		},
	);
	let bytes = 0;
	let chunks = 0;
	let zeros = true;
	run.stdout!.pause();
	await new Promise(resolve => setTimeout(resolve, 3000));
	run.stdout!.on('data', (chunk: Buffer) => {
		bytes += chunk.length;
		chunks++;
		if (zeros && chunk.some(byte => byte !== 0)) zeros = false;
	});
	run.stdout!.resume();
	const result = await run;
	t.log(`${bytes} bytes in ${chunks} chunks`);
	t.is(result.exitCode, 0, Buffer.from(result.stderr ?? '').toString());
	t.is(bytes, 20_000_000);
	t.true(zeros, "the bytes are /dev/zero's");
});

labTest('a multi-MB output through the lab target is whole and in order; exit codes and stderr still come back', async t => {
	const result = await t.context.target.exec(['sh', '-c', 'seq 1 600000; echo done >&2; exit 3'], { timeoutMs: 300_000 });
	const want = `${Array.from({ length: 600_000 }, (_, i) => i + 1).join('\n')}\n`;
	t.true(want.length > 4_000_000);
	t.is(result.stdout.length, want.length);
	t.true(result.stdout === want, 'the same bytes in the same order');
	t.is(result.stderr, 'done\n');
	t.is(result.exitCode, 3);
});
