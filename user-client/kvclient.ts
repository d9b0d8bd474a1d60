/**
 * Entry point of `kvclient` (bin/kvclient): the user-space stand-in for
 * `nc -u`. Everything is in cli.ts; main() never throws and prints its own
 * errors, so this only sets the exit code.
 */
import { main } from './cli.js';

// `kvclient stats | head -1`: a closed stdout is not an error worth a stack trace.
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
	if (error.code === 'EPIPE') process.exit(process.exitCode ?? 0);
	throw error;
});

process.exitCode = await main(process.argv.slice(2));
