// virtio-net against a driver written here the way Linux's virtio_net drives it (two queues,
// receive buffers posted ahead, a header before every frame), with a recording backend.

import { describe, expect, it } from 'vitest';
import {
  REG, STATUS_ACKNOWLEDGE, STATUS_DEVICE_NEEDS_RESET, STATUS_DRIVER, STATUS_DRIVER_OK, STATUS_FEATURES_OK,
  VIRTIO_F_EVENT_IDX, VIRTIO_F_VERSION_1, VirtioMmioDevice, feature,
} from '../../src/devices/virtio/mmio.js';
import {
  NET_CFG, VIRTIO_NET_F_CSUM, VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_GUEST_TSO4, VIRTIO_NET_F_HOST_TSO4, VIRTIO_NET_F_MAC,
  VIRTIO_NET_F_MRG_RXBUF, VIRTIO_NET_F_MTU, VIRTIO_NET_F_STATUS, VirtioNet,
} from '../../src/devices/virtio/net.js';
import { VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE } from '../../src/devices/virtio/queue.js';
import { GuestRam } from '../../src/memory/ram.js';
import type { FrameOffload, GuestNic, NetBackend } from '../../src/net/nic.js';

const BASE = 0x8000_0000;
const MAC = Uint8Array.from([0x52, 0x54, 0x00, 0xab, 0xcd, 0xef]);

class RecordingBackend implements NetBackend {
  nic: GuestNic | null = null;
  sent: { frame: number[]; offload: FrameOffload | null }[] = [];
  rxSpaceCalls = 0;
  txDoneCalls = 0;
  constructor(readonly offloads: boolean) {}
  attach(nic: GuestNic): void { this.nic = nic; }
  transmit(frame: Uint8Array, offload: FrameOffload | null): void { this.sent.push({ frame: [...frame], offload: offload ? { ...offload } : null }); }
  rxSpace(): void { this.rxSpaceCalls++; }
  txDone(): void { this.txDoneCalls++; }
  close(): void {}
}

/** One split queue of the driver, at fixed addresses. */
class Ring {
  availIdx = 0;
  usedSeen = 0;
  nextDesc = 0;
  constructor(readonly ram: GuestRam, readonly size: number, readonly desc: number, readonly avail: number, readonly used: number) {}
  add(segs: { addr: number; len: number; write?: boolean }[]): number {
    const head = this.nextDesc;
    segs.forEach((s, k) => {
      const i = (head + k) % this.size;
      const last = k === segs.length - 1;
      const d = this.desc + 16 * i;
      this.ram.writeU64(d, s.addr);
      this.ram.writeU32(d + 8, s.len);
      this.ram.writeU16(d + 12, (s.write ? VIRTQ_DESC_F_WRITE : 0) | (last ? 0 : VIRTQ_DESC_F_NEXT));
      this.ram.writeU16(d + 14, last ? 0 : (i + 1) % this.size);
    });
    this.nextDesc = (head + segs.length) % this.size;
    this.ram.writeU16(this.avail + 4 + 2 * (this.availIdx % this.size), head);
    this.availIdx = (this.availIdx + 1) & 0xffff;
    this.ram.writeU16(this.avail + 2, this.availIdx);
    return head;
  }
  usedIdx(): number { return this.ram.readU16(this.used + 2); }
  usedEntry(k: number): { id: number; len: number } {
    const e = this.used + 4 + 8 * (k % this.size);
    return { id: this.ram.readU32(e), len: this.ram.readU32(e + 4) };
  }
}

class NetDriver {
  readonly ram = new GuestRam(BASE, 8 * 1024 * 1024);
  readonly backend: RecordingBackend;
  readonly net: VirtioNet;
  readonly dev: VirtioMmioDevice;
  readonly logs: string[] = [];
  irq = false;
  rx!: Ring;
  tx!: Ring;
  constructor(offloads = true) {
    this.backend = new RecordingBackend(offloads);
    this.net = new VirtioNet({ mac: MAC, backend: this.backend, log: (m) => this.logs.push(m) });
    this.dev = new VirtioMmioDevice({ ram: this.ram, model: this.net, name: 'net', setIrq: (l) => { this.irq = l; }, log: (m) => this.logs.push(m) });
    this.net.transport = this.dev;
  }
  r(o: number): number { return this.dev.read(o, 4) >>> 0; }
  w(o: number, v: number): void { this.dev.write(o, 4, v); }
  features(): bigint {
    this.w(REG.DeviceFeaturesSel, 0);
    const lo = BigInt(this.r(REG.DeviceFeatures));
    this.w(REG.DeviceFeaturesSel, 1);
    return lo | (BigInt(this.r(REG.DeviceFeatures)) << 32n);
  }
  /** Initialisation as 3.1.1, with `f` negotiated (or only page 0 written when page1 is false). */
  init(f: bigint, opts: { page1?: boolean; qsize?: number } = {}): void {
    this.w(REG.Status, 0);
    this.w(REG.Status, STATUS_ACKNOWLEDGE | STATUS_DRIVER);
    this.w(REG.DriverFeaturesSel, 0);
    this.w(REG.DriverFeatures, Number(f & 0xffffffffn));
    if (opts.page1 !== false) {
      this.w(REG.DriverFeaturesSel, 1);
      this.w(REG.DriverFeatures, Number(f >> 32n));
    }
    this.w(REG.Status, STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK);
    const n = opts.qsize ?? 16;
    this.ram.zero(BASE, 0x10_0000);
    this.rx = this.queue(0, n, BASE + 0x1000);
    this.tx = this.queue(1, n, BASE + 0x8000);
    this.w(REG.Status, STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK);
  }
  private queue(i: number, n: number, at: number): Ring {
    const ring = new Ring(this.ram, n, at, at + 0x1000, at + 0x2000);
    this.w(REG.QueueSel, i);
    this.w(REG.QueueNum, n);
    this.w(REG.QueueDescLow, ring.desc); this.w(REG.QueueDescHigh, 0);
    this.w(REG.QueueDriverLow, ring.avail); this.w(REG.QueueDriverHigh, 0);
    this.w(REG.QueueDeviceLow, ring.used); this.w(REG.QueueDeviceHigh, 0);
    this.w(REG.QueueReady, 1);
    return ring;
  }
  /** Posts `count` receive buffers of `size` bytes at DATA, DATA + size, ... and notifies. */
  postRx(count: number, size: number, at = BASE + 0x20_0000): number[] {
    const addrs: number[] = [];
    for (let k = 0; k < count; k++) {
      const a = at + k * size;
      this.rx.add([{ addr: a, len: size, write: true }]);
      addrs.push(a);
    }
    this.w(REG.QueueNotify, 0);
    return addrs;
  }
  send(hdr: number[], frame: Uint8Array): void {
    const h = BASE + 0x40_0000;
    const f = BASE + 0x41_0000;
    this.ram.write(h, Uint8Array.from(hdr));
    this.ram.write(f, frame);
    this.tx.add([{ addr: h, len: hdr.length }, { addr: f, len: frame.length }]);
    this.w(REG.QueueNotify, 1);
  }
  bytes(addr: number, n: number): number[] {
    const out: number[] = [];
    for (let i = 0; i < n; i++) out.push(this.ram.readU8(addr + i));
    return out;
  }
}

const frame = (n: number, seed = 1): Uint8Array => Uint8Array.from({ length: n }, (_, i) => (i * 7 + seed) & 0xff);
const BASE_FEATURES = feature(VIRTIO_NET_F_MAC) | feature(VIRTIO_NET_F_STATUS) | feature(VIRTIO_NET_F_MTU);

describe('virtio-net', () => {
  it('offers MAC, STATUS, MTU, MRG_RXBUF (and the offloads when the backend takes them); config holds MAC, link up, MTU', () => {
    const d = new NetDriver();
    expect(d.r(REG.DeviceID)).toBe(1);
    const f = d.features();
    for (const b of [VIRTIO_NET_F_MAC, VIRTIO_NET_F_STATUS, VIRTIO_NET_F_MTU, VIRTIO_NET_F_MRG_RXBUF, VIRTIO_NET_F_CSUM, VIRTIO_NET_F_HOST_TSO4, VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_GUEST_TSO4]) {
      expect(f & feature(b)).toBe(feature(b));
    }
    expect(f & feature(VIRTIO_F_VERSION_1)).toBe(feature(VIRTIO_F_VERSION_1));
    expect(new NetDriver(false).features() & (feature(VIRTIO_NET_F_CSUM) | feature(VIRTIO_NET_F_GUEST_TSO4))).toBe(0n);
    const mac = Array.from({ length: 6 }, (_, i) => d.dev.read(REG.Config + NET_CFG.mac + i, 1));
    expect(mac).toEqual([...MAC]);
    expect(d.dev.read(REG.Config + NET_CFG.status, 2)).toBe(1);
    expect(d.dev.read(REG.Config + NET_CFG.mtu, 2)).toBe(1500);
  });

  it('transmit: 12-byte header with VERSION_1; the frame and its offload go to the backend; the chain is returned', () => {
    const d = new NetDriver();
    d.init(BASE_FEATURES | feature(VIRTIO_F_VERSION_1) | feature(VIRTIO_NET_F_CSUM) | feature(VIRTIO_NET_F_HOST_TSO4));
    d.send([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], frame(60));
    // NEEDS_CSUM at 34 (+16), TSO with MSS 1448: a 3000-byte segment.
    d.send([1, 1, 54 & 0xff, 0, 1448 & 0xff, 1448 >> 8, 34, 0, 16, 0, 0, 0], frame(3054, 3));
    expect(d.backend.sent).toHaveLength(2);
    expect(d.backend.sent[0]).toEqual({ frame: [...frame(60)], offload: null });
    expect(d.backend.sent[1].frame).toEqual([...frame(3054, 3)]);
    expect(d.backend.sent[1].offload).toMatchObject({ flags: 1, gsoType: 1, hdrLen: 54, gsoSize: 1448, csumStart: 34, csumOffset: 16 });
    expect(d.tx.usedIdx()).toBe(2);
    expect(d.tx.usedEntry(1).len).toBe(0);
    expect(d.backend.txDoneCalls).toBe(2);
  });

  it('transmit: a legacy-style driver (no VERSION_1, no MRG_RXBUF, feature page 1 never written) uses the 10-byte header', () => {
    const d = new NetDriver();
    d.init(BASE_FEATURES, { page1: false });
    expect(d.r(REG.Status) & STATUS_FEATURES_OK).toBe(STATUS_FEATURES_OK);
    d.send([0, 0, 0, 0, 0, 0, 0, 0, 0, 0], frame(42));
    expect(d.backend.sent[0].frame).toEqual([...frame(42)]);
    // And receive writes a 10-byte header.
    const [buf] = d.postRx(1, 1600);
    expect(d.backend.nic!.deliver(frame(100, 9))).toBe(true);
    expect(d.rx.usedEntry(0).len).toBe(110);
    expect(d.bytes(buf + 10, 100)).toEqual([...frame(100, 9)]);
  });

  it('transmit: too short for the header is a broken driver (DEVICE_NEEDS_RESET, as QEMU); a runt or oversized frame is dropped and logged', () => {
    const d = new NetDriver();
    d.init(BASE_FEATURES | feature(VIRTIO_F_VERSION_1));
    d.send([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], frame(5));
    expect(d.backend.sent).toHaveLength(0);
    expect(d.logs.join()).toMatch(/dropped a transmitted frame of 5 bytes/);
    const h = BASE + 0x40_0000;
    d.tx.add([{ addr: h, len: 4 }]);
    d.w(REG.QueueNotify, 1);
    expect(d.r(REG.Status) & STATUS_DEVICE_NEEDS_RESET).toBe(STATUS_DEVICE_NEEDS_RESET);
    expect(d.logs.join()).toMatch(/shorter than the 12-byte header/);
  });

  it('receive with MRG_RXBUF: a large frame spans several buffers, num_buffers in the first header, offload fields passed', () => {
    const d = new NetDriver();
    d.init(BASE_FEATURES | feature(VIRTIO_F_VERSION_1) | feature(VIRTIO_NET_F_MRG_RXBUF) | feature(VIRTIO_NET_F_GUEST_CSUM) | feature(VIRTIO_NET_F_GUEST_TSO4));
    expect(d.backend.nic!.rxTso4).toBe(true);
    const bufs = d.postRx(8, 1536);
    const f = frame(4000, 5);
    expect(d.backend.nic!.deliver(f, { flags: 1, gsoType: 1, gsoSize: 1460, hdrLen: 54, csumStart: 34, csumOffset: 16 })).toBe(true);
    expect(d.rx.usedIdx()).toBe(3); // 12 + 4000 bytes in 1536-byte buffers
    expect([0, 1, 2].map((k) => d.rx.usedEntry(k))).toEqual([{ id: 0, len: 1536 }, { id: 1, len: 1536 }, { id: 2, len: 4012 - 3072 }]);
    const hdr = d.bytes(bufs[0], 12);
    expect(hdr).toEqual([1, 1, 54, 0, 1460 & 0xff, 1460 >> 8, 34, 0, 16, 0, 3, 0]);
    const got = [...d.bytes(bufs[0] + 12, 1524), ...d.bytes(bufs[1], 1536), ...d.bytes(bufs[2], 4012 - 3072)];
    expect(got).toEqual([...f]);
    expect(d.irq).toBe(true);
  });

  it('receive waits for buffers: false while too few are posted (nothing consumed), rxSpace and the event index when the driver adds more', () => {
    const d = new NetDriver();
    d.init(BASE_FEATURES | feature(VIRTIO_F_VERSION_1) | feature(VIRTIO_NET_F_MRG_RXBUF) | feature(VIRTIO_F_EVENT_IDX));
    const before = d.backend.rxSpaceCalls;
    d.postRx(2, 1536);
    expect(d.backend.rxSpaceCalls).toBe(before + 1);
    expect(d.backend.nic!.deliver(frame(5000))).toBe(false);
    expect(d.rx.usedIdx()).toBe(0);
    // avail_event asks for a notification at the driver's next addition (2.7.10).
    expect(d.ram.readU16(d.rx.used + 4 + 8 * d.rx.size)).toBe(2);
    d.postRx(2, 1536, BASE + 0x30_0000);
    expect(d.backend.rxSpaceCalls).toBe(before + 2);
    expect(d.backend.nic!.deliver(frame(5000))).toBe(true);
    expect(d.rx.usedIdx()).toBe(4);
  });

  it('receive without MRG_RXBUF: one buffer per frame; a buffer too small drops the frame and stays with the driver', () => {
    const d = new NetDriver();
    d.init(BASE_FEATURES | feature(VIRTIO_F_VERSION_1));
    d.postRx(1, 100);
    expect(d.backend.nic!.deliver(frame(200))).toBe(true);
    expect(d.rx.usedIdx()).toBe(0);
    expect(d.logs.join()).toMatch(/too small/);
    const [b] = d.postRx(1, 1600, BASE + 0x30_0000);
    // Still the small buffer first: the frame after it has to wait for the next one.
    expect(d.backend.nic!.deliver(frame(60))).toBe(true);
    expect(d.rx.usedEntry(0)).toEqual({ id: 0, len: 72 });
    expect(d.backend.nic!.deliver(frame(300, 4))).toBe(true);
    expect(d.rx.usedEntry(1)).toEqual({ id: 1, len: 312 });
    expect(d.bytes(b, 12)).toEqual([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]); // num_buffers 1
  });

  it('takes no frame before DRIVER_OK or while paused, and says so by rxSpace when that changes', () => {
    const d = new NetDriver();
    expect(d.backend.nic!.deliver(frame(60))).toBe(false);
    d.init(BASE_FEATURES | feature(VIRTIO_F_VERSION_1));
    d.postRx(4, 1600);
    d.net.setPaused(true);
    expect(d.backend.nic!.deliver(frame(60))).toBe(false);
    const before = d.backend.rxSpaceCalls;
    d.net.setPaused(false);
    expect(d.backend.rxSpaceCalls).toBe(before + 1);
    expect(d.backend.nic!.deliver(frame(60))).toBe(true);
  });

  it('a receive chain with no writable buffer is a broken driver: DEVICE_NEEDS_RESET', () => {
    const d = new NetDriver();
    d.init(BASE_FEATURES | feature(VIRTIO_F_VERSION_1) | feature(VIRTIO_NET_F_MRG_RXBUF));
    d.rx.add([{ addr: BASE + 0x20_0000, len: 1600 }]);
    d.w(REG.QueueNotify, 0);
    expect(d.backend.nic!.deliver(frame(60))).toBe(false);
    expect(d.r(REG.Status) & STATUS_DEVICE_NEEDS_RESET).toBe(STATUS_DEVICE_NEEDS_RESET);
  });
});
