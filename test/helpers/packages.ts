/**
 * Copies of the project (a scratch tree, a fresh clone) that use the
 * installed npm packages without running npm ci themselves.
 */
import { cp, mkdir, readdir, symlink, utimes } from 'node:fs/promises';
import path from 'node:path';
import { PROJECT_ROOT } from '../../src/modules.js';

/**
 * Gives `root` a node_modules of its own holding a symlink to each installed
 * package and a copy of npm's record, no older than the copy's
 * package-lock.json, so its bootstrap runs no npm ci. (Never one symlink to
 * the whole node_modules: an npm ci there would empty the real one.)
 */
export async function linkPackages(root: string): Promise<void> {
	const source = path.join(PROJECT_ROOT, 'node_modules');
	const target = path.join(root, 'node_modules');
	await mkdir(target);
	for (const entry of await readdir(source)) {
		if (entry !== '.package-lock.json') {
			await symlink(path.join(source, entry), path.join(target, entry));
		}
	}
	await cp(path.join(PROJECT_ROOT, 'package-lock.json'), path.join(root, 'package-lock.json'));
	await cp(path.join(source, '.package-lock.json'), path.join(target, '.package-lock.json'));
	const then = new Date(Date.now() - 60_000);
	await utimes(path.join(root, 'package-lock.json'), then, then);
}
