/**
 * Entry point of `./run`: parse, run, and turn failures into clear messages.
 */
import { type Command, CommanderError } from 'commander';
import { buildProgram } from '../cli.js';
import { EXIT_INTERNAL, EXIT_OK, EXIT_USAGE, UserError } from '../errors.js';
import { exitWhenFlushed } from '../flush.js';

// `./run shell -- dmesg | head`: a reader that went away is not an error worth a stack trace.
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
	if (error.code !== 'EPIPE') throw error;
	process.exit();
});

const program = buildProgram();
// Usage errors, the subcommands' too (./run pool up), throw (commander has printed them) instead of exiting 1.
const throwOnUsageErrors = (command: Command): void => {
	command.exitOverride();
	command.commands.forEach(throwOnUsageErrors);
};
throwOnUsageErrors(program);
try {
	await program.parseAsync(process.argv);
} catch (error) {
	if (error instanceof CommanderError) {
		// --help and --version end with 0; anything else commander stops on is a usage error.
		process.exitCode = error.exitCode === 0 ? EXIT_OK : EXIT_USAGE;
	} else if (error instanceof UserError) {
		process.stderr.write(`run: ${error.message}\n${error.hint ? `${error.hint}\n` : ''}`);
		process.exitCode = error.exitCode;
	} else {
		process.stderr.write(`run: unexpected error (a bug; please report it):\n`);
		console.error(error);
		process.exitCode = EXIT_INTERNAL;
	}
}
// The command is over: leave now, even if a stdin pipe or a socket would keep
// Node waiting, but only once stdout and stderr are out (a pipe's are queued).
await exitWhenFlushed();
