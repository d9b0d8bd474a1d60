/**
 * `./run install [name=value ...]` and `./run uninstall`: the modules as a
 * machine keeps them, with DKMS. install registers both modules as the DKMS
 * package kernel-udp (source in /usr/src/kernel-udp-VERSION), builds and
 * installs them for the running kernel (DKMS rebuilds them for every new
 * one), writes their options to modprobe.d, has udp_server loaded at boot
 * (modules-load.d) and installs a systemd unit for kvd, its backup daemon.
 * uninstall removes every piece, whatever of it is there.
 *
 * Everything runs in the target through Target.exec, as argument lists
 * (the project path may have spaces): on this machine, or in the lab,
 * whose files are in RAM (Target.installNote says so).
 */
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { UserError } from '../errors.js';
import {
	BOOT_MODULES,
	DKMS_PACKAGE,
	dkmsConf,
	INSTALLED_PATHS,
	isModuleSource,
	KVD_UNIT,
	kvdUnit,
	modprobeConf,
	modulesLoadConf,
	sourceDir,
	splitInstallParams,
} from '../install-files.js';
import { DEFAULT_BACKUP } from '../kvd-control.js';
import { build, unload } from '../lifecycle.js';
import { log } from '../log.js';
import { MODULES, PROJECT_ROOT, type ModuleName } from '../modules.js';
import { type ParamAssignment, type ParamSpec, validateParams } from '../params.js';
import { chooseTarget, type Target, type TargetChoice } from '../targets.js';

export interface InstallOptions extends TargetChoice {
	daemon?: boolean;
	backup?: string;
}

/** A DKMS build of both modules: seconds on a machine, minutes under the lab's emulation. */
const DKMS_TIMEOUT_MS = 20 * 60_000;
const STEP_TIMEOUT_MS = 120_000;

/** The package version DKMS registers: package.json's. */
export async function packageVersion(): Promise<string> {
	const json = JSON.parse(await readFile(path.join(PROJECT_ROOT, 'package.json'), 'utf8')) as { version?: unknown };
	if (typeof json.version !== 'string' || !/^[\w.+~-]+$/.test(json.version)) {
		throw new Error(`package.json has no usable version: ${String(json.version)}`);
	}
	return json.version;
}

/** Runs one step in the target; a failure is a UserError that shows what the program said. */
async function step(target: Target, argv: string[], what: string, timeoutMs = STEP_TIMEOUT_MS): Promise<string> {
	const result = await target.exec(argv, { timeoutMs });
	target.checkStarted(result, argv[0] ?? '');
	if (result.exitCode !== 0) {
		const said = `${result.stdout}\n${result.stderr}`.trim().split('\n').slice(-20).join('\n');
		throw new UserError(`${what} failed in ${target.place} (${result.timedOut ? 'timed out' : `exit code ${result.exitCode}`})`, {
			hint: said || `the command: ${argv.join(' ')}`,
		});
	}
	return result.stdout;
}

/** Writes a file in the target (its directory made first). */
function writeFile(target: Target, file: string, text: string): Promise<string> {
	return target
		.exec(['sh', '-c', 'mkdir -p "$(dirname "$1")" && cat >"$1"', 'write', file], { input: text, timeoutMs: STEP_TIMEOUT_MS })
		.then(result => {
			if (result.exitCode !== 0) {
				throw new UserError(`cannot write ${file} in ${target.place}: ${result.stderr.trim() || `exit code ${result.exitCode}`}`);
			}
			return file;
		});
}

/** Whether the target has a program (a missing one: false, with the lab's agent or this machine alike). */
async function hasProgram(target: Target, program: string): Promise<boolean> {
	const result = await target.exec(['sh', '-c', 'command -v "$1"', 'has', program], { timeoutMs: STEP_TIMEOUT_MS });
	return result.exitCode === 0;
}

/** Says how to get dkms when the target has none. */
async function requireDkms(target: Target): Promise<void> {
	if (!(await hasProgram(target, 'dkms'))) {
		throw new UserError(`dkms is not installed in ${target.place} (Debian package: dkms)`, {
			hint: "install it: apt-get install dkms (./run setup installs everything the project needs; the lab uses this machine's programs)",
		});
	}
}

/** The versions of the package DKMS knows, from `dkms status kernel-udp`. */
async function registeredVersions(target: Target): Promise<string[]> {
	const stdout = await step(target, ['dkms', 'status', DKMS_PACKAGE], 'dkms status');
	const versions = new Set<string>();
	for (const line of stdout.split('\n')) {
		// dkms 3: "kernel-udp/0.1.0, 6.1.0-57-cloud-amd64, x86_64: installed" or "kernel-udp/0.1.0: added".
		const match = new RegExp(`^${DKMS_PACKAGE}/([^,:\\s]+)[,:]`).exec(line.trim());
		if (match?.[1]) versions.add(match[1]);
	}
	return [...versions];
}

/** What a module's parameters are: `modinfo -p` of its build for the target (the unit tests give their own). */
export type SpecsOf = (target: Target, name: ModuleName) => Promise<ParamSpec[]>;

const builtSpecs: SpecsOf = async (target, name) => (await build(target, name)).specs;

/**
 * The checked parameters of every module given some, as `./run MODULE`
 * checks them (validateParams): a module given none is not even built.
 */
export async function checkInstallParams(
	target: Target,
	words: string[],
	specsOf: SpecsOf = builtSpecs,
): Promise<Partial<Record<ModuleName, ParamAssignment[]>>> {
	const byModule = splitInstallParams(words);
	const checked: Partial<Record<ModuleName, ParamAssignment[]>> = {};
	for (const name of Object.keys(byModule) as ModuleName[]) {
		if (byModule[name].length === 0) continue;
		checked[name] = validateParams(name, await specsOf(target, name), byModule[name]);
	}
	return checked;
}

/** Copies the module sources (server-module/, client-module/, include/) into DKMS's source directory. */
async function copySources(target: Target, destination: string): Promise<void> {
	for (const dir of [...Object.values(MODULES).map(module => module.dir), 'include']) {
		const files = (await readdir(path.join(PROJECT_ROOT, dir))).filter(isModuleSource).sort();
		await step(target, ['mkdir', '-p', path.join(destination, dir)], `mkdir ${destination}/${dir}`);
		await step(
			target,
			['cp', ...files.map(file => path.join(PROJECT_ROOT, dir, file)), path.join(destination, dir)],
			`copying ${dir}/ to ${destination}`,
		);
	}
}

interface Removed {
	versions: string[];
	paths: string[];
	unloaded: ModuleName[];
}

/**
 * Takes away whatever an install left, in any state: every registered
 * version (dkms remove --all: every kernel's modules), every
 * /usr/src/kernel-udp-* directory, the conf files and kvd's unit (stopped
 * and disabled first where systemd runs). `unloadModules`: also unload our
 * modules (uninstall does; a reinstall leaves a loaded module alone).
 */
async function removeInstalled(target: Target, { unloadModules }: { unloadModules: boolean }): Promise<Removed> {
	const removed: Removed = { versions: [], paths: [], unloaded: [] };
	if (unloadModules) {
		for (const name of ['udp_client', 'udp_server'] as const) {
			if ((await unload(target, name)) !== undefined) removed.unloaded.push(name);
		}
	}
	if (await hasProgram(target, 'dkms')) {
		for (const version of await registeredVersions(target)) {
			await step(target, ['dkms', 'remove', `${DKMS_PACKAGE}/${version}`, '--all'], `dkms remove ${DKMS_PACKAGE}/${version}`);
			removed.versions.push(version);
		}
	} else {
		log.warn(`dkms is not installed in ${target.place}: no DKMS registration to remove, removing the files only`);
	}
	const systemd = (await target.exec(['test', '-d', '/run/systemd/system'], { timeoutMs: STEP_TIMEOUT_MS })).exitCode === 0;
	if (systemd && (await target.exec(['test', '-e', INSTALLED_PATHS.unit], { timeoutMs: STEP_TIMEOUT_MS })).exitCode === 0) {
		// Stops kvd (SIGTERM: it confirms every change it has read) and removes the wants link.
		await step(target, ['systemctl', 'disable', '--now', KVD_UNIT], `systemctl disable --now ${KVD_UNIT}`);
	}
	// Every version's source, and what DKMS's own tree may hold of a half-done install.
	const sources = await step(
		target,
		['find', '/usr/src', '-maxdepth', '1', '-name', `${DKMS_PACKAGE}-*`, '-type', 'd'],
		'looking for sources in /usr/src',
	);
	const paths = [
		...sources.split('\n').filter(Boolean),
		INSTALLED_PATHS.dkmsTree,
		INSTALLED_PATHS.modprobe,
		INSTALLED_PATHS.modulesLoad,
		INSTALLED_PATHS.unitWants,
		INSTALLED_PATHS.unit,
	];
	for (const file of paths) {
		if ((await target.exec(['test', '-e', file], { timeoutMs: STEP_TIMEOUT_MS })).exitCode !== 0) {
			// A dangling wants link is not -e, but is ours to remove.
			if ((await target.exec(['test', '-L', file], { timeoutMs: STEP_TIMEOUT_MS })).exitCode !== 0) continue;
		}
		await step(target, ['rm', '-rf', '--', file], `rm ${file}`);
		removed.paths.push(file);
	}
	if (systemd) {
		await step(target, ['systemctl', 'daemon-reload'], 'systemctl daemon-reload');
	}
	return removed;
}

export async function installCommand(words: string[], options: InstallOptions): Promise<void> {
	splitInstallParams(words); // Usage errors first, before any target is chosen or booted.
	const target = await chooseTarget(options);
	log.info(`target: ${target.reason}`);
	process.stdout.write(`${await install(target, words, options)}\n`);
}

/** Installs in `target`; returns what to tell the user. */
export async function install(target: Target, words: string[], options: InstallOptions = {}, specsOf = builtSpecs): Promise<string> {
	if (target.installNote) log.warn(target.installNote);
	await target.prepare();
	await requireDkms(target);
	const params = await checkInstallParams(target, words, specsOf);
	const version = await packageVersion();
	const release = await target.kernelRelease();

	const old = await removeInstalled(target, { unloadModules: false });
	if (old.versions.length > 0) log.info(`removed the installed ${DKMS_PACKAGE} ${old.versions.join(', ')} first`);

	const source = sourceDir(version);
	await copySources(target, source);
	await writeFile(target, path.join(source, 'dkms.conf'), dkmsConf(version));
	await step(target, ['dkms', 'add', `${DKMS_PACKAGE}/${version}`], 'dkms add');
	log.info(`building ${DKMS_PACKAGE} ${version} with DKMS for ${release} (minutes under the lab's emulation)`);
	try {
		await step(target, ['dkms', 'install', `${DKMS_PACKAGE}/${version}`, '-k', release], 'dkms install', DKMS_TIMEOUT_MS);
	} catch (error) {
		const makeLog = `/var/lib/dkms/${DKMS_PACKAGE}/${version}/build/make.log`;
		const tail = await target.exec(['tail', '-n', '30', makeLog], { timeoutMs: STEP_TIMEOUT_MS });
		if (tail.exitCode === 0) process.stderr.write(`${makeLog} ends with:\n${tail.stdout}\n`);
		// Nothing half-installed stays: a failed build is unregistered again.
		await removeInstalled(target, { unloadModules: false });
		throw error;
	}
	const installed: string[] = [];
	for (const name of Object.keys(MODULES)) {
		installed.push((await step(target, ['modinfo', '-k', release, '-n', name], `modinfo -n ${name}`)).trim());
	}

	await writeFile(target, INSTALLED_PATHS.modprobe, modprobeConf(params));
	await writeFile(target, INSTALLED_PATHS.modulesLoad, modulesLoadConf());
	const lines = [
		`installed ${DKMS_PACKAGE} ${version} with DKMS for ${release}; DKMS rebuilds it for every new kernel:`,
		`  ${source}  the source DKMS builds from`,
		...installed.map(file => `  ${file}`),
		`  ${INSTALLED_PATHS.modprobe}  ${describeOptions(params)}`,
		`  ${INSTALLED_PATHS.modulesLoad}  ${BOOT_MODULES.join(', ')} loads at boot (not udp_client: it sends HELLO as it loads)`,
	];
	if (options.daemon !== false) {
		const backup = options.backup ?? DEFAULT_BACKUP;
		await writeFile(
			target,
			INSTALLED_PATHS.unit,
			kvdUnit({ node: process.execPath, script: path.join(PROJECT_ROOT, 'dist/daemon/kvd.js'), backup }),
		);
		// What `systemctl enable` does for WantedBy=multi-user.target; it needs no running systemd.
		await step(target, ['mkdir', '-p', path.dirname(INSTALLED_PATHS.unitWants)], 'mkdir multi-user.target.wants');
		await step(target, ['ln', '-sfn', INSTALLED_PATHS.unit, INSTALLED_PATHS.unitWants], `enabling ${KVD_UNIT}`);
		if ((await target.exec(['test', '-d', '/run/systemd/system'], { timeoutMs: STEP_TIMEOUT_MS })).exitCode === 0) {
			await step(target, ['systemctl', 'daemon-reload'], 'systemctl daemon-reload');
		}
		lines.push(`  ${INSTALLED_PATHS.unit}  kvd, enabled: keeps the table in ${backup} (runs this checkout's dist/daemon/kvd.js)`);
	}
	lines.push(
		`now: modprobe udp_server${options.daemon !== false ? ` && systemctl start ${KVD_UNIT}` : ''} (both happen at every boot); ./run uninstall removes it all`,
	);
	return lines.join('\n');
}

function describeOptions(params: Partial<Record<ModuleName, ParamAssignment[]>>): string {
	const given = Object.entries(params)
		.filter(([, assignments]) => assignments.length > 0)
		.map(([name, assignments]) => `${name} ${assignments.map(({ name: param, value }) => `${param}=${value}`).join(' ')}`);
	return given.length > 0 ? `options ${given.join('; ')}` : 'no options (the modules’ defaults)';
}

export async function uninstallCommand(options: TargetChoice): Promise<void> {
	const target = await chooseTarget(options);
	log.info(`target: ${target.reason}`);
	process.stdout.write(`${await uninstall(target)}\n`);
}

/** Removes from `target` whatever install put there; returns what to tell the user. */
export async function uninstall(target: Target): Promise<string> {
	if (!(await target.isUp())) {
		return `nothing to uninstall: ${target.place} is not running (what was installed there went with it)`;
	}
	const removed = await removeInstalled(target, { unloadModules: true });
	if (removed.versions.length === 0 && removed.paths.length === 0 && removed.unloaded.length === 0) {
		return `${DKMS_PACKAGE} was not installed in ${target.place}: nothing to remove`;
	}
	const lines = [`uninstalled ${DKMS_PACKAGE} from ${target.place}:`];
	if (removed.unloaded.length > 0) lines.push(`  unloaded ${removed.unloaded.join(', ')}`);
	if (removed.versions.length > 0)
		lines.push(`  dkms remove --all: ${removed.versions.map(version => `${DKMS_PACKAGE}/${version}`).join(', ')}`);
	for (const file of removed.paths) lines.push(`  removed ${file}`);
	return lines.join('\n');
}
