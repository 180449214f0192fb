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

import type { MmioDevice } from '../memory/bus.js';

export const RTC_SIZE = 0x1000;
const MASK32 = 0xffffffffn;

export class GoldfishRtc implements MmioDevice {
  private offsetNs = 0n;
  private latchedHigh = 0;
  private alarmHigh = 0;
  private alarmNs = 0n;
  private alarmArmed = false;
  private irqEnabled = false;
  private irqPending = false;
  private irqLevel = false;

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
        break;
      case 0x14:
        this.alarmArmed = false;
        break;
      case 0x1c:
        this.irqPending = false;
        break;
    }
    this.update();
  }

  /** Fires the alarm if its time has come (the board calls this between slices). */
  poll(): void {
    if (this.alarmArmed && this.nowNs() >= this.alarmNs) {
      this.alarmArmed = false;
      this.irqPending = true;
      this.update();
    }
  }

  /** Host milliseconds until the armed alarm fires (Infinity if none). */
  msUntilAlarm(): number {
    if (!this.alarmArmed) return Infinity;
    const d = this.alarmNs - this.nowNs();
    return d <= 0n ? 0 : Number(d) / 1e6;
  }

  private update(): void {
    const level = this.irqPending && this.irqEnabled;
    if (level !== this.irqLevel) {
      this.irqLevel = level;
      this.irq(level);
    }
  }
}
