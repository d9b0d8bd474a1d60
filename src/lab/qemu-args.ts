/**
 * QEMU's command line for the lab guest: a microvm under TCG booting the lab
 * kernel with guest-init.sh, the host's directories over virtiofs, the
 * agent's and qemu-ga's channels, the kernel log's mirror and the monitor.
 */
import { readFile } from 'node:fs/promises';
import { ifMissing } from '../errors.js';
import { AGENT_GUEST_PORT } from './agent-protocol.js';
import { type LabNetwork, qemuNetworkArgs } from './network.js';
import { QGA_PORT_NAME } from './qga.js';

export interface QemuSetup {
	/** The uncompressed kernel image and the initramfs. */
	kernelImage: string;
	initramfs: string;
	cpus: number;
	memoryMb: number;
	/** The host's CPU clock (cpuKhz()), when known. */
	cpuKhz?: number | undefined;
	/** The host port (127.0.0.1) forwarded to the Node agent's port in the guest. */
	agentPort: number;
	network: LabNetwork;
	/** virtiofs shares: their tags and their virtiofsd's sockets, in order. */
	shares: Array<{ tag: string; socket: string }>;
	serialLog: string;
	kernelLog: string;
	qgaSocket: string;
	monitorSocket: string;
	pidFile: string;
}

/**
 * A value for the guest's kernel command line, which is split on spaces
 * (and parsed by guest-init.sh with `tr ' ' '\n'`): %, space, tab, newline
 * and double quote become %XX; guest-init.sh decodes exactly these.
 */
export function encodeBootArg(value: string): string {
	return value.replace(/[% \t\n"]/g, char => `%${char.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')}`);
}

/** The host's CPU clock in kHz: microvm guests need it (tsc_early_khz) to boot reliably. */
export async function cpuKhz(): Promise<number | undefined> {
	const cpuinfo = await readFile('/proc/cpuinfo', 'utf8').catch(ifMissing(''));
	const mhz = /^cpu MHz\s*:\s*([\d.]+)/m.exec(cpuinfo)?.[1];
	return mhz ? Math.round(Number(mhz) * 1000) : undefined;
}

/** The guest kernel's command line. */
export function kernelCommandLine(setup: Pick<QemuSetup, 'cpuKhz' | 'network'>): string {
	return [
		'console=ttyS0',
		'quiet',
		'panic=-1',
		// A hung task or a soft lockup in our module should be loud.
		'hung_task_panic=0',
		setup.cpuKhz ? `tsc_early_khz=${setup.cpuKhz}` : '',
		// A fine clock: under TCG the kernel finds the vCPUs' TSCs unsynchronized and
		// falls back to refined-jiffies (4 ms steps). QEMU's TSC is one host clock.
		'tsc=reliable',
		'kudp.state=1',
		`kudp.net=${setup.network.address}/${setup.network.prefixLength}`,
		`kudp.netmac=${setup.network.mac}`,
	]
		.filter(Boolean)
		.join(' ');
}

/** The arguments of qemu-system-x86_64, which daemonizes once the guest is started. */
export function qemuArgs(setup: QemuSetup): string[] {
	const memory = `${setup.memoryMb}M`;
	return [
		'-M',
		'microvm,memory-backend=mem,acpi=on',
		'-accel',
		'tcg',
		'-cpu',
		'max',
		'-smp',
		String(setup.cpus),
		'-m',
		memory,
		'-nodefaults',
		'-no-user-config',
		'-display',
		'none',
		'-object',
		`memory-backend-memfd,id=mem,size=${memory},share=on`,
		'-global',
		'virtio-mmio.force-legacy=false',
		'-kernel',
		setup.kernelImage,
		'-initrd',
		setup.initramfs,
		'-append',
		kernelCommandLine(setup),
		'-serial',
		`file:${setup.serialLog}`,
		...setup.shares.flatMap(({ tag, socket }) => [
			'-chardev',
			`socket,id=${tag},path=${socket}`,
			'-device',
			`vhost-user-fs-device,chardev=${tag},tag=${tag}`,
		]),
		'-netdev',
		`user,id=n0,hostfwd=tcp:127.0.0.1:${setup.agentPort}-:${AGENT_GUEST_PORT}`,
		'-device',
		'virtio-net-device,netdev=n0',
		...qemuNetworkArgs(setup.network),
		'-device',
		'virtio-serial-device',
		'-chardev',
		`file,id=klog,path=${setup.kernelLog}`,
		'-device',
		'virtconsole,chardev=klog',
		'-chardev',
		`socket,id=qga0,path=${setup.qgaSocket},server=on,wait=off`,
		'-device',
		`virtserialport,chardev=qga0,name=${QGA_PORT_NAME}`,
		'-monitor',
		`unix:${setup.monitorSocket},server=on,wait=off`,
		'-pidfile',
		setup.pidFile,
		'-daemonize',
	];
}
