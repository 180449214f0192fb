// virtio-balloon through the real transport, driven as a guest driver would (and as a hostile
// one would): feature bits and queue numbering, the configuration space, inflate/deflate, free
// page reports, statistics, and the RAM chunks dropped when every page of them is given up.

import { describe, expect, it } from 'vitest';
import { GuestRam, CHUNK_SIZE } from '../../src/memory/ram.js';
import { PAGE_SIZE } from '../../src/memory/reclaim.js';
import {
  BALLOON_QUEUE_SIZE, VIRTIO_BALLOON_F_DEFLATE_ON_OOM, VIRTIO_BALLOON_F_PAGE_REPORTING, VIRTIO_BALLOON_F_STATS_VQ, VIRTIO_ID_BALLOON,
} from '../../src/devices/virtio/balloon.js';
import { VirtioBalloonSlot, type BalloonSettings } from '../../src/devices/virtio/balloon-slot.js';
import { INT_CONFIG_CHANGE, INT_USED_BUFFER, REG, STATUS_DEVICE_NEEDS_RESET, VIRTIO_F_VERSION_1, feature } from '../../src/devices/virtio/mmio.js';
import { RAM_BASE, TestDriver, TestQueue } from './test-driver.js';

const MiB = 1024 * 1024;
/** 4 chunks: chunk 0 holds the rings and request buffers, 1..3 are the guest's "free" memory. */
const RAM_BYTES = 4 * CHUNK_SIZE;
const QUEUES = RAM_BASE + 0x4_0000;     // rings of queue i at QUEUES + i * 0x4000
const BUF = RAM_BASE + 0x10_0000;       // request buffers
const pfnOf = (paddr: number): number => paddr / PAGE_SIZE;
const chunkAddr = (c: number): number => RAM_BASE + c * CHUNK_SIZE;

interface Rig {
  d: TestDriver;
  slot: VirtioBalloonSlot;
  ram: GuestRam;
  dropped: number[];
  q: TestQueue[];
}

const ALL: BalloonSettings = { deflateOnOom: true, freePageReporting: true, statsIntervalMs: 1000 };

/** A balloon on a 8 MiB guest, negotiated with `features` (default: everything offered). */
function rig(settings: BalloonSettings = ALL, features?: bigint, guestBytes = RAM_BYTES): Rig {
  const ram = new GuestRam(RAM_BASE, RAM_BYTES);
  const dropped: number[] = [];
  let d!: TestDriver;
  const slot = new VirtioBalloonSlot({
    settings: { ...settings, statsIntervalMs: 0 < settings.statsIntervalMs ? 3_600_000 : 0 }, // tests ask for stats themselves
    ram, guestBytes, base: 0x10008000, irq: (l) => { d.irq = l; }, log: (m) => d.logs.push(m),
    dropChunks: (cs) => { for (const c of cs) { dropped.push(c); ram.release(c); } },
  });
  d = new TestDriver(slot.balloon, ram);
  ram.writeU8(QUEUES, 0); // the driver's rings are in chunk 0: it is allocated
  // The test driver talks to the same transport the slot built.
  (d as { dev: unknown }).dev = slot.transport;
  const offered = d.deviceFeatures();
  expect(d.negotiate(features ?? offered)).toBe(true);
  const n = slot.balloon.queueMaxSizes.length;
  const q: TestQueue[] = [];
  for (let i = 0; i < n; i++) if (slot.balloon.roleOf(i) !== undefined) q.push(new TestQueue(d, i, 16, QUEUES + i * 0x4000));
  d.w(REG.Status, d.r(REG.Status) | 4);
  return { d, slot, ram, dropped, q };
}

/** Sends page frames on the inflate (queue 0) or deflate (queue 1) queue. */
function pfns(r: Rig, queue: 0 | 1, list: number[], at = BUF): void {
  list.forEach((p, i) => r.ram.writeU32(at + 4 * i, p));
  r.q[queue].send([{ addr: at, len: 4 * list.length }]);
}

const pagesOfChunk = (c: number, from = 0, to = CHUNK_SIZE / PAGE_SIZE): number[] =>
  Array.from({ length: to - from }, (_, i) => pfnOf(chunkAddr(c)) + from + i);

function needsReset(r: Rig): boolean {
  return (r.d.r(REG.Status) & STATUS_DEVICE_NEEDS_RESET) !== 0;
}

describe('virtio-balloon: what the driver sees', () => {
  it('is device 5 with STATS_VQ, DEFLATE_ON_OOM and PAGE_REPORTING as configured, and 8 bytes of config', () => {
    const { d, slot } = rig();
    expect(d.r(REG.DeviceID)).toBe(VIRTIO_ID_BALLOON);
    const f = d.deviceFeatures();
    expect(f & 0xffn).toBe(feature(VIRTIO_BALLOON_F_STATS_VQ) | feature(VIRTIO_BALLOON_F_DEFLATE_ON_OOM) | feature(VIRTIO_BALLOON_F_PAGE_REPORTING));
    expect(f & feature(VIRTIO_F_VERSION_1)).not.toBe(0n);
    expect(slot.balloon.queueMaxSizes).toEqual([BALLOON_QUEUE_SIZE, BALLOON_QUEUE_SIZE, BALLOON_QUEUE_SIZE, BALLOON_QUEUE_SIZE]);
    const none = rig({ deflateOnOom: false, freePageReporting: false, statsIntervalMs: 0 });
    expect(none.d.deviceFeatures() & 0xffn).toBe(0n);
    expect(none.slot.balloon.queueMaxSizes.length).toBe(2);
  });

  it('numbers queues as Linux and QEMU do: only negotiated queues count (reporting is 3 with stats, 2 without)', () => {
    const both = rig();
    expect([0, 1, 2, 3].map((i) => both.slot.balloon.roleOf(i))).toEqual(['inflate', 'deflate', 'stats', 'report']);
    const v1 = feature(VIRTIO_F_VERSION_1);
    const noStats = rig(ALL, v1 | feature(VIRTIO_BALLOON_F_PAGE_REPORTING));
    expect([0, 1, 2, 3].map((i) => noStats.slot.balloon.roleOf(i))).toEqual(['inflate', 'deflate', 'report', undefined]);
    const noReport = rig(ALL, v1 | feature(VIRTIO_BALLOON_F_STATS_VQ));
    expect(noReport.slot.balloon.queueOf('report')).toBe(-1);
    expect(noReport.slot.balloon.queueOf('stats')).toBe(2);
  });

  it('num_pages is the target (read-only for the driver), actual is the driver\'s; a new target raises a config change', () => {
    const { d, slot } = rig();
    const cfg = (o: number): number => d.dev.read(REG.Config + o, 4) >>> 0;
    expect(cfg(0)).toBe(0);
    slot.setTarget(RAM_BYTES - 3 * MiB);
    expect(cfg(0)).toBe((3 * MiB) / PAGE_SIZE);
    expect(d.r(REG.InterruptStatus) & INT_CONFIG_CHANGE).toBe(INT_CONFIG_CHANGE);
    d.dev.write(REG.Config + 0, 4, 7);
    expect(cfg(0)).toBe((3 * MiB) / PAGE_SIZE);
    d.dev.write(REG.Config + 4, 4, 123);
    expect(cfg(4)).toBe(123);
    expect(slot.figures().driverBalloonBytes).toBe(123 * PAGE_SIZE);
    expect(slot.figures().targetBytes).toBe(RAM_BYTES - 3 * MiB);
    // A target beyond the guest's memory is clamped to "keep nothing", never more than memory.
    slot.setTarget(-5);
    expect(cfg(0)).toBe(RAM_BYTES / PAGE_SIZE);
    slot.setTarget(10 * RAM_BYTES);
    expect(cfg(0)).toBe(0);
    expect(() => slot.balloon.setTargetPages(RAM_BYTES / PAGE_SIZE + 1)).toThrow(/not in 0\.\./);
  });
});

describe('virtio-balloon: inflate and deflate', () => {
  it('drops a chunk once every page of it is inflated; the guest then reads zeros and RAM shrinks', () => {
    const r = rig();
    r.ram.write(chunkAddr(1) + 0x1234, Uint8Array.of(1, 2, 3));
    r.ram.writeU8(chunkAddr(2), 9);
    expect(r.ram.allocatedBytes()).toBe(3 * CHUNK_SIZE);
    pfns(r, 0, pagesOfChunk(1, 0, 256));
    expect(r.dropped).toEqual([]);
    expect(r.q[0].usedIdx()).toBe(1);
    pfns(r, 0, pagesOfChunk(1, 256));
    expect(r.dropped).toEqual([1]);
    expect(r.q[0].usedIdx()).toBe(2);
    expect(r.ram.allocatedBytes()).toBe(2 * CHUNK_SIZE);
    expect(r.ram.readU8(chunkAddr(1) + 0x1235)).toBe(0);
    expect(r.slot.figures().balloonBytes).toBe(CHUNK_SIZE);
    expect(r.slot.figures().chunksDropped).toBe(1);
    // Deflated pages come back zeroed when touched again.
    pfns(r, 1, pagesOfChunk(1, 0, 1));
    r.ram.writeU8(chunkAddr(1), 5);
    expect(r.ram.readU8(chunkAddr(1) + 0x1234)).toBe(0);
    expect(r.ram.allocatedBytes()).toBe(3 * CHUNK_SIZE);
    expect(r.slot.figures().balloonBytes).toBe(CHUNK_SIZE - PAGE_SIZE);
    expect(needsReset(r)).toBe(false);
  });

  it('a chunk never touched costs nothing and is not "dropped"', () => {
    const r = rig();
    pfns(r, 0, pagesOfChunk(3, 0, 256));
    pfns(r, 0, pagesOfChunk(3, 256));
    expect(r.dropped).toEqual([]);
    expect(r.slot.figures().balloonBytes).toBe(CHUNK_SIZE);
  });

  it('counts the pages past the guest\'s memory in the last chunk as given up', () => {
    const r = rig(ALL, undefined, RAM_BYTES - MiB);
    r.ram.writeU8(chunkAddr(3), 1);
    pfns(r, 0, pagesOfChunk(3, 0, 256)); // the guest's half of chunk 3
    expect(r.dropped).toEqual([3]);
    // ...and a page frame past the guest's memory is outside it.
    pfns(r, 0, [pfnOf(chunkAddr(3) + MiB)]);
    expect(needsReset(r)).toBe(true);
  });

  const hostile: [string, (r: Rig) => void, RegExp][] = [
    ['a page frame outside memory', (r) => pfns(r, 0, [pfnOf(chunkAddr(1)), pfnOf(RAM_BASE + RAM_BYTES)]), /outside the guest's memory/],
    ['a page frame below RAM', (r) => pfns(r, 0, [5]), /outside the guest's memory/],
    ['the same page twice in one request', (r) => pfns(r, 0, [pfnOf(chunkAddr(1)), pfnOf(chunkAddr(1) + PAGE_SIZE), pfnOf(chunkAddr(1))]), /appears twice/],
    ['a page inflated twice', (r) => { pfns(r, 0, [pfnOf(chunkAddr(1))]); pfns(r, 0, [pfnOf(chunkAddr(1) + PAGE_SIZE), pfnOf(chunkAddr(1))]); }, /in the balloon already/],
    ['a page deflated that is not in the balloon', (r) => pfns(r, 1, [pfnOf(chunkAddr(2))]), /not in the balloon/],
    ['a request that is not whole 4-byte frame numbers', (r) => r.q[0].send([{ addr: BUF, len: 6 }]), /not a whole number/],
    ['more frames in one request than allowed', (r) => r.q[0].send([{ addr: BUF, len: 4 * 5000 }]), /larger than/],
  ];
  for (const [what, act, msg] of hostile) {
    it(`refuses ${what}: device needs reset, nothing applied, nothing dropped`, () => {
      const r = rig();
      r.ram.writeU8(chunkAddr(1), 1);
      r.ram.writeU8(chunkAddr(2), 1);
      const before = r.slot.figures().balloonBytes;
      act(r);
      expect(needsReset(r)).toBe(true);
      expect(r.d.logs.join('\n')).toMatch(msg);
      expect(r.dropped).toEqual([]);
      // Only requests before the bad one were applied (the "inflated twice" case inflates one page first).
      expect(r.slot.figures().balloonBytes).toBeLessThanOrEqual(before + PAGE_SIZE);
      // Further requests are ignored until the driver resets the device...
      pfns(r, 0, pagesOfChunk(1));
      expect(r.dropped).toEqual([]);
      // ...and a reset empties the balloon: the guest owns every page again.
      r.d.w(REG.Status, 0);
      expect(needsReset(r)).toBe(false);
      expect(r.slot.figures().balloonBytes).toBe(0);
    });
  }

  it('a balloon as large as memory, rings and buffers included, drops every chunk without hurting the host', () => {
    const r = rig();
    r.ram.writeU8(chunkAddr(1), 1);
    // From the top down, so that chunk 0, with the rings and this very request, goes last.
    const all = Array.from({ length: RAM_BYTES / PAGE_SIZE }, (_, i) => pfnOf(RAM_BASE + RAM_BYTES) - 1 - i);
    for (let k = 0; k < all.length; k += 1024) pfns(r, 0, all.slice(k, k + 1024));
    // Chunks 2 and 3 were never touched: nothing to drop there.
    expect(r.dropped.sort()).toEqual([0, 1]);
    expect(r.slot.figures().balloonBytes).toBe(RAM_BYTES);
    // The rings were dropped with chunk 0 and read as zeros: the queue no longer finds its
    // requests, and whatever happens next stays inside the device.
    expect(() => pfns(r, 1, all.slice(0, 10))).not.toThrow();
    expect(r.slot.figures().balloonBytes).toBeLessThanOrEqual(RAM_BYTES);
  });
});

describe('virtio-balloon: free page reporting', () => {
  const report = (r: Rig, blocks: [number, number][]): void => {
    r.q[3].send(blocks.map(([addr, len]) => ({ addr, len, write: true })));
  };

  it('drops the chunks a report covers, returns the buffer, and counts the bytes', () => {
    const r = rig();
    for (const c of [1, 2, 3]) r.ram.writeU8(chunkAddr(c) + 100, 7);
    report(r, [[chunkAddr(1), 2 * CHUNK_SIZE]]);
    expect(r.dropped).toEqual([1, 2]);
    expect(r.q[3].usedIdx()).toBe(1);
    expect(r.q[3].used(0).len).toBe(0);
    expect(r.d.r(REG.InterruptStatus) & INT_USED_BUFFER).toBe(INT_USED_BUFFER);
    expect(r.slot.figures().reportedBytes).toBe(2 * CHUNK_SIZE);
    expect(r.ram.readU8(chunkAddr(1) + 100)).toBe(0);
    expect(r.ram.readU8(chunkAddr(3) + 100)).toBe(7);
  });

  it('a report covering part of a chunk drops nothing, nor do two reports that cover it together (the guest may have reused the first)', () => {
    const r = rig();
    r.ram.writeU8(chunkAddr(2), 1);
    report(r, [[chunkAddr(2), CHUNK_SIZE / 2]]);
    report(r, [[chunkAddr(2) + CHUNK_SIZE / 2, CHUNK_SIZE / 2]]);
    expect(r.dropped).toEqual([]);
    // In one report, in any order, the two halves do.
    report(r, [[chunkAddr(2) + CHUNK_SIZE / 2, CHUNK_SIZE / 2], [chunkAddr(2), CHUNK_SIZE / 2]]);
    expect(r.dropped).toEqual([2]);
  });

  it('a report plus the pages in the balloon make a whole chunk', () => {
    const r = rig();
    r.ram.writeU8(chunkAddr(2), 1);
    pfns(r, 0, pagesOfChunk(2, 0, 100));
    report(r, [[chunkAddr(2) + 100 * PAGE_SIZE, CHUNK_SIZE - 100 * PAGE_SIZE]]);
    expect(r.dropped).toEqual([2]);
    expect(needsReset(r)).toBe(false);
  });

  const hostile: [string, (r: Rig) => void, RegExp][] = [
    ['the same block twice in one report', (r) => report(r, [[chunkAddr(1), CHUNK_SIZE], [chunkAddr(1), CHUNK_SIZE]]), /overlaps another block/],
    ['overlapping blocks', (r) => report(r, [[chunkAddr(1), CHUNK_SIZE], [chunkAddr(2) - PAGE_SIZE, 2 * PAGE_SIZE]]), /overlaps another block/],
    ['a block not made of whole pages', (r) => report(r, [[chunkAddr(1) + 12, PAGE_SIZE]]), /whole 4 KiB pages/],
    ['a block past the end of RAM', (r) => report(r, [[chunkAddr(3), 2 * CHUNK_SIZE]]), /outside RAM/],
    ['a block that holds a page of the balloon', (r) => { pfns(r, 0, [pfnOf(chunkAddr(1) + 5 * PAGE_SIZE)]); report(r, [[chunkAddr(1), CHUNK_SIZE]]); }, /is in the balloon/],
  ];
  it('refuses a block past the guest\'s memory (in the RAM of its last chunk)', () => {
    const r = rig(ALL, undefined, RAM_BYTES - MiB);
    r.ram.writeU8(chunkAddr(3), 1);
    report(r, [[chunkAddr(3), CHUNK_SIZE]]);
    expect(needsReset(r)).toBe(true);
    expect(r.d.logs.join('\n')).toMatch(/outside the guest's memory/);
    expect(r.dropped).toEqual([]);
  });

  for (const [what, act, msg] of hostile) {
    it(`refuses ${what}: device needs reset, no chunk dropped`, () => {
      const r = rig();
      r.ram.writeU8(chunkAddr(1), 1);
      r.ram.writeU8(chunkAddr(2), 1);
      act(r);
      expect(needsReset(r)).toBe(true);
      expect(r.d.logs.join('\n')).toMatch(msg);
      expect(r.dropped).toEqual([]);
      expect(r.ram.readU8(chunkAddr(1))).toBe(1);
    });
  }
});

/** The driver's stats buffer: (tag, value) entries on the stats queue (2). */
function sendStats(r: Rig, entries: [number, number][]): void {
  entries.forEach(([tag, val], i) => {
    r.ram.writeU16(BUF + 10 * i, tag);
    r.ram.writeU64(BUF + 10 * i + 2, val);
  });
  r.q[2].send([{ addr: BUF, len: 10 * entries.length }]);
}

describe('virtio-balloon: statistics', () => {
  it('reads the figures, keeps the buffer, and gives it back when it wants fresh ones', () => {
    const r = rig();
    expect(r.slot.figures().stats.updatedAt).toBeNull();
    sendStats(r, [[4, 300 * MiB], [5, 1024 * MiB], [6, 500 * MiB], [2, 17], [42, 1]]);
    expect(r.slot.figures().stats.values).toEqual({ freeMemory: 300 * MiB, totalMemory: 1024 * MiB, availableMemory: 500 * MiB, majorFaults: 17 });
    expect(r.q[2].usedIdx()).toBe(0);
    expect(r.slot.requestStats()).toBe(true);
    expect(r.q[2].usedIdx()).toBe(1);
    expect(r.d.r(REG.InterruptStatus) & INT_USED_BUFFER).toBe(INT_USED_BUFFER);
    // Nothing held now: nothing to give back.
    expect(r.slot.requestStats()).toBe(false);
    sendStats(r, [[0, 3], [1, 4]]);
    expect(r.slot.figures().stats.values).toEqual({ swapIn: 3, swapOut: 4 });
  });

  it('a driver that sends several buffers gets the older ones back at once', () => {
    const r = rig();
    sendStats(r, [[4, 1]]);
    sendStats(r, [[4, 2]]);
    expect(r.q[2].usedIdx()).toBe(1);
    expect(r.slot.figures().stats.values.freeMemory).toBe(2);
  });
});

describe('virtio-balloon: machine state (vmctl save, snapshots)', () => {
  /** A fresh balloon on the same RAM, given `r`'s saved transport state (through JSON, as the
   *  machine-state file keeps it); the driver and its queues go on talking to it. */
  function restored(r: Rig): VirtioBalloonSlot {
    const saved = JSON.parse(JSON.stringify(r.slot.transport.saveState())) as ReturnType<typeof r.slot.transport.saveState>;
    r.slot.close();
    const slot = new VirtioBalloonSlot({
      settings: { ...ALL, statsIntervalMs: 3_600_000 }, ram: r.ram, guestBytes: RAM_BYTES, base: 0x10008000,
      irq: (l) => { r.d.irq = l; }, log: (m) => r.d.logs.push(m), dropChunks: (cs) => { for (const c of cs) { r.dropped.push(c); r.ram.release(c); } },
    });
    slot.transport.loadState(saved);
    (r.d as { dev: unknown }).dev = slot.transport;
    r.slot = slot;
    return slot;
  }

  it('keeps the target, actual, the pages in the balloon and the held stats buffer: the driver goes on', () => {
    const r = rig();
    r.slot.setTarget(RAM_BYTES - CHUNK_SIZE - 3 * PAGE_SIZE);
    r.ram.writeU8(chunkAddr(1), 1);
    r.ram.writeU8(chunkAddr(2), 1);
    pfns(r, 0, pagesOfChunk(1));                  // chunk 1 wholly: dropped
    pfns(r, 0, pagesOfChunk(2, 10, 13), BUF + 0x1000);
    r.d.dev.write(REG.Config + 4, 4, CHUNK_SIZE / PAGE_SIZE + 3);
    sendStats(r, [[4, 300 * MiB], [6, 500 * MiB]]);
    const before = r.slot.figures();
    expect(before.balloonBytes).toBe(CHUNK_SIZE + 3 * PAGE_SIZE);

    const slot = restored(r);
    const after = slot.figures();
    expect({ ...after, stats: after.stats.values }).toEqual({ ...before, stats: before.stats.values });
    expect(r.ram.isAllocated(1)).toBe(false);
    // The driver deflates pages it put in before the save: the device knows them.
    pfns(r, 1, pagesOfChunk(2, 10, 12), BUF + 0x2000);
    expect(needsReset(r)).toBe(false);
    expect(slot.figures().balloonBytes).toBe(CHUNK_SIZE + PAGE_SIZE);
    // ... and inflating one already in is still refused.
    pfns(r, 0, pagesOfChunk(2, 12, 13), BUF + 0x3000);
    expect(needsReset(r)).toBe(true);
  });

  it('gives the stats buffer it held before the save back when it wants fresh figures', () => {
    const r = rig();
    sendStats(r, [[4, 1]]);
    expect(r.q[2].usedIdx()).toBe(0);
    const slot = restored(r);
    expect(slot.requestStats()).toBe(true);
    expect(r.q[2].usedIdx()).toBe(1);
  });

  it('refuses a saved balloon that does not fit (pages outside the guest, overlapping, a bad target)', () => {
    const r = rig();
    const good = r.slot.balloon.saveState();
    const pages = RAM_BYTES / PAGE_SIZE;
    for (const bad of [
      { ...good, inflated: [pages - 1, 2] },
      { ...good, inflated: [4, 4, 6, 1] },
      { ...good, inflated: [1] },
      { ...good, numPages: pages + 1 },
      { ...good, statsHead: BALLOON_QUEUE_SIZE },
      null,
    ]) {
      const fresh = rig();
      expect(() => fresh.slot.balloon.loadState(bad)).toThrow(RangeError);
    }
  });
});
