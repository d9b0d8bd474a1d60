/**
 * What `./run install` puts on a machine, as text: the DKMS package's
 * dkms.conf, the modprobe.d options, the modules-load.d list and kvd's
 * systemd unit. Pure functions of their inputs, so the unit tests read them
 * whole; commands/install.ts writes them into the target.
 *
 * Parameters on the command line: `name=value` is udp_server's (the module
 * a machine runs), `udp_client.name=value` the client's, and
 * `udp_server.name=value` says the server's explicitly. Each is checked
 * against `modinfo -p` of the built module, as `./run MODULE` checks them.
 */
import { EXIT_USAGE, UserError } from './errors.js';
import { isModuleName, MODULES, moduleNames, type ModuleName } from './modules.js';
import type { ParamAssignment } from './params.js';

/** The DKMS package name: /usr/src/kernel-udp-VERSION, `dkms status kernel-udp`. */
export const DKMS_PACKAGE = 'kernel-udp';

/** The module that gets bare `name=value` parameters. */
export const DEFAULT_INSTALL_MODULE: ModuleName = 'udp_server';

/**
 * Loaded at every boot (modules-load.d). Not the client: loading it sends
 * HELLO to its destip at once, which a machine should not do on its own at
 * every boot; `modprobe udp_client` sends it with the installed options.
 */
export const BOOT_MODULES: readonly ModuleName[] = ['udp_server'];

export const KVD_UNIT = 'kernel-udp-kvd.service';

/** Every path install writes (uninstall removes them, and the /usr/src directories of every version). */
export const INSTALLED_PATHS = {
	modprobe: '/etc/modprobe.d/kernel-udp.conf',
	modulesLoad: '/etc/modules-load.d/kernel-udp.conf',
	unit: `/etc/systemd/system/${KVD_UNIT}`,
	/** What `systemctl enable` makes for WantedBy=multi-user.target. */
	unitWants: `/etc/systemd/system/multi-user.target.wants/${KVD_UNIT}`,
	/** DKMS's own tree for the package (dkms remove --all empties it). */
	dkmsTree: `/var/lib/dkms/${DKMS_PACKAGE}`,
} as const;

/** Where DKMS takes the package's source from. */
export function sourceDir(version: string): string {
	return `/usr/src/${DKMS_PACKAGE}-${version}`;
}

/** The module sources a DKMS build needs, relative to the project root and to sourceDir(). */
export function isModuleSource(file: string): boolean {
	return (/\.[ch]$/.test(file) && !file.endsWith('.mod.c')) || file === 'Kbuild' || file === 'Makefile';
}

const MODULE_LIST = Object.values(MODULES).map(module => module.dir);

/**
 * dkms.conf: both modules in one package. Each module's own Makefile
 * builds it (KDIR= the headers DKMS chose), from the same tree as
 * the project's (server-module/, client-module/, include/), so
 * `-I$(src)/../include` holds. DKMS installs them in
 * /lib/modules/KERNEL/updates/dkms on Debian (DEST_MODULE_LOCATION is
 * required by older DKMS, ignored there); AUTOINSTALL builds them for
 * every new kernel.
 */
export function dkmsConf(version: string): string {
	const names = Object.keys(MODULES) as ModuleName[];
	// biome-ignore lint/suspicious/noTemplateCurlyInString: dkms.conf is sourced by bash, which expands ${kernel_source_dir}
	const kdir = 'KDIR=${kernel_source_dir}';
	const make = (target: string) => MODULE_LIST.map(dir => `make -C ${dir} ${kdir}${target}`).join(' && ');
	return [
		'# Written by ./run install (kernel-udp); ./run uninstall removes it.',
		`PACKAGE_NAME="${DKMS_PACKAGE}"`,
		`PACKAGE_VERSION="${version}"`,
		...names.flatMap((name, index) => [
			`BUILT_MODULE_NAME[${index}]="${name}"`,
			`BUILT_MODULE_LOCATION[${index}]="${MODULES[name].dir}/"`,
			`DEST_MODULE_LOCATION[${index}]="/updates/dkms"`,
		]),
		`MAKE[0]="${make('')}"`,
		`CLEAN="${make(' clean')}"`,
		'AUTOINSTALL="yes"',
		'',
	].join('\n');
}

/**
 * Sorts `name=value` words by module: `udp_client.destip=...` is the
 * client's, a bare `port=3000` udp_server's. Values are not checked here
 * (validateParams does it against the built module); names of modules are.
 */
export function splitInstallParams(words: string[]): Record<ModuleName, string[]> {
	const byModule: Record<ModuleName, string[]> = { udp_server: [], udp_client: [] };
	const problems: string[] = [];
	for (const word of words) {
		const equals = word.indexOf('=');
		const dot = word.indexOf('.');
		if (dot > 0 && (equals < 0 || dot < equals)) {
			const module = word.slice(0, dot);
			if (!isModuleName(module)) {
				problems.push(`"${word}": there is no module "${module}" (the modules are: ${moduleNames()})`);
				continue;
			}
			byModule[module].push(word.slice(dot + 1));
		} else {
			byModule[DEFAULT_INSTALL_MODULE].push(word);
		}
	}
	if (problems.length > 0) {
		throw new UserError(problems.join('; '), {
			hint: `parameters are name=value (${DEFAULT_INSTALL_MODULE}'s) or MODULE.name=value, e.g. udp_client.destip=10.0.9.2`,
			exitCode: EXIT_USAGE,
		});
	}
	return byModule;
}

/** /etc/modprobe.d/kernel-udp.conf: one `options` line per module given parameters. */
export function modprobeConf(params: Partial<Record<ModuleName, ParamAssignment[]>>): string {
	const lines = ['# Written by ./run install (kernel-udp); ./run uninstall removes it.', '# The parameters: modinfo -p MODULE'];
	for (const name of Object.keys(MODULES) as ModuleName[]) {
		const assignments = params[name] ?? [];
		if (assignments.length > 0) {
			lines.push(`options ${name} ${assignments.map(({ name: param, value }) => `${param}=${value}`).join(' ')}`);
		}
	}
	return `${lines.join('\n')}\n`;
}

/** /etc/modules-load.d/kernel-udp.conf. */
export function modulesLoadConf(): string {
	return [
		'# Written by ./run install (kernel-udp); ./run uninstall removes it.',
		'# Not udp_client: it sends HELLO as it loads (modprobe udp_client does, when wanted).',
		...BOOT_MODULES,
		'',
	].join('\n');
}

/**
 * A word of ExecStart=: quoted, with systemd's specifiers (%) and variable
 * expansion ($) escaped, so a path with spaces or those characters is
 * passed as it is.
 */
export function systemdWord(word: string): string {
	return `"${word
		.replace(/[\\"]/g, match => `\\${match}`)
		.replace(/%/g, '%%')
		.replace(/\$/g, '$$$$')}"`;
}

export interface KvdUnitOptions {
	/** The node binary that runs kvd (the one running ./run install). */
	node: string;
	/** dist/daemon/kvd.js of the checkout. */
	script: string;
	/** kvd's backup file. */
	backup: string;
}

/**
 * kvd's systemd unit. kvd follows every udp_server loaded after it starts,
 * so it may start before the module; it is ordered after
 * systemd-modules-load only so that it registers at once. SIGTERM (systemd's
 * stop) makes it confirm every change it has read before it exits.
 */
export function kvdUnit({ node, script, backup }: KvdUnitOptions): string {
	return [
		'# Written by ./run install (kernel-udp); ./run uninstall removes it.',
		'[Unit]',
		'Description=kvd, the backup daemon of the kernel-udp key-value server (udp_server)',
		'After=systemd-modules-load.service local-fs.target',
		'',
		'[Service]',
		'Type=simple',
		`ExecStart=${[node, script, '--backup', backup].map(systemdWord).join(' ')}`,
		'Restart=on-failure',
		'RestartSec=2',
		'TimeoutStopSec=20',
		'',
		'[Install]',
		'WantedBy=multi-user.target',
		'',
	].join('\n');
}
