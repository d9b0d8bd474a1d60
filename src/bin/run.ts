/**
 * Entry point of `./run`: parse, run, and turn failures into clear messages.
 */
import { CommanderError } from 'commander';
import { buildProgram } from '../cli.js';
import { UserError } from '../errors.js';

try {
	await buildProgram().parseAsync(process.argv);
} catch (error) {
	if (error instanceof CommanderError) {
		process.exitCode = error.exitCode;
	} else if (error instanceof UserError) {
		process.stderr.write(`run: ${error.message}\n${error.hint ? `${error.hint}\n` : ''}`);
		process.exitCode = error.exitCode;
	} else {
		process.stderr.write(`run: unexpected error (a bug; please report it):\n`);
		console.error(error);
		process.exitCode = 70;
	}
}
// The command is over: leave now, even if a stdin pipe or a socket would keep
// Node waiting. (stdout and stderr are synchronous on Linux, nothing is lost.)
process.exit();
