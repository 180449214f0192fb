// A VM's worker thread (bundled as dist/vm-worker.js): it hosts one machine at a time, so a guest
// that loops or faults only ever occupies this thread, never the daemon's. The daemon hands it a
// machine with an `init` message; every machine ends with `closed` (also one that could not be
// built, or a `dtb` request), after which the thread waits for the next `init`: the daemon reuses
// idle threads (src/daemon/vm-threads.ts) rather than starting a new one for every boot.

import { pathToFileURL } from 'node:url';
import { parentPort } from 'node:worker_threads';
import { MachineStateMismatch, VirtMachine } from '../board/virt.js';
import { readMachineState, StateFileError, type HostSideState } from './machine-state.js';
import { collectGarbage, collectIfGrown } from './collect-garbage.js';
import type { FromWorker, ToWorker, WorkerInit } from './messages.js';
import { VmNetworks } from './networks.js';
import { ConsoleBatcher, RunLoop } from './run-loop.js';
import { hartThreads } from './hart-threads.js';
import { CpuSlots, SlotGate } from './cpu-slots.js';
import { HostMemoryShort, SharedChunkBudget } from './memory-budget.js';
import { CHUNK_SIZE } from '../memory/ram.js';

const port = parentPort;
if (!port) throw new Error('vm-worker must run as a worker thread');
const post = (m: FromWorker): void => port.postMessage(m);

/** The machine this thread hosts, from its `init` until its `closed` ('building' until it runs). */
let hosting: { readonly loop: RunLoop; readonly networks: VmNetworks } | 'building' | null = null;
/** Control messages that came while the machine was being built: handled once it runs. */
let early: ToWorker[] = [];
/** The CPU allowance of the hosted machine's hart 0 (its thread CPU clock is closed with it). */
let gate: SlotGate | undefined;

function closeGate(): void {
  gate?.close();
  gate = undefined;
}

/** The last message about a machine that never ran. */
function ended(): void {
  hosting = null;
  closeGate();
  early = [];
  post({ type: 'closed', instructionsRetired: 0 });
  setImmediate(collectGarbage);
}

async function host(init: WorkerInit): Promise<void> {
  const batcher = new ConsoleBatcher(post);
  // In 'dtb' mode nothing is connected: the machine is built only for its device tree.
  const networks = init.mode === 'run' ? new VmNetworks((m) => batcher.log(m), init.switchPorts) : null;
  if (networks) batcher.openNic = (i, nic) => networks.open(i, nic);
  let machine: VirtMachine;
  const budget = init.memory ? new SharedChunkBudget(new Int32Array(init.memory.ledger), new Int32Array(init.memory.control)) : null;
  let restoredHost: HostSideState = {};
  try {
    const threads = init.mode === 'run' ? hartThreads(init.hartWorkerPath ? pathToFileURL(init.hartWorkerPath) : undefined, init.cpu) : undefined;
    // Hart 0 runs here: its CPU allowance is this thread's.
    gate = init.mode === 'run' && init.cpu ? new SlotGate(new CpuSlots(init.cpu.slots), init.cpu.slot[0]) : undefined;
    if (init.restoreFrom !== undefined) {
      const { state, host: h } = await readMachineState(init.restoreFrom);
      restoredHost = h;
      machine = VirtMachine.restore(init.config, batcher, state, threads, { gate, budget });
    } else {
      machine = VirtMachine.create(init.config, batcher, threads, { gate, budget });
    }
  } catch (e) {
    const why = e instanceof StateFileError || e instanceof MachineStateMismatch
      ? `cannot resume from the saved state: ${(e as Error).message}` : `cannot build the machine: ${(e as Error).message}`;
    post({ type: 'fatal', message: why, hostMemoryShort: e instanceof HostMemoryShort });
    ended();
    return;
  }
  if (init.mode === 'dtb' || !networks) {
    const dtb = machine.dtb();
    machine.close();
    post({ type: 'dtb', data: dtb });
    ended();
    return;
  }
  try {
    await networks.start();
  } catch (e) {
    machine.close(); // closes the NICs' backends: nothing stays bound in this thread
    post({ type: 'fatal', message: (e as Error).message, startRefused: true });
    ended();
    return;
  }
  // The restored guest's connections through the NAT are gone with the machine that was saved.
  if (restoredHost.nat) networks.resetRestored(restoredHost.nat);
  const loop = new RunLoop(machine, batcher, post, () => {
    hosting = null;
    closeGate();
    // A closed machine's guest RAM (up to the VM's memory size) is given back only when this
    // thread's heap is collected, which an idle thread would not do by itself. After this turn
    // nothing refers to the machine any more.
    setImmediate(collectGarbage);
  }, init.vmctlVersion, collectGarbage, () => ({ nat: networks.connections() }), collectIfGrown);
  hosting = { loop, networks };
  batcher.onWake = () => loop.wake();
  if (budget) {
    // From now on a short host makes the guest wait for memory rather than fail.
    budget.blocking = true;
    budget.events = {
      waiting: (held, used, limit) => {
        machine.flushOutput();
        batcher.flush();
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
  post({ type: 'ready' });
  if (init.startPaused) loop.handle({ type: 'pause' });
  else if (init.restoreFrom !== undefined) machine.resumeClock(); // mtime goes on from the saved value
  loop.start();
  for (const m of early.splice(0)) control(m);
}

port.on('message', (m: ToWorker) => {
  if (m.type === 'init') {
    if (hosting) {
      post({ type: 'fatal', message: 'this thread already hosts a machine' });
      return;
    }
    hosting = 'building';
    void host(m.init);
    return;
  }
  control(m);
});

function control(m: ToWorker): void {
  const h = hosting;
  if (h === 'building') {
    early.push(m);
    return;
  }
  // Control messages for a machine that has closed meanwhile are dropped.
  if (!h) return;
  switch (m.type) {
    case 'port-list':
      post({ type: 'port-reply', id: m.id, forwards: h.networks.list() });
      return;
    case 'port-add':
      h.networks.add(m.forward, m.nic).then(
        (f) => post({ type: 'port-reply', id: m.id, forwards: [f] }),
        (e: Error) => post({ type: 'port-reply', id: m.id, error: e.message }));
      return;
    case 'port-remove':
      post({ type: 'port-reply', id: m.id, removed: h.networks.remove(m.proto, m.hostAddress, m.hostPort) });
      return;
    default:
      h.loop.handle(m);
  }
}
