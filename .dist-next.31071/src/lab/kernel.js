/**
 * Which Debian kernel the lab boots, and the initramfs that boots it.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readdir, readFile, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { UserError } from '../errors.js';
import { partialPath, writeFileAtomically } from '../files.js';
import { MissingProgramError, requireProgram, runProgram } from '../programs.js';
import { settings } from '../settings.js';
import { DEBUG_KERNEL, debugLabKernel } from './debug-kernel.js';
import { INITRAMFS_MODULES } from './guest-modules.js';
/** Debian's meta-packages: image and headers installed as a pair so their versions match. */
export const LAB_KERNEL_PACKAGES = ['linux-image-cloud-amd64', 'linux-headers-cloud-amd64'];
const GUEST_INIT = fileURLToPath(new URL('../../../src/lab/guest-init.sh', import.meta.url));
/** Compares "6.1.0-56-cloud-amd64" style releases numerically. */
export function compareReleases(a, b) {
    const parts = (release) => release.split(/[.-]/).map(part => Number.parseInt(part, 10) || 0);
    const pa = parts(a);
    const pb = parts(b);
    for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
        const diff = (pa[i] ?? 0) - (pb[i] ?? 0);
        if (diff !== 0) {
            return diff;
        }
    }
    return 0;
}
/** The installed cloud kernels that have their headers, oldest first. */
export async function installedLabKernels() {
    const boot = existsSync('/boot') ? await readdir('/boot') : [];
    return boot
        .filter(name => name.startsWith('vmlinuz-') && name.endsWith('-cloud-amd64'))
        .map(name => name.slice('vmlinuz-'.length))
        .filter(release => existsSync(`/lib/modules/${release}/build/Makefile`))
        .sort(compareReleases)
        .map(release => ({ release, image: `/boot/vmlinuz-${release}`, headers: `/lib/modules/${release}/build` }));
}
/** The release Debian's linux-image-cloud-amd64 stands for: the distribution's own kernel. */
async function distributionKernel() {
    // Only a preference: without dpkg (not Debian) the newest installed kernel is used.
    // biome-ignore lint/suspicious/noTemplateCurlyInString: dpkg-query's own ${field} format, not a template
    const { stdout } = await runProgram('dpkg-query', ['-W', '-f', '${Depends}', LAB_KERNEL_PACKAGES[0]], { reject: false }).catch((error) => {
        if (error instanceof MissingProgramError) {
            return { stdout: '' };
        }
        throw error;
    });
    return /linux-image-(\S+-cloud-amd64)/.exec(stdout)?.[1];
}
/** The kernel the lab boots unless KUDP_LAB_KERNEL names another. */
export async function usualLabKernel(releases) {
    const installed = releases ?? (await installedLabKernels()).map(kernel => kernel.release);
    const preferred = await distributionKernel();
    return preferred && installed.includes(preferred) ? preferred : installed.at(-1);
}
/** Whether a lab runs the kernel KUDP_LAB_KERNEL asks for (a release, or "debug"). */
export function isWantedKernel(kernel, wanted) {
    return wanted === DEBUG_KERNEL ? kernel.debug === true : kernel.release === wanted;
}
/**
 * The kernel the lab boots: the one named by KUDP_LAB_KERNEL (e.g. the 6.12
 * kernel, for a second opinion, or "debug": the debug kernel, built first if
 * it is not in the cache, unless `build` is false), else the distribution's
 * own cloud kernel, else the newest installed one.
 */
export async function findLabKernel(wanted = settings.labKernel, { build = true } = {}) {
    if (wanted === DEBUG_KERNEL) {
        return debugLabKernel(await usualLabKernel(), { build });
    }
    const installed = await installedLabKernels();
    const releases = installed.map(kernel => kernel.release);
    const release = wanted ?? (await usualLabKernel(releases));
    const kernel = installed.find(candidate => candidate.release === release);
    if (!kernel) {
        throw new UserError(wanted
            ? `the lab kernel ${wanted} is not installed with its headers`
            : 'no Debian cloud kernel with matching headers is installed for the lab', {
            hint: wanted ? `installed: ${releases.join(', ') || 'none'}` : `run ./run setup (it installs ${LAB_KERNEL_PACKAGES.join(' and ')})`,
        });
    }
    return kernel;
}
/**
 * How a bzImage payload may be compressed: its magic and the program that
 * decompresses it. Debian's 6.1 cloud kernel uses LZ4, its 6.12 one zstd.
 */
const KERNEL_COMPRESSIONS = [
    { magic: Buffer.from([0x02, 0x21, 0x4c, 0x18]), command: ['lz4', '-dc'] },
    { magic: Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), command: ['zstd', '-dcq'] },
    { magic: Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]), command: ['xz', '-dc'] },
    { magic: Buffer.from([0x1f, 0x8b, 0x08]), command: ['gzip', '-dc'] },
];
/**
 * The kernel as an uncompressed ELF vmlinux, which boots faster under TCG
 * than the bzImage (no decompression in the emulated guest). Extracted once
 * per kernel into `cacheDir`, the way the kernel tree's scripts/extract-vmlinux
 * does: find the compressed payload by its magic and decompress it.
 */
export async function uncompressedKernel(kernel, cacheDir) {
    if (kernel.debug) {
        // Booted as built: a KASAN kernel cannot start at the ELF's PVH entry (debug-kernel.ts).
        return kernel.image;
    }
    const output = path.join(cacheDir, `vmlinux-${kernel.release}`);
    if (existsSync(output) && (await stat(output)).mtimeMs >= (await stat(kernel.image)).mtimeMs) {
        return output;
    }
    const image = await readFile(kernel.image);
    for (const { magic, command } of KERNEL_COMPRESSIONS) {
        for (let at = image.indexOf(magic); at >= 0; at = image.indexOf(magic, at + 1)) {
            const [program, ...args] = command;
            requireProgram(program);
            // The decompressor stops with an error at the bytes after the payload; what it wrote before is the kernel.
            const { stdout } = await runProgram(program, args, {
                input: image.subarray(at),
                encoding: 'buffer',
                reject: false,
                stripFinalNewline: false,
            });
            const vmlinux = Buffer.from(stdout);
            if (vmlinux.length > 64 && vmlinux.readUInt32BE(0) === 0x7f454c46) {
                await mkdir(cacheDir, { recursive: true });
                await writeFileAtomically(output, vmlinux);
                return output;
            }
        }
    }
    throw new UserError(`cannot find a compressed vmlinux in ${kernel.image}`, {
        hint: `looked for ${KERNEL_COMPRESSIONS.map(format => format.command[0]).join(', ')} payloads`,
    });
}
/** True for a dynamically linked ELF64 file (one with a PT_INTERP header): the initramfs has no loader. */
export function hasInterpreter(elf) {
    const PT_INTERP = 3;
    if (elf.length < 64 || elf.readUInt32BE(0) !== 0x7f454c46) {
        return false;
    }
    const phoff = Number(elf.readBigUInt64LE(0x20));
    const phentsize = elf.readUInt16LE(0x36);
    const phnum = elf.readUInt16LE(0x38);
    for (let i = 0; i < phnum; i++) {
        const offset = phoff + i * phentsize;
        if (offset + 4 <= elf.length && elf.readUInt32LE(offset) === PT_INTERP) {
            return true;
        }
    }
    return false;
}
/**
 * Where a kernel's module lives, or undefined when it is built into the
 * kernel (6.12's cloud kernel builds in virtio, fuse and virtiofs).
 */
async function moduleFile(release, name) {
    const { stdout } = await runProgram('modinfo', ['-k', release, '-F', 'filename', name]);
    const file = stdout.trim();
    return file === '(builtin)' ? undefined : file;
}
/** Decompressors for the forms Debian ships modules in (6.12: .ko.xz). */
const DECOMPRESS = { '.xz': ['xz', '-dc'], '.zst': ['zstd', '-dcq'], '.gz': ['gzip', '-dc'] };
/** Copies a module as a plain .ko, which busybox insmod can load. */
async function copyModule(source, destination) {
    const decompress = DECOMPRESS[path.extname(source)];
    if (!decompress) {
        await copyFile(source, destination);
        return;
    }
    const [command, ...args] = decompress;
    await runProgram(command, [...args, source], { stdout: { file: destination } });
}
/**
 * Builds (or reuses) the lab's initramfs for a kernel: a static busybox, the
 * modules that reach virtiofs, and guest-init.sh as /init. Cached in `cacheDir`
 * under a name made from guest-init.sh and the module list.
 */
export async function buildInitramfs(kernel, cacheDir) {
    // Named after what goes into it: a new guest-init.sh or module list makes a new one.
    const recipe = createHash('sha256')
        .update(await readFile(GUEST_INIT))
        .update(INITRAMFS_MODULES.join(' '))
        .digest('hex')
        .slice(0, 12);
    const output = path.join(cacheDir, `initramfs-${kernel.release}-${recipe}.cpio`);
    if (existsSync(output)) {
        return output;
    }
    const busybox = '/bin/busybox';
    if (!existsSync(busybox) || hasInterpreter(await readFile(busybox))) {
        throw new UserError('the lab needs a static busybox at /bin/busybox', {
            hint: 'run ./run setup (it installs busybox-static)',
        });
    }
    // The archive is packed by a shell pipeline, which would only say "not found".
    requireProgram('cpio');
    await mkdir(cacheDir, { recursive: true });
    const staging = await mkdtemp(path.join(tmpdir(), 'kudp-initramfs-'));
    try {
        await mkdir(path.join(staging, 'bin'));
        await mkdir(path.join(staging, 'modules'));
        await copyFile(busybox, path.join(staging, 'bin/busybox'));
        // Its applets' links, made here once rather than by `busybox --install` on every boot.
        const { stdout: applets } = await runProgram(busybox, ['--list']);
        for (const applet of applets.split('\n').filter(name => name && name !== 'busybox')) {
            await symlink('busybox', path.join(staging, 'bin', applet));
        }
        await copyFile(GUEST_INIT, path.join(staging, 'init'));
        const loadable = [];
        // The debug kernel has these built in (and no /lib/modules for modinfo to look in).
        for (const name of kernel.debug ? [] : INITRAMFS_MODULES) {
            const file = await moduleFile(kernel.release, name);
            if (file) {
                await copyModule(file, path.join(staging, 'modules', `${name}.ko`));
                loadable.push(name);
            }
        }
        await writeFile(path.join(staging, 'modules.order'), loadable.map(name => `${name}\n`).join(''));
        await runProgram('chmod', ['0755', path.join(staging, 'init'), path.join(staging, 'bin/busybox')]);
        // Two processes may build it at once (parallel test files on a fresh
        // checkout): each writes its own temporary, and either rename wins.
        const partial = partialPath(output);
        try {
            // Not compressed: QEMU loads it at memory speed, and the emulated guest need not unpack it.
            await runProgram('sh', ['-c', 'find . | cpio --quiet -o -H newc -R 0:0 > "$1"', 'pack', partial], {
                cwd: staging,
            });
            await rename(partial, output);
        }
        finally {
            await rm(partial, { force: true });
        }
        return output;
    }
    finally {
        await rm(staging, { recursive: true, force: true });
    }
}
//# sourceMappingURL=kernel.js.map