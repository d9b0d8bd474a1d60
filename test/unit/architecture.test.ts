/**
 * The rules of issue 10's "one door per target", checked on the sources: a
 * target is reached only through the Target interface, what is particular to
 * a module lives in src/roles.ts, and src/ does not depend on bench/; and
 * issue 19's layers of the server module, one way, one prefix; one module
 * reads the environment (src/settings.ts).
 */
import test from 'ava';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { PROJECT_ROOT } from '../../src/modules.js';

async function sources(dir: string): Promise<Array<{ file: string; text: string }>> {
	const files = (await readdir(path.join(PROJECT_ROOT, dir), { recursive: true })).filter(name => name.endsWith('.ts'));
	return Promise.all(
		files.map(async name => ({ file: path.join(dir, name), text: await readFile(path.join(PROJECT_ROOT, dir, name), 'utf8') })),
	);
}

test('only src/targets.ts looks inside the lab target; commands and bench use the Target interface', async t => {
	const offenders = [...(await sources('src')), ...(await sources('bench'))]
		.filter(({ file }) => file !== path.join('src', 'targets.ts') && !file.startsWith(path.join('src', 'lab')))
		.filter(({ text }) => /instanceof LabTarget|\.lab\.(state|down|up|exec|forwardUdp|unforwardUdp)\(/.test(text))
		.map(({ file }) => file);
	t.deepEqual(offenders, []);
});

/**
 * Files besides src/settings.ts that may read process.env, each with its
 * reason. (daemon/ is not checked: kvd runs in the target on its own, and
 * its KVD_CRASH_AT is a test hook of its own.)
 */
const ENV_READERS: Record<string, string> = {};

test('only src/settings.ts reads the environment (src/, bench/, test/helpers/)', async t => {
	const offenders = [...(await sources('src')), ...(await sources('bench')), ...(await sources(path.join('test', 'helpers')))]
		.filter(({ file }) => file !== path.join('src', 'settings.ts') && !(file in ENV_READERS))
		.filter(({ text }) => /\bprocess\.env\b/.test(text))
		.map(({ file }) => file);
	t.deepEqual(offenders, []);
});

test("no branch on a target's kind outside the targets: what differs is a property or method of Target", async t => {
	const offenders = [...(await sources('src')), ...(await sources('bench'))]
		.filter(({ file }) => file !== path.join('src', 'targets.ts') && !file.startsWith(path.join('src', 'lab')))
		.filter(({ text }) => /\.kind\s*[!=]==|[!=]==\s*[\w.]+\.kind\b|switch\s*\([^)]*\.kind\s*\)/.test(text))
		.map(({ file }) => file);
	t.deepEqual(offenders, []);
});

test('kvd-control.ts runs its target-side shell from src/kvd-control.sh, not from scripts in strings', async t => {
	const text = await readFile(path.join(PROJECT_ROOT, 'src', 'kvd-control.ts'), 'utf8');
	t.notRegex(text, /'sh',\s*'-c'/);
});

test('lifecycle.ts treats every module alike: what is particular to one is in roles.ts', async t => {
	const lifecycle = await readFile(path.join(PROJECT_ROOT, 'src', 'lifecycle.ts'), 'utf8');
	t.notRegex(lifecycle, /['"]udp_(server|client)['"]/);
});

test('nothing in src/ imports from bench/, statically or dynamically', async t => {
	const offenders = (await sources('src'))
		.filter(({ text }) => /(?:from\s+|import\(\s*)'(?:\.\.\/)+bench\//.test(text))
		.map(({ file }) => file);
	t.deepEqual(offenders, []);
});

/**
 * The server module's layers, top first (server-module/main.c's comment).
 * A file may include the header of its own layer and of layers below; the
 * two entry points (transport, /proc) may not include each other's.
 */
const C_LAYERS: Array<{ layer: string; rank: number; files: string[] }> = [
	{ layer: 'module', rank: 0, files: ['main.c'] },
	{
		layer: 'transport',
		rank: 1,
		files: ['transport.h', 'socket.c', 'parked.c', 'fastpath.c', 'devhook.c', 'ratelimit.c', 'trace_transport.h'],
	},
	{ layer: 'procfs', rank: 1, files: ['procfs.h', 'proc.c'] },
	{ layer: 'protocol', rank: 2, files: ['protocol.h', 'text.c', 'memcache.c'] },
	{ layer: 'request', rank: 3, files: ['request.h', 'request.c', 'trace_request.h'] },
	{ layer: 'store', rank: 4, files: ['store.h', 'kv.c', 'history.c', 'journal.c', 'restore.c', 'trace_journal.h'] },
];

test('server-module: every file is in a layer, and includes only headers of its own layer or below', async t => {
	const dir = path.join(PROJECT_ROOT, 'server-module');
	const files = (await readdir(dir)).filter(name => /\.[ch]$/.test(name) && !name.endsWith('.mod.c'));
	const layerOf = (file: string) => C_LAYERS.find(entry => entry.files.includes(file));
	t.deepEqual(
		files.filter(file => !layerOf(file)),
		[],
		'files in no layer',
	);
	const offenders: string[] = [];
	for (const file of files) {
		const own = layerOf(file)!;
		const text = await readFile(path.join(dir, file), 'utf8');
		for (const [, header] of text.matchAll(/^#include "([^"]+)"/gm)) {
			const theirs = layerOf(header!);
			if (!theirs) continue; // include/: the wire protocol and helpers both modules share
			const upward = theirs.rank < own.rank;
			const sideways = theirs.rank === own.rank && theirs.layer !== own.layer;
			if (upward || sideways) offenders.push(`${file} (${own.layer}) includes ${header} (${theirs.layer})`);
		}
	}
	t.deepEqual(offenders, []);
});

test('server-module: public symbols carry one prefix, kudp_', async t => {
	const dir = path.join(PROJECT_ROOT, 'server-module');
	const headers = (await readdir(dir)).filter(name => name.endsWith('.h'));
	const offenders: string[] = [];
	for (const header of headers) {
		const text = await readFile(path.join(dir, header), 'utf8');
		// Functions and variables declared at the top level: the name before the first "(" or the ";".
		// (A DECLARE_PER_CPU(type, name) line is a variable: its name is the macro's last argument.)
		for (const [, name] of text.matchAll(/^DECLARE_PER_CPU\w*\([^,]+,\s*(\w+)\)/gm)) {
			if (!/^kudp_/.test(name!)) offenders.push(`${header}: ${name}`);
		}
		// (TRACE_EVENT() and TRACE_DEFINE_ENUM() lines are tracepoints, named udp_server:<event> by the tracing macros.)
		for (const [, name] of text.matchAll(/^(?![#}/ \t*])(?!static\b)(?!DECLARE_PER_CPU|TRACE_)[^\n(;{]*?\b(\w+)\s*(?:\(|;)/gm)) {
			if (!/^kudp_/.test(name!)) offenders.push(`${header}: ${name}`);
		}
		for (const [, name] of text.matchAll(/^(?:struct|enum)\s+(\w+)\s*[{;]/gm)) {
			if (!/^kudp_/.test(name!)) offenders.push(`${header}: ${name}`);
		}
	}
	t.deepEqual(offenders, []);
});
