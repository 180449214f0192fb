// A VM's worker thread (bundled as dist/vm-worker.js). The daemon starts one per running VM;
// a guest that loops or faults only ever occupies this thread, never the daemon's.

import { pathToFileURL } from 'node:url';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { parentPort, workerData } from 'node:worker_threads';
import { VirtMachine } from '../board/virt.js';
import type { FromWorker, ToWorker, WorkerInit } from './messages.js';
import { VmNetworks } from './networks.js';
import { ConsoleBatcher, RunLoop } from './run-loop.js';
import { hartThreads } from './hart-threads.js';

const port = parentPort;
if (!port) throw new Error('vm-worker must run as a worker thread');
const init = workerData as WorkerInit;
const post = (m: FromWorker): void => port.postMessage(m);

async function main(): Promise<void> {
  const host = new ConsoleBatcher(post);
  // In 'dtb' mode nothing is connected: the machine is built only for its device tree.
  const networks = init.mode === 'run' ? new VmNetworks((m) => host.log(m)) : null;
  if (networks) host.openNic = (i, nic) => networks.open(i, nic);
  let machine: VirtMachine;
  try {
    const threads = init.hartWorkerPath ? hartThreads(pathToFileURL(init.hartWorkerPath)) : hartThreads();
    machine = VirtMachine.create(init.config, host, init.mode === 'run' ? threads : undefined);
  } catch (e) {
    post({ type: 'fatal', message: `cannot build the machine: ${(e as Error).message}` });
    port!.close();
    return;
  }
  if (init.mode === 'dtb' || !networks) {
    const dtb = machine.dtb();
    machine.close();
    post({ type: 'dtb', data: dtb });
    port!.close();
    return;
  }
  try {
    await networks.start();
  } catch (e) {
    machine.close();
    post({ type: 'fatal', message: (e as Error).message, startRefused: true });
    port!.close();
    return;
  }
  const loop = new RunLoop(machine, host, post, () => port!.close(), fullCollection());
  host.onWake = () => loop.wake();
  port!.on('message', (m: ToWorker) => {
    switch (m.type) {
      case 'port-list':
        post({ type: 'port-reply', id: m.id, forwards: networks.list() });
        return;
      case 'port-add':
        networks.add(m.forward, m.nic).then(
          (f) => post({ type: 'port-reply', id: m.id, forwards: [f] }),
          (e: Error) => post({ type: 'port-reply', id: m.id, error: e.message }));
        return;
      case 'port-remove':
        post({ type: 'port-reply', id: m.id, removed: networks.remove(m.proto, m.hostAddress, m.hostPort) });
        return;
      default:
        loop.handle(m);
    }
  });
  post({ type: 'ready' });
  loop.start();
}

void main();

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
