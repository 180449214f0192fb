// Guest RAM, made of fixed-size chunks, each the shared buffer of its own WebAssembly.Memory.
//
// Why chunks: untouched memory costs nothing (a chunk is allocated on first touch), harts on
// other threads can share the same buffers, and a balloon can give a chunk back (Node cannot
// return pages of a live ArrayBuffer to the OS, but it can drop a whole buffer).
// Why WebAssembly.Memory rather than `new SharedArrayBuffer`: V8 maps a wasm memory with mmap
// and unmaps it when it is collected, so the OS commits only the pages the guest writes and a
// dropped chunk really leaves the process. A SharedArrayBuffer comes from calloc: once glibc has
// seen a 2 MiB block freed it serves the next ones from its heap, where calloc touches every page
// and free keeps them (measured: 256 chunks with one byte written each cost 2 MiB apiece after
// one round of release, and nothing fell when they were dropped again).
// Why 2 MiB: each wasm memory reserves 10 GiB of address space for V8's guard regions, so a
// process holds about 13,000 of them (128 TiB); 2 MiB chunks let 16 GiB of guest RAM be 8192.
// Linux reports free memory in blocks of 4 MiB on our guest (page_reporting_order = MAX_ORDER-1),
// two whole chunks.
// The soft TLB maps a guest page straight to (chunk, offset), so the hart never goes through
// this class on its fast path; loaders, DMA (virtio) and slow paths do.

export const CHUNK_SHIFT = 21;               // 2 MiB per chunk
export const CHUNK_SIZE = 1 << CHUNK_SHIFT;
export const CHUNK_MASK = CHUNK_SIZE - 1;
export const MAX_RAM_BYTES = 16 * 1024 * 1024 * 1024;
const WASM_PAGE = 65536;

/** A new zeroed chunk (see above for why a wasm memory). */
function newChunkBuffer(): SharedArrayBuffer {
  const pages = CHUNK_SIZE / WASM_PAGE;
  return new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true }).buffer as unknown as SharedArrayBuffer;
}

/** Host memory for chunks comes from a budget the daemon shares between VMs (src/vm). `acquire`
 *  is called before a chunk is allocated and may block until the host has room; `release` when
 *  one is dropped. Without a budget (tests, validate) chunks are simply allocated. */
export interface ChunkBudget {
  acquire(): void;
  release(): void;
}

export class GuestRam {
  /** Lazily allocated chunk byte views; `undefined` until first touched. */
  readonly chunks: (Uint8Array | undefined)[];
  readonly chunkCount: number;
  /** Cached DataViews over the chunks (the hart's soft TLB points at these). */
  private readonly views: (DataView | undefined)[];
  private readonly views16: (Uint16Array | undefined)[];

  /** Chunks allocated so far and dropped so far (figures for `vmctl info`). */
  chunksAllocated = 0;
  chunksReleased = 0;
  budget: ChunkBudget | null = null;

  constructor(readonly base: number, readonly size: number, buffers?: (SharedArrayBuffer | undefined)[]) {
    if (!Number.isInteger(size) || size <= 0 || size % CHUNK_SIZE !== 0 || size > MAX_RAM_BYTES) {
      throw new RangeError(`guest RAM size ${size} must be a positive multiple of ${CHUNK_SIZE} bytes, at most 16 GiB`);
    }
    this.chunkCount = size / CHUNK_SIZE;
    this.chunks = new Array(this.chunkCount).fill(undefined);
    this.views = new Array(this.chunkCount).fill(undefined);
    this.views16 = new Array(this.chunkCount).fill(undefined);
    if (buffers) buffers.forEach((b, i) => { if (b) this.chunks[i] = new Uint8Array(b); });
  }

  /** True when [paddr, paddr+len) lies entirely inside RAM. */
  contains(paddr: number, len = 1): boolean {
    return paddr >= this.base && paddr + len <= this.base + this.size;
  }

  /** The chunk holding RAM offset `index << CHUNK_SHIFT`, allocated (zeroed) on first use. */
  chunk(index: number): Uint8Array {
    let c = this.chunks[index];
    if (c === undefined) {
      this.budget?.acquire();
      c = new Uint8Array(newChunkBuffer());
      this.chunks[index] = c;
      this.chunksAllocated++;
    }
    return c;
  }

  /** A DataView over chunk `index` (allocated on first use). Harts cache these in their soft TLB,
   *  so after `release()` every hart must `flushTlb()`. */
  dataView(index: number): DataView {
    let v = this.views[index];
    if (v === undefined) {
      const c = this.chunk(index);
      v = new DataView(c.buffer, c.byteOffset, c.byteLength);
      this.views[index] = v;
    }
    return v;
  }

  /** A Uint16Array over chunk `index` (the hart fetches instruction parcels through it). */
  u16View(index: number): Uint16Array {
    let v = this.views16[index];
    if (v === undefined) {
      const c = this.chunk(index);
      v = new Uint16Array(c.buffer, c.byteOffset, c.byteLength >>> 1);
      this.views16[index] = v;
    }
    return v;
  }

  /** The shared buffers, for handing RAM to another thread (undefined = never touched). */
  buffers(): (SharedArrayBuffer | undefined)[] {
    return this.chunks.map((c) => c?.buffer as SharedArrayBuffer | undefined);
  }

  /** True when chunk `index` holds host memory now. */
  isAllocated(index: number): boolean {
    return this.chunks[index] !== undefined;
  }

  /** Drops a chunk (balloon); it reads as zeros and is allocated again when touched. Whoever
   *  cached views of it (harts' soft TLBs) must drop them too, or the memory stays alive: see
   *  VirtMachine.releaseChunk. */
  release(index: number): void {
    if (this.chunks[index] === undefined) return;
    this.chunksReleased++;
    this.budget?.release();
    this.chunks[index] = undefined;
    this.views[index] = undefined;
    this.views16[index] = undefined;
  }

  /** Host bytes actually allocated for guest RAM. */
  allocatedBytes(): number {
    let n = 0;
    for (const c of this.chunks) if (c !== undefined) n += CHUNK_SIZE;
    return n;
  }

  /** Copies guest physical memory into `dst`. Throws RangeError outside RAM. */
  read(paddr: number, dst: Uint8Array): void {
    this.check(paddr, dst.length);
    let off = paddr - this.base;
    let done = 0;
    while (done < dst.length) {
      const idx = Math.floor(off / CHUNK_SIZE);
      const inChunk = off % CHUNK_SIZE;
      const n = Math.min(CHUNK_SIZE - inChunk, dst.length - done);
      const c = this.chunks[idx];
      if (c === undefined) dst.fill(0, done, done + n);
      else dst.set(c.subarray(inChunk, inChunk + n), done);
      done += n;
      off += n;
    }
  }

  /** Copies `src` into guest physical memory. Throws RangeError outside RAM. */
  write(paddr: number, src: Uint8Array): void {
    this.check(paddr, src.length);
    let off = paddr - this.base;
    let done = 0;
    while (done < src.length) {
      const idx = Math.floor(off / CHUNK_SIZE);
      const inChunk = off % CHUNK_SIZE;
      const n = Math.min(CHUNK_SIZE - inChunk, src.length - done);
      this.chunk(idx).set(src.subarray(done, done + n), inChunk);
      done += n;
      off += n;
    }
  }

  /** Fills guest physical memory with zeros. */
  zero(paddr: number, len: number): void {
    this.check(paddr, len);
    let off = paddr - this.base;
    let left = len;
    while (left > 0) {
      const idx = Math.floor(off / CHUNK_SIZE);
      const inChunk = off % CHUNK_SIZE;
      const n = Math.min(CHUNK_SIZE - inChunk, left);
      const c = this.chunks[idx];
      if (c !== undefined) c.fill(0, inChunk, inChunk + n);
      left -= n;
      off += n;
    }
  }

  // Little-endian scalar accessors for device models (virtqueues, SBI, loaders). Not for the hart's hot path.
  readU8(paddr: number): number { this.check(paddr, 1); const o = paddr - this.base; const c = this.chunks[Math.floor(o / CHUNK_SIZE)]; return c === undefined ? 0 : c[o % CHUNK_SIZE]; }
  readU16(paddr: number): number { return this.readU8(paddr) | (this.readU8(paddr + 1) << 8); }
  readU32(paddr: number): number { return (this.readU16(paddr) | (this.readU16(paddr + 2) << 16)) >>> 0; }
  /** 64-bit read as a JS number; exact up to 2^53 (guest physical addresses and lengths). */
  readU64(paddr: number): number { return this.readU32(paddr) + this.readU32(paddr + 4) * 0x1_0000_0000; }
  writeU8(paddr: number, v: number): void { this.check(paddr, 1); const o = paddr - this.base; this.chunk(Math.floor(o / CHUNK_SIZE))[o % CHUNK_SIZE] = v; }
  writeU16(paddr: number, v: number): void { this.writeU8(paddr, v & 0xff); this.writeU8(paddr + 1, (v >>> 8) & 0xff); }
  writeU32(paddr: number, v: number): void { this.writeU16(paddr, v & 0xffff); this.writeU16(paddr + 2, (v >>> 16) & 0xffff); }
  writeU64(paddr: number, v: number): void { this.writeU32(paddr, v % 0x1_0000_0000 >>> 0); this.writeU32(paddr + 4, Math.floor(v / 0x1_0000_0000) >>> 0); }

  private check(paddr: number, len: number): void {
    if (!this.contains(paddr, len)) {
      throw new RangeError(`guest physical range 0x${paddr.toString(16)}+${len} is outside RAM 0x${this.base.toString(16)}..0x${(this.base + this.size).toString(16)}`);
    }
  }
}
