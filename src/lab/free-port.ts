/** A free TCP or UDP port on 127.0.0.1, as the kernel hands them out. */
import net from 'node:net';

export async function freePort(type: 'tcp' | 'udp' = 'tcp'): Promise<number> {
	if (type === 'udp') {
		const dgram = await import('node:dgram');
		const socket = dgram.createSocket('udp4');
		await new Promise<void>(resolve => socket.bind(0, '127.0.0.1', resolve));
		const { port } = socket.address();
		socket.close();
		return port;
	}
	const server = net.createServer();
	await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve));
	const address = server.address() as net.AddressInfo;
	await new Promise(resolve => server.close(resolve));
	return address.port;
}
