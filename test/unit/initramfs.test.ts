/**
 * The lab's initramfs is built on first use; on a fresh checkout two test
 * files (or two terminals) build it at the same moment. Uses the installed
 * cloud kernel and busybox that ./run test installs.
 */
import test from 'ava';
import { execa } from 'execa';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { buildInitramfs, findLabKernel } from '../../src/lab/kernel.js';

test('two builds of the initramfs at once both succeed and leave one whole file', async t => {
	const kernel = await findLabKernel();
	const cache = await mkdtemp(path.join(tmpdir(), 'kudp-initramfs-test-'));
	try {
		const built = await Promise.all([buildInitramfs(kernel, cache), buildInitramfs(kernel, cache)]);
		t.is(built[0], built[1]);
		t.deepEqual(await readdir(cache), [path.basename(built[0])]);
		const listing = (await execa('cpio', ['-t', '--quiet'], { inputFile: built[0] })).stdout.split('\n');
		t.true(listing.includes('init'), 'the archive has /init');
		// The applets' links are made when the archive is built, not on every boot.
		t.true(listing.includes('bin/mount') && listing.includes('bin/insmod'), 'the archive has busybox applet links');
	} finally {
		await rm(cache, { recursive: true, force: true });
	}
});
