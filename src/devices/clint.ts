// CLINT (SiFive Core-Local Interruptor, "sifive,clint0") at 0x2000000 on virt, as QEMU models
// it (hw/intc/riscv_aclint.c in its CLINT layout):
//   0x0000 + 4*hart   msip      bit 0 drives the hart's MSIP (mip bit 3)
//   0x4000 + 8*hart   mtimecmp  MTIP (mip bit 7) = mtime >= mtimecmp   (Priv spec 3.2.1)
//   0xbff8            mtime     10 MHz, from VirtClock
// 64-bit registers are accessed as two 32-bit halves (the bus splits 8-byte accesses low half
// first). Reading the low half of mtime latches the high half, so a 64-bit load sees one
// consistent value rather than a carry torn between the halves.

import type { MmioDevice } from '../memory/bus.js';
import type { VirtClock } from './clock.js';

export const CLINT_SIZE = 0x10000;
export const MIP_MSIP_BIT = 3;
export const MIP_MTIP_BIT = 7;
const MTIMECMP_BASE = 0x4000;
const MTIME = 0xbff8;
const TWO32 = 0x1_0000_0000;

export type HartIrqSink = (hart: number, bit: number, level: boolean) => void;

export interface ClintState {
  msip: number[]; cmpLo: number[]; cmpHi: number[]; mtip: number[]; latchedHi: number; latchValid: boolean;
}

export class Clint implements MmioDevice {
  private readonly msip: Uint8Array;
  private readonly cmpLo: Uint32Array;
  private readonly cmpHi: Uint32Array;
  private readonly mtip: Uint8Array;
  private latchedHi = 0;
  private latchValid = false;

  constructor(private readonly harts: number, private readonly clock: VirtClock, private readonly irq: HartIrqSink) {
    this.msip = new Uint8Array(harts);
    // The privileged spec leaves mtimecmp's reset value open; QEMU 7.2 resets it to 0, so MTIP
    // is pending from reset until software programs the comparator (firmware does so before
    // enabling MTIE). We do the same, so bare-metal guests behave as on QEMU.
    this.cmpLo = new Uint32Array(harts);
    this.cmpHi = new Uint32Array(harts);
    this.mtip = new Uint8Array(harts);
  }

  mtimecmp(hart: number): number {
    return this.cmpHi[hart] * TWO32 + this.cmpLo[hart];
  }

  read(offset: number, size: 1 | 2 | 4): number {
    if (size !== 4) return 0; // QEMU's ACLINT accepts 4- and 8-byte accesses only
    if (offset < 4 * this.harts) {
      return (offset & 3) === 0 ? this.msip[offset >>> 2] : 0;
    }
    if (offset >= MTIMECMP_BASE && offset < MTIMECMP_BASE + 8 * this.harts) {
      const hart = (offset - MTIMECMP_BASE) >>> 3;
      const half = offset & 7;
      return half === 0 ? this.cmpLo[hart] : half === 4 ? this.cmpHi[hart] : 0;
    }
    if (offset === MTIME) {
      const t = this.clock.mtime();
      this.latchedHi = Math.floor(t / TWO32) >>> 0;
      this.latchValid = true;
      return (t % TWO32) >>> 0;
    }
    if (offset === MTIME + 4) {
      if (this.latchValid) {
        this.latchValid = false;
        return this.latchedHi;
      }
      return Math.floor(this.clock.mtime() / TWO32) >>> 0;
    }
    return 0;
  }

  write(offset: number, size: 1 | 2 | 4, value: number): void {
    if (size !== 4) return;
    value >>>= 0;
    if (offset < 4 * this.harts) {
      if ((offset & 3) !== 0) return;
      const hart = offset >>> 2;
      this.msip[hart] = value & 1;
      this.irq(hart, MIP_MSIP_BIT, (value & 1) !== 0);
      return;
    }
    if (offset >= MTIMECMP_BASE && offset < MTIMECMP_BASE + 8 * this.harts) {
      const hart = (offset - MTIMECMP_BASE) >>> 3;
      const half = offset & 7;
      if (half === 0) this.cmpLo[hart] = value;
      else if (half === 4) this.cmpHi[hart] = value;
      else return;
      this.updateHart(hart);
      return;
    }
    if (offset === MTIME || offset === MTIME + 4) {
      const t = this.clock.mtime();
      const lo = offset === MTIME ? value : (t % TWO32) >>> 0;
      const hi = offset === MTIME ? Math.floor(t / TWO32) : value;
      this.clock.setMtime(hi * TWO32 + lo);
      this.update();
    }
  }

  /** Re-evaluates MTIP for every hart against the current mtime (the board calls this between
   *  slices: the timer comparator is continuous in hardware). */
  update(): void {
    for (let h = 0; h < this.harts; h++) this.updateHart(h);
  }

  private updateHart(hart: number): void {
    const level = this.clock.mtime() >= this.mtimecmp(hart) ? 1 : 0;
    if (level !== this.mtip[hart]) {
      this.mtip[hart] = level;
      this.irq(hart, MIP_MTIP_BIT, level === 1);
    }
  }

  /** mtime value at which the next MTIP rises (Infinity if none pending in the future). */
  nextDeadline(): number {
    let best = Infinity;
    for (let h = 0; h < this.harts; h++) {
      if (this.mtip[h]) continue;
      const c = this.mtimecmp(h);
      if (c < best) best = c;
    }
    return best;
  }

  saveState(): ClintState {
    return {
      msip: Array.from(this.msip), cmpLo: Array.from(this.cmpLo), cmpHi: Array.from(this.cmpHi),
      mtip: Array.from(this.mtip), latchedHi: this.latchedHi, latchValid: this.latchValid,
    };
  }

  /** Restores the registers; the harts' MSIP/MTIP lines are part of their own saved state, so
   *  nothing is signalled here. */
  loadState(s: ClintState): void {
    if (s.msip.length !== this.harts) throw new RangeError(`CLINT: saved state is for ${s.msip.length} harts, not ${this.harts}`);
    this.msip.set(s.msip); this.cmpLo.set(s.cmpLo); this.cmpHi.set(s.cmpHi); this.mtip.set(s.mtip);
    this.latchedHi = s.latchedHi; this.latchValid = s.latchValid;
  }

  /** Resets all registers (machine reset). */
  reset(): void {
    this.msip.fill(0);
    this.cmpLo.fill(0);
    this.cmpHi.fill(0);
    for (let h = 0; h < this.harts; h++) this.irq(h, MIP_MSIP_BIT, false);
    this.update();
  }
}
