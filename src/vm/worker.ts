// A VM's worker thread (bundled as dist/vm-worker.js). The daemon starts one per running VM;
// a guest that loops or faults only ever occupies this thread, never the daemon's.

import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { parentPort, workerData } from 'node:worker_threads';
import { VirtMachine } from '../board/virt.js';
import type { FromWorker, ToWorker, WorkerInit } from './messages.js';
import { ConsoleBatcher, RunLoop } from './run-loop.js';
import { HostMemoryShort, SharedChunkBudget } from './memory-budget.js';
import { CHUNK_SIZE } from '../memory/ram.js';

const port = parentPort;
if (!port) throw new Error('vm-worker must run as a worker thread');
const init = workerData as WorkerInit;
const post = (m: FromWorker): void => port.postMessage(m);

function main(): void {
  const host = new ConsoleBatcher(post);
  let machine: VirtMachine;
  const budget = init.memory ? new SharedChunkBudget(new Int32Array(init.memory.ledger), new Int32Array(init.memory.control)) : null;
  try {
    machine = VirtMachine.create(init.config, host, budget);
  } catch (e) {
    post({ type: 'fatal', message: `cannot build the machine: ${(e as Error).message}`, hostMemoryShort: e instanceof HostMemoryShort });
    port!.close();
    return;
  }
  if (init.mode === 'dtb') {
    const dtb = machine.dtb();
    machine.close();
    post({ type: 'dtb', data: dtb });
    port!.close();
    return;
  }
  const loop = new RunLoop(machine, host, post, () => port!.close(), fullCollection());
  if (budget) {
    // From now on a short host makes the guest wait for memory rather than fail.
    budget.blocking = true;
    budget.events = {
      waiting: (held, used, limit) => {
        host.flush();
        post({ type: 'memoryWait', heldBytes: held * CHUNK_SIZE, usedBytes: used * CHUNK_SIZE, limitBytes: limit * CHUNK_SIZE });
      },
      paused: () => {
        machine.pauseClock();
        post({ type: 'memoryPaused' });
      },
      resumed: (waitedMs, wasPaused) => {
        if (wasPaused) machine.resumeClock();
        post({ type: 'memoryResumed', waitedMs, wasPaused });
      },
    };
  }
  port!.on('message', (m: ToWorker) => loop.handle(m));
  post({ type: 'ready' });
  loop.start();
}

main();

/** V8's `gc()` for this thread: a RAM chunk the balloon dropped leaves the process only once the
 *  collector has run (measured: without it, 512 MiB of dropped chunks stayed for minutes in a
 *  thread that allocates little; with it they are unmapped within 0.3 s). */
function fullCollection(): () => void {
  try {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as unknown;
    if (typeof gc === 'function') return gc as () => void;
  } catch { /* not available: V8 collects on its own schedule */ }
  return () => {};
}
