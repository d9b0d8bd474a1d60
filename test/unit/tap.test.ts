import test from 'ava';
import { TapTally } from '../../src/tap.js';

function tallyOf(text: string) {
	const tally = new TapTally();
	for (const line of text.split('\n')) {
		tally.add(line);
	}
	return tally;
}

test('a clean run is counted from its ok lines and its summary alike', t => {
	const tally = tallyOf(
		['TAP version 13', 'ok 1 - a', 'ok 2 - b', '#   a log line: # pass 7', '', '1..2', '# tests 2', '# pass 2', '# fail 0'].join('\n'),
	);
	t.true(tally.complete);
	t.deepEqual(tally.result(), { passed: 2, failed: 0, skipped: 0 });
});

test('tests that never ran because a hook failed count as failed (from CI)', t => {
	// Shortened from a real CI log: one `not ok` for the hook, four tests left behind.
	const lines = ['not ok 1 - integration › persist › before hook', '# 4 tests remaining in dist/test/integration/persist.test.js'];
	for (let i = 2; i <= 91; i++) lines.push(`ok ${i} - test ${i}`);
	lines.push('', '1..94', '# tests 94', '# pass 90', '# fail 4');
	t.deepEqual(tallyOf(lines.join('\n')).result(), { passed: 90, failed: 4, skipped: 0 });
});

test('without a summary (the runner died) the lines are counted', t => {
	const tally = tallyOf('ok 1 - a\nnot ok 2 - b\nok 3 - c # SKIP later\n');
	t.false(tally.complete);
	t.deepEqual(tally.result(), { passed: 1, failed: 1, skipped: 1 });
});

test('skipped and todo tests are reported apart', t => {
	t.deepEqual(tallyOf('# tests 5\n# pass 3\n# skip 1\n# todo 1\n# fail 0').result(), { passed: 3, failed: 0, skipped: 2 });
});
