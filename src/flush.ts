/**
 * Waiting for stdout and stderr before `process.exit()`.
 *
 * Node writes to a pipe without blocking: when the reader is slower than
 * the writer, what the pipe cannot take yet waits in the stream's queue, and
 * `process.exit()` throws that queue away (`./run shell -- head -c 20000000
 * /dev/zero | slow-reader` got 18 590 400 bytes, exit status 0).
 */

/** Resolves once `stream` has handed every queued byte to the OS, or never can (closed, EPIPE). */
export function flushed(stream: NodeJS.WriteStream): Promise<void> {
	if (stream.writableLength === 0 || stream.destroyed || stream.writableFinished) {
		return Promise.resolve();
	}
	return new Promise(resolve => {
		const done = () => {
			stream.off('drain', done);
			stream.off('error', done);
			stream.off('close', done);
			resolve();
		};
		stream.on('drain', done);
		stream.on('error', done);
		stream.on('close', done);
	});
}

/** Exits with `process.exitCode` once stdout and stderr are written out. */
export async function exitWhenFlushed(): Promise<never> {
	await Promise.all([flushed(process.stdout), flushed(process.stderr)]);
	process.exit();
}
