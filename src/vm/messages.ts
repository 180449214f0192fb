// Messages between the daemon (src/daemon/vm-instance.ts) and a VM's worker thread (worker.ts).

import type { MachineConfig, PowerEvent } from '../board/machine-types.js';

export interface WorkerInit {
  /** 'run' boots the machine; 'dtb' builds it only to return its device tree. */
  readonly mode: 'run' | 'dtb';
  readonly vmName: string;
  readonly config: MachineConfig;
  /** The script of the VM's further hart threads (default: dist/hart-worker.js beside this one). */
  readonly hartWorkerPath?: string;
  /** The daemon's CPU slots (src/vm/cpu-slots.ts) and the slot of each hart, by hart id. */
  readonly cpu?: { readonly slots: SharedArrayBuffer; readonly slot: readonly number[] };
}

export type ToWorker =
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
  /** Every second: instructions retired so far, in all and per hart (by hart id). */
  | { readonly type: 'stats'; readonly instructionsRetired: number; readonly hartInstructions: readonly number[] }
  | { readonly type: 'dtb'; readonly data: Uint8Array }
  /** The machine was closed (disks flushed); the thread ends next. */
  | { readonly type: 'closed'; readonly instructionsRetired: number }
  | { readonly type: 'fatal'; readonly message: string };
