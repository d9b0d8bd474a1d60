import test from 'ava';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { DEBUG_KERNEL_TESTS } from '../../src/commands/test.js';
import { PROJECT_ROOT } from '../../src/modules.js';
import {
	checkConfig,
	childCpuSeconds,
	DEBUG_KERNEL_FRAGMENT,
	type DebugKernelInputs,
	debugKernelKey,
	fakeLsmod,
} from '../../src/lab/debug-kernel.js';
import { parseKmemleak, splitKmemleak } from '../../src/kmemleak.js';

const inputs: DebugKernelInputs = {
	sourceVersion: '6.1.192-3',
	baseConfigPath: '/boot/config-6.1.0-57-cloud-amd64',
	baseConfig: 'CONFIG_MODULES=y\nCONFIG_VIRTIO_NET=m\n',
	fragment: DEBUG_KERNEL_FRAGMENT,
	modules: ['virtio', 'virtio_net'],
};

test('the cache key is the source version and a digest of what shapes the build', t => {
	const key = debugKernelKey(inputs);
	t.regex(key, /^6\.1\.192-3-[0-9a-f]{12}$/);
	t.is(debugKernelKey({ ...inputs }), key, 'the same inputs give the same key');
	// Where the config was read from does not matter, only what it says.
	t.is(debugKernelKey({ ...inputs, baseConfigPath: '/elsewhere' }), key);
	for (const changed of [
		{ sourceVersion: '6.1.193-1' },
		{ baseConfig: `${inputs.baseConfig}CONFIG_EXT4_FS=y\n` },
		{ fragment: `${inputs.fragment}CONFIG_KCSAN=y\n` },
		{ modules: ['virtio'] },
	]) {
		t.not(debugKernelKey({ ...inputs, ...changed }), key, JSON.stringify(changed));
	}
	t.regex(debugKernelKey({ ...inputs, sourceVersion: '1:6.1/x' }), /^1_6\.1_x-[0-9a-f]{12}$/, 'no slash or colon in a directory name');
});

test('the fake lsmod lists exactly the modules the lab loads, as localmodconfig reads lsmod', t => {
	t.is(fakeLsmod(['virtio', 'fuse']), 'Module                  Size  Used by\nvirtio 16384 0\nfuse 16384 0\n');
});

test('checkConfig accepts a .config that has the whole fragment', t => {
	const fragment =
		'# a comment\nCONFIG_KASAN=y\nCONFIG_LOCALVERSION="-kudp-debug"\n# CONFIG_MODULE_SIG is not set\n# CONFIG_PCI is not set\n';
	const config = '#\n# Automatically generated file\nCONFIG_KASAN=y\nCONFIG_LOCALVERSION="-kudp-debug"\n# CONFIG_MODULE_SIG is not set\n';
	t.deepEqual(checkConfig(config, fragment), []);
});

test('checkConfig names every option olddefconfig dropped or changed', t => {
	const fragment =
		'CONFIG_KASAN=y\nCONFIG_PROVE_LOCKING=y\nCONFIG_LOCALVERSION="-kudp-debug"\n# CONFIG_CPU_FREQ is not set\n# CONFIG_PCI is not set\n';
	const config = '# CONFIG_KASAN is not set\nCONFIG_LOCALVERSION=""\nCONFIG_CPU_FREQ=y\nCONFIG_PCI=y\n';
	t.deepEqual(checkConfig(config, fragment), [
		'CONFIG_KASAN should be y, is not set',
		'CONFIG_PROVE_LOCKING should be y, is not set',
		'CONFIG_LOCALVERSION should be "-kudp-debug", is ""',
		'CONFIG_CPU_FREQ should be off, is y',
		'CONFIG_PCI should be off, is y',
	]);
});

test('the fragment asks for every checker of the issue, and for the lab devices built in', t => {
	const problems = checkConfig('', DEBUG_KERNEL_FRAGMENT);
	for (const option of [
		'KASAN',
		'PROVE_LOCKING',
		'PROVE_RCU',
		'DEBUG_ATOMIC_SLEEP',
		'DEBUG_OBJECTS_RCU_HEAD',
		'DEBUG_KMEMLEAK',
		'UBSAN',
		'UBSAN_BOUNDS',
		'DEBUG_FS',
		'MODULE_UNLOAD',
		'MEMCG',
		'VIRTIO_MMIO',
		'VIRTIO_FS',
		'VIRTIO_NET',
		'VIRTIO_CONSOLE',
		'OVERLAY_FS',
	]) {
		t.true(problems.includes(`CONFIG_${option} should be y, is not set`), option);
	}
});

const KMEMLEAK = `unreferenced object 0xffff888005f3a000 (size 64):
  comm "insmod", pid 231, jiffies 4294911031 (age 21.320s)
  hex dump (first 32 bytes):
    6b 65 79 31 00 00 00 00 00 00 00 00 00 00 00 00  key1............
    00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00  ................
  backtrace:
    [<00000000c3b1f0a2>] __kmem_cache_alloc_node+0x1c1/0x2c0
    [<000000002f1f7f5d>] kmalloc_trace+0x26/0x90
    [<0000000012ab34cd>] kv_insert+0x1f/0x2a0 [udp_server]
    [<00000000a1b2c3d4>] do_one_initcall+0x5e/0x320
unreferenced object 0xffff888006100000 (size 128):
  comm "rmmod", pid 240, jiffies 4294912000 (age 12.100s)
  backtrace:
    [<00000000c3b1f0a2>] __kmalloc+0x4b/0x90
    [<00000000deadbeef>] 0xffffffffc0201234
    [<00000000a1b2c3d4>] __do_sys_delete_module+0x1c4/0x300
unreferenced object 0xffff888007000000 (size 32):
  comm "swapper/0", pid 1, jiffies 4294892000 (age 60.000s)
  backtrace:
    [<00000000c3b1f0a2>] __kmalloc+0x4b/0x90
    [<00000000aabbccdd>] acpi_ds_build_internal_package_obj+0x70/0x200
`;

test('kmemleak reports are parsed: object, size, comm and the backtrace symbols', t => {
	const reports = parseKmemleak(KMEMLEAK);
	t.is(reports.length, 3);
	t.like(reports[0], { object: '0xffff888005f3a000', size: 64, comm: 'insmod' });
	t.deepEqual(reports[0]!.frames, [
		'__kmem_cache_alloc_node+0x1c1/0x2c0',
		'kmalloc_trace+0x26/0x90',
		'kv_insert+0x1f/0x2a0 [udp_server]',
		'do_one_initcall+0x5e/0x320',
	]);
	t.true(reports[0]!.text.startsWith('unreferenced object 0xffff888005f3a000 (size 64):\n  comm "insmod"'));
	t.deepEqual(parseKmemleak(''), []);
});

test('a leak is ours when a frame is in our loaded module, or a bare address where an unloaded module was', t => {
	const { ours, others } = splitKmemleak(parseKmemleak(KMEMLEAK), ['udp_server', 'udp_client']);
	t.deepEqual(
		ours.map(report => report.object),
		['0xffff888005f3a000', '0xffff888006100000'],
	);
	t.deepEqual(
		others.map(report => report.object),
		['0xffff888007000000'],
	);
	// A bare address outside the modules area (a BPF program, say) is not taken for ours.
	const elsewhere = 'unreferenced object 0x1 (size 8):\n  backtrace:\n    [<0>] 0xffffffff81000000\n';
	t.is(splitKmemleak(parseKmemleak(elsewhere), ['udp_server']).ours.length, 0);
});

test("the build's CPU time is read from the shell's `times`: the children's line, user plus system", t => {
	t.is(childCpuSeconds('0m0.01s 0m0.00s\n41m3.40s 3m2.50s\n'), 2646);
	t.is(childCpuSeconds(''), 0);
});

test('the fragment keeps PCI: on 6.1, ACPI without it loads no tables and microvm finds no devices', t => {
	t.false(DEBUG_KERNEL_FRAGMENT.includes('# CONFIG_PCI is not set'));
	t.true(DEBUG_KERNEL_FRAGMENT.includes('CONFIG_ACPI=y'));
});

/** ava's --match: `*` is any run of characters, the rest is literal, the whole title must match. */
function matches(pattern: string, title: string): boolean {
	const source = pattern
		.split('*')
		.map(part => part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))
		.join('.*');
	return new RegExp(`^${source}$`, 's').test(title);
}

test('every pattern of the debug part names a test of its own file, and of no other', async t => {
	const titlesOf = async (file: string) => {
		const text = await readFile(path.join(PROJECT_ROOT, 'test/integration', `${file}.test.ts`), 'utf8');
		const titles = [...text.matchAll(/\b(?:labTest|test)(?:\.\w+)*\(\s*(['`])(.*?)\1/g)].map(match => match[2]!);
		// The title of a test made in a loop over softirq=0 and 1.
		const loop = '$' + '{softirq}';
		return titles.flatMap(title => (title.includes(loop) ? ['0', '1'].map(v => title.replace(loop, v)) : [title]));
	};
	const files = Object.keys(DEBUG_KERNEL_TESTS);
	const titles = Object.fromEntries(await Promise.all(files.map(async file => [file, await titlesOf(file)] as const)));
	for (const [file, patterns] of Object.entries(DEBUG_KERNEL_TESTS)) {
		for (const pattern of patterns) {
			t.true(
				titles[file]!.some(title => matches(pattern, title)),
				`${pattern} matches no test in ${file}.test.ts`,
			);
		}
	}
	// ava applies every pattern to every listed file: none may pick a test of another file.
	for (const [file, patterns] of Object.entries(DEBUG_KERNEL_TESTS)) {
		for (const other of files.filter(name => name !== file)) {
			const picked = titles[other]!.filter(title => patterns.some(pattern => matches(pattern, title)));
			t.deepEqual(picked, [], `a pattern for ${file} also picks tests of ${other}`);
		}
	}
});
