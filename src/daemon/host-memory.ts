// The host's memory as the daemon shares it between VMs: admission (`start` is refused when the
// memory the running VMs are configured with would pass host.memory × host.overcommit) and the
// ledger every VM thread takes RAM chunks from (src/vm/memory-budget.ts), which keeps the chunks
// of all VMs within host.memory minus what the daemon and its VM threads need besides guest RAM.

import { totalmem } from 'node:os';
import { formatSize, humanSize } from '../config/units.js';
import type { DaemonSettings } from '../config/daemon-settings.js';
import { CHUNK_SIZE } from '../memory/ram.js';
import { ProtocolFailure } from '../protocol/messages.js';
import {
  CONTROL_CANCEL, CONTROL_HELD, CONTROL_SLOTS, LEDGER_GENERATION, LEDGER_LIMIT, LEDGER_SLOTS, LEDGER_USED,
} from '../vm/memory-budget.js';

const MiB = 1024 * 1024;
/** What the daemon itself holds besides guest RAM (measured: an idle daemon's RSS is ~63 MiB). */
export const DAEMON_OVERHEAD_BYTES = 96 * MiB;
/** What a VM's thread holds besides guest RAM: its JavaScript heap, translated code, device
 *  buffers (measured: a Linux guest's worker ~60 MiB, a small bare-metal one ~16 MiB). */
export const VM_OVERHEAD_BYTES = 64 * MiB;
/** What each hart thread of a multi-hart VM holds besides (harts 1..N-1 run on threads of their
 *  own, hart 0 on the VM's thread): a V8 isolate with its heap, the interpreter and its
 *  translated code, soft TLBs. Measured (Node 24, daemon RSS with a running VM minus an idle
 *  daemon's): a bare-metal loop guest 33 MiB with 1 hart, 55 with 2, 102 with 4 (23 MiB per
 *  hart thread); a Linux guest's hart threads compile more code (35 MiB each on Node 20). */
export const HART_THREAD_OVERHEAD_BYTES = 32 * MiB;

/** The memory this process may use: a cgroup memory limit where there is one (libuv reads
 *  cgroup v1 and v2), else physical memory. */
export function detectHostMemory(): { bytes: number; source: string } {
  const physical = totalmem();
  const limit = typeof process.constrainedMemory === 'function' ? process.constrainedMemory() : undefined;
  if (limit !== undefined && limit > 0 && limit < physical) return { bytes: limit, source: 'the cgroup memory limit' };
  return { bytes: physical, source: 'physical memory' };
}

/** A VM's place in the ledger while its thread lives. */
export interface MemorySlot {
  readonly ledger: SharedArrayBuffer;
  readonly control: SharedArrayBuffer;
  /** What the VM's threads hold besides guest RAM, taken off the limit while it runs. */
  readonly overheadBytes: number;
}

export class HostMemory {
  readonly ledger = new SharedArrayBuffer(LEDGER_SLOTS * 4);
  private readonly L = new Int32Array(this.ledger);
  readonly bytes: number;
  readonly source: string;
  readonly overcommit: number;
  /** The overhead of the VM threads attached now (theirs and their hart threads'). */
  private overhead = 0;

  constructor(settings: DaemonSettings, private readonly log: (m: string) => void) {
    const found = detectHostMemory();
    this.bytes = settings.hostMemoryBytes ?? found.bytes;
    this.source = settings.hostMemoryBytes !== undefined ? 'host.memory in config.yaml' : found.source;
    this.overcommit = settings.overcommit;
    this.setLimit();
    log(`host memory ${humanSize(this.bytes)} (${this.source}), overcommit ${this.overcommit}: VMs may be configured with ${humanSize(this.admissionBytes)} in all`);
  }

  /** Memory the running VMs may be configured with, in all. */
  get admissionBytes(): number {
    return Math.floor(this.bytes * this.overcommit);
  }

  /** Guest RAM all VMs may hold now (host.memory minus the daemon's and the VM threads' own). */
  get limitBytes(): number {
    return Atomics.load(this.L, LEDGER_LIMIT) * CHUNK_SIZE;
  }

  /** Guest RAM all VMs hold now. */
  get usedBytes(): number {
    return Atomics.load(this.L, LEDGER_USED) * CHUNK_SIZE;
  }

  /**
   * Refuses to start a VM configured with `bytes` when the VMs that run (`others`: their names and
   * configured memory) and it would be configured with more than host.memory × host.overcommit.
   */
  admit(name: string, bytes: number, others: readonly { name: string; bytes: number }[]): void {
    const inUse = others.reduce((n, o) => n + o.bytes, 0);
    if (inUse + bytes <= this.admissionBytes) return;
    const list = others.length === 0 ? 'none' : others.map((o) => `${o.name} ${formatSize(o.bytes)}`).join(', ');
    throw new ProtocolFailure('InsufficientResources',
      `not enough host memory to start VM ${name}: it asks for ${formatSize(bytes)}, the running VMs are configured with ` +
      `${humanSize(inUse)} (${list}), and the limit is ${humanSize(this.admissionBytes)} ` +
      `(host.memory ${humanSize(this.bytes)} from ${this.source} × host.overcommit ${this.overcommit}); ` +
      'stop a VM, give this one less memory, or raise host.overcommit or host.memory in config.yaml');
  }

  /** A VM thread starts, for a VM of `harts` harts: its control block, and its threads'
   *  overhead (the VM thread's, and one hart thread's per hart past the first) off the limit. */
  attach(harts = 1): MemorySlot {
    const overheadBytes = VM_OVERHEAD_BYTES + Math.max(0, harts - 1) * HART_THREAD_OVERHEAD_BYTES;
    this.overhead += overheadBytes;
    this.setLimit();
    return { ledger: this.ledger, control: new SharedArrayBuffer(CONTROL_SLOTS * 4), overheadBytes };
  }

  /** A VM thread ended (however it ended): the chunks it held go back to the ledger. */
  detach(slot: MemorySlot): void {
    const c = new Int32Array(slot.control);
    const held = Atomics.exchange(c, CONTROL_HELD, 0);
    Atomics.sub(this.L, LEDGER_USED, held);
    this.overhead = Math.max(0, this.overhead - slot.overheadBytes);
    this.setLimit();
  }

  /** The VM is being stopped: a thread waiting for memory takes what it needs to end. */
  cancel(slot: MemorySlot): void {
    Atomics.store(new Int32Array(slot.control), CONTROL_CANCEL, 1);
    this.wake();
  }

  private setLimit(): void {
    const room = this.bytes - DAEMON_OVERHEAD_BYTES - this.overhead;
    Atomics.store(this.L, LEDGER_LIMIT, Math.max(0, Math.floor(room / CHUNK_SIZE)));
    this.wake();
  }

  /** Room may have appeared: waiting VM threads look again. */
  private wake(): void {
    Atomics.add(this.L, LEDGER_GENERATION, 1);
    Atomics.notify(this.L, LEDGER_GENERATION);
  }
}
