/**
 * A user-space stand-in for udp_server with the same insert/lookup/delete
 * replies, so the benchmark can compare the kernel module against plain Node
 * in the same guest, in the same run.
 */
import dgram from 'node:dgram';

const port = Number(process.argv[2] ?? 3001);
const table = new Map<string, string>();
const socket = dgram.createSocket('udp4');

function answer(text: string): string {
	const line = text.replace(/\r?\n$/, '');
	const [command, key, ...rest] = line.split(' ');
	if (command === 'HELLO') return 'GOT IT\n';
	if (!key) return 'ERR missing key\n';
	if (command === 'insert') {
		table.set(key, rest.join(' '));
		return 'OK\n';
	}
	if (command === 'lookup') return table.has(key) ? `OK ${table.get(key)}\n` : 'NOT FOUND\n';
	if (command === 'delete') return table.delete(key) ? 'OK\n' : 'NOT FOUND\n';
	return 'ERR unknown command\n';
}

socket.on('message', (message, from) => socket.send(answer(message.toString('utf8')), from.port, from.address));
socket.bind(port, '0.0.0.0', () => process.stdout.write(`listening on ${port}\n`));
