// Guest RAM, made of fixed-size chunks, each its own shared WebAssembly.Memory (docs/guest-ram.md).
//
// Why chunks: untouched memory costs nothing (a chunk is created on first touch, and the OS only
// commits the pages the guest writes), harts on other threads share the same memories, and a
// balloon can give a chunk back (Node cannot return pages of a live buffer to the OS, but it can
// drop a whole one). Why WebAssembly.Memory rather than a SharedArrayBuffer: V8 maps a wasm
// memory with mmap and unmaps it when it is collected, so the host's RSS really falls and an
// untouched chunk stays free; a SharedArrayBuffer comes from malloc, which after some churn
// hands out heap memory it zeroes by touching every page (measured: docs/guest-ram.md). And wasm
// code can import the memory (the 64-bit atomics of atomics64.ts do).
//
// Every chunk has typed-array views of each width: the integer views are what the ECMAScript
// memory model makes tear-free for aligned accesses from several threads; doublewords go through
// the Float64Array view, one 64-bit machine access, except NaN bit patterns, which only the wasm
// helper keeps exactly (ChunkViews.load64; see the note for why and how it is checked).
// The soft TLB maps a guest page straight to (chunk views, offset), so the hart never goes
// through this class on its fast path; loaders, DMA (virtio) and slow paths do.

import { atomics64, type Atomics64 } from './atomics64.js';

export const CHUNK_SHIFT = 21;               // 2 MiB per chunk
export const CHUNK_SIZE = 1 << CHUNK_SHIFT;
export const CHUNK_MASK = CHUNK_SIZE - 1;
export const MAX_RAM_BYTES = 16 * 1024 * 1024 * 1024;
const WASM_PAGE = 65536;

/** A doubleword as two int32 halves: the Float64Array views read and write guest doublewords in
 *  one 64-bit access (single-copy atomic, docs/guest-ram.md), the wasm helper those whose bits are
 *  a NaN (ChunkViews.load64); this scratch splits and joins them (it belongs to the thread, like
 *  every module-level value). */
export const D64 = new Float64Array(1);
export const D32 = new Int32Array(D64.buffer);
/** A word a FENCE does an Atomics read-modify-write on, for the full barrier that comes with it. */
export const FENCE_CELL = new Int32Array(new SharedArrayBuffer(4));

/** The views of one chunk (all over the same shared memory). */
export class ChunkViews {
  readonly u8: Uint8Array;
  readonly u16: Uint16Array;
  readonly i32: Int32Array;
  readonly f64: Float64Array;
  private atomics: Atomics64 | null = null;
  constructor(readonly memory: WebAssembly.Memory) {
    const b = memory.buffer;
    this.u8 = new Uint8Array(b);
    this.u16 = new Uint16Array(b);
    this.i32 = new Int32Array(b);
    this.f64 = new Float64Array(b);
  }
  /** 64-bit atomic operations on this chunk (this thread's instance of the wasm helper). */
  atomic64(): Atomics64 {
    return this.atomics ??= atomics64(this.memory);
  }
  /** Reads the doubleword at byte offset `o` (8-aligned) into D32[0] (low word) and D32[1] (high)
   *  in one single-copy-atomic access. Through the Float64Array view unless the bits are a NaN:
   *  a non-NaN double keeps its bits by the ECMAScript spec, a NaN's bits are V8's choice (Maglev
   *  in Node 26 quiets signalling NaNs), so a NaN is read again by the wasm helper. */
  load64(o: number): void {
    const x = this.f64[o >> 3];
    if (x === x) D64[0] = x; else this.loadNaN64(o);
  }
  /** load64 for a doubleword whose Float64Array read gave a NaN (the hot paths test that inline):
   *  one call of the wasm helper, which returns the bits that are not the exponent as a number
   *  (atomics64.ts); read again if another hart has made it a non-NaN since. */
  loadNaN64(o: number): void {
    for (;;) {
      const m = this.atomic64().loadNaN(o);
      if (m >= 0) {
        const h = Math.floor(m / 4294967296);                           // sign << 20 | mantissa bits 51..32
        D32[0] = m | 0;                                                  // mantissa bits 31..0 (m < 2^53: exact)
        D32[1] = ((h >> 20) << 31) | 0x7ff00000 | (h & 0xfffff);
        return;
      }
      const x = this.f64[o >> 3];
      if (x === x) { D64[0] = x; return; }
    }
  }
  /** Writes (lo, hi) at byte offset `o` (8-aligned) in one single-copy-atomic access: through the
   *  Float64Array view unless the bits are a NaN (see load64), else by the wasm helper. */
  store64(o: number, lo: number, hi: number): void {
    D32[0] = lo; D32[1] = hi;
    const x = D64[0];
    if (x === x) this.f64[o >> 3] = x; else this.atomic64().store(o, lo, hi);
  }
}

export function newChunkMemory(): WebAssembly.Memory {
  return new WebAssembly.Memory({ initial: CHUNK_SIZE / WASM_PAGE, maximum: CHUNK_SIZE / WASM_PAGE, shared: true });
}

/** Host memory for chunks comes from a budget the daemon shares between VMs (src/vm). `acquire`
 *  is called before a chunk is allocated and may block until the host has room; `release` when
 *  one is dropped. Without a budget (tests, validate) chunks are simply allocated. */
export interface ChunkBudget {
  acquire(): void;
  release(): void;
}

export class GuestRam {
  readonly chunkCount: number;
  /** Views per chunk; `undefined` until first touched. */
  private readonly chunks: (ChunkViews | undefined)[];

  /** Chunks allocated so far and dropped so far (figures for `vmctl info`). */
  chunksAllocated = 0;
  chunksReleased = 0;
  budget: ChunkBudget | null = null;
  /** Where a chunk this RAM does not hold comes from, when it is not made here: a hart thread's
   *  RAM asks the machine's thread, which makes every chunk, once, for all threads
   *  (src/board/smp.ts). A chunk missing here may then hold data: it is fetched for reads too. */
  provider: ((index: number) => WebAssembly.Memory) | null = null;

  constructor(readonly base: number, readonly size: number, memories?: readonly (WebAssembly.Memory | undefined)[]) {
    if (!Number.isInteger(size) || size <= 0 || size % CHUNK_SIZE !== 0 || size > MAX_RAM_BYTES) {
      throw new RangeError(`guest RAM size ${size} must be a positive multiple of ${CHUNK_SIZE} bytes, at most 16 GiB`);
    }
    this.chunkCount = size / CHUNK_SIZE;
    this.chunks = new Array(this.chunkCount).fill(undefined);
    if (memories) memories.forEach((m, i) => { if (m) this.chunks[i] = new ChunkViews(m); });
  }

  /** True when [paddr, paddr+len) lies entirely inside RAM. */
  contains(paddr: number, len = 1): boolean {
    return paddr >= this.base && paddr + len <= this.base + this.size;
  }

  /** The views of chunk `index` (RAM offset `index << CHUNK_SHIFT`), created (zeroed) on first
   *  use. Harts cache them in their soft TLB, so after `release()` every hart must `flushTlb()`. */
  views(index: number): ChunkViews {
    let c = this.chunks[index];
    if (c === undefined) {
      if (this.provider !== null) c = new ChunkViews(this.provider(index));
      else {
        this.budget?.acquire();
        c = new ChunkViews(newChunkMemory());
        this.chunksAllocated++;
      }
      this.chunks[index] = c;
    }
    return c;
  }

  /** The views of chunk `index` for a read: undefined when it reads as zeros (never touched, or
   *  dropped), which costs nothing; a hart thread's RAM fetches what it does not hold. */
  private readable(index: number): ChunkViews | undefined {
    const c = this.chunks[index];
    return c !== undefined || this.provider === null ? c : this.views(index);
  }

  /** The bytes of chunk `index` (created on first use). */
  chunk(index: number): Uint8Array {
    return this.views(index).u8;
  }

  /** The bytes of chunk `index` when it exists (nothing is created). */
  existing(index: number): Uint8Array | undefined {
    return this.chunks[index]?.u8;
  }

  /** The chunk memories, for handing RAM to another thread (undefined = never touched). */
  memories(): (WebAssembly.Memory | undefined)[] {
    return this.chunks.map((c) => c?.memory);
  }

  /** True when chunk `index` holds host memory now. */
  isAllocated(index: number): boolean {
    return this.chunks[index] !== undefined;
  }

  /** Drops a chunk (balloon); it reads as zeros and is allocated again when touched. Whoever
   *  cached views of it (harts' soft TLBs, hart threads' RAM) must drop them too, or the memory
   *  stays alive: see VirtMachine.releaseChunks. */
  release(index: number): void {
    if (this.chunks[index] === undefined) return;
    this.chunksReleased++;
    this.budget?.release();
    this.chunks[index] = undefined;
  }

  /** Host bytes reserved for guest RAM (chunks created so far). */
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
      const c = this.readable(idx);
      if (c === undefined) dst.fill(0, done, done + n);
      else dst.set(c.u8.subarray(inChunk, inChunk + n), done);
      done += n;
      off += n;
    }
  }

  /** Copies `src` into guest physical memory. Throws RangeError outside RAM. */
  write(paddr: number, src: Uint8Array): void {
    this.writeFrom(paddr, src.length, (dst, at) => dst.set(src.subarray(at, at + dst.length)));
  }

  /** Writes `len` bytes of a source into guest physical memory, one chunk's piece at a time:
   *  `source(dst, at)` puts the source's bytes from offset `at` into `dst`, a view of the chunk.
   *  A file goes into RAM this way without a copy of it in between (boot images: loader.ts).
   *  Throws RangeError outside RAM. */
  writeFrom(paddr: number, len: number, source: (dst: Uint8Array, at: number) => void): void {
    this.check(paddr, len);
    let off = paddr - this.base;
    let done = 0;
    while (done < len) {
      const idx = Math.floor(off / CHUNK_SIZE);
      const inChunk = off % CHUNK_SIZE;
      const n = Math.min(CHUNK_SIZE - inChunk, len - done);
      source(this.views(idx).u8.subarray(inChunk, inChunk + n), done);
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
      const c = this.readable(idx);
      if (c !== undefined) c.u8.fill(0, inChunk, inChunk + n);
      left -= n;
      off += n;
    }
  }

  // Little-endian scalar accessors for device models (virtqueues, SBI, loaders). Not for the
  // hart's hot path. Aligned 16/32-bit accesses are single accesses (tear-free for other threads).
  readU8(paddr: number): number { this.check(paddr, 1); const o = paddr - this.base; const c = this.readable(Math.floor(o / CHUNK_SIZE)); return c === undefined ? 0 : c.u8[o % CHUNK_SIZE]; }
  readU16(paddr: number): number {
    if ((paddr & 1) === 0 && this.contains(paddr, 2)) { const o = paddr - this.base; const c = this.readable(Math.floor(o / CHUNK_SIZE)); return c === undefined ? 0 : c.u16[(o % CHUNK_SIZE) >> 1]; }
    return this.readU8(paddr) | (this.readU8(paddr + 1) << 8);
  }
  readU32(paddr: number): number {
    if ((paddr & 3) === 0 && this.contains(paddr, 4)) { const o = paddr - this.base; const c = this.readable(Math.floor(o / CHUNK_SIZE)); return c === undefined ? 0 : c.i32[(o % CHUNK_SIZE) >> 2] >>> 0; }
    return (this.readU16(paddr) | (this.readU16(paddr + 2) << 16)) >>> 0;
  }
  /** 64-bit read as a JS number; exact up to 2^53 (guest physical addresses and lengths). */
  readU64(paddr: number): number { return this.readU32(paddr) + this.readU32(paddr + 4) * 0x1_0000_0000; }
  writeU8(paddr: number, v: number): void { this.check(paddr, 1); const o = paddr - this.base; this.views(Math.floor(o / CHUNK_SIZE)).u8[o % CHUNK_SIZE] = v; }
  writeU16(paddr: number, v: number): void {
    if ((paddr & 1) === 0 && this.contains(paddr, 2)) { const o = paddr - this.base; this.views(Math.floor(o / CHUNK_SIZE)).u16[(o % CHUNK_SIZE) >> 1] = v; return; }
    this.writeU8(paddr, v & 0xff); this.writeU8(paddr + 1, (v >>> 8) & 0xff);
  }
  writeU32(paddr: number, v: number): void {
    if ((paddr & 3) === 0 && this.contains(paddr, 4)) { const o = paddr - this.base; this.views(Math.floor(o / CHUNK_SIZE)).i32[(o % CHUNK_SIZE) >> 2] = v; return; }
    this.writeU16(paddr, v & 0xffff); this.writeU16(paddr + 2, (v >>> 16) & 0xffff);
  }
  writeU64(paddr: number, v: number): void { this.writeU32(paddr, v % 0x1_0000_0000 >>> 0); this.writeU32(paddr + 4, Math.floor(v / 0x1_0000_0000) >>> 0); }

  private check(paddr: number, len: number): void {
    if (!this.contains(paddr, len)) {
      throw new RangeError(`guest physical range 0x${paddr.toString(16)}+${len} is outside RAM 0x${this.base.toString(16)}..0x${(this.base + this.size).toString(16)}`);
    }
  }
}
