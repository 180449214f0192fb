// How a VM's worker starts the threads of its other harts (src/board/smp.ts): worker threads
// running dist/hart-worker.js, next to this bundle.

import { Worker } from 'node:worker_threads';
import type { HartThreadHandle, StartHartThread } from '../board/smp.js';

export function hartThreads(script: URL = new URL('./hart-worker.js', import.meta.url)): StartHartThread {
  return (init): HartThreadHandle => {
    const w = new Worker(script, { workerData: init, transferList: [init.port], name: `hart ${init.hartId}` });
    let error: Error | null = null;
    w.on('error', (e) => { error = e; });
    return {
      onExit(cb) { w.on('exit', () => cb(error)); },
      terminate() { void w.terminate(); },
    };
  };
}
