// Host memory for guest RAM, shared by every VM of a daemon (src/daemon/host-memory.ts keeps the
// books). A VM thread takes one chunk from the shared ledger before it allocates a RAM chunk and
// gives it back when the balloon drops one. When the host is short, the VM that needs a chunk
// waits (its harts stop: the wait happens inside the access that touched the new chunk), the
// daemon hears of it and its balloon policy reclaims memory from other VMs; after a bounded time
// the VM counts as paused (reason `memory`) and its clock stops, until memory is there again or
// the VM is stopped. Waiting is Atomics.wait on the ledger: no CPU while it lasts.

import { CHUNK_SIZE, type ChunkBudget } from '../memory/ram.js';

/** Int32 slots of the ledger (one SharedArrayBuffer for the whole daemon). */
export const LEDGER_USED = 0;        // chunks held by all VMs
export const LEDGER_LIMIT = 1;       // chunks all VMs may hold
export const LEDGER_GENERATION = 2;  // bumped (and notified) whenever room may have appeared
export const LEDGER_SLOTS = 4;
/** Int32 slots of a VM's control block (one SharedArrayBuffer per running VM). */
export const CONTROL_CANCEL = 0;     // set by the daemon when the VM is being stopped
export const CONTROL_HELD = 1;       // chunks this VM holds (given back by the daemon when it ends)
export const CONTROL_SLOTS = 2;

/** How long a VM waits for memory before it counts as paused. */
export const MEMORY_WAIT_BEFORE_PAUSE_MS = 10_000;
const WAIT_SLICE_MS = 500;

export class HostMemoryShort extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'HostMemoryShort';
  }
}

export interface BudgetEvents {
  /** The VM started waiting for a chunk (`held`: chunks it holds; `used`/`limit`: all VMs). */
  waiting(held: number, used: number, limit: number): void;
  /** It waited MEMORY_WAIT_BEFORE_PAUSE_MS: it is paused now (stop its clock). */
  paused(): void;
  /** It got its chunk after `waitedMs` (resumed when it had been paused). */
  resumed(waitedMs: number, wasPaused: boolean): void;
}

export class SharedChunkBudget implements ChunkBudget {
  /** Before the machine runs (loading images), a short host refuses the start instead of waiting. */
  blocking = false;
  events: BudgetEvents | null = null;

  constructor(
    private readonly ledger: Int32Array,
    private readonly control: Int32Array,
    private readonly pauseAfterMs = MEMORY_WAIT_BEFORE_PAUSE_MS,
  ) {}

  acquire(): void {
    const L = this.ledger;
    let since = 0;
    let paused = false;
    for (;;) {
      const used = Atomics.load(L, LEDGER_USED);
      const limit = Atomics.load(L, LEDGER_LIMIT);
      if (used < limit && Atomics.compareExchange(L, LEDGER_USED, used, used + 1) === used) break;
      if (used < limit) continue; // another VM took it first: look again
      if (Atomics.load(this.control, CONTROL_CANCEL) !== 0) {
        // Being stopped: the chunks it touches until its run loop sees the stop (one slice at
        // most) go over the limit; they are given back when it ends.
        Atomics.add(L, LEDGER_USED, 1);
        break;
      }
      if (!this.blocking) {
        throw new HostMemoryShort(`host memory is short: the running VMs hold ${mib(used)} of the ${mib(limit)} vmctl may use for guests`);
      }
      const now = performance.now();
      if (since === 0) {
        since = now;
        this.events?.waiting(Atomics.load(this.control, CONTROL_HELD), used, limit);
      } else if (!paused && now - since >= this.pauseAfterMs) {
        paused = true;
        this.events?.paused();
      }
      const untilPause = paused ? WAIT_SLICE_MS : Math.max(1, this.pauseAfterMs - (performance.now() - since));
      Atomics.wait(L, LEDGER_GENERATION, Atomics.load(L, LEDGER_GENERATION), Math.min(WAIT_SLICE_MS, untilPause));
    }
    Atomics.add(this.control, CONTROL_HELD, 1);
    if (since !== 0) this.events?.resumed(performance.now() - since, paused);
  }

  release(): void {
    Atomics.sub(this.control, CONTROL_HELD, 1);
    Atomics.sub(this.ledger, LEDGER_USED, 1);
    Atomics.add(this.ledger, LEDGER_GENERATION, 1);
    Atomics.notify(this.ledger, LEDGER_GENERATION);
  }
}

function mib(chunks: number): string {
  return `${(chunks * CHUNK_SIZE) / (1024 * 1024)} MiB`;
}
