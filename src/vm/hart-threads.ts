// How a VM's worker starts the threads of its other harts (src/board/smp.ts): worker threads
// running dist/hart-worker.js, next to this bundle.

import { Worker } from 'node:worker_threads';
import type { HartThreadHandle, HartThreadInit, StartHartThread } from '../board/smp.js';

/** What a hart thread gets: the machine's part, and its CPU slot (src/vm/cpu-slots.ts). */
export interface HartWorkerData extends HartThreadInit {
  readonly cpu?: { readonly slots: SharedArrayBuffer; readonly slot: number };
}

/** `cpu`: the daemon's CPU slots and each hart's slot (by hart id); without it, harts run unmetered. */
export function hartThreads(script: URL = new URL('./hart-worker.js', import.meta.url), cpu?: { slots: SharedArrayBuffer; slot: readonly number[] }): StartHartThread {
  return (init): HartThreadHandle => {
    const data: HartWorkerData = { ...init, ...(cpu ? { cpu: { slots: cpu.slots, slot: cpu.slot[init.hartId] } } : {}) };
    const w = new Worker(script, { workerData: data, transferList: [init.port], name: `hart ${init.hartId}` });
    let error: Error | null = null;
    w.on('error', (e) => { error = e; });
    return {
      onExit(cb) { w.on('exit', () => cb(error)); },
      terminate() { void w.terminate(); },
    };
  };
}
