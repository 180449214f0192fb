// Messages between the daemon (src/daemon/vm-instance.ts) and a VM's worker thread (worker.ts).

import type { MachineConfig, PowerEvent } from '../board/machine-types.js';
import type { BalloonFigures } from '../devices/virtio/balloon-slot.js';

/** Guest RAM as the host sees it, sent with every `stats` message. */
export interface MemoryFigures {
  /** Host memory held for guest RAM now (allocated chunks). */
  readonly residentBytes: number;
  readonly chunksAllocated: number;
  readonly chunksReleased: number;
  /** Null without a balloon. */
  readonly balloon: BalloonFigures | null;
  /** The worker's performance.now() when these were taken (the stats' updatedAt is in its terms). */
  readonly sentAt: number;
}

export interface WorkerInit {
  /** 'run' boots the machine; 'dtb' builds it only to return its device tree. */
  readonly mode: 'run' | 'dtb';
  readonly vmName: string;
  readonly config: MachineConfig;
  /** The daemon's host memory ledger and this VM's control block (src/vm/memory-budget.ts);
   *  without them (dtb mode) RAM is allocated without limit. */
  readonly memory?: { readonly ledger: SharedArrayBuffer; readonly control: SharedArrayBuffer };
}

export type ToWorker =
  | { readonly type: 'input'; readonly data: Uint8Array }
  | { readonly type: 'pause' }
  | { readonly type: 'resume' }
  /** Flow control: hold the guest while a client cannot keep up with its console (clock runs on). */
  | { readonly type: 'throttle'; readonly on: boolean }
  /** Power off now: stop running, flush and close disks, then end the thread. */
  | { readonly type: 'stop' }
  /** Move the balloon so that the guest keeps `bytes` of its memory. */
  | { readonly type: 'memoryTarget'; readonly bytes: number };

export type FromWorker =
  | { readonly type: 'ready' }
  | { readonly type: 'console'; readonly data: Uint8Array }
  | { readonly type: 'power'; readonly event: PowerEvent }
  | { readonly type: 'log'; readonly message: string }
  | { readonly type: 'paused' }
  | { readonly type: 'resumed' }
  | { readonly type: 'stats'; readonly instructionsRetired: number; readonly memory: MemoryFigures }
  | { readonly type: 'dtb'; readonly data: Uint8Array }
  /** The machine was closed (disks flushed); the thread ends next. */
  | { readonly type: 'closed'; readonly instructionsRetired: number }
  | { readonly type: 'fatal'; readonly message: string; readonly hostMemoryShort?: boolean }
  /** The guest touched new memory and the host has none to give: its harts wait. */
  | { readonly type: 'memoryWait'; readonly heldBytes: number; readonly usedBytes: number; readonly limitBytes: number }
  /** It waited too long: paused (reason memory), its clock stopped. */
  | { readonly type: 'memoryPaused' }
  /** It got its memory after waiting (and runs again if it had been paused). */
  | { readonly type: 'memoryResumed'; readonly waitedMs: number; readonly wasPaused: boolean };
