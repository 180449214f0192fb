// Goldfish RTC (time, alarm, interrupt) and the SiFive test finisher.
import { describe, expect, it } from 'vitest';
import { GoldfishRtc } from '../../src/devices/goldfish-rtc.js';
import { TestFinisher, type FinisherEvent } from '../../src/devices/test-finisher.js';

describe('goldfish rtc', () => {
  it('reads host wall-clock nanoseconds, low half latching the high half', () => {
    let now = 0x1234_5678_9abc_def0n;
    const r = new GoldfishRtc(() => {}, () => now);
    const lo = r.read(0, 4);
    now += 0x1_0000_0000n;
    const hi = r.read(4, 4);
    expect((BigInt(hi) << 32n) | BigInt(lo)).toBe(0x1234_5678_9abc_def0n);
  });

  it('follows the real host clock by default', () => {
    const r = new GoldfishRtc(() => {});
    const lo = r.read(0, 4);
    const ns = (BigInt(r.read(4, 4)) << 32n) | BigInt(lo);
    const diffMs = Number(ns / 1_000_000n) - Date.now();
    expect(Math.abs(diffMs)).toBeLessThan(1000);
  });

  it('guest writes to TIME set an offset', () => {
    let now = 5_000_000_000n;
    const r = new GoldfishRtc(() => {}, () => now);
    r.write(4, 4, 0);
    r.write(0, 4, 1000);
    expect(r.read(0, 4)).toBe(1000);
    now += 10n;
    expect(r.read(0, 4)).toBe(1010);
  });

  it('alarm raises the interrupt when enabled, CLEAR_INTERRUPT lowers it', () => {
    let now = 1000n;
    const levels: boolean[] = [];
    const r = new GoldfishRtc((l) => levels.push(l), () => now);
    r.write(0x10, 4, 1);                // IRQ_ENABLED signals its (low) level
    expect(levels).toEqual([false]);
    r.write(0x0c, 4, 0);
    r.write(0x08, 4, 5_000_000); // 5 ms from epoch 0 -> ~5 ms from now
    expect(r.read(0x18, 4)).toBe(1);
    expect(r.msUntilAlarm()).toBeCloseTo(4.999, 2);
    r.poll();
    expect(levels).toEqual([false]);
    now = 5_000_000n;
    r.poll();
    expect(levels).toEqual([false, true]);
    expect(r.read(0x18, 4)).toBe(0);
    r.write(0x1c, 4, 1);
    expect(levels).toEqual([false, true, false]);
  });

  it('an alarm already in the past fires at once; CLEAR_ALARM disarms', () => {
    const levels: boolean[] = [];
    const r = new GoldfishRtc((l) => levels.push(l), () => 100n);
    r.write(0x10, 4, 1);
    r.write(0x08, 4, 50);
    expect(levels).toEqual([false, true]);
    r.write(0x1c, 4, 1);
    r.write(0x08, 4, 1000);
    r.write(0x14, 4, 1);
    expect(r.read(0x18, 4)).toBe(0);
    expect(r.msUntilAlarm()).toBe(Infinity);
  });

  it('signals on the accesses QEMU signals on: the alarm, IRQ_ENABLED and CLEAR_INTERRUPT writes only', () => {
    const levels: boolean[] = [];
    const r = new GoldfishRtc((l) => levels.push(l), () => 100n);
    r.write(0x08, 4, 50);               // fires, but IRQ_ENABLED is off: signals low
    expect(levels).toEqual([false]);
    r.write(0x10, 4, 1);                // enabled while pending: high
    r.write(0x10, 4, 1);                // written again: high again (a new PLIC request)
    expect(levels).toEqual([false, true, true]);
    for (const reg of [0x00, 0x04, 0x0c, 0x14]) r.write(reg, 4, 0);
    for (const reg of [0x00, 0x04, 0x08, 0x0c, 0x10, 0x18]) r.read(reg, 4);
    expect(levels).toEqual([false, true, true]); // CLEAR_ALARM leaves the fired interrupt standing
    r.write(0x1c, 4, 1);
    expect(levels).toEqual([false, true, true, false]);
  });
});

describe('sifive test finisher', () => {
  it('pass, fail with code, reset; other values ignored', () => {
    const ev: FinisherEvent[] = [];
    const f = new TestFinisher((e) => ev.push(e));
    f.write(0, 4, 0x1234);
    f.write(0, 4, 0x5555);
    f.write(0, 4, (42 << 16) | 0x3333);
    f.write(0, 4, 0x7777);
    expect(ev).toEqual([{ kind: 'pass', code: 0 }, { kind: 'fail', code: 42 }, { kind: 'reset', code: 0 }]);
    expect(f.read(0, 4)).toBe(0);
  });

  it('takes 16-bit writes (OpenSBI writes the status with writew) but not bytes', () => {
    const ev: FinisherEvent[] = [];
    const f = new TestFinisher((e) => ev.push(e));
    f.write(0, 1, 0x55);
    f.write(0, 2, 0x5555);
    expect(ev).toEqual([{ kind: 'pass', code: 0 }]);
  });
});
