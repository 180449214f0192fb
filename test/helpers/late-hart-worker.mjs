// A hart thread that comes up late (test/board/smp-late-threads.test.ts): sleeps
// workerData.lateMs before it runs dist/hart-worker.js, as a thread whose isolate and warm-up
// take that long on a busy host would. Plain JavaScript: the worker runs outside vitest.
import { workerData } from 'node:worker_threads';

Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, workerData.lateMs);
await import(workerData.hartWorker);
