// Guest pages given back to the host, and the RAM chunks that can be dropped because of them.
//
// The guest gives pages up in two ways (virtio-balloon, src/devices/virtio/balloon.ts):
//   inflated  pages in the balloon: the guest does not touch them until it deflates them, so
//             they are tracked here, one byte per 4 KiB page, until then;
//   reported  free pages (free page reporting): free only while the report is being served;
//             once it is returned the guest may allocate them again at any time, and a store to
//             a page of a chunk that is still there leaves no trace here. So a report is never
//             remembered: a chunk is dropped only when, at the moment of one report, every page
//             of it is either in that report or in the balloon.
// A chunk whose every page is given up is dropped (src/memory/ram.ts: the host memory goes back
// to the OS); the guest gets zeros when it touches it again, as the virtio spec allows (5.5.6.1:
// a deflated page's content is undefined; reported pages may read as zero, 5.5.6.7).
// Which chunks exist is the RAM's business; this only says "these pages are all given up".

import { CHUNK_SHIFT, CHUNK_SIZE, type GuestRam } from './ram.js';

export const PAGE_SHIFT = 12;
export const PAGE_SIZE = 1 << PAGE_SHIFT;
const PAGES_PER_CHUNK = CHUNK_SIZE >> PAGE_SHIFT;

export class PageReclaim {
  /** 1 for each page (index from the RAM base) in the balloon; allocated at the first inflate. */
  private inflated: Uint8Array | null = null;
  private inflatedPerChunk: Uint16Array | null = null;
  /** Pages in the balloon now. */
  inflatedPages = 0;
  /** Chunks dropped because of given-up pages, and bytes reported free, since the machine started. */
  chunksDropped = 0;
  reportedBytes = 0;

  /**
   * @param guestPages pages the guest was told about (RAM may be larger: its last chunk is whole;
   *        pages past the guest's memory count as given up from the start)
   * @param drop drops chunks everywhere they are cached (VirtMachine.releaseChunks); called once
   *        per inflate or report with all the chunks it gave up (one round trip to hart threads)
   */
  constructor(readonly ram: GuestRam, readonly guestPages: number, private readonly drop: (chunks: readonly number[]) => void) {
    if (guestPages * PAGE_SIZE > ram.size) throw new RangeError(`${guestPages} pages do not fit a RAM of ${ram.size} bytes`);
  }

  /** The page index (0 = the page at the RAM base) of a guest frame number, or -1 outside the
   *  guest's memory. */
  pageIndex(pfn: number): number {
    const i = pfn - this.ram.base / PAGE_SIZE;
    return Number.isInteger(i) && i >= 0 && i < this.guestPages ? i : -1;
  }

  isInflated(page: number): boolean {
    return this.inflated !== null && this.inflated[page] === 1;
  }

  /** Puts pages (indices, each valid and not yet inflated: the caller checks) into the balloon
   *  and drops every chunk that is now wholly given up. Returns the chunks dropped. */
  inflate(pages: ArrayLike<number>, count: number): number {
    if (this.inflated === null) {
      this.inflated = new Uint8Array(this.guestPages);
      this.inflatedPerChunk = new Uint16Array(this.ram.chunkCount);
    }
    const perChunk = this.inflatedPerChunk!;
    const drop: number[] = [];
    for (let k = 0; k < count; k++) {
      const p = pages[k];
      this.inflated[p] = 1;
      const c = p >>> (CHUNK_SHIFT - PAGE_SHIFT);
      perChunk[c]++;
      if (perChunk[c] + this.pagesPastGuest(c) === PAGES_PER_CHUNK && this.ram.isAllocated(c)) drop.push(c);
    }
    this.inflatedPages += count;
    return this.dropChunks(drop);
  }

  /** Takes pages (each inflated: the caller checks) out of the balloon. */
  deflate(pages: ArrayLike<number>, count: number): void {
    const perChunk = this.inflatedPerChunk!;
    for (let k = 0; k < count; k++) {
      const p = pages[k];
      this.inflated![p] = 0;
      perChunk[p >>> (CHUNK_SHIFT - PAGE_SHIFT)]--;
    }
    this.inflatedPages -= count;
  }

  /**
   * The pages of `ranges` ([first page, page count] pairs: inside the guest's memory, not
   * overlapping each other or the balloon; the caller checks) are free now, while a report is
   * served. Drops every chunk made only of them and of inflated pages. Returns the chunks dropped.
   */
  reportFree(ranges: ArrayLike<number>, rangeCount: number): number {
    const inChunk = new Map<number, number>();
    for (let k = 0; k < rangeCount; k++) {
      let p = ranges[2 * k];
      const end = p + ranges[2 * k + 1];
      this.reportedBytes += (end - p) * PAGE_SIZE;
      while (p < end) {
        const c = p >>> (CHUNK_SHIFT - PAGE_SHIFT);
        const n = Math.min(end, (c + 1) * PAGES_PER_CHUNK) - p;
        inChunk.set(c, (inChunk.get(c) ?? 0) + n);
        p += n;
      }
    }
    const drop: number[] = [];
    for (const [c, n] of inChunk) {
      const held = this.inflatedPerChunk === null ? 0 : this.inflatedPerChunk[c];
      if (n + held + this.pagesPastGuest(c) === PAGES_PER_CHUNK && this.ram.isAllocated(c)) drop.push(c);
    }
    return this.dropChunks(drop);
  }

  /** The pages in the balloon, as [first page, page count] pairs in ascending order. */
  inflatedRanges(): number[] {
    const out: number[] = [];
    const b = this.inflated;
    if (b === null) return out;
    for (let p = 0; p < b.length; p++) {
      if (b[p] === 0) continue;
      const first = p;
      while (p < b.length && b[p] === 1) p++;
      out.push(first, p - first);
    }
    return out;
  }

  /** A saved balloon's pages back in (a machine being restored: its RAM is loaded already and
   *  every chunk wholly given up was left out of it, so nothing is dropped here). Throws a
   *  RangeError for ranges outside the guest's memory or overlapping. */
  restoreInflated(ranges: readonly number[]): void {
    this.reset();
    if (ranges.length === 0) return;
    if (ranges.length % 2 !== 0) throw new RangeError('the balloon\'s saved pages are not [first, count] pairs');
    this.inflated = new Uint8Array(this.guestPages);
    this.inflatedPerChunk = new Uint16Array(this.ram.chunkCount);
    let end = 0;
    for (let k = 0; k < ranges.length; k += 2) {
      const first = ranges[k];
      const count = ranges[k + 1];
      if (!Number.isInteger(first) || !Number.isInteger(count) || first < end || count < 1 || first + count > this.guestPages) {
        throw new RangeError(`the balloon's saved pages ${first}+${count} are not inside the guest's ${this.guestPages} pages in ascending order`);
      }
      for (let p = first; p < first + count; p++) {
        this.inflated[p] = 1;
        this.inflatedPerChunk[p >>> (CHUNK_SHIFT - PAGE_SHIFT)]++;
      }
      this.inflatedPages += count;
      end = first + count;
    }
  }

  /** Device reset: the balloon is empty again (the guest owns every page); dropped chunks stay
   *  dropped until touched. */
  reset(): void {
    this.inflated = null;
    this.inflatedPerChunk = null;
    this.inflatedPages = 0;
  }

  private pagesPastGuest(chunk: number): number {
    const end = (chunk + 1) * PAGES_PER_CHUNK;
    return end > this.guestPages ? Math.min(PAGES_PER_CHUNK, end - this.guestPages) : 0;
  }

  private dropChunks(chunks: readonly number[]): number {
    if (chunks.length !== 0) this.drop(chunks);
    this.chunksDropped += chunks.length;
    return chunks.length;
  }
}
