/**
 * The `run` command line. bin/run.ts only calls buildProgram().parseAsync();
 * tests build the program with exitOverride() to check parsing.
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import { createLogger, setLogger, type LogOptions } from './log.js';
import { RUN_EXIT_CODES_HELP } from './errors.js';
import { MODULES } from './modules.js';
import { ENV } from './settings.js';

function portNumber(value: string): number {
	const port = Number(value);
	if (!/^\d+$/.test(value) || port < 1 || port > 65535) {
		throw new InvalidArgumentError('must be a port number from 1 to 65535.');
	}
	return port;
}

function count(value: string): number {
	const n = Number(value);
	if (!/^\d+$/.test(value) || n < 1 || n > 32) {
		throw new InvalidArgumentError('must be a whole number from 1 to 32.');
	}
	return n;
}

const targetOption = () =>
	new Option('--target <target>', 'where modules run: local (this kernel), lab (a QEMU guest) or auto')
		.choices(['auto', 'local', 'lab'])
		.env(ENV.target);
const labOption = () => new Option('--lab <name>', 'which lab guest to use (several can run at once)').env(ENV.lab);

const MODULE_LIST = Object.entries(MODULES)
	.map(([name, module]) => `  ${name.padEnd(12)}${module.summary} (${module.dir}/)`)
	.join('\n');

export function buildProgram(): Command {
	const program = new Command('run');
	// The hidden default command's options, listed in the main help from their own definitions.
	const loadingOptions = () =>
		load.options
			.map(option => {
				const fallback = typeof option.defaultValue === 'string' ? ` (default: ${option.defaultValue})` : '';
				const env = option.envVar ? ` (env: ${option.envVar})` : '';
				return `  ${option.flags.padEnd(20)} ${option.description}${fallback}${env}`;
			})
			.join('\n');
	program
		.description('Build, load and watch the kernel-udp modules, on this kernel or in the QEMU lab.')
		.usage('[options] MODULE [name=value ...] | COMMAND')
		.option('-v, --verbose', 'show debug logs')
		.option('--log-json', 'logs as JSON lines on stderr')
		.showHelpAfterError('(run ./run --help for usage)')
		.hook('preAction', command => {
			// A flag wins when given; otherwise KUDP_LOG_LEVEL and KUDP_LOG_JSON apply (createLogger reads them).
			const options = command.opts<{ verbose?: boolean; logJson?: boolean }>();
			const logOptions: LogOptions = {};
			if (options.verbose) logOptions.level = 'debug';
			if (options.logJson) logOptions.json = true;
			setLogger(createLogger(logOptions));
		})
		.addHelpText(
			'after',
			() => `
Modules:
${MODULE_LIST}

Loading (./run MODULE [name=value ...] [options]):
${loadingOptions()}
  Parameters are checked against modinfo -p of the built module first.

Examples:
  ./run udp_server port=3000          build, load, stream its kernel log; Enter unloads it
  kvclient send HELLO                 (another terminal) prints GOT IT
  ./run udp_client destip=127.0.0.1 port=3000
  ./run udp_server --detach           load and return (scripts)
  ./run logs -f                       follow the kernel log
  ./run demo                          server + client + kvclient, then clean up

Where this machine's kernel cannot load modules (containers, CI), they run in
the lab: a QEMU guest booting Debian's kernel, which stays up until ./run down.

${RUN_EXIT_CODES_HELP}`,
		);

	const load = program
		.command('load', { isDefault: true, hidden: true })
		.description('build and load a module (the default command: ./run MODULE ...)')
		.argument('<module>', `the module: ${Object.keys(MODULES).join(' or ')}`)
		.argument('[params...]', 'module parameters as name=value (see modinfo -p)')
		.option('-d, --detach', 'load and return at once, leaving the module loaded')
		.option('--host-port <port>', 'lab only: the port on 127.0.0.1 that reaches the server (default: its own port)', portNumber)
		.option('--no-daemon', 'udp_server: do not start the backup daemon kvd beside it')
		.option('--backup <file>', 'udp_server: the backup file kvd keeps in the target', '/var/tmp/hashtable_backup.txt')
		.addOption(targetOption())
		.addOption(labOption())
		.action(async (module: string, params: string[], options) => {
			const { loadCommand } = await import('./commands/load.js');
			await loadCommand(module, params, options);
		});

	program
		.command('unload')
		.description('unload a module')
		.argument('<module>', `the module: ${Object.keys(MODULES).join(' or ')}`)
		.addOption(targetOption())
		.addOption(labOption())
		.action(async (module: string, options) => {
			const { unloadCommand } = await import('./commands/load.js');
			await unloadCommand(module, options);
		});

	program
		.command('logs')
		.description('print the kernel log (on a Debian host: /var/log/kern.log)')
		.option('-f, --follow', 'keep printing new lines until Ctrl-C')
		.option('-m, --module <name>', 'only the lines of this module')
		.option('--raw', 'without timestamps')
		.addOption(targetOption())
		.addOption(labOption())
		.action(async options => {
			const { logsCommand } = await import('./commands/inspect.js');
			await logsCommand(options);
		});

	program
		.command('status')
		.description('show the target, the lab and the loaded modules with their parameters')
		.option('--json', 'as JSON')
		.addOption(targetOption())
		.addOption(labOption())
		.action(async options => {
			const { statusCommand } = await import('./commands/inspect.js');
			await statusCommand(options);
		});

	program
		.command('shell')
		.description('a root shell in the target, or run one command there: ./run shell -- CMD ...')
		.argument('[command...]', 'the command and its arguments')
		.addOption(targetOption())
		.addOption(labOption())
		.action(async (command: string[], options) => {
			const { shellCommand } = await import('./commands/inspect.js');
			await shellCommand(command, options);
		});

	program
		.command('trace')
		.description("a live view of udp_server's tracepoints: requests per second, latency, drops (Ctrl-C stops)")
		.option('--interval <seconds>', 'seconds between refreshes', Number, 1)
		.option('--count <n>', 'stop after this many refreshes', Number)
		.addOption(targetOption())
		.addOption(labOption())
		.action(async options => {
			const { traceCommand } = await import('./commands/trace.js');
			await traceCommand(options);
		});

	program
		.command('down')
		.description('stop the lab guest (modules in it are gone; the next ./run boots a fresh one)')
		.addOption(labOption())
		.action(async options => {
			const { downCommand } = await import('./commands/inspect.js');
			await downCommand(options);
		});

	const pool = program
		.command('pool')
		.description('a pool of udp_servers, one per lab, for kvclient --servers and memcached clients (ketama)')
		.addHelpText(
			'after',
			`
Each server is a lab of its own (pool1, pool2, ...) on the labs' network
10.0.9.0/24, serving the text protocol on port 3000 and memcached's on
11211. Reach them from a lab guest, e.g.
  ./run pool up 3
  ./run shell --lab pool1 -- kvclient --servers 10.0.9.2:3000,10.0.9.3:3000,10.0.9.4:3000 insert dog baileys
  ./run pool status
  ./run pool down`,
		);
	const prefixOption = () => new Option('--prefix <name>', 'the labs are named PREFIX1..PREFIXN').default('pool');
	pool
		.command('up')
		.description('start COUNT labs, each with udp_server loaded (in parallel), and print the --servers list')
		.argument('<count>', 'how many servers (1-32)', count)
		.argument('[params...]', 'more udp_server parameters as name=value, for every server')
		.option('--daemon', 'start the backup daemon kvd in each lab (off: a pool is a cache)')
		.addOption(prefixOption())
		.action(async (servers: number, params: string[], options) => {
			const { poolUpCommand } = await import('./commands/pool.js');
			await poolUpCommand(servers, params, options);
		});
	pool
		.command('status')
		.description('show each lab of the pool, its address, and whether its server answers')
		.option('--json', 'as JSON')
		.addOption(prefixOption())
		.action(async options => {
			const { poolStatusCommand } = await import('./commands/pool.js');
			await poolStatusCommand(options);
		});
	pool
		.command('down')
		.description('stop every lab of the pool')
		.addOption(prefixOption())
		.action(async options => {
			const { poolDownCommand } = await import('./commands/pool.js');
			await poolDownCommand(options);
		});

	program
		.command('install')
		.description(
			'install both modules with DKMS on this machine: rebuilt for every new kernel, udp_server loaded at boot, kvd as a systemd unit',
		)
		.argument('[params...]', "udp_server's parameters as name=value, udp_client's as udp_client.name=value (see modinfo -p)")
		.option('--no-daemon', 'no systemd unit for the backup daemon kvd')
		.option('--backup <file>', "the backup file kvd keeps (the unit's --backup)", '/var/tmp/hashtable_backup.txt')
		.addOption(targetOption())
		.addOption(labOption())
		.addHelpText(
			'after',
			`
What it installs (./run uninstall removes all of it):
  /usr/src/kernel-udp-VERSION/
      both modules' source and dkms.conf: DKMS builds and installs them for
      the running kernel (/lib/modules/KERNEL/updates/dkms) and for every
      kernel installed later
  /etc/modprobe.d/kernel-udp.conf
      the parameters given, as options lines
  /etc/modules-load.d/kernel-udp.conf
      udp_server, loaded at every boot; not udp_client, which sends HELLO as
      it loads (modprobe udp_client loads it with its options)
  /etc/systemd/system/kernel-udp-kvd.service
      kvd, enabled; it runs this checkout's dist/daemon/kvd.js (keep the
      checkout where it is, or install again after moving it)
Parameters are checked against modinfo -p of the built modules first.
Needs root and the Debian package dkms (./run setup installs it). Nothing is
loaded now: modprobe udp_server (and systemctl start kernel-udp-kvd) does.
In the lab (--target lab, or where this kernel cannot load modules) it all
goes into the guest's RAM and is gone at ./run down.

Examples:
  ./run install port=3000 durable=1
  ./run install port=3000 udp_client.destip=10.0.9.2 udp_client.port=3000
  ./run install --no-daemon
  ./run uninstall`,
		)
		.action(async (params: string[], options) => {
			const { installCommand } = await import('./commands/install.js');
			await installCommand(params, options);
		});

	program
		.command('uninstall')
		.description('remove what ./run install installed: unload the modules, dkms remove --all, the conf files, the unit, the source')
		.addOption(targetOption())
		.addOption(labOption())
		.action(async options => {
			const { uninstallCommand } = await import('./commands/install.js');
			await uninstallCommand(options);
		});

	program
		.command('setup')
		.description('install the Debian packages the project needs and put run and kvclient on PATH')
		.action(async () => {
			const { setupCommand } = await import('./commands/setup.js');
			await setupCommand();
		});

	program
		.command('demo')
		.description('load the server and the client, say HELLO from both sides, show the logs, clean up')
		.addOption(targetOption())
		.addOption(labOption())
		.action(async options => {
			const { demoCommand } = await import('./commands/demo.js');
			await demoCommand(options);
		});

	program
		.command('test')
		.description('install what is missing and run the whole test suite (unit, static checks, lab)')
		.argument('[files...]', 'only these compiled test files (dist/test/...)')
		.action(async (files: string[]) => {
			const { testCommand } = await import('./commands/test.js');
			await testCommand(files);
		});

	program
		.command('bench')
		.description('udp_server against memcached, Node and a bare kernel UDP echo, load generated inside a lab of its own (BENCHMARKS.md)')
		.option('--quick', 'a smoke test: every row, a fraction of a second each')
		.option('--seconds <n>', 'seconds per row and repetition (default 2)', Number)
		.option('--reps <n>', 'repetitions of every row (default 5)', Number)
		.option('--keep', 'leave the lab running afterwards')
		.addOption(new Option('--lab <name>', 'which lab guest to use').default('bench'))
		.action(async options => {
			const { runBench } = await import('./commands/bench.js');
			await runBench(options);
		});

	return program;
}
