/**
 * The generator's second lab is named after the servers' lab, and a test's
 * pair of labs is swept together by ./run test when its process is gone.
 */
import test from 'ava';
import { secondLab } from '../../bench/two-labs.js';
import { testLabOwner } from '../../src/commands/test.js';

test('secondLab: NAME-b, or -b before the PID of a test lab, which the sweep then finds', t => {
	t.is(secondLab('bench'), 'bench-b');
	t.is(secondLab('wtb'), 'wtb-b');
	t.is(secondLab('test-bench-4242'), 'test-bench-b-4242');
	t.is(testLabOwner(secondLab('test-bench-4242')), 4242);
});
