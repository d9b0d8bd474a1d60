/**
 * `./run install` and `./run uninstall` without a kernel: the files they
 * write (read back by bash as DKMS reads dkms.conf), the parameter checks
 * (against a fake `modinfo -p` first on PATH, test/fixtures/bin-install),
 * and the commands they run in a scripted target. The real thing, DKMS
 * building and a modprobe, is test/integration/dkms.test.ts.
 */
import test from 'ava';
import { execa } from 'execa';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { checkInstallParams, install, packageVersion, uninstall, type SpecsOf } from '../../src/commands/install.js';
import { UserError } from '../../src/errors.js';
import type { ExecOptions } from '../../src/lab/agent-client.js';
import {
	dkmsConf,
	INSTALLED_PATHS,
	isModuleSource,
	kvdUnit,
	modprobeConf,
	modulesLoadConf,
	splitInstallParams,
	systemdWord,
} from '../../src/install-files.js';
import { moduleParams, PROJECT_ROOT } from '../../src/modules.js';
import { applySettings, settings } from '../../src/settings.js';
import { FakeTarget } from '../helpers/fake-target.js';

const FAKE_BIN = path.join(PROJECT_ROOT, 'test/fixtures/bin-install');

// modinfo from the fixtures, first on PATH: moduleParams runs `modinfo -p` through runProgram.
applySettings({ path: `${FAKE_BIN}:${settings.path}` });
const fakeSpecs: SpecsOf = (_target, name) => moduleParams(`/fake/${name}.ko`);

test('dkms.conf, read by bash as DKMS does, builds both modules with their own Makefiles', async t => {
	const conf = dkmsConf('0.1.0');
	const dir = await mkdtemp(path.join(tmpdir(), 'kudp-dkms-'));
	t.teardown(() => rm(dir, { recursive: true, force: true }));
	await writeFile(path.join(dir, 'dkms.conf'), conf);
	const script =
		'kernel_source_dir=/lib/modules/6.1.0-fake/build; . "$1"; ' +
		// biome-ignore lint/suspicious/noTemplateCurlyInString: bash's own ${ARRAY[*]}, not a template
		'printf "%s\\n" "$PACKAGE_NAME" "$PACKAGE_VERSION" "${BUILT_MODULE_NAME[*]}" "${BUILT_MODULE_LOCATION[*]}" "${DEST_MODULE_LOCATION[*]}" "${MAKE[0]}" "$CLEAN" "$AUTOINSTALL"';
	const { stdout } = await execa('bash', ['-c', script, 'bash', path.join(dir, 'dkms.conf')]);
	t.deepEqual(stdout.split('\n'), [
		'kernel-udp',
		'0.1.0',
		'udp_server udp_client',
		'server-module/ client-module/',
		'/updates/dkms /updates/dkms',
		'make -C server-module KDIR=/lib/modules/6.1.0-fake/build && make -C client-module KDIR=/lib/modules/6.1.0-fake/build',
		'make -C server-module KDIR=/lib/modules/6.1.0-fake/build clean && make -C client-module KDIR=/lib/modules/6.1.0-fake/build clean',
		'yes',
	]);
});

test('the package version is package.json’s, and only sources go to /usr/src', async t => {
	t.regex(await packageVersion(), /^\d+\.\d+\.\d+/);
	t.true(isModuleSource('main.c'));
	t.true(isModuleSource('kudp_protocol.h'));
	t.true(isModuleSource('Kbuild'));
	t.true(isModuleSource('Makefile'));
	for (const output of ['udp_server.mod.c', 'main.o', 'udp_server.ko', '.main.o.cmd', 'modules.order', 'Module.symvers']) {
		t.false(isModuleSource(output), output);
	}
});

test('bare name=value is udp_server’s; MODULE.name=value names the module', t => {
	t.deepEqual(splitInstallParams(['port=3001', 'udp_client.destip=10.0.9.2', 'udp_server.durable=1', 'udp_client.port=3001']), {
		udp_server: ['port=3001', 'durable=1'],
		udp_client: ['destip=10.0.9.2', 'port=3001'],
	});
	// A dot in a value is not a module name.
	t.deepEqual(splitInstallParams(['bind=10.0.9.2']), { udp_server: ['bind=10.0.9.2'], udp_client: [] });
	const error = t.throws(() => splitInstallParams(['udp_sever.port=1']), { instanceOf: UserError });
	t.is(error?.exitCode, 64);
	t.regex(error?.message ?? '', /"udp_sever\.port=1": there is no module "udp_sever" \(the modules are: udp_server, udp_client\)/);
	t.regex(error?.hint ?? '', /udp_client\.destip=10\.0\.9\.2/);
});

test('parameters are checked against modinfo -p of each module, as ./run MODULE checks them', async t => {
	const target = new FakeTarget(() => undefined, 'local');
	t.deepEqual(await checkInstallParams(target, ['port=3001', 'durable=1', 'udp_client.destip=10.0.9.2'], fakeSpecs), {
		udp_server: [
			{ name: 'port', value: '3001' },
			{ name: 'durable', value: '1' },
		],
		udp_client: [{ name: 'destip', value: '10.0.9.2' }],
	});
	for (const [words, message] of [
		[['port=70000'], /^port must be between 1 and 65535, not 70000$/],
		[['colour=red'], /^udp_server has no parameter "colour"$/],
		[['udp_client.destip=999.1.1.1'], /^destip must be an IPv4 address like 127\.0\.0\.1, not "999\.1\.1\.1"$/],
		[['udp_client.durable=1'], /^udp_client has no parameter "durable"$/],
		[['port'], /^"port" is not name=value$/],
	] as const) {
		const error = await t.throwsAsync(checkInstallParams(target, [...words], fakeSpecs), { instanceOf: UserError });
		t.regex(error?.message ?? '', message, words.join(' '));
		t.is(error?.exitCode, 64);
		t.regex(error?.hint ?? '', /takes these parameters:\n {2}\w+ +/);
	}
});

test('modprobe.d gets one options line per module given parameters; modules-load.d only the server', t => {
	t.is(
		modprobeConf({ udp_server: [{ name: 'port', value: '3001' }], udp_client: [{ name: 'destip', value: '10.0.9.2' }] }),
		'# Written by ./run install (kernel-udp); ./run uninstall removes it.\n' +
			'# The parameters: modinfo -p MODULE\n' +
			'options udp_server port=3001\n' +
			'options udp_client destip=10.0.9.2\n',
	);
	t.notRegex(modprobeConf({}), /^options/m);
	t.deepEqual(
		modulesLoadConf()
			.split('\n')
			.filter(line => line && !line.startsWith('#')),
		['udp_server'],
	);
});

test('the kvd unit quotes paths with spaces, % and $ for systemd', t => {
	t.is(systemdWord('/a b/%h$x"y\\'), '"/a b/%%h$$x\\"y\\\\"');
	const unit = kvdUnit({ node: '/usr/bin/node', script: '/srv/my project/dist/daemon/kvd.js', backup: '/var/tmp/b.txt' });
	t.regex(unit, /^ExecStart="\/usr\/bin\/node" "\/srv\/my project\/dist\/daemon\/kvd\.js" "--backup" "\/var\/tmp\/b\.txt"$/m);
	t.regex(unit, /^WantedBy=multi-user\.target$/m);
	t.regex(unit, /^After=systemd-modules-load\.service/m);
});

/** A target where nothing is installed yet: records the files written. */
function freshTarget(written: Map<string, string>, { dkms = true, registered = '' } = {}) {
	return new FakeTarget((argv: string[], options: ExecOptions) => {
		const [program, ...args] = argv;
		if (program === 'sh' && args[0] === '-c' && args[1]?.startsWith('command -v')) return { exitCode: dkms || args[3] !== 'dkms' ? 0 : 1 };
		if (program === 'sh' && args[2] === 'write') {
			written.set(args[3] ?? '', String(options.input));
			return {};
		}
		if (program === 'dkms' && args[0] === 'status') return { stdout: registered };
		if (program === 'test') return { exitCode: 1 }; // nothing exists, no systemd, no module loaded
		if (program === 'find') return { stdout: '' };
		if (program === 'modinfo') return { stdout: `/lib/modules/6.1.0-fake/updates/dkms/${args.at(-1)}.ko\n` };
		return {};
	}, 'local');
}

test('install: checks dkms first, says how to get it', async t => {
	const target = freshTarget(new Map(), { dkms: false });
	const error = await t.throwsAsync(install(target, ['port=3001'], {}, fakeSpecs), { instanceOf: UserError });
	t.is(error?.message, 'dkms is not installed in a fake target (Debian package: dkms)');
	t.regex(error?.hint ?? '', /apt-get install dkms/);
	t.false(
		target.commands.some(argv => argv[0] === 'dkms' || argv[0] === 'cp'),
		'nothing done',
	);
});

test('install: a bad parameter stops it before anything is written', async t => {
	const written = new Map<string, string>();
	const target = freshTarget(written);
	await t.throwsAsync(install(target, ['port=0'], {}, fakeSpecs), { instanceOf: UserError, message: /port must be between 1 and 65535/ });
	t.is(written.size, 0);
	t.false(target.commands.some(argv => argv[0] === 'dkms' && argv[1] !== 'status'));
});

test('install: registers, builds for the kernel, writes the conf files and the unit', async t => {
	const written = new Map<string, string>();
	const target = freshTarget(written);
	const version = await packageVersion();
	const said = await install(target, ['port=3001', 'udp_client.destip=10.0.9.2'], { backup: '/var/lib/kvd/b.txt' }, fakeSpecs);
	const dkms = target.commands.filter(argv => argv[0] === 'dkms').map(argv => argv.join(' '));
	t.deepEqual(dkms, ['dkms status kernel-udp', `dkms add kernel-udp/${version}`, `dkms install kernel-udp/${version} -k 6.1.0-fake`]);
	t.deepEqual(
		[...written.keys()],
		[`/usr/src/kernel-udp-${version}/dkms.conf`, INSTALLED_PATHS.modprobe, INSTALLED_PATHS.modulesLoad, INSTALLED_PATHS.unit],
	);
	t.is(written.get(`/usr/src/kernel-udp-${version}/dkms.conf`), dkmsConf(version));
	t.regex(written.get(INSTALLED_PATHS.modprobe) ?? '', /^options udp_server port=3001\noptions udp_client destip=10\.0\.9\.2\n$/m);
	t.regex(written.get(INSTALLED_PATHS.unit) ?? '', /dist\/daemon\/kvd\.js" "--backup" "\/var\/lib\/kvd\/b\.txt"\n/);
	t.true(target.commands.some(argv => argv.join(' ') === `ln -sfn ${INSTALLED_PATHS.unit} ${INSTALLED_PATHS.unitWants}`));
	// The sources are copied from the checkout: each module's directory and include/.
	const copies = target.commands.filter(argv => argv[0] === 'cp').map(argv => argv.at(-1));
	t.deepEqual(copies, [
		`/usr/src/kernel-udp-${version}/server-module`,
		`/usr/src/kernel-udp-${version}/client-module`,
		`/usr/src/kernel-udp-${version}/include`,
	]);
	t.regex(said, /udp_server loads at boot \(not udp_client: it sends HELLO as it loads\)/);
	t.regex(said, /\/lib\/modules\/6\.1\.0-fake\/updates\/dkms\/udp_server\.ko/);
});

test('install --no-daemon writes no unit', async t => {
	const written = new Map<string, string>();
	await install(freshTarget(written), [], { daemon: false }, fakeSpecs);
	t.false(written.has(INSTALLED_PATHS.unit));
	t.true(written.has(INSTALLED_PATHS.modprobe));
});

test('uninstall: dkms remove --all for every registered version, then every file; nothing there is said so', async t => {
	const present = new Set<string>([INSTALLED_PATHS.modprobe, INSTALLED_PATHS.unit, '/usr/src/kernel-udp-0.0.9']);
	const target = new FakeTarget(argv => {
		const [program, ...args] = argv;
		if (program === 'sh') return {};
		if (program === 'dkms') return { stdout: 'kernel-udp/0.0.9, 6.1.0-fake, x86_64: installed\nkernel-udp/0.1.0: added\n' };
		if (program === 'find') return { stdout: '/usr/src/kernel-udp-0.0.9\n' };
		if (program === 'test') return { exitCode: present.has(args[1] ?? '') ? 0 : 1 };
		return {};
	}, 'local');
	const said = await uninstall(target);
	t.deepEqual(
		target.commands.filter(argv => argv[0] === 'dkms' || argv[0] === 'rm').map(argv => argv.join(' ')),
		[
			'dkms status kernel-udp',
			'dkms remove kernel-udp/0.0.9 --all',
			'dkms remove kernel-udp/0.1.0 --all',
			'rm -rf -- /usr/src/kernel-udp-0.0.9',
			`rm -rf -- ${INSTALLED_PATHS.modprobe}`,
			`rm -rf -- ${INSTALLED_PATHS.unit}`,
		],
	);
	t.regex(said, /dkms remove --all: kernel-udp\/0\.0\.9, kernel-udp\/0\.1\.0/);

	const empty = new FakeTarget(argv => (argv[0] === 'test' ? { exitCode: 1 } : {}), 'local');
	t.is(await uninstall(empty), 'kernel-udp was not installed in a fake target: nothing to remove');
});
