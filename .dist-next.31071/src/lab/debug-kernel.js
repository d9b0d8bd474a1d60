/**
 * The lab's debug kernel (KUDP_LAB_KERNEL=debug): Debian's own 6.1 source
 * (linux-source-6.1) built with the cloud kernel's config plus the kernel's
 * checkers: KASAN, lockdep (PROVE_LOCKING, PROVE_RCU), DEBUG_ATOMIC_SLEEP,
 * debug objects for RCU heads, timers and work, kmemleak and UBSAN. What the
 * lab does not use is trimmed off (localmodconfig, no debug info, no
 * signing) so that it builds in about 20 minutes on 2 cores, once per
 * machine: the result is cached outside the checkout, under a key made of
 * the source package's version, the cloud config it starts from and the
 * config fragment below. The devices the lab needs are built in, so its
 * initramfs loads no modules; the build tree is the headers our modules are
 * built against.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { cpus } from 'node:os';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { UserError, ifMissing } from '../errors.js';
import { writeFileAtomically } from '../files.js';
import { acquireLock } from '../lock.js';
import { log } from '../log.js';
import { MissingProgramError, requireProgram, runProgram } from '../programs.js';
import { settings } from '../settings.js';
import { INITRAMFS_MODULES } from './guest-modules.js';
/** The value of KUDP_LAB_KERNEL that picks this kernel. */
export const DEBUG_KERNEL = 'debug';
/** Debian's package of the kernel source, and the tarball it installs. */
export const DEBUG_KERNEL_SOURCE_PACKAGE = 'linux-source-6.1';
const SOURCE_TARBALL = '/usr/src/linux-source-6.1.tar.xz';
/** The kernel series of that source: the cloud config it starts from must be of the same one. */
const SOURCE_SERIES = '6.1';
/** The directory the tarball unpacks to: the build tree, and the headers modules are built against. */
const TREE = 'linux-source-6.1';
/**
 * What the debug kernel adds to (and takes from) the cloud kernel's config,
 * in .config syntax: `CONFIG_X=y` must be in the final .config exactly so,
 * `# CONFIG_X is not set` must not be set there (checkConfig).
 */
export const DEBUG_KERNEL_FRAGMENT = `# The lab's own devices, built in: the initramfs loads no modules on this kernel.
CONFIG_VIRTIO=y
CONFIG_VIRTIO_MMIO=y
CONFIG_FUSE_FS=y
CONFIG_VIRTIO_FS=y
CONFIG_OVERLAY_FS=y
CONFIG_VIRTIO_CONSOLE=y
CONFIG_FAILOVER=y
CONFIG_NET_FAILOVER=y
CONFIG_VIRTIO_NET=y
# What the project uses: module loading and unloading, memcg, perf, debugfs.
CONFIG_MODULES=y
CONFIG_MODULE_UNLOAD=y
CONFIG_MEMCG=y
CONFIG_PERF_EVENTS=y
CONFIG_DEBUG_FS=y
CONFIG_ACPI=y
CONFIG_LOCALVERSION="-kudp-debug"
# CONFIG_LOCALVERSION_AUTO is not set
# The checkers.
CONFIG_KASAN=y
CONFIG_KASAN_GENERIC=y
CONFIG_KASAN_INLINE=y
CONFIG_PROVE_LOCKING=y
CONFIG_PROVE_RCU=y
CONFIG_DEBUG_ATOMIC_SLEEP=y
CONFIG_DEBUG_OBJECTS=y
CONFIG_DEBUG_OBJECTS_RCU_HEAD=y
CONFIG_DEBUG_OBJECTS_TIMERS=y
CONFIG_DEBUG_OBJECTS_WORK=y
CONFIG_DEBUG_KMEMLEAK=y
# CONFIG_DEBUG_KMEMLEAK_DEFAULT_OFF is not set
# CONFIG_DEBUG_KMEMLEAK_AUTO_SCAN is not set
CONFIG_UBSAN=y
CONFIG_UBSAN_BOUNDS=y
CONFIG_UBSAN_SHIFT=y
# CONFIG_UBSAN_TRAP is not set
# CONFIG_UBSAN_ALIGNMENT is not set
# Build time: no debug info, no signing (Debian's keys are not here), no symbol CRCs.
CONFIG_DEBUG_INFO_NONE=y
# CONFIG_DEBUG_INFO_DWARF_TOOLCHAIN_DEFAULT is not set
# CONFIG_DEBUG_INFO_BTF is not set
# CONFIG_MODULE_SIG is not set
# CONFIG_MODVERSIONS is not set
CONFIG_SYSTEM_TRUSTED_KEYS=""
# Big built-in parts the lab guest never uses (IPv4 only, no disks).
# PCI stays, though microvm has none: on 6.1, ACPI without PCI cannot install its
# default PCI_Config handler (AE_BAD_PARAMETER, "During Region initialization"),
# loads no tables, and microvm's virtio-mmio devices, which ACPI lists, are never found.
# CONFIG_XEN is not set
# CONFIG_SECURITY_SELINUX is not set
# CONFIG_SECURITY_APPARMOR is not set
# CONFIG_SECURITY_TOMOYO is not set
# CONFIG_SECURITY_LOCKDOWN_LSM is not set
# CONFIG_EXT4_FS is not set
# CONFIG_BLK_DEV_NVME is not set
# CONFIG_CRYPTO_FIPS is not set
# CONFIG_IPV6 is not set
# CONFIG_NETFILTER is not set
# CONFIG_NET_SCHED is not set
# CONFIG_MPTCP is not set
# CONFIG_NETLABEL is not set
# CONFIG_DCB is not set
# CONFIG_BPF_SYSCALL is not set
# CONFIG_AUDIT is not set
# CONFIG_INTEGRITY is not set
# CONFIG_EFI is not set
# CONFIG_HIBERNATION is not set
# CONFIG_SUSPEND is not set
# CONFIG_KEXEC is not set
# CONFIG_CRASH_DUMP is not set
# CONFIG_SCHED_MC_PRIO is not set
# CONFIG_CPU_FREQ is not set
# CONFIG_IOMMU_SUPPORT is not set
# CONFIG_VT is not set
# CONFIG_FB is not set
# CONFIG_MD is not set
# CONFIG_TCG_TPM is not set
# CONFIG_HW_RANDOM is not set
# CONFIG_X86_SGX is not set
# CONFIG_X86_MCE is not set
# CONFIG_X86_CPU_RESCTRL is not set
# CONFIG_LIVEPATCH is not set
# CONFIG_IA32_EMULATION is not set
# CONFIG_X86_X32_ABI is not set
# CONFIG_NUMA is not set
# CONFIG_MEMORY_HOTPLUG is not set
# CONFIG_QUOTA is not set
# CONFIG_BLK_DEV_IO_TRACE is not set
# CONFIG_BLK_DEV_ZONED is not set
# CONFIG_BLK_DEV_INTEGRITY is not set
# CONFIG_BLK_DEV_THROTTLING is not set
`;
/**
 * The cache key: the source version (readable), then a digest of everything
 * that shapes the build. The same inputs always give the same key.
 */
export function debugKernelKey(inputs) {
    const digest = createHash('sha256')
        .update(`${inputs.sourceVersion}\0${inputs.baseConfig}\0${inputs.fragment}\0${inputs.modules.join(' ')}\0`)
        .digest('hex')
        .slice(0, 12);
    return `${inputs.sourceVersion.replace(/[^\w.+-]/g, '_')}-${digest}`;
}
/** The `lsmod` output localmodconfig reads: the modules the lab loads, and only those. */
export function fakeLsmod(modules) {
    return `Module                  Size  Used by\n${modules.map(name => `${name} 16384 0\n`).join('')}`;
}
/**
 * What a final .config lacks of the fragment: each `CONFIG_X=value` line must
 * be there as it is, each `# CONFIG_X is not set` must not be set. olddefconfig
 * drops silently what it cannot have (a missing dependency): this says so.
 */
export function checkConfig(config, fragment) {
    const lines = new Set(config.split('\n'));
    const values = new Map();
    for (const line of config.split('\n')) {
        const match = /^(CONFIG_\w+)=(.*)$/.exec(line);
        if (match) {
            values.set(match[1], match[2]);
        }
    }
    const problems = [];
    for (const line of fragment.split('\n')) {
        const off = /^# (CONFIG_\w+) is not set$/.exec(line)?.[1];
        if (off) {
            const value = values.get(off);
            if (value !== undefined && value !== 'n') {
                problems.push(`${off} should be off, is ${value}`);
            }
            continue;
        }
        const wanted = /^(CONFIG_\w+)=(.*)$/.exec(line);
        if (wanted && !lines.has(line)) {
            problems.push(`${wanted[1]} should be ${wanted[2]}, is ${values.get(wanted[1]) ?? 'not set'}`);
        }
    }
    return problems;
}
/** Where built debug kernels are kept: outside the checkout, shared by every checkout of the machine. */
export function debugKernelCacheRoot() {
    return path.join(settings.cacheDir, 'debug-kernel');
}
/** Asked for the debug kernel without building it, and it is not in the cache. */
export class DebugKernelNotBuiltError extends UserError {
    constructor() {
        super('the debug kernel is not built yet', {
            hint: `KUDP_LAB_KERNEL=${DEBUG_KERNEL} ./run shell -- true builds it (once per machine, about 20 minutes on 2 cores)`,
        });
        this.name = 'DebugKernelNotBuiltError';
    }
}
/** The children's user + system time from the shell's `times` ("0m0.01s 0m0.00s\n12m3.40s 1m2.50s"). */
export function childCpuSeconds(times) {
    const children = times.trim().split('\n').at(-1) ?? '';
    let total = 0;
    for (const [, minutes, seconds] of children.matchAll(/(\d+)m([\d.]+)s/g)) {
        total += Number(minutes) * 60 + Number(seconds);
    }
    return Math.round(total);
}
/** The dpkg version of an installed package, or undefined. */
async function packageVersion(name) {
    // biome-ignore lint/suspicious/noTemplateCurlyInString: dpkg-query's own ${field} format, not a template
    const result = await runProgram('dpkg-query', ['-W', '-f', '${db:Status-Status} ${Version}', name], { reject: false }).catch((error) => {
        if (error instanceof MissingProgramError) {
            return { stdout: '' };
        }
        throw error;
    });
    const [status, version] = result.stdout.trim().split(' ');
    return status === 'installed' && version ? version : undefined;
}
/**
 * The cloud kernel config the build starts from: the lab's usual kernel's
 * when it is of the source's series, else the newest installed one that is.
 */
async function baseConfigPath(usualRelease) {
    const boot = existsSync('/boot') ? await readdir('/boot') : [];
    const configs = boot
        .filter(name => name.startsWith(`config-${SOURCE_SERIES}.`) && name.endsWith('-cloud-amd64'))
        .map(name => name.slice('config-'.length));
    const release = usualRelease && configs.includes(usualRelease) ? usualRelease : configs.sort().at(-1);
    if (!release) {
        throw new UserError(`the debug kernel starts from a Debian ${SOURCE_SERIES} cloud kernel's config, and none is installed`, {
            hint: 'run ./run setup (it installs linux-image-cloud-amd64)',
        });
    }
    return `/boot/config-${release}`;
}
/** The inputs of the debug kernel this machine would build now. */
export async function debugKernelInputs(usualRelease) {
    const sourceVersion = await packageVersion(DEBUG_KERNEL_SOURCE_PACKAGE);
    if (!sourceVersion || !existsSync(SOURCE_TARBALL)) {
        throw new UserError(`the debug kernel is built from Debian's ${DEBUG_KERNEL_SOURCE_PACKAGE}, which is not installed`, {
            hint: `run ./run setup (it installs ${DEBUG_KERNEL_SOURCE_PACKAGE} and the build tools)`,
        });
    }
    const configPath = await baseConfigPath(usualRelease);
    return {
        sourceVersion,
        baseConfigPath: configPath,
        baseConfig: await readFile(configPath, 'utf8'),
        fragment: DEBUG_KERNEL_FRAGMENT,
        modules: INITRAMFS_MODULES,
    };
}
/** Where a build with this key lives, finished. */
function buildDir(key) {
    return path.join(debugKernelCacheRoot(), key);
}
/** The lab kernel of a finished build. */
function labKernelOf(dir, build) {
    const tree = path.join(dir, TREE);
    // The bzImage, not the ELF vmlinux the other lab kernels boot faster with: QEMU starts an
    // ELF at its PVH entry, whose C code (xen_prepare_pvh) runs before KASAN's shadow memory is
    // mapped, and the guest triple-faults there. The bzImage's own entry sets the shadow up first.
    return { release: build.release, image: path.join(tree, 'arch/x86/boot/bzImage'), headers: tree, debug: true };
}
/** The finished build for these inputs, if there is one. */
async function finishedBuild(key) {
    const text = await readFile(path.join(buildDir(key), 'build.json'), 'utf8').catch(ifMissing(undefined));
    return text === undefined ? undefined : JSON.parse(text);
}
export async function debugKernelStatus(usualRelease) {
    let key;
    try {
        key = debugKernelKey(await debugKernelInputs(usualRelease));
    }
    catch (error) {
        if (error instanceof UserError) {
            return { built: false, problem: error.message };
        }
        throw error;
    }
    const build = await finishedBuild(key);
    return build ? { built: true, key, dir: buildDir(key), build } : { built: false, key, dir: buildDir(key) };
}
/** The debug kernel, built first when it is not in the cache (`build: false`: an error instead). */
export async function debugLabKernel(usualRelease, { build = true } = {}) {
    const inputs = await debugKernelInputs(usualRelease);
    const key = debugKernelKey(inputs);
    const done = await finishedBuild(key);
    if (done) {
        return labKernelOf(buildDir(key), done);
    }
    if (!build) {
        throw new DebugKernelNotBuiltError();
    }
    await mkdir(debugKernelCacheRoot(), { recursive: true });
    // One build at a time on this machine: another ./run (a parallel test file) waits for it.
    const lock = await acquireLock(path.join(debugKernelCacheRoot(), 'build.lock'), 90 * 60_000, holder => `process ${holder.pid} has been building the debug kernel for 90 minutes; it holds ${debugKernelCacheRoot()}/build.lock`);
    try {
        const built = (await finishedBuild(key)) ?? (await buildDebugKernel(inputs, key));
        return labKernelOf(buildDir(key), built);
    }
    finally {
        await lock.release();
    }
}
/** Runs a step of the build with its output appended to the build log; throws with the log's tail on failure. */
async function step(logFile, cwd, argv, what) {
    await writeFile(logFile, `\n$ ${argv.join(' ')}\n`, { flag: 'a' });
    const result = await runProgram('sh', ['-c', 'exec "$@" >>"$0" 2>&1 </dev/null', logFile, ...argv], {
        cwd,
        reject: false,
        env: { LC_ALL: 'C' },
    });
    if (result.exitCode !== 0) {
        const tail = (await readFile(logFile, 'utf8')).trim().split('\n').slice(-25).join('\n');
        throw new UserError(`building the debug kernel failed: ${what} exited with ${result.exitCode ?? result.signal}`, {
            hint: `the last lines of ${logFile}:\n${tail}`,
        });
    }
}
/**
 * Unpacks the source into `dir` and configures it: the cloud config, only
 * the modules the lab loads (localmodconfig), the fragment on top, the
 * defaults of what that changes (olddefconfig); then checks that the
 * fragment survived. Returns the tree.
 */
export async function configureTree(inputs, dir, logFile) {
    const tree = path.join(dir, TREE);
    await step(logFile, dir, ['tar', '-xaf', SOURCE_TARBALL], 'unpacking the source');
    await writeFile(path.join(dir, 'lsmod'), fakeLsmod(inputs.modules));
    await writeFile(path.join(dir, 'fragment.config'), inputs.fragment);
    await writeFile(path.join(tree, '.config'), inputs.baseConfig);
    await step(logFile, tree, ['make', `LSMOD=${path.join(dir, 'lsmod')}`, 'localmodconfig'], 'make localmodconfig');
    await step(logFile, tree, ['./scripts/kconfig/merge_config.sh', '-m', '.config', path.join(dir, 'fragment.config')], 'merge_config.sh');
    await step(logFile, tree, ['make', 'olddefconfig'], 'make olddefconfig');
    const problems = checkConfig(await readFile(path.join(tree, '.config'), 'utf8'), inputs.fragment);
    if (problems.length > 0) {
        throw new UserError('the debug kernel config lost options the fragment asks for (olddefconfig dropped them)', {
            hint: problems.join('\n'),
        });
    }
    return tree;
}
/**
 * Builds the debug kernel in `<key>/`, where it stays: a kernel tree records
 * its own absolute paths (objtool's), and one renamed after its build
 * rebuilds everything at the next `make` in it. build.json, written last and
 * atomically, marks the build whole: a directory without it is what a killed
 * build left, and is started over.
 */
async function buildDebugKernel(inputs, key) {
    for (const program of ['make', 'gcc', 'tar', 'xz', 'bison', 'flex', 'bc', 'perl']) {
        requireProgram(program);
    }
    const dir = buildDir(key);
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir, { recursive: true });
    const logFile = path.join(dir, 'build.log');
    const tree = path.join(dir, TREE);
    const jobs = cpus().length || 1;
    const started = Date.now();
    log.info(`building the lab's debug kernel (${DEBUG_KERNEL_SOURCE_PACKAGE} ${inputs.sourceVersion}, ${jobs} jobs): once per machine, about 20 minutes on 2 cores; log: ${logFile}`);
    const progress = setInterval(() => {
        void readFile(logFile, 'utf8')
            .then(text => {
            const compiled = text.split('\n').filter(line => /^ {2}CC /.test(line)).length;
            log.info(`building the debug kernel: ${((Date.now() - started) / 60_000).toFixed(0)} min, ${compiled} files compiled`);
        })
            .catch(() => undefined);
    }, 60_000);
    try {
        await configureTree(inputs, dir, logFile);
        // Niced: the machine is shared. `times` gives the CPU time, which says more than the wall time on a busy machine.
        const cpuFile = path.join(dir, 'make-cpu-times');
        await step(logFile, tree, ['sh', '-c', 'nice -n 10 make -j"$1" bzImage modules; status=$?; times >"$2"; exit $status', 'make', String(jobs), cpuFile], 'make bzImage modules');
        const release = (await readFile(path.join(tree, 'include/config/kernel.release'), 'utf8')).trim();
        const build = {
            key,
            release,
            sourceVersion: inputs.sourceVersion,
            baseConfigPath: inputs.baseConfigPath,
            builtAt: new Date().toISOString(),
            buildSeconds: Math.round((Date.now() - started) / 1000),
            cpuSeconds: childCpuSeconds(await readFile(cpuFile, 'utf8')),
            jobs,
        };
        await writeFileAtomically(path.join(dir, 'build.json'), `${JSON.stringify(build, null, 2)}\n`);
        log.info(`the debug kernel ${release} is built (${(build.buildSeconds / 60).toFixed(1)} min), cached in ${dir}`);
        return build;
    }
    finally {
        clearInterval(progress);
    }
}
//# sourceMappingURL=debug-kernel.js.map