/**
 * Counting ava's TAP output for the closing `N passed, N failed` line. ava
 * ends with a summary (`# pass N`, `# fail N`, ...) that also counts the
 * tests that never ran because a hook failed; each `not ok` line alone would
 * miss those. Without a summary (the runner crashed) the lines are counted.
 */
export interface Tally {
	passed: number;
	failed: number;
	skipped: number;
}

export class TapTally {
	private readonly counted: Tally = { passed: 0, failed: 0, skipped: 0 };
	private readonly summary = new Map<string, number>();

	add(line: string): void {
		if (/^ok \d+/.test(line)) {
			if (/# (SKIP|TODO)/i.test(line)) {
				this.counted.skipped++;
			} else {
				this.counted.passed++;
			}
		} else if (/^not ok \d+/.test(line)) {
			this.counted.failed++;
		}
		const total = /^# (tests|pass|fail|skip|todo) (\d+)$/.exec(line);
		if (total) {
			this.summary.set(total[1]!, Number(total[2]));
		}
	}

	/** Whether ava printed its closing summary. */
	get complete(): boolean {
		return this.summary.has('pass') && this.summary.has('fail');
	}

	result(): Tally {
		if (!this.complete) {
			return { ...this.counted };
		}
		return {
			passed: this.summary.get('pass')!,
			failed: Math.max(this.summary.get('fail')!, this.counted.failed),
			skipped: (this.summary.get('skip') ?? 0) + (this.summary.get('todo') ?? 0),
		};
	}
}
