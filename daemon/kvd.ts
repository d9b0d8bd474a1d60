/**
 * kvd's command line: `node dist/daemon/kvd.js [--backup FILE] ...`. What
 * kvd does is in daemon.ts; what it shares with ./run, in status.ts.
 */
import { Command, InvalidArgumentError } from 'commander';
import path from 'node:path';
import { Kvd, log } from './daemon.js';
import { DEFAULT_BACKUP, type KvdOptions } from './status.js';

function absolutePath(value: string): string {
	if (!path.isAbsolute(value)) {
		throw new InvalidArgumentError('must be an absolute path.');
	}
	return value;
}

const program = new Command('kvd')
	.description("Back up udp_server's key-value table to a file and restore it into each newly loaded copy of the module.")
	.option('--backup <file>', 'the backup file (its change log is <file>.log)', absolutePath, DEFAULT_BACKUP)
	.option('--run-dir <dir>', 'where kvd.pid, kvd.status and kvd.ready go', absolutePath, '/run')
	.option('--proc <dir>', 'where the module’s /proc files are', absolutePath, '/proc')
	.option('--module <name>', 'the server module', 'udp_server')
	.addHelpText(
		'after',
		`
Run as root, once per boot; it registers with each udp_server loaded after it.
Logs are JSON lines on stderr. An unload of the module waits (up to 5 s) for
kvd to save its last changes. SIGTERM: save every change read, leave the
module and exit.`,
	)
	.action(async (options: KvdOptions) => {
		const kvd = new Kvd(options);
		process.on('SIGTERM', () => kvd.stop());
		process.on('SIGINT', () => kvd.stop());
		try {
			await kvd.start();
			await kvd.loop();
		} finally {
			await kvd.cleanUp();
		}
		log.info('stopped');
	});

try {
	await program.parseAsync(process.argv);
} catch (error) {
	const message = error instanceof Error ? error.message : String(error);
	log.error(message);
	process.stderr.write(`kvd: ${message}\n`);
	process.exit(1);
}
