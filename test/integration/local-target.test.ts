/**
 * The local target on a real kernel: `./run` runs INSIDE the lab guest with
 * KUDP_TARGET=local, so it builds against the guest's headers, loads into the
 * guest's own kernel and follows its /dev/kmsg, as on a user's Debian
 * machine. The guest sees this machine's files (its writes go to RAM), so it
 * runs this checkout's compiled ./run.
 *
 * Node and Kbuild run emulated here: each ./run takes seconds to minutes, so
 * the file walks the whole flow once, in order, and logs how long each step
 * took.
 */
import type { ExecutionContext } from 'ava';
import { labTest, useLab, waitForLog, type LabContext } from '../helpers/lab.js';
import { inGuest, type Run } from '../helpers/local-in-guest.js';

useLab(import.meta.url);

const PROMPT = 'Press Enter to remove the module or Ctrl+C to exit...';

/**
 * Guest side of an interactive ./run: stdin from a FIFO, output to a file;
 * once the prompt shows, press Enter (a newline into the FIFO) or send
 * SIGINT to ./run's node process (bin/run execs node, so it is $!), as
 * Ctrl-C on a terminal does. Prints ./run's output, then "exit=CODE".
 */
const INTERACTIVE = `
mode=$1; shift
dir=$(mktemp -d)
mkfifo "$dir/in"
# A background job of a script ignores SIGINT; a terminal's foreground job does not.
env --default-signal=INT ./run "$@" <"$dir/in" >"$dir/out" 2>&1 &
pid=$!
exec 3>"$dir/in"
i=0
until grep -qF '${PROMPT}' "$dir/out"; do
	kill -0 $pid 2>/dev/null || break
	i=$((i + 1))
	if [ $i -gt 4800 ]; then
		echo "kudp-test: no prompt within 480 s" >>"$dir/out"
		kill -KILL $pid
		break
	fi
	sleep 0.1
done
if kill -0 $pid 2>/dev/null; then
	case $mode in
	enter) echo >&3 ;;
	interrupt) kill -INT $pid ;;
	esac
fi
# stdin stays open until ./run is done: a terminal's Ctrl-C does not close
# it, and ./run takes the end of its input for Enter, as run.sh's read did.
wait $pid
code=$?
exec 3>&-
cat "$dir/out"
echo "exit=$code"
`;

/** `./run ARGS` in the guest, as a script would run it. */
async function run(t: ExecutionContext<LabContext>, args: string[]): Promise<Run> {
	const result = await inGuest(t, ['./run', ...args]);
	t.log(`./run ${args.join(' ')}: exit ${result.exitCode} in ${result.seconds.toFixed(1)} s`);
	return result;
}

/** `./run ARGS` in the guest, then Enter or Ctrl-C at its prompt. */
async function interactive(t: ExecutionContext<LabContext>, key: 'enter' | 'interrupt', args: string[]): Promise<Run> {
	const result = await inGuest(t, ['sh', '-c', INTERACTIVE, 'interactive', key, ...args]);
	const match = /\nexit=(\d+)\n$/.exec(result.output);
	if (!match || result.exitCode !== 0) {
		throw new Error(`the interactive ./run ${args.join(' ')} went wrong (${result.exitCode}):\n${result.output}`);
	}
	t.log(`./run ${args.join(' ')}, then ${key}: exit ${match[1]} in ${result.seconds.toFixed(1)} s`);
	return { exitCode: Number(match[1]), output: result.output.slice(0, match.index + 1), seconds: result.seconds };
}

async function loadedModules(t: ExecutionContext<LabContext>): Promise<string[]> {
	const result = await t.context.target.exec(['cut', '-d', ' ', '-f1', '/proc/modules'], { timeoutMs: 30_000 });
	return result.stdout.split('\n').filter(name => name.startsWith('udp_'));
}

labTest('./run loads into this kernel, streams the module’s log, and Enter unloads it', async t => {
	const loaded = await interactive(t, 'enter', ['udp_server', 'port=3000', '--no-daemon']);
	t.log(loaded.output);
	t.is(loaded.exitCode, 0);
	t.regex(loaded.output, /target: this machine's kernel .* \(asked for with --target local\)/);
	t.regex(loaded.output, /udp_server is loaded in this kernel with port=3000\n/);
	t.regex(loaded.output, /\] udp_server: listening on 127\.0\.0\.1:3000 /);
	t.true(loaded.output.includes(PROMPT));
	t.regex(loaded.output, /unloaded udp_server in \d+ ms\n/);
	t.deepEqual(await loadedModules(t), []);
});

labTest('Ctrl-C leaves the module loaded; status, logs and unload see it', async t => {
	const loaded = await interactive(t, 'interrupt', ['udp_server', 'port=3000', '--no-daemon']);
	t.log(loaded.output);
	t.is(loaded.exitCode, 0);
	t.regex(loaded.output, /\] udp_server: listening on 127\.0\.0\.1:3000 /);
	t.regex(loaded.output, /left udp_server loaded; \.\/run unload udp_server removes it\n/);
	t.deepEqual(await loadedModules(t), ['udp_server']);

	const status = await run(t, ['status']);
	t.log(status.output);
	t.is(status.exitCode, 0);
	t.regex(status.output, /^target: {2}local — this machine's kernel/m);
	t.regex(status.output, /^udp_server +loaded (?=.*\bport=3000\b)(?=.*\bbind=127\.0\.0\.1\b)/m);
	t.regex(status.output, /^udp_client +not loaded$/m);

	const logs = await run(t, ['logs', '-m', 'udp_server']);
	t.is(logs.exitCode, 0);
	t.regex(logs.output, /\] udp_server: listening on 127\.0\.0\.1:3000 /);
	t.false(
		logs.output.split('\n').some(line => line.trim() !== '' && !line.includes('] udp_server: ')),
		logs.output,
	);

	const unloaded = await run(t, ['unload', 'udp_server']);
	t.is(unloaded.exitCode, 0, unloaded.output);
	t.regex(unloaded.output, /unloaded udp_server in \d+ ms\n/);
	t.deepEqual(await loadedModules(t), []);
});

// Each ./run MODULE runs Kbuild in the guest (minutes under emulation), so
// the server and the client get a test, and ten minutes, each.
labTest('--detach loads the server and returns, with kvd beside it', async t => {
	const server = await run(t, ['udp_server', 'port=3000', '--detach']);
	t.is(server.exitCode, 0, server.output);
	t.regex(server.output, /udp_server is loaded in this kernel with port=3000\n/);
	t.regex(server.output, /the backup daemon kvd \(pid \d+\) keeps its table in \/var\/tmp\/hashtable_backup\.txt/);
	t.false(server.output.includes(PROMPT));
	t.deepEqual(await loadedModules(t), ['udp_server']);
});

labTest('--detach loads the client, which gets GOT IT from that server; unload removes both', async (t, since) => {
	const client = await run(t, ['udp_client', 'destip=127.0.0.1', 'port=3000', '--detach']);
	t.is(client.exitCode, 0, client.output);
	t.regex(client.output, /udp_client is loaded in this kernel with destip=127\.0\.0\.1 port=3000\n/);
	await waitForLog(t.context.target, since, /^udp_client: got GOT IT from 127\.0\.0\.1:3000$/, 60_000);
	t.deepEqual((await loadedModules(t)).sort(), ['udp_client', 'udp_server']);

	for (const name of ['udp_client', 'udp_server']) {
		const unloaded = await run(t, ['unload', name]);
		t.is(unloaded.exitCode, 0, unloaded.output);
		t.regex(unloaded.output, new RegExp(`unloaded ${name} in \\d+ ms\\n`));
	}
	t.deepEqual(await loadedModules(t), []);
});
