import test from 'ava';
import { UserError } from '../../src/errors.js';
import { load, unload, type BuiltModule } from '../../src/lifecycle.js';
import { parseModinfoParams } from '../../src/params.js';
import { FakeTarget } from '../helpers/fake-target.js';

const server: BuiltModule = {
	name: 'udp_server',
	ko: '/src/server-module/udp_server.ko',
	specs: parseModinfoParams('port:UDP port (range 1-65535, default 3000) (uint)\nbind:Address (IPv4 address, default 127.0.0.1) (charp)'),
};

const notLoaded = (argv: string[]) => (argv[0] === 'test' ? { exitCode: 1 } : undefined);

test('load forwards the port, passes bind=0.0.0.0 in the lab, and calls insmod with checked parameters', async t => {
	const target = new FakeTarget(notLoaded);
	const loaded = await load(target, server, { name: 'udp_server', params: ['port=4000'], daemon: false });
	t.deepEqual(target.commands.at(-1), ['insmod', '/run/kudp/udp_server.ko', 'port=4000', 'bind=0.0.0.0']);
	t.deepEqual(target.exposed, [[4000, 4000]]);
	t.deepEqual(loaded.udp, { hostPort: 4000, guestPort: 4000 });
});

test('on this machine’s kernel, load keeps the default bind and loads the .ko where it was built', async t => {
	const target = new FakeTarget(notLoaded, 'local');
	const loaded = await load(target, server, { name: 'udp_server', params: ['port=4000'], daemon: false });
	t.deepEqual(target.commands.at(-1), ['insmod', '/src/server-module/udp_server.ko', 'port=4000']);
	t.deepEqual(loaded.udp, { hostPort: 4000, guestPort: 4000 });
});

test('a refused parameter never reaches the target', async t => {
	const target = new FakeTarget(notLoaded);
	await t.throwsAsync(load(target, server, { name: 'udp_server', params: ['port=70000'] }), { instanceOf: UserError });
	t.deepEqual(target.commands, []);
});

test('a failed insmod reports the module’s own reason and removes the forward', async t => {
	const target = new FakeTarget(argv => {
		if (argv[0] === 'test') return { exitCode: 1 };
		if (argv[0] === 'insmod') {
			target.log.push({ priority: 3, sequence: 7, usec: 1, text: 'udp_server: cannot bind 0.0.0.0:3000: error -98' });
			return { exitCode: 1, stderr: 'insmod: ERROR: could not insert module: Address in use' };
		}
		return undefined;
	});
	const error = await t.throwsAsync(load(target, server, { name: 'udp_server', params: [], daemon: false }), {
		instanceOf: UserError,
	});
	t.regex(error?.message ?? '', /insmod udp_server failed: insmod: ERROR: could not insert module: Address in use/);
	t.regex(error?.hint ?? '', /kernel: udp_server: cannot bind 0\.0\.0\.0:3000: error -98/);
	t.deepEqual(target.exposed, []);
});

test('an old copy is unloaded before loading', async t => {
	const target = new FakeTarget(() => undefined);
	await load(target, server, { name: 'udp_server', params: [], daemon: false });
	const verbs = target.commands.map(argv => argv[0]);
	t.true(verbs.indexOf('rmmod') >= 0 && verbs.indexOf('rmmod') < verbs.indexOf('insmod'));
});

test('an rmmod that hangs is a clear error that says how to recover', async t => {
	const target = new FakeTarget(argv => {
		if (argv[0] === 'rmmod') return { exitCode: null, signal: 'SIGKILL', timedOut: true };
		if (argv[0] === 'sh') return { exitCode: 1 }; // no kvd running
		return undefined;
	});
	const error = await t.throwsAsync(unload(target, 'udp_client'), { instanceOf: UserError });
	t.regex(error?.message ?? '', /rmmod udp_client did not finish within 10 s: the module is stuck/);
	t.regex(error?.hint ?? '', /\.\/run down/);
});

test('unloading a module that is not loaded is not an error', async t => {
	const target = new FakeTarget(notLoaded);
	t.is(await unload(target, 'udp_server'), undefined);
	t.false(target.commands.some(argv => argv[0] === 'rmmod'));
});
