/** A free TCP or UDP port on 127.0.0.1, as the kernel hands them out. */
import net from 'node:net';
export async function freePort(type = 'tcp') {
    if (type === 'udp') {
        const dgram = await import('node:dgram');
        const socket = dgram.createSocket('udp4');
        await new Promise(resolve => socket.bind(0, '127.0.0.1', resolve));
        const { port } = socket.address();
        socket.close();
        return port;
    }
    const server = net.createServer();
    await new Promise(resolve => server.listen(0, '127.0.0.1', resolve));
    const address = server.address();
    await new Promise(resolve => server.close(resolve));
    return address.port;
}
//# sourceMappingURL=free-port.js.map