/**
 * The lab's clock. Under TCG with two vCPUs the kernel finds the TSCs
 * unsynchronized and falls back to refined-jiffies, whose 4 ms steps make
 * every time measured in the guest coarse; the lab boots with tsc=reliable.
 * Proof that it holds: several boots in a row on each installed lab kernel,
 * two vCPUs each, every one on the tsc clocksource. KUDP_CLOCK_BOOTS sets how
 * many (default 5; `npm run bench:lab-speed -- --boots N` does more).
 */
import test from 'ava';
import { installedLabKernels } from '../../src/lab/kernel.js';
import { Lab } from '../../src/lab/lab.js';
import { PROJECT_ROOT } from '../../src/modules.js';

const BOOTS = Number(process.env['KUDP_CLOCK_BOOTS'] ?? 5);
const CLOCKSOURCE = '/sys/devices/system/clocksource/clocksource0/current_clocksource';

for (const { release } of await installedLabKernels()) {
	test.serial(`${BOOTS} boots in a row on ${release} all run on the tsc clocksource`, async t => {
		t.timeout(BOOTS * 60_000);
		const wanted = process.env['KUDP_LAB_KERNEL'];
		process.env['KUDP_LAB_KERNEL'] = release;
		// A lab of its own, with two vCPUs: one vCPU has no TSCs to disagree.
		const lab = new Lab({ root: PROJECT_ROOT, name: `test-lab-clock-${process.pid}`, cpus: 2 });
		const clocks: string[] = [];
		const boots: number[] = [];
		try {
			for (let i = 0; i < BOOTS; i++) {
				const state = await lab.up();
				t.is(state.kernel.release, release);
				const result = await lab.exec(['cat', CLOCKSOURCE], { timeoutMs: 10_000 });
				t.is(result.exitCode, 0, result.stderr);
				clocks.push(result.stdout.trim());
				boots.push(state.bootSeconds);
				await lab.down();
			}
		} finally {
			await lab.down();
			if (wanted === undefined) {
				delete process.env['KUDP_LAB_KERNEL'];
			} else {
				process.env['KUDP_LAB_KERNEL'] = wanted;
			}
		}
		t.log(`${release}: clocksources ${clocks.join(' ')}; boots ${boots.map(seconds => seconds.toFixed(1)).join(' ')} s`);
		t.deepEqual(clocks, Array(BOOTS).fill('tsc'));
	});
}
