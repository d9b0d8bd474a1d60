/**
 * The Debian cloud kernel modules the lab guest needs, in the order the
 * initramfs loads them (kernel.ts): to reach the host's root over virtiofs,
 * then the consoles (kernel log, qemu-ga's port) and the network. insmod
 * from the initramfs is much faster than modprobe from the host's root. The
 * debug kernel (debug-kernel.ts) keeps only these of the cloud config's
 * modules (localmodconfig) and builds them in.
 */
export const INITRAMFS_MODULES = [
    'virtio_ring',
    'virtio',
    'virtio_mmio',
    'fuse',
    'virtiofs',
    'overlay',
    'virtio_console',
    'failover',
    'net_failover',
    'virtio_net',
];
//# sourceMappingURL=guest-modules.js.map