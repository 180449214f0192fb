// virtio-balloon (virtio 1.2 section 5.5), as QEMU 7.2's virtio-balloon-device offers it, so that
// Linux's stock virtio_balloon driver binds and behaves as it does on QEMU.
//
// Queues (5.5.2), numbered as Linux and QEMU number them: only queues that exist count.
//   0 inflateq  device-readable arrays of le32 page frame numbers (4 KiB pages, 5.5.6) the
//               driver gives up
//   1 deflateq  the same, for pages it takes back
//   2 statsq    with VIRTIO_BALLOON_F_STATS_VQ: one buffer of {le16 tag, le64 val} entries
//               (10 bytes each, packed; 5.5.6.3); the device keeps it and returns it when it
//               wants fresh figures, and the driver sends it again, refilled
//   3 reporting_vq  with VIRTIO_BALLOON_F_PAGE_REPORTING: device-writable buffers, each one a
//               block of free guest memory (5.5.6.7); with STATS_VQ not negotiated it is queue 2
// Configuration (5.5.4): le32 num_pages (the device's target, pages in the balloon), le32 actual
// (written by the driver). Without FREE_PAGE_HINT and PAGE_POISON QEMU exposes these 8 bytes only.
// Features offered: STATS_VQ (1), DEFLATE_ON_OOM (2) and PAGE_REPORTING (5) as configured; not
// MUST_TELL_HOST (0), FREE_PAGE_HINT (3) or PAGE_POISON (4).
//
// Pages given up go to PageReclaim (src/memory/reclaim.ts), which drops a RAM chunk once all of
// it is given up, before the buffer is returned to the driver. Everything a driver sends is
// checked before anything is done with it: a page frame outside the guest's memory, a page
// inflated twice or deflated without having been inflated, a reported block that is not whole
// pages, lies outside memory, overlaps another block of the same report or the balloon: the
// request is refused as a whole and the device needs a reset (2.1.2), with a line in the VM's
// log. Nothing of a refused request is applied, so no chunk the guest still uses is dropped.

import { PAGE_SIZE, type PageReclaim } from '../../memory/reclaim.js';
import { feature, type VirtioDeviceModel } from './mmio.js';
import { VirtqueueError, type SplitVirtqueue } from './queue.js';

export const VIRTIO_ID_BALLOON = 5;

// Feature bits (5.5.3).
export const VIRTIO_BALLOON_F_MUST_TELL_HOST = 0;
export const VIRTIO_BALLOON_F_STATS_VQ = 1;
export const VIRTIO_BALLOON_F_DEFLATE_ON_OOM = 2;
export const VIRTIO_BALLOON_F_FREE_PAGE_HINT = 3;
export const VIRTIO_BALLOON_F_PAGE_POISON = 4;
export const VIRTIO_BALLOON_F_PAGE_REPORTING = 5;

/** QEMU's queue size for every balloon queue. */
export const BALLOON_QUEUE_SIZE = 128;
export const BALLOON_CONFIG_SIZE = 8;
/** Most page frames one inflate/deflate request may carry (Linux sends at most 256). */
export const BALLOON_MAX_PFNS_PER_REQUEST = 4096;

/** Statistics tags (5.5.6.3; QEMU's docs/interop/virtio-balloon-stats.rst), as `vmctl` shows them. */
export const BALLOON_STATS = [
  'swapIn', 'swapOut', 'majorFaults', 'minorFaults', 'freeMemory', 'totalMemory', 'availableMemory',
  'diskCaches', 'hugetlbAllocations', 'hugetlbFailures',
] as const;
export type BalloonStatName = (typeof BALLOON_STATS)[number];
/** One statistic: le16 tag, le64 value, packed (5.5.6.3). Swap in/out count pages, faults
 *  events, the memory figures bytes. */
const STAT_ENTRY_BYTES = 10;

export type BalloonQueueRole = 'inflate' | 'deflate' | 'stats' | 'report';

export interface VirtioBalloonOptions {
  readonly reclaim: PageReclaim;
  readonly statsVq: boolean;
  readonly deflateOnOom: boolean;
  readonly freePageReporting: boolean;
  /** The driver made stats buffers available on queue `index`: the slot takes them with
   *  takeStats through VirtioMmioDevice.fillQueue. */
  readonly onStatsAvailable: (index: number) => void;
}

export interface BalloonStats {
  /** Last values the guest sent, by name (missing: the guest does not report it). */
  readonly values: Partial<Record<BalloonStatName, number>>;
  /** performance.now() of the last update, or null before the first. */
  readonly updatedAt: number | null;
}

/** What a machine-state file keeps of a balloon besides its transport (JSON). */
export interface BalloonState {
  /** num_pages (the target) and actual, as in configuration space. */
  readonly numPages: number;
  readonly actual: number;
  /** The pages in the balloon: [first page, page count] pairs (page 0 at the RAM base). */
  readonly inflated: readonly number[];
  /** The stats buffer the device holds (its descriptor head), or -1. */
  readonly statsHead: number;
  readonly stats: Partial<Record<BalloonStatName, number>>;
  readonly chunksDropped: number;
  readonly reportedBytes: number;
}

export class VirtioBalloon implements VirtioDeviceModel {
  readonly deviceId = VIRTIO_ID_BALLOON;
  readonly queueMaxSizes: readonly number[];
  private readonly config = new Uint8Array(BALLOON_CONFIG_SIZE);
  private readonly configView = new DataView(this.config.buffer);
  private roles: BalloonQueueRole[] = ['inflate', 'deflate'];
  private readonly pfnBytes = new Uint8Array(4 * BALLOON_MAX_PFNS_PER_REQUEST);
  private readonly pfnView = new DataView(this.pfnBytes.buffer);
  private readonly pages = new Uint32Array(BALLOON_MAX_PFNS_PER_REQUEST);
  /** Pages seen in the current request (duplicate check), cleared after it. */
  private readonly seen = new Set<number>();
  private stats: Partial<Record<BalloonStatName, number>> = {};
  private statsUpdatedAt: number | null = null;
  private readonly statEntry = new Uint8Array(STAT_ENTRY_BYTES);
  private readonly statView = new DataView(this.statEntry.buffer);
  /** The stats buffer the device holds (its head), or -1. */
  private statsHead = -1;

  constructor(private readonly opts: VirtioBalloonOptions) {
    this.queueMaxSizes = new Array(2 + (opts.statsVq ? 1 : 0) + (opts.freePageReporting ? 1 : 0)).fill(BALLOON_QUEUE_SIZE);
  }

  deviceFeatures(): bigint {
    let f = 0n;
    if (this.opts.statsVq) f |= feature(VIRTIO_BALLOON_F_STATS_VQ);
    if (this.opts.deflateOnOom) f |= feature(VIRTIO_BALLOON_F_DEFLATE_ON_OOM);
    if (this.opts.freePageReporting) f |= feature(VIRTIO_BALLOON_F_PAGE_REPORTING);
    return f;
  }

  featuresAccepted(features: bigint): void {
    const roles: BalloonQueueRole[] = ['inflate', 'deflate'];
    if ((features & feature(VIRTIO_BALLOON_F_STATS_VQ)) !== 0n) roles.push('stats');
    if ((features & feature(VIRTIO_BALLOON_F_PAGE_REPORTING)) !== 0n) roles.push('report');
    this.roles = roles;
  }

  /** What queue `index` is for, with the features negotiated now (undefined: no such queue). */
  roleOf(index: number): BalloonQueueRole | undefined {
    return this.roles[index];
  }

  /** The queue index of `role`, or -1 when the driver did not negotiate it. */
  queueOf(role: BalloonQueueRole): number {
    return this.roles.indexOf(role);
  }

  // ---- configuration space ----

  /** The device's target: pages the guest should have in the balloon. */
  get targetPages(): number { return this.configView.getUint32(0, true); }
  /** What the driver says the balloon holds (its own count, written to `actual`). */
  get actualPages(): number { return this.configView.getUint32(4, true); }

  /** Sets num_pages; the caller raises the configuration change interrupt. */
  setTargetPages(pages: number): void {
    if (!Number.isInteger(pages) || pages < 0 || pages > this.opts.reclaim.guestPages) {
      throw new RangeError(`balloon target of ${pages} pages is not in 0..${this.opts.reclaim.guestPages} (the guest's memory)`);
    }
    this.configView.setUint32(0, pages, true);
  }

  configRead(offset: number, size: 1 | 2 | 4): number {
    if (offset < 0 || offset + size > this.config.length) return 0;
    const c = this.configView;
    return size === 1 ? c.getUint8(offset) : size === 2 ? c.getUint16(offset, true) : c.getUint32(offset, true);
  }

  /** Only `actual` (bytes 4..7) is the driver's to write (5.5.4). */
  configWrite(offset: number, size: 1 | 2 | 4, value: number): void {
    if (offset < 4 || offset + size > this.config.length) return;
    const c = this.configView;
    if (size === 1) c.setUint8(offset, value);
    else if (size === 2) c.setUint16(offset, value, true);
    else c.setUint32(offset, value >>> 0, true);
  }

  reset(): void {
    // The driver is gone (or starts over): every page is the guest's again; `actual` restarts at
    // 0 with it. The target stays: a driver that binds again is asked for the same balloon.
    this.configView.setUint32(4, 0, true);
    this.roles = ['inflate', 'deflate'];
    this.statsHead = -1;
    this.opts.reclaim.reset();
  }

  // ---- machine state ----

  saveState(): BalloonState {
    const r = this.opts.reclaim;
    return {
      numPages: this.targetPages, actual: this.actualPages, inflated: r.inflatedRanges(),
      statsHead: this.statsHead, stats: { ...this.stats }, chunksDropped: r.chunksDropped, reportedBytes: r.reportedBytes,
    };
  }

  /** After the transport's state (which gave the negotiated features, hence the queues' roles). */
  loadState(saved: unknown): void {
    const s = saved as Partial<BalloonState> | null;
    const count = (v: unknown, max: number): boolean => Number.isInteger(v) && (v as number) >= 0 && (v as number) <= max;
    const r = this.opts.reclaim;
    if (typeof s !== 'object' || s === null || !count(s.numPages, r.guestPages) || !count(s.actual, 0xffff_ffff)
      || !Array.isArray(s.inflated) || !Number.isInteger(s.statsHead) || s.statsHead! < -1 || s.statsHead! >= BALLOON_QUEUE_SIZE
      || (s.statsHead! >= 0 && this.queueOf('stats') < 0)) {
      throw new RangeError('virtio-balloon: the saved state does not fit this balloon');
    }
    r.restoreInflated(s.inflated);
    this.configView.setUint32(0, s.numPages!, true);
    this.configView.setUint32(4, s.actual!, true);
    this.statsHead = s.statsHead!;
    this.stats = {};
    for (const k of BALLOON_STATS) {
      const v = (s.stats as Record<string, unknown> | undefined)?.[k];
      if (typeof v === 'number' && Number.isFinite(v)) this.stats[k] = v;
    }
    // The figures are the guest's from before the save; their age is not known in this thread.
    this.statsUpdatedAt = null;
    r.chunksDropped = count(s.chunksDropped, Number.MAX_SAFE_INTEGER) ? s.chunksDropped! : 0;
    r.reportedBytes = count(s.reportedBytes, Number.MAX_SAFE_INTEGER) ? s.reportedBytes! : 0;
  }

  // ---- requests ----

  handleChain(queueIndex: number, q: SplitVirtqueue): number {
    switch (this.roles[queueIndex]) {
      case 'inflate': this.inflateOrDeflate(q, true); return 0;
      case 'deflate': this.inflateOrDeflate(q, false); return 0;
      case 'report': this.report(q); return 0;
      // The stats queue never comes here: queueNotified leaves it to takeStats.
      default: throw new VirtqueueError(`queue ${queueIndex} is not used with the features negotiated`);
    }
  }

  /** The stats queue is not answered at once: the device reads the figures and keeps the buffer
   *  (the transport leaves the chain to takeStats). */
  queueNotified(queueIndex: number): boolean {
    if (this.roles[queueIndex] !== 'stats') return false;
    this.opts.onStatsAvailable(queueIndex);
    return true;
  }

  /** Takes the stats buffers the driver made available (the newest is kept, older ones are
   *  returned at once). */
  takeStats(q: SplitVirtqueue): void {
    for (let head = q.pop(); head >= 0; head = q.pop()) {
      this.readStats(q);
      if (this.statsHead >= 0) q.push(this.statsHead, 0);
      this.statsHead = head;
    }
    q.publishAvailEvent();
  }

  /** Gives the held stats buffer back to the driver, which answers with fresh figures
   *  (5.5.6.3: the device requests an update by using the buffer). False when none is held. */
  requestStats(q: SplitVirtqueue): boolean {
    if (this.statsHead < 0) return false;
    q.push(this.statsHead, 0);
    this.statsHead = -1;
    return true;
  }

  figures(): BalloonStats {
    return { values: { ...this.stats }, updatedAt: this.statsUpdatedAt };
  }

  private readStats(q: SplitVirtqueue): void {
    const n = Math.floor(q.readableBytes / STAT_ENTRY_BYTES);
    const values: Partial<Record<BalloonStatName, number>> = {};
    for (let i = 0; i < n; i++) {
      q.readBytes(i * STAT_ENTRY_BYTES, this.statEntry);
      const tag = this.statView.getUint16(0, true);
      const name = BALLOON_STATS[tag];
      // Unknown tags are skipped, as the spec asks of a device (5.5.6.3.1).
      if (name !== undefined) values[name] = this.statView.getUint32(2, true) + this.statView.getUint32(6, true) * 0x1_0000_0000;
    }
    this.stats = values;
    this.statsUpdatedAt = performance.now();
  }

  /** An inflate or deflate request: an array of le32 page frame numbers. */
  private inflateOrDeflate(q: SplitVirtqueue, inflate: boolean): void {
    const what = inflate ? 'inflate' : 'deflate';
    const bytes = q.readableBytes;
    if (bytes % 4 !== 0) throw new VirtqueueError(`${what} request of ${bytes} bytes is not a whole number of 4-byte page frame numbers`);
    const n = bytes / 4;
    if (n > BALLOON_MAX_PFNS_PER_REQUEST) throw new VirtqueueError(`${what} request of ${n} page frames is larger than ${BALLOON_MAX_PFNS_PER_REQUEST}`);
    if (n === 0) return;
    const reclaim = this.opts.reclaim;
    q.readBytes(0, this.pfnBytes.subarray(0, bytes));
    const seen = this.seen;
    try {
      for (let i = 0; i < n; i++) {
        const pfn = this.pfnView.getUint32(4 * i, true);
        const page = reclaim.pageIndex(pfn);
        if (page < 0) throw new VirtqueueError(`${what}: page frame 0x${pfn.toString(16)} (address 0x${(pfn * PAGE_SIZE).toString(16)}) is outside the guest's memory`);
        if (seen.has(page)) throw new VirtqueueError(`${what}: page frame 0x${pfn.toString(16)} appears twice in one request`);
        if (reclaim.isInflated(page) === inflate) {
          throw new VirtqueueError(inflate
            ? `inflate: page frame 0x${pfn.toString(16)} is in the balloon already`
            : `deflate: page frame 0x${pfn.toString(16)} is not in the balloon`);
        }
        seen.add(page);
        this.pages[i] = page;
      }
    } finally {
      seen.clear();
    }
    if (inflate) reclaim.inflate(this.pages, n);
    else reclaim.deflate(this.pages, n);
  }

  /** A free page report: each device-writable segment is one block of free memory (QEMU reads
   *  only those; readable segments are ignored as there). */
  private report(q: SplitVirtqueue): void {
    const reclaim = this.opts.reclaim;
    const ranges: number[] = [];
    for (let s = q.firstWritable; s < q.segCount; s++) {
      const addr = q.segAddr[s];
      const len = q.segLen[s];
      if (len === 0) continue;
      if (addr % PAGE_SIZE !== 0 || len % PAGE_SIZE !== 0) {
        throw new VirtqueueError(`report: block 0x${addr.toString(16)}+0x${len.toString(16)} is not made of whole 4 KiB pages`);
      }
      const first = reclaim.pageIndex(addr / PAGE_SIZE);
      const count = len / PAGE_SIZE;
      if (first < 0 || first + count > reclaim.guestPages) throw new VirtqueueError(`report: block 0x${addr.toString(16)}+0x${len.toString(16)} is outside the guest's memory`);
      ranges.push(first, count);
    }
    // Blocks may come in any order: sort them to find overlaps between them.
    const order = Array.from({ length: ranges.length / 2 }, (_, k) => k).sort((a, b) => ranges[2 * a] - ranges[2 * b]);
    let end = -1;
    const sorted: number[] = [];
    for (const k of order) {
      const first = ranges[2 * k];
      const count = ranges[2 * k + 1];
      if (first < end) throw new VirtqueueError(`report: block at 0x${(reclaim.ram.base + first * PAGE_SIZE).toString(16)} overlaps another block of the same report`);
      for (let p = first; p < first + count; p++) {
        if (reclaim.isInflated(p)) throw new VirtqueueError(`report: page at 0x${(reclaim.ram.base + p * PAGE_SIZE).toString(16)} is reported free but is in the balloon`);
      }
      end = first + count;
      sorted.push(first, count);
    }
    reclaim.reportFree(sorted, sorted.length / 2);
  }
}
