/**
 * memcached's protocol on memcached_port, and several threads on one port,
 * against the real module in the lab: memaslap (Debian's memcaslap, a real
 * memcached UDP client) verifying what it reads, each command and reply of
 * protocol.txt that the server speaks, and the text protocol's model held
 * under concurrent writers spread over four threads.
 */
import type { ExecutionContext } from 'ava';
import { request } from '../../user-client/client.js';
import { assertPromptUnload, guest, labTest, loadServer, timedRmmod, useLab, writersMatchModel, type LabContext } from '../helpers/lab.js';

useLab(import.meta.url);

type T = ExecutionContext<LabContext>;

const MC_PORT = 11211;

/** Runs a Python script in the guest (python3 is the host's, over the shared root); returns its stdout. */
async function python(t: T, script: string): Promise<string> {
	const result = await t.context.target.exec(['python3', '-'], { input: script, timeoutMs: 120_000 });
	if (result.exitCode !== 0) throw new Error(`python3 in the guest failed:\n${result.stderr}`);
	return result.stdout;
}

/** A memcached UDP client in Python: one framed request, every datagram of the reply, in order. */
const CLIENT = `
import socket, struct, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2.0)
rid = 0
def ask(body, seq=0, total=1, expect_reply=True):
    global rid
    rid += 1
    s.sendto(struct.pack('>HHHH', rid, seq, total, 0) + body, ('127.0.0.1', ${MC_PORT}))
    if not expect_reply:
        try:
            s.recv(65536)
            return 'unexpected reply'
        except socket.timeout:
            return None
    parts, count = {}, None
    while count is None or len(parts) < count:
        data = s.recv(65536)
        r, n, c, zero = struct.unpack('>HHHH', data[:8])
        assert r == rid and zero == 0, (r, rid, zero)
        assert count in (None, c), (count, c)
        assert len(data) <= 1400, len(data)
        count = c
        parts[n] = data[8:]
    return b''.join(parts[i] for i in range(count))
def show(name, value):
    print(name + '\\t' + repr(value))
`;

for (const softirq of [false, true]) {
	labTest(`memaslap, a real memcached UDP client, reads back exactly what it wrote${softirq ? ' (softirq=1)' : ''}`, async t => {
		await loadServer(t, [`memcached_port=${MC_PORT}`, ...(softirq ? ['softirq=1', 'threads=2'] : [])]);
		const out = await guest(t, `timeout 300 memcaslap -s 127.0.0.1:${MC_PORT} -U -x 20000 -T 1 -c 8 --verify=0.2 2>&1`, 320_000);
		const stat = (name: string) => Number(new RegExp(`^${name}: (\\d+)$`, 'm').exec(out)?.[1]);
		t.log(
			out
				.split('\n')
				.filter(line => /^(cmd_get|cmd_set|get_misses|verify_failed|udp_timeout|Run time)/.test(line))
				.join('; '),
		);
		t.is(stat('cmd_get') + stat('cmd_set'), 20_000, out);
		t.true(stat('cmd_get') > 10_000);
		t.is(stat('verify_failed'), 0);
		t.is(stat('verify_misses'), 0);
		t.is(stat('get_misses'), 0);
		t.true(stat('udp_timeout') <= 20, `${stat('udp_timeout')} UDP timeouts`);
	});
}

for (const softirq of [false, true]) {
	labTest(
		`memcached commands and replies as protocol.txt says, on the same table as the text protocol${softirq ? ' (softirq=1)' : ''}`,
		async t => {
			const server = await loadServer(t, [`memcached_port=${MC_PORT}`, 'len=1024', ...(softirq ? ['softirq=1'] : [])]);
			const out = await python(
				t,
				`${CLIENT}
show('set', ask(b'set dog 42 0 7\\r\\nbaileys\\r\\n'))
show('get', ask(b'get dog\\r\\n'))
show('gets', ask(b'gets dog cat\\r\\n'))
show('add existing', ask(b'add dog 0 0 1\\r\\nx\\r\\n'))
show('add new', ask(b'add cat 1 0 3\\r\\ntom\\r\\n'))
show('replace missing', ask(b'replace fox 0 0 1\\r\\nx\\r\\n'))
show('replace', ask(b'replace cat 2 0 5\\r\\nfelix\\r\\n'))
show('get two', ask(b'get cat nobody dog\\r\\n'))
show('delete', ask(b'delete cat\\r\\n'))
show('delete again', ask(b'delete cat\\r\\n'))
show('noreply', ask(b'set quiet 0 0 1 noreply\\r\\nq\\r\\n', expect_reply=False))
show('after noreply', ask(b'get quiet\\r\\n'))
show('bad chunk', ask(b'set k 0 0 5\\r\\nabc\\r\\n'))
show('bad line', ask(b'set k zero 0 1\\r\\nx\\r\\n'))
show('too large', ask(b'set k 0 0 5000\\r\\n' + b'x' * 5000 + b'\\r\\n'))
show('unknown', ask(b'incr dog 1\\r\\n'))
show('multi-packet', ask(b'get dog\\r\\n', seq=0, total=2))
show('version', ask(b'version\\r\\n'))
show('expiring', ask(b'set soon 0 1 1\\r\\ns\\r\\n'))
show('expired already', ask(b'set gone 0 -1 1\\r\\ng\\r\\n'))
show('get gone', ask(b'get gone\\r\\n'))
time.sleep(2.2)
show('get soon later', ask(b'get soon\\r\\n'))
for i in range(40):
    ask(b'set big%d 0 0 1000\\r\\n' % i + b'v' * 1000 + b'\\r\\n')
big = ask(b'get ' + b' '.join(b'big%d' % i for i in range(40)) + b'\\r\\n')
show('multi-datagram get', (len(big), big.count(b'VALUE '), big.endswith(b'END\\r\\n')))
`,
			);
			const shown = new Map(
				out
					.trim()
					.split('\n')
					.map(line => line.split('\t') as [string, string]),
			);
			const expected: Record<string, string> = {
				set: "b'STORED\\r\\n'",
				get: "b'VALUE dog 42 7\\r\\nbaileys\\r\\nEND\\r\\n'",
				'add existing': "b'NOT_STORED\\r\\n'",
				'add new': "b'STORED\\r\\n'",
				'replace missing': "b'NOT_STORED\\r\\n'",
				replace: "b'STORED\\r\\n'",
				'get two': "b'VALUE cat 2 5\\r\\nfelix\\r\\nVALUE dog 42 7\\r\\nbaileys\\r\\nEND\\r\\n'",
				delete: "b'DELETED\\r\\n'",
				'delete again': "b'NOT_FOUND\\r\\n'",
				noreply: 'None',
				'after noreply': "b'VALUE quiet 0 1\\r\\nq\\r\\nEND\\r\\n'",
				'bad chunk': "b'CLIENT_ERROR bad data chunk\\r\\n'",
				'bad line': "b'CLIENT_ERROR bad command line format\\r\\n'",
				'too large': "b'SERVER_ERROR object too large for cache\\r\\n'",
				unknown: "b'ERROR\\r\\n'",
				'multi-packet': "b'SERVER_ERROR multi-packet request not supported\\r\\n'",
				version: "b'VERSION kernel-udp\\r\\n'",
				expiring: "b'STORED\\r\\n'",
				'expired already': "b'STORED\\r\\n'",
				'get gone': "b'END\\r\\n'",
				'get soon later': "b'END\\r\\n'",
				'multi-datagram get': '(40875, 40, True)',
			};
			for (const [name, reply] of Object.entries(expected)) t.is(shown.get(name), reply, name);
			t.regex(shown.get('gets') ?? '', /^b'VALUE dog 42 7 \d+\\r\\nbaileys\\r\\nEND\\r\\n'$/);

			// One table: what memcached stored, the text protocol finds, and the other way round.
			t.is((await request('lookup dog', { host: '127.0.0.1', port: server.port, timeoutMs: 2000 })).toString(), 'OK baileys\n');
			await request('insert fox fred', { host: '127.0.0.1', port: server.port, timeoutMs: 2000 });
			t.regex(await python(t, `${CLIENT}\nshow('fox', ask(b'get fox\\r\\n'))`), /^fox\tb'VALUE fox 0 4\\r\\nfred\\r\\nEND\\r\\n'$/m);
		},
	);
}

labTest('four threads on one port: 8 concurrent writers match a model, and unload stays prompt under a flood', async t => {
	const server = await loadServer(t, ['threads=4']);
	t.is((await guest(t, 'ps -e -o comm= | grep -c "^udp_server/"')).trim(), '4', 'one kthread per socket');
	await writersMatchModel(t, server.port);

	// A flood from inside the guest on every socket, then rmmod in the middle of it.
	await guest(t, `(timeout 20 sh -c 'while :; do echo "insert f x" ; done' | nc -u 127.0.0.1 3000 >/dev/null 2>&1 &); sleep 2`);
	assertPromptUnload(t, await timedRmmod(t, 'udp_server'), 'rmmod with four threads under a flood');
	await guest(t, 'pkill -x nc || true');
});
