/**
 * `./run bench` runs this file as a program of its own: bench/ is built on
 * src/ (the lab, the lifecycle), so src/ starts it by path instead of
 * importing it, and the layers keep one direction. The options were checked
 * by `./run bench`'s commander definition; they arrive as JSON.
 */
import { runBenchmark, type BenchOptions } from './kv-bench.js';

const options = JSON.parse(process.argv[2] ?? '{}') as BenchOptions;
await runBenchmark(options);
