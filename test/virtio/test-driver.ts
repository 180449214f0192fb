// A minimal virtio-mmio driver in TypeScript for unit tests: it talks to the device only through
// its MMIO registers and guest RAM, as a guest would, so tests can build hostile rings by hand.

import { GuestRam } from '../../src/memory/ram.js';
import {
  REG, STATUS_ACKNOWLEDGE, STATUS_DRIVER, STATUS_DRIVER_OK, STATUS_FEATURES_OK, VirtioMmioDevice, type VirtioDeviceModel,
} from '../../src/devices/virtio/mmio.js';
import { VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE } from '../../src/devices/virtio/queue.js';

export const RAM_BASE = 0x8000_0000;
export const RAM_SIZE = 4 * 1024 * 1024;
export const DESC = RAM_BASE + 0x1_0000;
export const AVAIL = RAM_BASE + 0x2_0000;
export const USED = RAM_BASE + 0x3_0000;
export const DATA = RAM_BASE + 0x10_0000;

export interface Seg { addr: number; len: number; write?: boolean }

export class TestDriver {
  readonly logs: string[] = [];
  irq = false;
  /** Every signal of the interrupt line, in order (a high one is a new PLIC request). */
  readonly signals: boolean[] = [];
  readonly dev: VirtioMmioDevice;
  qsize = 8;
  private availIdx = 0;
  private nextDesc = 0;

  constructor(model: VirtioDeviceModel, readonly ram = new GuestRam(RAM_BASE, RAM_SIZE)) {
    this.dev = new VirtioMmioDevice({
      ram: this.ram,
      model,
      name: 'test-dev',
      setIrq: (l) => { this.signals.push(l); this.irq = l; },
      log: (m) => this.logs.push(m),
    });
  }

  r(off: number): number { return this.dev.read(off, 4) >>> 0; }
  w(off: number, v: number): void { this.dev.write(off, 4, v); }

  deviceFeatures(): bigint {
    this.w(REG.DeviceFeaturesSel, 0);
    const lo = BigInt(this.r(REG.DeviceFeatures));
    this.w(REG.DeviceFeaturesSel, 1);
    const hi = BigInt(this.r(REG.DeviceFeatures));
    return lo | (hi << 32n);
  }

  /** 3.1.1 initialisation up to FEATURES_OK; returns whether the device accepted the features. */
  negotiate(features: bigint): boolean {
    this.w(REG.Status, 0);
    this.w(REG.Status, STATUS_ACKNOWLEDGE);
    this.w(REG.Status, STATUS_ACKNOWLEDGE | STATUS_DRIVER);
    this.w(REG.DriverFeaturesSel, 0);
    this.w(REG.DriverFeatures, Number(features & 0xffffffffn));
    this.w(REG.DriverFeaturesSel, 1);
    this.w(REG.DriverFeatures, Number((features >> 32n) & 0xffffffffn));
    this.w(REG.Status, STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK);
    return (this.r(REG.Status) & STATUS_FEATURES_OK) !== 0;
  }

  /** Queue 0 at the fixed test addresses, then DRIVER_OK. */
  setupQueue(size = 8, addrs: { desc?: number; avail?: number; used?: number } = {}): void {
    this.qsize = size;
    this.availIdx = 0;
    this.nextDesc = 0;
    this.ram.zero(DESC, 0x3_0000);
    this.w(REG.QueueSel, 0);
    this.w(REG.QueueNum, size);
    const set = (lo: number, hi: number, a: number): void => { this.w(lo, a % 0x1_0000_0000); this.w(hi, Math.floor(a / 0x1_0000_0000)); };
    set(REG.QueueDescLow, REG.QueueDescHigh, addrs.desc ?? DESC);
    set(REG.QueueDriverLow, REG.QueueDriverHigh, addrs.avail ?? AVAIL);
    set(REG.QueueDeviceLow, REG.QueueDeviceHigh, addrs.used ?? USED);
    this.w(REG.QueueReady, 1);
    this.w(REG.Status, this.r(REG.Status) | STATUS_DRIVER_OK);
  }

  /** Writes descriptor `i` of the table at `table` (default: the queue's). */
  desc(i: number, addr: number, len: number, flags: number, next: number, table = DESC): void {
    const d = table + 16 * i;
    this.ram.writeU64(d, addr);
    this.ram.writeU32(d + 8, len);
    this.ram.writeU16(d + 12, flags);
    this.ram.writeU16(d + 14, next);
  }

  /** Puts `head` in the available ring and moves avail.idx by one. */
  offer(head: number): void {
    this.ram.writeU16(AVAIL + 4 + 2 * (this.availIdx % this.qsize), head);
    this.availIdx = (this.availIdx + 1) & 0xffff;
    this.ram.writeU16(AVAIL + 2, this.availIdx);
  }

  /** Sets avail.idx directly (hostile drivers). */
  setAvailIdx(v: number): void { this.availIdx = v & 0xffff; this.ram.writeU16(AVAIL + 2, this.availIdx); }

  /** A well-formed direct chain of segments; returns its head. */
  chain(segs: Seg[]): number {
    const head = this.nextDesc;
    segs.forEach((s, k) => {
      const i = (head + k) % this.qsize;
      const last = k === segs.length - 1;
      this.desc(i, s.addr, s.len, (s.write ? VIRTQ_DESC_F_WRITE : 0) | (last ? 0 : VIRTQ_DESC_F_NEXT), last ? 0 : (i + 1) % this.qsize);
    });
    this.nextDesc = (head + segs.length) % this.qsize;
    return head;
  }

  /** A chain made of one indirect descriptor pointing at a table at `table`. */
  indirectChain(segs: Seg[], table: number): number {
    segs.forEach((s, k) => {
      const last = k === segs.length - 1;
      this.desc(k, s.addr, s.len, (s.write ? VIRTQ_DESC_F_WRITE : 0) | (last ? 0 : VIRTQ_DESC_F_NEXT), last ? 0 : k + 1, table);
    });
    const head = this.nextDesc;
    this.desc(head, table, 16 * segs.length, VIRTQ_DESC_F_INDIRECT, 0);
    this.nextDesc = (head + 1) % this.qsize;
    return head;
  }

  submit(head: number): void {
    this.offer(head);
    this.w(REG.QueueNotify, 0);
  }

  usedIdx(): number { return this.ram.readU16(USED + 2); }
  used(k: number): { id: number; len: number } {
    const e = USED + 4 + 8 * (k % this.qsize);
    return { id: this.ram.readU32(e), len: this.ram.readU32(e + 4) };
  }

  ack(): void { this.w(REG.InterruptACK, this.r(REG.InterruptStatus)); }
}

/** One queue of a device with several (virtio-balloon): its rings at `base` (desc), base+0x1000
 *  (avail) and base+0x2000 (used), set up through the transport's registers. */
export class TestQueue {
  private availIdx = 0;
  private nextDesc = 0;
  readonly desc: number;
  readonly avail: number;
  readonly usedRing: number;

  constructor(private readonly d: TestDriver, readonly index: number, readonly size: number, base: number) {
    this.desc = base;
    this.avail = base + 0x1000;
    this.usedRing = base + 0x2000;
    d.ram.zero(base, 0x3000);
    d.w(REG.QueueSel, index);
    d.w(REG.QueueNum, size);
    const set = (lo: number, hi: number, a: number): void => { d.w(lo, a % 0x1_0000_0000); d.w(hi, Math.floor(a / 0x1_0000_0000)); };
    set(REG.QueueDescLow, REG.QueueDescHigh, this.desc);
    set(REG.QueueDriverLow, REG.QueueDriverHigh, this.avail);
    set(REG.QueueDeviceLow, REG.QueueDeviceHigh, this.usedRing);
    d.w(REG.QueueReady, 1);
  }

  /** A direct chain of segments, offered and notified; returns its head. */
  send(segs: Seg[]): number {
    const ram = this.d.ram;
    const head = this.nextDesc;
    segs.forEach((s, k) => {
      const i = (head + k) % this.size;
      const last = k === segs.length - 1;
      const dsc = this.desc + 16 * i;
      ram.writeU64(dsc, s.addr);
      ram.writeU32(dsc + 8, s.len);
      ram.writeU16(dsc + 12, (s.write ? VIRTQ_DESC_F_WRITE : 0) | (last ? 0 : VIRTQ_DESC_F_NEXT));
      ram.writeU16(dsc + 14, last ? 0 : (i + 1) % this.size);
    });
    this.nextDesc = (head + segs.length) % this.size;
    ram.writeU16(this.avail + 4 + 2 * (this.availIdx % this.size), head);
    this.availIdx = (this.availIdx + 1) & 0xffff;
    ram.writeU16(this.avail + 2, this.availIdx);
    this.d.w(REG.QueueNotify, this.index);
    return head;
  }

  usedIdx(): number { return this.d.ram.readU16(this.usedRing + 2); }
  used(k: number): { id: number; len: number } {
    const e = this.usedRing + 4 + 8 * (k % this.size);
    return { id: this.d.ram.readU32(e), len: this.d.ram.readU32(e + 4) };
  }
}
