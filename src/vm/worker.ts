// A VM's worker thread (bundled as dist/vm-worker.js): it hosts one machine at a time, so a guest
// that loops or faults only ever occupies this thread, never the daemon's. The daemon hands it a
// machine with an `init` message; every machine ends with `closed` (also one that could not be
// built, or a `dtb` request), after which the thread waits for the next `init`: the daemon reuses
// idle threads (src/daemon/vm-threads.ts) rather than starting a new one for every boot.

import { parentPort } from 'node:worker_threads';
import { VirtMachine } from '../board/virt.js';
import { collectGarbage } from './collect-garbage.js';
import type { FromWorker, ToWorker, WorkerInit } from './messages.js';
import { ConsoleBatcher, RunLoop } from './run-loop.js';

const port = parentPort;
if (!port) throw new Error('vm-worker must run as a worker thread');
const post = (m: FromWorker): void => port.postMessage(m);

let loop: RunLoop | null = null;

function host(init: WorkerInit): void {
  const batcher = new ConsoleBatcher(post);
  let machine: VirtMachine;
  try {
    machine = VirtMachine.create(init.config, batcher);
  } catch (e) {
    post({ type: 'fatal', message: `cannot build the machine: ${(e as Error).message}` });
    post({ type: 'closed', instructionsRetired: 0 });
    return;
  }
  if (init.mode === 'dtb') {
    const dtb = machine.dtb();
    machine.close();
    post({ type: 'dtb', data: dtb });
    post({ type: 'closed', instructionsRetired: 0 });
    return;
  }
  loop = new RunLoop(machine, batcher, post, () => {
    loop = null;
    // A closed machine's guest RAM (SharedArrayBuffers, up to the VM's memory size) is given back
    // only when this thread's heap is collected, which an idle thread would not do by itself.
    // After this turn nothing refers to the machine any more.
    setImmediate(collectGarbage);
  });
  post({ type: 'ready' });
  loop.start();
}

port.on('message', (m: ToWorker) => {
  if (m.type === 'init') {
    if (loop) post({ type: 'fatal', message: 'this thread already hosts a machine' });
    else host(m.init);
    return;
  }
  // Control messages for a machine that has closed meanwhile are dropped.
  loop?.handle(m);
});
