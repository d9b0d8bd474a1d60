/**
 * A project path with spaces: the guest's kernel command line carries values
 * such as paths encoded (guest-init.sh decodes them), and Kbuild gets
 * a space-free path to the module directory.
 */
import test from 'ava';
import { execa } from 'execa';
import { mkdir, mkdtemp, readFile, realpath, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { encodeBootArg } from '../../src/lab/qemu-args.js';
import { kbuildPath, PROJECT_ROOT } from '../../src/modules.js';

test('kernel command line values survive guest-init.sh decoding', async t => {
	const init = await readFile(path.join(PROJECT_ROOT, 'src/lab/guest-init.sh'), 'utf8');
	const arg = /^arg\(\) \{[\s\S]*?^\}/m.exec(init)?.[0].replace('/proc/cmdline', '"$CMDLINE"');
	t.truthy(arg);
	const scratch = await mkdtemp(path.join(tmpdir(), 'kudp-cmdline-'));
	t.teardown(() => rm(scratch, { recursive: true, force: true }));
	for (const value of ['/usr/bin/node', '/tmp/a folder with space/kernel-udp/dist/src/lab/agent.js', '/tmp/100%20 "odd"\tname/x']) {
		const cmdline = path.join(scratch, 'cmdline');
		await execa('sh', [
			'-c',
			'printf "%s\\n" "$1" > "$2"',
			'w',
			`console=ttyS0 kudp.agent=${encodeBootArg(value)} kudp.token=abc`,
			cmdline,
		]);
		// Stage 2 runs under the initramfs' busybox sh (guest-init.sh), not the host's /bin/sh.
		const { stdout } = await execa('/bin/busybox', ['sh', '-c', `${arg}\narg agent`], {
			env: { CMDLINE: cmdline },
			stripFinalNewline: true,
		});
		t.is(stdout, value);
		t.false(encodeBootArg(value).includes(' '));
	}
});

test('Kbuild gets a path without spaces that leads to the module directory', async t => {
	const base = await mkdtemp(path.join(tmpdir(), 'kudp-kbuild-'));
	t.teardown(() => rm(base, { recursive: true, force: true }));
	const dir = path.join(base, 'a folder with space', 'server-module');
	await mkdir(dir, { recursive: true });
	const built = await kbuildPath(dir);
	t.notRegex(built, /\s/);
	t.is(await realpath(built), await realpath(dir));
	t.is(await kbuildPath(dir), built, 'the same path every time');
	t.is(await kbuildPath('/plain/server-module'), '/plain/server-module');
	await rm(path.dirname(built), { recursive: true, force: true });
});
