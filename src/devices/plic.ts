// PLIC (RISC-V Platform-Level Interrupt Controller, "sifive,plic-1.0.0") at 0xc000000 on virt.
// Layout from the RISC-V PLIC specification (riscv-plic-spec, "Memory Map"):
//   0x000000 + 4*src            priority of source src (1..ndev; source 0 does not exist)
//   0x001000 + 4*word           pending bits (read-only)
//   0x002000 + 0x80*ctx + 4*w   enable bits of context ctx
//   0x200000 + 0x1000*ctx       priority threshold of ctx
//   0x200004 + 0x1000*ctx       claim (read) / complete (write)
// QEMU virt: 96 sources (riscv,ndev = 0x60 counts 1..95 plus the reserved 0), 7 priority
// levels, two contexts per hart: 2h = hart h M-mode (MEIP), 2h+1 = hart h S-mode (SEIP).
//
// Gateways as QEMU 7.2's sifive_plic delivers interrupts (what software built for QEMU's virt
// expects; Debian's 7.2.x includes the stable fix "hw/intc: Don't clear pending bits on IRQ
// lowering"): a source becomes pending each time its device signals a high level, whether or
// not it is claimed at the time; a low level changes nothing; a claim clears the pending bit
// and holds the source back until its completion; a completion does not sample the line. The
// devices signal as QEMU's models do (on their register accesses that update their interrupt
// state: see uart16550.ts, virtio/mmio.ts, goldfish-rtc.ts), so a cause a handler leaves
// standing is delivered once, and one it re-signals while claimed is delivered again. (The
// PLIC spec's level-triggered gateway would re-pend a still-high line at completion: a guest
// built for QEMU that leaves a cause standing would then take it forever.)
// Deliberate difference: QEMU does not re-evaluate the MEIP/SEIP outputs when an enable word
// is written (only on signals, claims, completions, priority and threshold writes), so there
// a source enabled while pending waits for the next such event; here it interrupts at once.

import type { MmioDevice } from '../memory/bus.js';
import type { HartIrqSink } from './clint.js';

export const PLIC_SIZE = 0x600000;
export const PLIC_NUM_SOURCES = 96;
export const MIP_SEIP_BIT = 9;
export const MIP_MEIP_BIT = 11;
const PRIORITY_MASK = 7;
const WORDS = PLIC_NUM_SOURCES / 32;
const PENDING_BASE = 0x1000;
const ENABLE_BASE = 0x2000;
const ENABLE_STRIDE = 0x80;
const CONTEXT_BASE = 0x200000;
const CONTEXT_STRIDE = 0x1000;

export interface PlicState {
  priority: number[]; pending: number[]; claimed: number[]; enable: number[]; threshold: number[]; output: number[];
}

export class Plic implements MmioDevice {
  private readonly priority = new Uint32Array(PLIC_NUM_SOURCES);
  private readonly pending = new Uint8Array(PLIC_NUM_SOURCES);
  /** Claimed and not yet completed: not forwarded, even when pending again meanwhile. */
  private readonly claimed = new Uint8Array(PLIC_NUM_SOURCES);
  private readonly enable: Uint32Array;   // [ctx * WORDS + word]
  private readonly threshold: Uint32Array;
  private readonly output: Uint8Array;    // current MEIP/SEIP level per context
  readonly contexts: number;

  constructor(private readonly harts: number, private readonly irq: HartIrqSink) {
    this.contexts = 2 * harts;
    this.enable = new Uint32Array(this.contexts * WORDS);
    this.threshold = new Uint32Array(this.contexts);
    this.output = new Uint8Array(this.contexts);
  }

  saveState(): PlicState {
    return {
      priority: Array.from(this.priority), pending: Array.from(this.pending), claimed: Array.from(this.claimed),
      enable: Array.from(this.enable), threshold: Array.from(this.threshold), output: Array.from(this.output),
    };
  }

  /** Restores the registers and gateways; the harts' MEIP/SEIP lines are part of their own saved
   *  state, so nothing is signalled here. */
  loadState(s: PlicState): void {
    if (s.threshold.length !== this.contexts) throw new RangeError(`PLIC: saved state has ${s.threshold.length} contexts, not ${this.contexts}`);
    this.priority.set(s.priority); this.pending.set(s.pending); this.claimed.set(s.claimed);
    this.enable.set(s.enable); this.threshold.set(s.threshold); this.output.set(s.output);
  }

  /** A device signals its interrupt line at `high` (QEMU: qemu_set_irq into the PLIC). Each
   *  high signal makes the source pending, even while it is claimed; a low one changes nothing
   *  (a request the device withdraws before the claim is still delivered). */
  setLevel(source: number, high: boolean): void {
    if (!high || source <= 0 || source >= PLIC_NUM_SOURCES || this.pending[source]) return;
    this.pending[source] = 1;
    this.update();
  }

  read(offset: number, size: 1 | 2 | 4): number {
    if (size !== 4 || (offset & 3) !== 0) return 0;
    if (offset < PENDING_BASE) {
      return offset >>> 2 < PLIC_NUM_SOURCES ? this.priority[offset >>> 2] : 0;
    }
    if (offset < ENABLE_BASE) {
      const word = (offset - PENDING_BASE) >>> 2;
      if (word >= WORDS) return 0;
      let v = 0;
      for (let b = 0; b < 32; b++) if (this.pending[word * 32 + b]) v |= 1 << b;
      return v >>> 0;
    }
    if (offset < CONTEXT_BASE) {
      const ctx = Math.floor((offset - ENABLE_BASE) / ENABLE_STRIDE);
      const word = ((offset - ENABLE_BASE) % ENABLE_STRIDE) >>> 2;
      if (ctx >= this.contexts || word >= WORDS) return 0;
      return this.enable[ctx * WORDS + word];
    }
    const ctx = Math.floor((offset - CONTEXT_BASE) / CONTEXT_STRIDE);
    const reg = (offset - CONTEXT_BASE) % CONTEXT_STRIDE;
    if (ctx >= this.contexts) return 0;
    if (reg === 0) return this.threshold[ctx];
    if (reg === 4) return this.claim(ctx);
    return 0;
  }

  write(offset: number, size: 1 | 2 | 4, value: number): void {
    if (size !== 4 || (offset & 3) !== 0) return;
    value >>>= 0;
    if (offset < PENDING_BASE) {
      const src = offset >>> 2;
      if (src > 0 && src < PLIC_NUM_SOURCES) {
        this.priority[src] = value & PRIORITY_MASK;
        this.update();
      }
      return;
    }
    if (offset < ENABLE_BASE) return; // pending bits are read-only
    if (offset < CONTEXT_BASE) {
      const ctx = Math.floor((offset - ENABLE_BASE) / ENABLE_STRIDE);
      const word = ((offset - ENABLE_BASE) % ENABLE_STRIDE) >>> 2;
      if (ctx >= this.contexts || word >= WORDS) return;
      // Source 0 does not exist: its enable bit is hardwired to 0.
      this.enable[ctx * WORDS + word] = word === 0 ? value & ~1 : value;
      this.update();
      return;
    }
    const ctx = Math.floor((offset - CONTEXT_BASE) / CONTEXT_STRIDE);
    const reg = (offset - CONTEXT_BASE) % CONTEXT_STRIDE;
    if (ctx >= this.contexts) return;
    if (reg === 0) {
      this.threshold[ctx] = value & PRIORITY_MASK;
      this.update();
    } else if (reg === 4) {
      this.complete(value);
    }
  }

  private enabled(ctx: number, src: number): boolean {
    return ((this.enable[ctx * WORDS + (src >>> 5)] >>> (src & 31)) & 1) !== 0;
  }

  /** The pending, enabled source with the highest priority above the threshold (lowest ID
   *  wins ties; PLIC spec "Interrupt Priorities"), or 0. */
  private best(ctx: number): number {
    let best = 0;
    let bestPrio = this.threshold[ctx];
    for (let src = 1; src < PLIC_NUM_SOURCES; src++) {
      if (this.pending[src] && !this.claimed[src] && this.priority[src] > bestPrio && this.enabled(ctx, src)) {
        best = src;
        bestPrio = this.priority[src];
      }
    }
    return best;
  }

  private claim(ctx: number): number {
    const src = this.best(ctx);
    if (src !== 0) {
      this.pending[src] = 0;
      this.claimed[src] = 1;
      this.update();
    }
    return src;
  }

  /** Ends the claim of `src`, from any context: QEMU 7.2 does not apply the PLIC spec's rule
   *  ("Interrupt Completion") that an ID not enabled for the context is ignored, and software
   *  built for it may complete through another context (fixtures/irq checks it). The line is
   *  not sampled: only a new signal makes the source pending again. */
  private complete(src: number): void {
    if (src <= 0 || src >= PLIC_NUM_SOURCES || !this.claimed[src]) return;
    this.claimed[src] = 0;
    this.update();
  }

  private update(): void {
    for (let ctx = 0; ctx < this.contexts; ctx++) {
      const level = this.best(ctx) !== 0 ? 1 : 0;
      if (level !== this.output[ctx]) {
        this.output[ctx] = level;
        this.irq(ctx >>> 1, (ctx & 1) ? MIP_SEIP_BIT : MIP_MEIP_BIT, level === 1);
      }
    }
  }
}
