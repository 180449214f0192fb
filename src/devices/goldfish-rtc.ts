// Goldfish RTC ("google,goldfish-rtc", QEMU hw/rtc/goldfish_rtc.c) at 0x101000, PLIC source 11.
// Registers (Android emulator "GOLDFISH-VIRTUAL-HARDWARE.TXT", goldfish_rtc):
//   0x00 TIME_LOW   0x04 TIME_HIGH     nanoseconds since the Unix epoch; reading TIME_LOW
//                                      latches TIME_HIGH so a low-then-high read is consistent
//   0x08 ALARM_LOW  0x0c ALARM_HIGH    writing ALARM_LOW arms the alarm at (ALARM_HIGH:ALARM_LOW)
//   0x10 IRQ_ENABLED                   bit 0 enables the alarm interrupt
//   0x14 CLEAR_ALARM                   disarms the alarm
//   0x18 ALARM_STATUS                  1 while an alarm is armed
//   0x1c CLEAR_INTERRUPT               lowers the interrupt line
// Time follows the host's wall clock; a guest write to TIME_LOW/TIME_HIGH sets an offset.
// The interrupt line (level: pending and enabled) is signalled as QEMU 7.2's goldfish_rtc.c
// signals it, because the PLIC makes a source pending on every high signal (plic.ts): when the
// alarm fires (at its time, or at the ALARM_LOW write for a time already past) and on every
// IRQ_ENABLED and CLEAR_INTERRUPT write; no other access signals (CLEAR_ALARM leaves a fired
// interrupt standing). So a fired alarm a handler never clears is delivered once.

import type { MmioDevice } from '../memory/bus.js';

export const RTC_SIZE = 0x1000;
const MASK32 = 0xffffffffn;

export interface RtcState {
  /** bigints as decimal strings */
  offsetNs: string; latchedHigh: number; alarmHigh: number; alarmNs: string;
  alarmArmed: boolean; irqEnabled: boolean; irqPending: boolean;
}

export class GoldfishRtc implements MmioDevice {
  private offsetNs = 0n;
  private latchedHigh = 0;
  private alarmHigh = 0;
  private alarmNs = 0n;
  private alarmArmed = false;
  private irqEnabled = false;
  private irqPending = false;

  constructor(private readonly irq: (level: boolean) => void,
              private readonly hostNowNs: () => bigint = () => BigInt(Date.now()) * 1_000_000n) {}

  private nowNs(): bigint {
    return this.hostNowNs() + this.offsetNs;
  }

  read(offset: number, size: 1 | 2 | 4): number {
    if (size !== 4) return 0;
    switch (offset) {
      case 0x00: {
        const t = this.nowNs();
        this.latchedHigh = Number((t >> 32n) & MASK32);
        return Number(t & MASK32);
      }
      case 0x04: return this.latchedHigh;
      case 0x08: return Number(this.alarmNs & MASK32);
      case 0x0c: return this.alarmHigh;
      case 0x10: return this.irqEnabled ? 1 : 0;
      case 0x18: return this.alarmArmed ? 1 : 0;
      default: return 0;
    }
  }

  write(offset: number, size: 1 | 2 | 4, value: number): void {
    if (size !== 4) return;
    const v = BigInt(value >>> 0);
    switch (offset) {
      case 0x00: { // set the low half of the current time
        const now = this.nowNs();
        this.offsetNs += ((now & ~MASK32) | v) - now;
        break;
      }
      case 0x04: { // set the high half
        const now = this.nowNs();
        this.offsetNs += ((v << 32n) | (now & MASK32)) - now;
        break;
      }
      case 0x08:
        this.alarmNs = (BigInt(this.alarmHigh) << 32n) | v;
        this.alarmArmed = true;
        this.poll();
        break;
      case 0x0c:
        this.alarmHigh = value >>> 0;
        break;
      case 0x10:
        this.irqEnabled = (value & 1) !== 0;
        this.signal();
        break;
      case 0x14:
        this.alarmArmed = false;
        break;
      case 0x1c:
        this.irqPending = false;
        this.signal();
        break;
    }
  }

  /** Saved state. The time itself is not saved: the RTC reads the host's wall clock (plus the
   *  guest's own offset, if it set the time), so a restored guest sees the real date. */
  saveState(): RtcState {
    return {
      offsetNs: this.offsetNs.toString(), latchedHigh: this.latchedHigh, alarmHigh: this.alarmHigh,
      alarmNs: this.alarmNs.toString(), alarmArmed: this.alarmArmed, irqEnabled: this.irqEnabled, irqPending: this.irqPending,
    };
  }

  loadState(s: RtcState): void {
    this.offsetNs = BigInt(s.offsetNs); this.latchedHigh = s.latchedHigh; this.alarmHigh = s.alarmHigh;
    this.alarmNs = BigInt(s.alarmNs); this.alarmArmed = s.alarmArmed; this.irqEnabled = s.irqEnabled; this.irqPending = s.irqPending;
  }

  /** Fires the alarm if its time has come (the board calls this between slices). */
  poll(): void {
    if (this.alarmArmed && this.nowNs() >= this.alarmNs) {
      this.alarmArmed = false;
      this.irqPending = true;
      this.signal();
    }
  }

  /** Host milliseconds until the armed alarm fires (Infinity if none). */
  msUntilAlarm(): number {
    if (!this.alarmArmed) return Infinity;
    const d = this.alarmNs - this.nowNs();
    return d <= 0n ? 0 : Number(d) / 1e6;
  }

  /** Signals the interrupt line at its level (every call is a signal, see above). */
  private signal(): void {
    this.irq(this.irqPending && this.irqEnabled);
  }
}
