// A VM's worker thread (bundled as dist/vm-worker.js). The daemon starts one per running VM;
// a guest that loops or faults only ever occupies this thread, never the daemon's.

import { pathToFileURL } from 'node:url';
import { parentPort, workerData } from 'node:worker_threads';
import { VirtMachine } from '../board/virt.js';
import type { FromWorker, ToWorker, WorkerInit } from './messages.js';
import { ConsoleBatcher, RunLoop } from './run-loop.js';
import { hartThreads } from './hart-threads.js';
import { CpuSlots, SlotGate } from './cpu-slots.js';

const port = parentPort;
if (!port) throw new Error('vm-worker must run as a worker thread');
const init = workerData as WorkerInit;
const post = (m: FromWorker): void => port.postMessage(m);

function main(): void {
  const host = new ConsoleBatcher(post);
  let machine: VirtMachine;
  try {
    const threads = hartThreads(init.hartWorkerPath ? pathToFileURL(init.hartWorkerPath) : undefined, init.cpu);
    // Hart 0 runs here: its CPU allowance is this thread's.
    const gate = init.cpu ? new SlotGate(new CpuSlots(init.cpu.slots), init.cpu.slot[0]) : undefined;
    machine = VirtMachine.create(init.config, host, init.mode === 'run' ? threads : undefined, gate);
  } catch (e) {
    post({ type: 'fatal', message: `cannot build the machine: ${(e as Error).message}` });
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
  const loop = new RunLoop(machine, host, post, () => port!.close());
  port!.on('message', (m: ToWorker) => loop.handle(m));
  post({ type: 'ready' });
  loop.start();
}

main();
