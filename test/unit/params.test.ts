import test from 'ava';
import { UserError } from '../../src/errors.js';
import { checkValue, isIPv4, parseModinfoParams, validateParams } from '../../src/params.js';

// What `modinfo -p udp_server.ko` prints, in the format our modules follow.
const MODINFO = `port:UDP port to listen on (range 1-65535, default 3000) (uint)
len:Maximum datagram length in bytes (range 32-65507, default 50) (uint)
bind:Address to listen on (IPv4 address, default 127.0.0.1) (charp)
verbose:Log every datagram (bool)`;

const specs = parseModinfoParams(MODINFO);

test('modinfo lines become typed specs with ranges and defaults', t => {
	t.deepEqual(
		specs.map(spec => [spec.name, spec.type, spec.min, spec.max, spec.defaultValue, spec.ipv4 ?? false]),
		[
			['port', 'uint', 1n, 65535n, '3000', false],
			['len', 'uint', 32n, 65507n, '50', false],
			['bind', 'charp', undefined, undefined, '127.0.0.1', true],
			['verbose', 'bool', undefined, undefined, undefined, false],
		],
	);
});

test('values inside the declared range pass', t => {
	t.deepEqual(validateParams('udp_server', specs, ['port=1', 'len=65507', 'bind=0.0.0.0', 'verbose=y']), [
		{ name: 'port', value: '1' },
		{ name: 'len', value: '65507' },
		{ name: 'bind', value: '0.0.0.0' },
		{ name: 'verbose', value: 'y' },
	]);
});

for (const [word, expected] of [
	['port=70000', 'port must be between 1 and 65535, not 70000'],
	['port=0', 'port must be between 1 and 65535, not 0'],
	['port=abc', 'port must be a whole number, not "abc"'],
	['port=-1', 'port must be between 1 and 65535, not -1'],
	['len=31', 'len must be between 32 and 65507, not 31'],
	['bind=999.1.1.1', 'bind must be an IPv4 address like 127.0.0.1, not "999.1.1.1"'],
	['bind=1.2.3', 'bind must be an IPv4 address like 127.0.0.1, not "1.2.3"'],
	['verbose=maybe', 'verbose must be a boolean (1/0, y/n), not "maybe"'],
	['colour=red', 'udp_server has no parameter "colour"'],
	['port', '"port" is not name=value'],
] as const) {
	test(`${word} is refused with the list of parameters`, t => {
		const error = t.throws(() => validateParams('udp_server', specs, [word]), { instanceOf: UserError });
		t.is(error?.message, expected);
		t.regex(error?.hint ?? '', /port +UDP port to listen on/);
		t.is(error?.exitCode, 64);
	});
}

test('a parameter given twice is refused', t => {
	t.throws(() => validateParams('udp_server', specs, ['port=1', 'port=2']), { message: 'port is given twice' });
});

test('IPv4 addresses are dotted quads without leading zeros', t => {
	t.true(isIPv4('127.0.0.1'));
	t.true(isIPv4('255.255.255.255'));
	t.false(isIPv4('256.0.0.1'));
	t.false(isIPv4('01.2.3.4'));
	t.false(isIPv4('1.2.3.4.5'));
	t.false(isIPv4('localhost'));
});

test('untyped charp values must not smuggle spaces into insmod', t => {
	t.truthy(checkValue({ name: 'x', type: 'charp', description: '' }, 'a b'));
	t.truthy(checkValue({ name: 'x', type: 'charp', description: '' }, ''));
});
