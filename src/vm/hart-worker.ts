// A hart thread (bundled as dist/hart-worker.js): one hart of a VM whose harts run in parallel,
// started by the VM's worker (src/vm/worker.ts) through startHartThreads. It runs the hart until
// the machine stops (src/board/smp.ts); an exception ends the thread and the VM's worker reports
// the VM aborted. A machine that stopped cleanly leaves the thread idle: it collects its heap
// (the machine's RAM) and says so, and hart-threads.ts may hand it the next machine's hart
// (a `run` message) instead of starting a new thread, whose isolate and warm-up would cost again.

import { parentPort } from 'node:worker_threads';
import { HartThread } from '../board/smp.js';
import { CpuSlots, SlotGate } from './cpu-slots.js';
import { collectGarbage, collectIfGrown } from './collect-garbage.js';
import type { HartWorkerData } from './hart-threads.js';
import { importRegionCache } from '../riscv/wasm/region-cache.js';

/** Runs one machine's hart until that machine stops. */
function runHart(init: HartWorkerData): void {
  if (init.code) importRegionCache(init.code);
  const gate = init.cpu ? new SlotGate(new CpuSlots(init.cpu.slots), init.cpu.slot) : null;
  try {
    new HartThread(init, gate, collectGarbage, () => { collectIfGrown(); }).run();
  } finally {
    gate?.close(); // the thread's CPU clock (an fd of the process)
  }
  init.port.close();
}

/** Between machines: the last one's RAM and code become garbage; then this thread is idle. */
function idle(): void {
  collectGarbage();
  parentPort!.postMessage({ k: 'idle' });
}

// Each machine's hart comes as a message, the first one too: nothing here keeps a machine's
// init (its RAM chunks) once its hart has returned, as workerData would for the thread's life.
parentPort!.on('message', (m: { k: 'run'; init: HartWorkerData }) => {
  runHart(m.init);
  setImmediate(idle); // once this handler's frame (and `m`) is gone
});
