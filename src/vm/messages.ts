// Messages between the daemon (src/daemon/vm-instance.ts) and a VM's worker thread (worker.ts).

import type { MessagePort } from 'node:worker_threads';
import type { MachineConfig, PortForward, PowerEvent } from '../board/machine-types.js';
import type { ForwardInfo } from './networks.js';
import type { BalloonFigures } from '../devices/virtio/balloon-slot.js';
import type { DiskIo } from '../devices/virtio/blk.js';

export type { DiskIo };

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
  /** The script of the VM's further hart threads (default: dist/hart-worker.js beside this one). */
  readonly hartWorkerPath?: string;
  /** vmctl's version, recorded in machine-state files. */
  readonly vmctlVersion: string;
  /** Resume from this machine-state file (src/vm/machine-state.ts) instead of booting. */
  readonly restoreFrom?: string;
  /** ... and stay paused (a paused VM's snapshot) until told to resume. */
  readonly startPaused?: boolean;
  /** By NIC index: the port of the daemon's switch for a NIC with mode: switch (transferred). */
  readonly switchPorts?: readonly (MessagePort | null)[];
  /** The daemon's CPU slots (src/vm/cpu-slots.ts) and the slot of each hart, by hart id. */
  readonly cpu?: { readonly slots: SharedArrayBuffer; readonly slot: readonly number[] };
  /** The daemon's host memory ledger and this VM's control block (src/vm/memory-budget.ts);
   *  without them (dtb mode) RAM is allocated without limit. */
  readonly memory?: { readonly ledger: SharedArrayBuffer; readonly control: SharedArrayBuffer };
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
  | { readonly type: 'stop' }
  /** Hard reset (`vmctl reset`): end this boot as the guest's own reset would (a `reset` power
   *  event, disks flushed and closed); the daemon then boots the VM again. */
  | { readonly type: 'reset' }
  /** Port forwards of the user-mode networks (`vmctl port`); answered by 'port-reply' with the id. */
  | { readonly type: 'port-list'; readonly id: number }
  | { readonly type: 'port-add'; readonly id: number; readonly forward: PortForward; readonly nic?: number }
  | { readonly type: 'port-remove'; readonly id: number; readonly proto: 'tcp' | 'udp'; readonly hostAddress: string; readonly hostPort: number }
  /** Write the machine's state to the new file `path` (the machine must be paused, and stays
   *  so); answered by 'stateWritten' or 'stateFailed'. */
  | { readonly type: 'writeState'; readonly path: string }
  /** A snapshot, between two slices: the state is captured (RAM copied, when `statePath` is
   *  given) and the disks switch to their new top layers at the same instant; the guest goes on
   *  at once ('snapshotTaken'), and the state is written meanwhile ('stateWritten'/'stateFailed'). */
  | { readonly type: 'snapshot'; readonly statePath: string | null; readonly disks: readonly DiskSwitch[] }
  /** Holds the guest (clock too) and closes every disk ('disksDetached'), while their files change. */
  | { readonly type: 'detachDisks' }
  /** Opens the disks again, from these top layers, and lets the guest go on ('disksAttached'). */
  | { readonly type: 'attachDisks'; readonly disks: readonly DiskSwitch[] }
  /** Move the balloon so that the guest keeps `bytes` of its memory. */
  | { readonly type: 'memoryTarget'; readonly bytes: number };


/** The image a disk (by virtio slot) continues on. */
export interface DiskSwitch { readonly index: number; readonly path: string }

export type FromWorker =
  | { readonly type: 'ready' }
  | { readonly type: 'console'; readonly data: Uint8Array }
  | { readonly type: 'power'; readonly event: PowerEvent }
  | { readonly type: 'log'; readonly message: string }
  | { readonly type: 'paused' }
  | { readonly type: 'resumed' }
  /** Every second: instructions retired so far, in all and per hart (by hart id), memory figures,
   *  and each disk's completed requests (by disk index). */
  | { readonly type: 'stats'; readonly instructionsRetired: number; readonly hartInstructions: readonly number[]; readonly memory: MemoryFigures; readonly disks: readonly DiskIo[] }
  | { readonly type: 'dtb'; readonly data: Uint8Array }
  | { readonly type: 'stateWritten'; readonly bytes: number; readonly ms: number }
  | { readonly type: 'snapshotTaken'; readonly pauseMs: number }
  | { readonly type: 'snapshotFailed'; readonly message: string }
  | { readonly type: 'disksDetached' }
  | { readonly type: 'disksAttached' }
  | { readonly type: 'disksFailed'; readonly message: string }
  | { readonly type: 'stateFailed'; readonly message: string }
  /** The machine was closed (disks flushed), or never built (after `fatal`), or its device tree
   *  was sent: the last message about it; the thread then waits for the next `init`. */
  | { readonly type: 'closed'; readonly instructionsRetired: number }
  /** `startRefused`: the machine could not start for a reason of the host's state (a forward's
   *  port is taken), not a broken machine: the start is refused as "wrong state" (exit 5).
   *  `hostMemoryShort`: the host's memory ledger could not give it its RAM (InsufficientResources). */
  | { readonly type: 'fatal'; readonly message: string; readonly startRefused?: boolean; readonly hostMemoryShort?: boolean }
  | { readonly type: 'port-reply'; readonly id: number; readonly forwards?: readonly ForwardInfo[]; readonly removed?: boolean; readonly error?: string }
  /** The guest touched new memory and the host has none to give: its harts wait. */
  | { readonly type: 'memoryWait'; readonly heldBytes: number; readonly usedBytes: number; readonly limitBytes: number }
  /** It waited too long: paused (reason memory), its clock stopped. */
  | { readonly type: 'memoryPaused' }
  /** It got its memory after waiting (and runs again if it had been paused). */
  | { readonly type: 'memoryResumed'; readonly waitedMs: number; readonly wasPaused: boolean };
