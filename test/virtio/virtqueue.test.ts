// The virtio-mmio transport and split virtqueues against hostile drivers: every malformed ring
// must end in DEVICE_NEEDS_RESET + a config-change interrupt + a log line, never an exception.

import { describe, expect, it } from 'vitest';
import {
  INT_CONFIG_CHANGE, INT_USED_BUFFER, REG, STATUS_ACKNOWLEDGE, STATUS_DEVICE_NEEDS_RESET, STATUS_DRIVER, STATUS_DRIVER_OK,
  STATUS_FEATURES_OK, VIRTIO_F_EVENT_IDX,
  VIRTIO_F_INDIRECT_DESC, VIRTIO_F_VERSION_1, VIRTIO_MMIO_MAGIC, VIRTIO_MMIO_VENDOR, feature, type VirtioDeviceModel,
} from '../../src/devices/virtio/mmio.js';
import {
  MAX_CHAIN_SEGMENTS, VIRTQ_AVAIL_F_NO_INTERRUPT, VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE,
  type SplitVirtqueue,
} from '../../src/devices/virtio/queue.js';
import { AVAIL, DATA, DESC, RAM_BASE, RAM_SIZE, TestDriver, USED } from './test-driver.js';

/** A device that echoes: copies its readable bytes, reversed, into its writable part. */
class EchoDevice implements VirtioDeviceModel {
  readonly deviceId = 42;
  readonly queueMaxSizes = [16];
  chains = 0;
  resets = 0;
  deviceFeatures(): bigint { return feature(3); }
  configRead(offset: number): number { return offset === 0 ? 0xabcd : 0; }
  configWrite(): void {}
  reset(): void { this.resets++; }
  handleChain(_q: number, q: SplitVirtqueue): number {
    this.chains++;
    const n = Math.min(q.readableBytes, q.writableBytes);
    const buf = new Uint8Array(q.readableBytes);
    q.readBytes(0, buf);
    buf.reverse();
    q.writeBytes(0, buf.subarray(0, n));
    return n;
  }
}

const ALL = feature(VIRTIO_F_VERSION_1) | feature(VIRTIO_F_INDIRECT_DESC) | feature(VIRTIO_F_EVENT_IDX);

function ready(features = ALL, qsize = 8): { d: TestDriver; m: EchoDevice } {
  const m = new EchoDevice();
  const d = new TestDriver(m);
  expect(d.negotiate(features)).toBe(true);
  d.setupQueue(qsize);
  return { d, m };
}

function expectNeedsReset(d: TestDriver, pattern: RegExp): void {
  expect(d.r(REG.Status) & STATUS_DEVICE_NEEDS_RESET).toBe(STATUS_DEVICE_NEEDS_RESET);
  expect(d.r(REG.InterruptStatus) & INT_CONFIG_CHANGE).toBe(INT_CONFIG_CHANGE);
  expect(d.irq).toBe(true);
  expect(d.logs.join('\n')).toMatch(pattern);
}

describe('virtio-mmio registers', () => {
  it('identifies as a modern QEMU virtio-mmio device', () => {
    const d = new TestDriver(new EchoDevice());
    expect(d.r(REG.MagicValue)).toBe(VIRTIO_MMIO_MAGIC);
    expect(d.r(REG.Version)).toBe(2);
    expect(d.r(REG.DeviceID)).toBe(42);
    expect(d.r(REG.VendorID)).toBe(VIRTIO_MMIO_VENDOR);
    expect(d.deviceFeatures()).toBe(ALL | feature(3));
    d.w(REG.QueueSel, 0);
    expect(d.r(REG.QueueNumMax)).toBe(16);
    d.w(REG.QueueSel, 1);
    expect(d.r(REG.QueueNumMax)).toBe(0); // no such queue
    expect(d.dev.read(REG.Config, 2)).toBe(0xabcd);
  });

  it('accepts, as QEMU, a driver that never writes feature page 1 (no VIRTIO_F_VERSION_1), and serves its queue', () => {
    const m = new EchoDevice();
    const d = new TestDriver(m);
    d.w(REG.Status, 0);
    d.w(REG.Status, STATUS_ACKNOWLEDGE | STATUS_DRIVER);
    d.w(REG.DriverFeaturesSel, 0);
    d.w(REG.DriverFeatures, Number(feature(VIRTIO_F_INDIRECT_DESC) | feature(3)));
    d.w(REG.Status, STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK);
    expect(d.r(REG.Status) & STATUS_FEATURES_OK).toBe(STATUS_FEATURES_OK);
    expect(d.dev.features()).toBe(feature(VIRTIO_F_INDIRECT_DESC) | feature(3));
    d.setupQueue(8);
    d.ram.write(DATA, new Uint8Array([5, 6]));
    d.submit(d.chain([{ addr: DATA, len: 2 }, { addr: DATA + 0x100, len: 2, write: true }]));
    expect(m.chains).toBe(1);
    expect(d.used(0)).toEqual({ id: 0, len: 2 });
    expect(d.logs).toEqual([]);
  });

  it('drops feature bits it did not offer instead of refusing FEATURES_OK (QEMU virtio_set_features), and logs them', () => {
    const d = new TestDriver(new EchoDevice());
    expect(d.negotiate(feature(VIRTIO_F_VERSION_1) | feature(40) | feature(5))).toBe(true);
    expect(d.dev.features()).toBe(feature(VIRTIO_F_VERSION_1));
    expect(d.logs.join()).toMatch(/features 0x10000000020 that were not offered/);
  });

  it('serves a driver that sets DRIVER_OK without ever setting FEATURES_OK (legacy order), with no feature negotiated', () => {
    const m = new EchoDevice();
    const d = new TestDriver(m);
    d.w(REG.Status, STATUS_ACKNOWLEDGE | STATUS_DRIVER);
    d.w(REG.DriverFeatures, Number(feature(VIRTIO_F_INDIRECT_DESC)));
    d.setupQueue(8);
    expect(d.r(REG.Status) & STATUS_FEATURES_OK).toBe(0);
    d.submit(d.chain([{ addr: DATA, len: 1 }, { addr: DATA + 8, len: 1, write: true }]));
    expect(m.chains).toBe(1);
    expect(d.dev.features()).toBe(0n);
    // Indirect descriptors were not negotiated, so one is a malformed chain.
    d.submit(d.indirectChain([{ addr: DATA, len: 1 }, { addr: DATA + 8, len: 1, write: true }], RAM_BASE + 0x5_0000));
    expectNeedsReset(d, /INDIRECT_DESC was not negotiated/);
  });

  it('serves a queue whose size is not a power of 2 and whose rings are not aligned (as QEMU)', () => {
    const m = new EchoDevice();
    const d = new TestDriver(m);
    expect(d.negotiate(ALL)).toBe(true);
    d.setupQueue(6, { desc: DESC + 8, avail: AVAIL + 1, used: USED + 2 });
    expect(d.r(REG.QueueReady)).toBe(1);
    for (let k = 0; k < 100; k++) {
      d.ram.write(DATA, new Uint8Array([k, 1]));
      const head = k % 6;
      const t = DESC + 8 + 16 * head;
      d.ram.writeU64(t, DATA); d.ram.writeU32(t + 8, 2); d.ram.writeU16(t + 12, VIRTQ_DESC_F_NEXT); d.ram.writeU16(t + 14, (head + 1) % 6);
      const u = DESC + 8 + 16 * ((head + 1) % 6);
      d.ram.writeU64(u, DATA + 0x100); d.ram.writeU32(u + 8, 2); d.ram.writeU16(u + 12, VIRTQ_DESC_F_WRITE); d.ram.writeU16(u + 14, 0);
      d.ram.writeU16(AVAIL + 1 + 4 + 2 * (k % 6), head);
      d.ram.writeU16(AVAIL + 1 + 2, k + 1);
      d.w(REG.QueueNotify, 0);
      expect(d.ram.readU16(USED + 2 + 2)).toBe(k + 1);
      expect(d.ram.readU32(USED + 2 + 4 + 8 * (k % 6))).toBe(head);
      expect(d.ram.readU8(DATA + 0x101)).toBe(k);
    }
    expect(m.chains).toBe(100);
    expect(d.r(REG.Status) & STATUS_DEVICE_NEEDS_RESET).toBe(0);
  });

  it('ignores feature writes after FEATURES_OK and narrow accesses to control registers', () => {
    const d = new TestDriver(new EchoDevice());
    d.negotiate(feature(VIRTIO_F_VERSION_1));
    d.w(REG.DriverFeaturesSel, 0);
    d.w(REG.DriverFeatures, 0xffffffff);
    expect(d.dev.features()).toBe(feature(VIRTIO_F_VERSION_1));
    expect(d.dev.read(REG.MagicValue, 1)).toBe(0);
    d.dev.write(REG.Status, 2, 0);
    expect(d.r(REG.Status)).not.toBe(0);
    expect(d.logs.join()).toMatch(/aligned 32-bit/);
  });

  it('serves a chain, raises the used-buffer interrupt, and lowers the line on ACK', () => {
    const { d, m } = ready();
    d.ram.write(DATA, new Uint8Array([1, 2, 3, 4]));
    d.submit(d.chain([{ addr: DATA, len: 4 }, { addr: DATA + 0x100, len: 4, write: true }]));
    expect(m.chains).toBe(1);
    expect(d.usedIdx()).toBe(1);
    expect(d.used(0)).toEqual({ id: 0, len: 4 });
    expect([...d.ram.chunk(0).subarray(0x10_0100, 0x10_0104)]).toEqual([4, 3, 2, 1]);
    expect(d.r(REG.InterruptStatus)).toBe(INT_USED_BUFFER);
    expect(d.irq).toBe(true);
    d.ack();
    expect(d.irq).toBe(false);
    expect(d.r(REG.InterruptStatus)).toBe(0);
  });

  it('signals on every used-buffer notification and InterruptACK write, not on InterruptStatus reads (as QEMU)', () => {
    const { d } = ready(feature(VIRTIO_F_VERSION_1));
    const seg = () => d.chain([{ addr: DATA, len: 1 }, { addr: DATA + 8, len: 1, write: true }]);
    const since = (f: () => void) => { const n = d.signals.length; f(); return d.signals.slice(n); };
    expect(since(() => d.submit(seg()))).toEqual([true]);
    expect(since(() => d.r(REG.InterruptStatus))).toEqual([]);
    expect(since(() => d.submit(seg()))).toEqual([true]);          // never acknowledged: high again
    expect(since(() => d.w(REG.InterruptACK, 0))).toEqual([true]); // acknowledges nothing, still signals
    expect(since(() => d.ack())).toEqual([false]);
  });

  it('a failed device signals its configuration notification, then nothing until reset (QEMU: broken)', () => {
    const { d } = ready(feature(VIRTIO_F_VERSION_1));
    d.desc(0, DATA, 1, VIRTQ_DESC_F_NEXT, 1);
    d.desc(1, DATA + 8, 1, VIRTQ_DESC_F_NEXT, 0); // a loop
    const n = d.signals.length;
    d.submit(0);
    expect(d.signals.slice(n)).toEqual([true]);
    expect(d.r(REG.InterruptStatus)).toBe(INT_USED_BUFFER | INT_CONFIG_CHANGE);
    d.w(REG.InterruptACK, INT_USED_BUFFER);
    d.w(REG.InterruptACK, 0);
    expect(d.signals.length).toBe(n + 1);
    d.w(REG.Status, 0);
    expect(d.signals.slice(n + 1)).toEqual([false]);
  });

  it('serves indirect descriptor tables', () => {
    const { d } = ready();
    d.ram.write(DATA, new Uint8Array([9, 8, 7]));
    const table = RAM_BASE + 0x5_0000;
    d.submit(d.indirectChain([{ addr: DATA, len: 1 }, { addr: DATA + 1, len: 2 }, { addr: DATA + 0x200, len: 3, write: true }], table));
    expect(d.r(REG.Status) & STATUS_DEVICE_NEEDS_RESET).toBe(0);
    expect(d.used(0).len).toBe(3);
    expect([...d.ram.chunk(0).subarray(0x10_0200, 0x10_0203)]).toEqual([7, 8, 9]);
  });

  it('processes every chain made available before the notify, wrapping the rings past 65535', () => {
    const { d, m } = ready();
    for (let round = 0; round < 70_000 / 4; round++) {
      for (let k = 0; k < 4; k++) d.offer(d.chain([{ addr: DATA, len: 1 }, { addr: DATA + 8, len: 1, write: true }]));
      d.w(REG.QueueNotify, 0);
    }
    expect(m.chains).toBe(70_000);
    expect(d.usedIdx()).toBe(70_000 & 0xffff);
    expect(d.r(REG.Status) & STATUS_DEVICE_NEEDS_RESET).toBe(0);
  });

  it('suppresses interrupts with VIRTQ_AVAIL_F_NO_INTERRUPT (no event index)', () => {
    const { d } = ready(feature(VIRTIO_F_VERSION_1));
    d.ram.writeU16(AVAIL, VIRTQ_AVAIL_F_NO_INTERRUPT);
    d.submit(d.chain([{ addr: DATA, len: 1 }, { addr: DATA + 8, len: 1, write: true }]));
    expect(d.usedIdx()).toBe(1);
    expect(d.irq).toBe(false);
    d.ram.writeU16(AVAIL, 0);
    d.submit(d.chain([{ addr: DATA, len: 1 }, { addr: DATA + 8, len: 1, write: true }]));
    expect(d.irq).toBe(true);
  });

  it('honours used_event and publishes avail_event with VIRTIO_F_EVENT_IDX', () => {
    const { d } = ready();
    const usedEventAt = AVAIL + 4 + 2 * 8;
    const availEventAt = USED + 4 + 8 * 8;
    // The driver asks to be interrupted only when used.idx passes 2 (i.e. after the 3rd buffer).
    d.ram.writeU16(usedEventAt, 2);
    for (let k = 1; k <= 3; k++) {
      d.submit(d.chain([{ addr: DATA, len: 1 }, { addr: DATA + 8, len: 1, write: true }]));
      expect(d.ram.readU16(availEventAt)).toBe(k);
      expect(d.irq).toBe(k === 3);
    }
  });

  it('bumps the config generation and interrupts on configuration change (InterruptStatus 3, as QEMU)', () => {
    const { d } = ready();
    const gen = d.r(REG.ConfigGeneration);
    d.dev.configChanged();
    expect(d.r(REG.ConfigGeneration)).toBe(gen + 1);
    expect(d.r(REG.InterruptStatus)).toBe(INT_USED_BUFFER | INT_CONFIG_CHANGE);
    expect(d.irq).toBe(true);
  });

  it('resets: status 0 clears queues, features and interrupts, and the device works again', () => {
    const { d, m } = ready();
    d.submit(d.chain([{ addr: DATA, len: 1 }, { addr: DATA + 8, len: 1, write: true }]));
    const resets = m.resets;
    d.w(REG.Status, 0);
    expect(m.resets).toBe(resets + 1);
    expect(d.r(REG.Status)).toBe(0);
    expect(d.irq).toBe(false);
    expect(d.r(REG.QueueReady)).toBe(0);
    expect(d.dev.features()).toBe(0n);
    expect(d.negotiate(ALL)).toBe(true);
    d.setupQueue(8);
    d.submit(d.chain([{ addr: DATA, len: 1 }, { addr: DATA + 8, len: 1, write: true }]));
    expect(d.usedIdx()).toBe(1);
    expect(m.chains).toBe(2);
  });
});

describe('hostile descriptor tables', () => {
  const cases: { name: string; pattern: RegExp; build: (d: TestDriver) => void; features?: bigint }[] = [
    {
      name: 'a descriptor loop (0 -> 1 -> 0)',
      pattern: /loops/,
      build: (d) => { d.desc(0, DATA, 4, VIRTQ_DESC_F_NEXT, 1); d.desc(1, DATA, 4, VIRTQ_DESC_F_NEXT, 0); d.submit(0); },
    },
    {
      name: 'a descriptor chaining to itself',
      pattern: /loops/,
      build: (d) => { d.desc(3, DATA, 4, VIRTQ_DESC_F_NEXT, 3); d.submit(3); },
    },
    {
      name: 'a buffer outside RAM',
      pattern: /outside RAM/,
      build: (d) => d.submit(d.chain([{ addr: RAM_BASE + RAM_SIZE - 2, len: 4 }, { addr: DATA, len: 1, write: true }])),
    },
    {
      name: 'a buffer below RAM (MMIO space)',
      pattern: /outside RAM/,
      build: (d) => d.submit(d.chain([{ addr: 0x1000_0000, len: 8 }, { addr: DATA, len: 1, write: true }])),
    },
    {
      name: 'a buffer address above 2^53',
      pattern: /outside RAM/,
      build: (d) => { d.desc(0, 0, 8, 0, 0); d.ram.writeU32(DESC + 4, 0xffffffff); d.submit(0); },
    },
    {
      name: 'a buffer whose length wraps past the end of RAM',
      pattern: /outside RAM/,
      build: (d) => d.submit(d.chain([{ addr: DATA, len: 0xffffffff }])),
    },
    {
      name: 'next pointing past the table',
      pattern: /outside its table/,
      build: (d) => { d.desc(0, DATA, 4, VIRTQ_DESC_F_NEXT, 8); d.submit(0); },
    },
    {
      name: 'a head index past the table',
      pattern: /descriptor 9, outside the queue/,
      build: (d) => d.submit(9),
    },
    {
      name: 'avail.idx more than a queue ahead',
      pattern: /ahead of the device/,
      build: (d) => { d.setAvailIdx(9); d.w(REG.QueueNotify, 0); },
    },
    {
      name: 'avail.idx moved backwards',
      pattern: /ahead of the device/,
      build: (d) => { d.setAvailIdx(0xffff); d.w(REG.QueueNotify, 0); },
    },
    {
      name: 'a readable descriptor after a writable one',
      pattern: /readable descriptor .* after a device-writable/,
      build: (d) => d.submit(d.chain([{ addr: DATA, len: 4, write: true }, { addr: DATA + 8, len: 4 }])),
    },
    {
      name: 'an indirect descriptor without VIRTIO_F_INDIRECT_DESC',
      pattern: /INDIRECT_DESC was not negotiated/,
      features: feature(VIRTIO_F_VERSION_1),
      build: (d) => d.submit(d.indirectChain([{ addr: DATA, len: 4 }], RAM_BASE + 0x5_0000)),
    },
    {
      name: 'INDIRECT together with NEXT',
      pattern: /both INDIRECT and NEXT/,
      build: (d) => { d.desc(0, RAM_BASE + 0x5_0000, 16, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_NEXT, 1); d.submit(0); },
    },
    {
      name: 'a nested indirect table',
      pattern: /inside an indirect table/,
      build: (d) => {
        const t = RAM_BASE + 0x5_0000;
        d.desc(0, t + 0x100, 16, VIRTQ_DESC_F_INDIRECT, 0, t);
        d.desc(0, t, 16, VIRTQ_DESC_F_INDIRECT, 0);
        d.submit(0);
      },
    },
    {
      name: 'an indirect table length that is not a multiple of 16',
      pattern: /not a non-zero multiple of 16/,
      build: (d) => { d.desc(0, RAM_BASE + 0x5_0000, 24, VIRTQ_DESC_F_INDIRECT, 0); d.submit(0); },
    },
    {
      name: 'an empty indirect table',
      pattern: /not a non-zero multiple of 16/,
      build: (d) => { d.desc(0, RAM_BASE + 0x5_0000, 0, VIRTQ_DESC_F_INDIRECT, 0); d.submit(0); },
    },
    {
      name: 'an indirect table outside RAM',
      pattern: /indirect table .* outside RAM/,
      build: (d) => { d.desc(0, RAM_BASE + RAM_SIZE - 16, 32, VIRTQ_DESC_F_INDIRECT, 0); d.submit(0); },
    },
    {
      name: 'an oversized indirect table',
      pattern: /larger than 1024/,
      build: (d) => { d.desc(0, RAM_BASE + 0x4_0000, 16 * (MAX_CHAIN_SEGMENTS + 1), VIRTQ_DESC_F_INDIRECT, 0); d.submit(0); },
    },
    {
      name: 'a loop inside an indirect table',
      pattern: /loops/,
      build: (d) => {
        const t = RAM_BASE + 0x5_0000;
        d.desc(0, DATA, 4, VIRTQ_DESC_F_NEXT, 1, t);
        d.desc(1, DATA, 4, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 0, t);
        d.desc(0, t, 32, VIRTQ_DESC_F_INDIRECT, 0);
        d.submit(0);
      },
    },
    {
      name: 'an indirect chain leaving its table',
      pattern: /outside its table of 2/,
      build: (d) => {
        const t = RAM_BASE + 0x5_0000;
        d.desc(0, DATA, 4, VIRTQ_DESC_F_NEXT, 1, t);
        d.desc(1, DATA, 4, VIRTQ_DESC_F_NEXT, 2, t);
        d.desc(0, t, 32, VIRTQ_DESC_F_INDIRECT, 0);
        d.submit(0);
      },
    },
  ];

  for (const c of cases) {
    it(`${c.name}: DEVICE_NEEDS_RESET, config interrupt, logged; no exception`, () => {
      const { d, m } = ready(c.features ?? ALL);
      expect(() => c.build(d)).not.toThrow();
      expectNeedsReset(d, c.pattern);
      // The device processes nothing more until reset.
      const before = m.chains;
      d.offer(d.chain([{ addr: DATA, len: 1 }, { addr: DATA + 8, len: 1, write: true }]));
      d.w(REG.QueueNotify, 0);
      expect(m.chains).toBe(before);
      // A driver writing NEEDS_RESET into Status cannot clear it; a reset does.
      d.w(REG.Status, d.r(REG.Status) & ~STATUS_DEVICE_NEEDS_RESET);
      expect(d.r(REG.Status) & STATUS_DEVICE_NEEDS_RESET).toBe(STATUS_DEVICE_NEEDS_RESET);
      d.w(REG.Status, 0);
      expect(d.r(REG.Status)).toBe(0);
      expect(d.negotiate(ALL)).toBe(true);
      d.setupQueue(8);
      d.submit(d.chain([{ addr: DATA, len: 1 }, { addr: DATA + 8, len: 1, write: true }]));
      expect(d.usedIdx()).toBe(1);
    });
  }

  const badQueues: { name: string; size?: number; addrs?: { desc?: number; avail?: number; used?: number }; pattern: RegExp }[] = [
    { name: 'size 0', size: 0, pattern: /queue size 0 is not in 1..16/ },
    { name: 'size above QueueNumMax', size: 32, pattern: /queue size 32 is not in 1..16/ },
    { name: 'descriptor table outside RAM', addrs: { desc: 0x1000 }, pattern: /descriptor table .* outside RAM/ },
    { name: 'descriptor table straddling the end of RAM', addrs: { desc: RAM_BASE + RAM_SIZE - 64 }, pattern: /descriptor table .* outside RAM/ },
    { name: 'used ring straddling the end of RAM', addrs: { used: RAM_BASE + RAM_SIZE - 40 }, pattern: /used ring .* outside RAM/ },
    { name: 'available ring above 4 GiB', addrs: { avail: 0x1_0000_0000_0 }, pattern: /available ring .* outside RAM/ },
  ];
  for (const c of badQueues) {
    it(`QueueReady with ${c.name}: DEVICE_NEEDS_RESET`, () => {
      const m = new EchoDevice();
      const d = new TestDriver(m);
      d.negotiate(ALL);
      d.setupQueue(c.size ?? 8, c.addrs);
      expect(d.r(REG.QueueReady)).toBe(0);
      expect(d.r(REG.Status) & STATUS_DRIVER_OK).toBe(STATUS_DRIVER_OK);
      expectNeedsReset(d, c.pattern);
    });
  }

  it('survives random descriptor tables without throwing', () => {
    let seed = 12345;
    const rnd = (): number => { seed = (seed * 1103515245 + 12345) >>> 0; return seed; };
    for (let round = 0; round < 300; round++) {
      const { d } = ready();
      for (let i = 0; i < 8; i++) {
        const addr = (rnd() & 1) ? RAM_BASE + (rnd() % RAM_SIZE) : rnd() * 4096;
        d.desc(i, addr, rnd() % 9000, rnd() & 7, rnd() % 10);
      }
      const t = RAM_BASE + 0x5_0000;
      for (let i = 0; i < 4; i++) d.desc(i, RAM_BASE + (rnd() % RAM_SIZE), rnd() % 64, rnd() & 7, rnd() % 6, t);
      expect(() => { d.setAvailIdx(rnd() % 12); d.w(REG.QueueNotify, 0); }).not.toThrow();
    }
  });
});
