// Nothing a guest does to a device may throw in the host: random accesses of every size to
// every register of each board device (seeded, so a failure reproduces).
import { describe, expect, it } from 'vitest';
import type { MmioDevice } from '../../src/memory/bus.js';
import { Uart16550 } from '../../src/devices/uart16550.js';
import { Plic, PLIC_SIZE } from '../../src/devices/plic.js';
import { Clint, CLINT_SIZE } from '../../src/devices/clint.js';
import { VirtClock } from '../../src/devices/clock.js';
import { GoldfishRtc, RTC_SIZE } from '../../src/devices/goldfish-rtc.js';
import { TestFinisher } from '../../src/devices/test-finisher.js';
import { EmptyVirtioSlot } from '../../src/devices/virtio-mmio-empty.js';
import { BootRom, buildBootRom } from '../../src/board/boot-rom.js';

function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; return s; };
}

const devices: [string, () => MmioDevice, number][] = [
  ['uart16550', () => { const c = new VirtClock(); c.resume(); return new Uart16550(() => {}, () => {}, c); }, 0x100],
  ['plic', () => new Plic(8, () => {}), PLIC_SIZE],
  ['clint', () => { const c = new VirtClock(); c.resume(); return new Clint(8, c, () => {}); }, CLINT_SIZE],
  ['goldfish-rtc', () => new GoldfishRtc(() => {}), RTC_SIZE],
  ['test-finisher', () => new TestFinisher(() => {}), 0x1000],
  ['empty virtio slot', () => new EmptyVirtioSlot(), 0x1000],
  ['boot rom', () => new BootRom(buildBootRom({ startAddr: 0x80000000, fdtAddr: 0x87e00000, nextAddr: 0x80200000 }), 0xf000), 0xf000],
];

describe('devices survive hostile guests', () => {
  for (const [name, make, size] of devices) {
    it(name, () => {
      const dev = make();
      const rnd = prng(0x5eed ^ size);
      const sizes = [1, 2, 4] as const;
      for (let i = 0; i < 50_000; i++) {
        const sz = sizes[rnd() % 3];
        // half the accesses near the start, where the registers are; the rest anywhere
        const off = ((i & 1) ? rnd() % size : rnd() % Math.min(size, 0x400)) & ~(sz - 1);
        if (rnd() & 1) {
          const v = dev.read(off, sz);
          expect(Number.isInteger(v) && v >= 0 && v <= 0xffffffff).toBe(true);
        } else {
          dev.write(off, sz, rnd());
        }
      }
    });
  }
});
