// Messages between the daemon (src/daemon/vm-instance.ts) and a VM's worker thread (worker.ts).

import type { MachineConfig, PowerEvent } from '../board/machine-types.js';

export interface WorkerInit {
  /** 'run' boots the machine; 'dtb' builds it only to return its device tree. */
  readonly mode: 'run' | 'dtb';
  readonly vmName: string;
  readonly config: MachineConfig;
}

export type ToWorker =
  /** Build this machine (the thread is idle: it hosts one machine at a time). */
  | { readonly type: 'init'; readonly init: WorkerInit }
  | { readonly type: 'input'; readonly data: Uint8Array }
  | { readonly type: 'pause' }
  | { readonly type: 'resume' }
  /** Flow control: hold the guest while a client cannot keep up with its console (clock runs on). */
  | { readonly type: 'throttle'; readonly on: boolean }
  /** Power off now: stop running, flush and close disks, then end the thread. */
  | { readonly type: 'stop' };

export type FromWorker =
  | { readonly type: 'ready' }
  | { readonly type: 'console'; readonly data: Uint8Array }
  | { readonly type: 'power'; readonly event: PowerEvent }
  | { readonly type: 'log'; readonly message: string }
  | { readonly type: 'paused' }
  | { readonly type: 'resumed' }
  | { readonly type: 'stats'; readonly instructionsRetired: number }
  | { readonly type: 'dtb'; readonly data: Uint8Array }
  /** The machine was closed (disks flushed), or never built (after `fatal`), or its device tree
   *  was sent: the last message about it; the thread then waits for the next `init`. */
  | { readonly type: 'closed'; readonly instructionsRetired: number }
  | { readonly type: 'fatal'; readonly message: string };
