// A hart thread (bundled as dist/hart-worker.js): one hart of a VM whose harts run in parallel,
// started by the VM's worker (src/vm/worker.ts) through startHartThreads. It runs the hart until
// the machine stops (src/board/smp.ts); an exception ends the thread and the VM's worker reports
// the VM aborted.

import { workerData } from 'node:worker_threads';
import { HartThread } from '../board/smp.js';
import { CpuSlots, SlotGate } from './cpu-slots.js';
import { collectGarbage, collectIfGrown } from './collect-garbage.js';
import type { HartWorkerData } from './hart-threads.js';

const init = workerData as HartWorkerData;
const gate = init.cpu ? new SlotGate(new CpuSlots(init.cpu.slots), init.cpu.slot) : null;
try {
  new HartThread(init, gate, collectGarbage, () => { collectIfGrown(); }).run();
} finally {
  gate?.close(); // the thread's CPU clock (an fd of the process)
}
init.port.close();
