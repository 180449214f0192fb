// A VM's worker thread (bundled as dist/vm-worker.js). The daemon starts one per running VM;
// a guest that loops or faults only ever occupies this thread, never the daemon's.

import { pathToFileURL } from 'node:url';
import { parentPort, workerData } from 'node:worker_threads';
import { MachineStateMismatch, VirtMachine } from '../board/virt.js';
import { readMachineState, StateFileError } from './machine-state.js';
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
  const networks = init.mode === 'run' ? new VmNetworks((m) => host.log(m), init.switchPorts) : null;
  if (networks) host.openNic = (i, nic) => networks.open(i, nic);
  let machine: VirtMachine;
  try {
    const threads = init.mode === 'run' ? (init.hartWorkerPath ? hartThreads(pathToFileURL(init.hartWorkerPath)) : hartThreads()) : undefined;
    if (init.restoreFrom !== undefined) {
      const { state } = await readMachineState(init.restoreFrom);
      machine = VirtMachine.restore(init.config, host, state, threads);
    } else {
      machine = VirtMachine.create(init.config, host, threads);
    }
  } catch (e) {
    const why = e instanceof StateFileError || e instanceof MachineStateMismatch
      ? `cannot resume from the saved state: ${(e as Error).message}` : `cannot build the machine: ${(e as Error).message}`;
    post({ type: 'fatal', message: why });
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
  const loop = new RunLoop(machine, host, post, () => port!.close(), init.vmctlVersion);
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
  if (init.startPaused) loop.handle({ type: 'pause' });
  else if (init.restoreFrom !== undefined) machine.resumeClock(); // mtime goes on from the saved value
  loop.start();
}

void main();
