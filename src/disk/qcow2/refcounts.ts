// qcow2 refcounts (spec "Host cluster management"): how many references each host cluster has,
// in refcount blocks listed by the refcount table; and the allocator that hands out clusters
// whose refcount is 0.
//
// vmctl keeps refcounts exact at all times (no lazy refcounts, so the dirty bit is never set):
// a cluster's refcount is raised after its contents are written and before anything points at
// it, and lowered only after the last pointer to it is gone. A process killed in between leaves
// at worst a cluster with a refcount and no reference, which `qemu-img check` reports as a leak,
// never a referenced cluster with too low a refcount (an error that would get it reused).

import { DiskError } from '../errors.js';
import type { HostFile } from '../host-file.js';
import { be32, ClusterCache, setBe32, setBe64 } from './cluster-cache.js';
import { H, MAX_REFTABLE_BYTES } from './header.js';

/** Refcount blocks kept in memory at most (bytes). */
const BLOCK_CACHE_BYTES = 4 * 1024 * 1024;
/** Allocating a refcount block can need a refcount block for itself, and so on: never deep. */
const MAX_BLOCK_NESTING = 8;

export interface RefcountsOptions {
  readonly file: HostFile;
  readonly clusterBits: number;
  readonly order: number;
  readonly tableOffset: number;
  readonly tableClusters: number;
  /** The file's size when opened (checks the table's entries). */
  readonly fileSize: number;
  /** Clusters that hold other metadata (header, L1 and L2 tables, snapshot table): never handed
   *  out even when a damaged image gives them refcount 0. */
  readonly isOtherMetadata: (cluster: number) => boolean;
  /** Reports damage found while working (the image marks itself corrupt and throws). */
  readonly corrupt: (message: string) => never;
}

export class Refcounts {
  private readonly file: HostFile;
  private readonly cs: number;
  private readonly order: number;
  private readonly bits: number;
  /** log2(refcount entries per block). */
  private readonly blockBits: number;
  private readonly maxRefcount: number;
  /** The refcount table, in memory: refcount block offsets (0: none yet). */
  private table: Float64Array;
  tableOffset: number;
  tableClusters: number;
  /** Clusters holding refcount blocks. */
  private readonly blocks = new Set<number>();
  private readonly cache: ClusterCache;
  /** Every cluster below this one is in use or handed out: where the search for a free one starts. */
  private freeHint = 1;
  private nesting = 0;

  constructor(private readonly o: RefcountsOptions) {
    this.file = o.file;
    this.cs = 2 ** o.clusterBits;
    this.order = o.order;
    this.bits = 2 ** o.order;
    this.blockBits = o.clusterBits + 3 - o.order;
    this.maxRefcount = o.order === 6 ? Number.MAX_SAFE_INTEGER : 2 ** this.bits - 1;
    this.tableOffset = o.tableOffset;
    this.tableClusters = o.tableClusters;
    this.cache = new ClusterCache(this.cs, BLOCK_CACHE_BYTES);
    const raw = new Uint8Array(o.tableClusters * this.cs);
    o.file.read(raw, o.tableOffset);
    this.table = new Float64Array(raw.length / 8);
    for (let i = 0; i < this.table.length; i++) {
      const hi = be32(raw, i * 8);
      const lo = be32(raw, i * 8 + 4);
      if (hi === 0 && lo === 0) continue;
      const where = `refcount table entry ${i}`;
      if ((lo & 0x1ff) !== 0 || hi > 0x1fffff) throw this.damaged(`${where} (0x${hi.toString(16)}${lo.toString(16).padStart(8, '0')}) has reserved bits set`);
      const off = hi * 0x1_0000_0000 + lo;
      if (off % this.cs !== 0) throw this.damaged(`${where}: refcount block offset 0x${off.toString(16)} is not aligned to a cluster`);
      if (off + this.cs > o.fileSize) throw this.damaged(`${where}: refcount block at 0x${off.toString(16)} is past the end of the file`);
      const c = off / this.cs;
      if (c === 0 || this.isTableCluster(c) || o.isOtherMetadata(c)) throw this.damaged(`${where}: refcount block at 0x${off.toString(16)} overlaps other metadata`);
      if (this.blocks.has(c)) throw this.damaged(`${where}: refcount block at 0x${off.toString(16)} is listed twice`);
      this.table[i] = off;
      this.blocks.add(c);
    }
  }

  private damaged(what: string): DiskError {
    return new DiskError('CORRUPT', `${this.file.path}: damaged qcow2 image: ${what}`);
  }

  private isTableCluster(c: number): boolean {
    const first = this.tableOffset / this.cs;
    return c >= first && c < first + this.tableClusters;
  }

  /** The refcount table or a refcount block lives in cluster `c`. */
  isMetadata(c: number): boolean {
    return this.isTableCluster(c) || this.blocks.has(c);
  }

  // ---- entries inside a block (spec: refcount_bits wide, packed big-endian; below 8 bits the
  // first entry is in the least significant bits of the byte, as QEMU does) ----

  private entry(b: Uint8Array, i: number): number {
    switch (this.order) {
      case 4: return (b[i * 2] << 8) | b[i * 2 + 1];
      case 3: return b[i];
      case 5: return be32(b, i * 4);
      case 6: {
        const hi = be32(b, i * 8);
        return hi > 0x1fffff ? Number.MAX_SAFE_INTEGER : hi * 0x1_0000_0000 + be32(b, i * 8 + 4);
      }
      default: { // orders 0..2: 1, 2 or 4 bits
        const per = 8 / this.bits;
        return (b[Math.floor(i / per)] >> ((i % per) * this.bits)) & (this.bits === 4 ? 0xf : this.bits === 2 ? 3 : 1);
      }
    }
  }

  private setEntry(b: Uint8Array, i: number, v: number): void {
    switch (this.order) {
      case 4: b[i * 2] = v >> 8; b[i * 2 + 1] = v & 0xff; return;
      case 3: b[i] = v; return;
      case 5: setBe32(b, i * 4, v); return;
      case 6: setBe64(b, i * 8, v); return;
      default: {
        const per = 8 / this.bits;
        const shift = (i % per) * this.bits;
        const mask = (this.bits === 4 ? 0xf : this.bits === 2 ? 3 : 1) << shift;
        const at = Math.floor(i / per);
        b[at] = (b[at] & ~mask) | ((v << shift) & mask);
      }
    }
  }

  /** Byte range of entries [i, j) in a block. */
  private byteRange(i: number, j: number): [number, number] {
    return [Math.floor((i * this.bits) / 8), Math.ceil((j * this.bits) / 8)];
  }

  private loadBlock(off: number): Uint8Array {
    let b = this.cache.get(off);
    if (b === undefined) {
      b = this.cache.buffer();
      this.file.read(b, off);
      this.cache.set(off, b);
    }
    return b;
  }

  /** Refcount of host cluster `c`. */
  get(c: number): number {
    const ti = Math.floor(c / 2 ** this.blockBits);
    if (ti >= this.table.length || this.table[ti] === 0) return 0;
    return this.entry(this.loadBlock(this.table[ti]), c - ti * 2 ** this.blockBits);
  }

  // ---- allocation ----

  private usable(c: number): boolean {
    return c !== 0 && !this.isMetadata(c) && !this.o.isOtherMetadata(c) && this.get(c) === 0;
  }

  /** A free cluster, not handed out before: the caller writes it, then marks it used. */
  allocate(): number {
    let c = this.freeHint;
    while (!this.usable(c)) c++;
    this.freeHint = c + 1;
    return c;
  }

  /** `n` contiguous free clusters (tables that must be contiguous: L1, refcount table). */
  allocateRun(n: number): number {
    let start = this.freeHint;
    for (let c = start; c < start + n; c++) {
      if (!this.usable(c)) start = c + 1;
    }
    // The loop above moves `start` past every unusable cluster it meets, so [start, start+n) is
    // free. The hint moves past the run (free clusters before it wait for the next release).
    this.freeHint = start + n;
    return start;
  }

  /** Clusters [first, first+count): refcount 0 -> 1 (written through, block by block). */
  markUsed(first: number, count: number): void {
    this.update(first, count, 1);
  }

  /** Clusters [first, first+count) lose one reference; `freed` hears of each that reaches 0. */
  release(first: number, count: number, freed?: (c: number) => void): void {
    this.update(first, count, -1, freed);
  }

  private update(first: number, count: number, delta: 1 | -1, freed?: (c: number) => void): void {
    const per = 2 ** this.blockBits;
    let c = first;
    const end = first + count;
    while (c < end) {
      const ti = Math.floor(c / per);
      const stop = Math.min(end, (ti + 1) * per);
      const off = this.blockFor(ti, delta === 1);
      if (off === 0) this.o.corrupt(`cluster 0x${(c * this.cs).toString(16)} is in use but has no refcount block`);
      const b = this.loadBlock(off);
      const i0 = c - ti * per;
      const i1 = stop - ti * per;
      for (let i = i0; i < i1; i++) {
        const old = this.entry(b, i);
        if (delta === 1 && old !== 0) this.o.corrupt(`cluster 0x${((ti * per + i) * this.cs).toString(16)} was handed out but its refcount is ${old}`);
        if (delta === -1 && old === 0) this.o.corrupt(`the refcount of cluster 0x${((ti * per + i) * this.cs).toString(16)} would drop below 0`);
        if (delta === 1 && old >= this.maxRefcount) this.o.corrupt(`the refcount of cluster 0x${((ti * per + i) * this.cs).toString(16)} overflows`);
        this.setEntry(b, i, old + delta);
      }
      const [s, e] = this.byteRange(i0, i1);
      try {
        this.file.write(b.subarray(s, e), off + s);
      } catch (err) {
        this.cache.delete(off); // memory and file may disagree now: read it again next time
        throw err;
      }
      if (delta === -1) {
        for (let i = i0; i < i1; i++) {
          if (this.entry(b, i) !== 0) continue;
          const fc = ti * per + i;
          if (fc < this.freeHint) this.freeHint = fc;
          freed?.(fc);
        }
      }
      c = stop;
    }
  }

  /** The offset of refcount block `ti`; with `create`, a new block is made when there is none. */
  private blockFor(ti: number, create: boolean): number {
    if (ti < this.table.length && this.table[ti] !== 0) return this.table[ti];
    if (!create) return 0;
    if (++this.nesting > MAX_BLOCK_NESTING) this.o.corrupt('allocating refcount blocks does not converge');
    try {
      if (ti >= this.table.length) this.growTable(ti);
      if (this.table[ti] !== 0) return this.table[ti]; // growing the table made it
      return this.newBlock(ti);
    } finally {
      this.nesting--;
    }
  }

  /** A new, empty refcount block for table entry `ti`. Written whole before the table points at it. */
  private newBlock(ti: number): number {
    const per = 2 ** this.blockBits;
    const c = this.allocate();
    const b = this.cache.buffer();
    b.fill(0);
    const own = Math.floor(c / per) === ti;
    if (own) this.setEntry(b, c - ti * per, 1); // the block counts its own reference
    this.file.write(b, c * this.cs);
    if (!own) this.markUsed(c, 1);
    this.publish(ti, c * this.cs);
    this.blocks.add(c);
    this.cache.set(c * this.cs, b);
    return c * this.cs;
  }

  /** Points refcount table entry `ti` at a block (one 8-byte write). */
  private publish(ti: number, off: number): void {
    const e = new Uint8Array(8);
    setBe64(e, 0, off);
    this.file.write(e, this.tableOffset + ti * 8);
    this.table[ti] = off;
  }

  /**
   * A larger refcount table, so that entry `need` exists. The new table and the refcount blocks
   * that count it go to free clusters, contiguous, and count themselves; the header switches to
   * it in one write, after an fsync (all of it durable before anything points at it); the old
   * table's clusters are freed last. Killed before the switch: the old table stands (the new
   * clusters are unreferenced, or leaks where an old block counted them). Killed after it and
   * before the frees: the old table is leaked.
   */
  private growTable(need: number): void {
    const per = 2 ** this.blockBits;
    const perCluster = this.cs / 8;
    let entries = Math.ceil(Math.max(need + 1, Math.ceil(this.table.length * 1.5)) / perCluster) * perCluster;
    let start = 0;
    let tableClusters = 0;
    let newBlocks: number[] = [];
    for (let round = 0; ; round++) {
      if (round > 64) this.o.corrupt('growing the refcount table does not converge');
      tableClusters = entries / perCluster;
      // The area: the table, then one new block per table entry of the area that has none.
      let nb = newBlocks.length;
      for (;;) {
        start = this.allocateRunPeek(tableClusters + nb);
        const last = start + tableClusters + nb - 1;
        const missing: number[] = [];
        for (let ti = Math.floor(start / per); ti <= Math.floor(last / per); ti++) {
          if (ti >= this.table.length || this.table[ti] === 0) missing.push(ti);
        }
        newBlocks = missing;
        if (missing.length === nb) break;
        nb = missing.length;
      }
      const lastTi = Math.floor((start + tableClusters + newBlocks.length - 1) / per);
      if (lastTi < entries && need < entries) break;
      entries = Math.ceil((Math.max(lastTi, need) + 1) / perCluster) * perCluster;
    }
    if (entries * 8 > MAX_REFTABLE_BYTES) {
      throw new DiskError('IO', `${this.file.path}: the image needs a refcount table larger than ${MAX_REFTABLE_BYTES} bytes; it is full`);
    }
    const areaEnd = start + tableClusters + newBlocks.length;
    // 1. The new blocks, counting every cluster of the area that falls in their range.
    const table = new Float64Array(entries);
    table.set(this.table);
    newBlocks.forEach((ti, k) => {
      const c = start + tableClusters + k;
      const b = new Uint8Array(this.cs);
      for (let x = Math.max(start, ti * per); x < Math.min(areaEnd, (ti + 1) * per); x++) this.setEntry(b, x - ti * per, 1);
      this.file.write(b, c * this.cs);
      table[ti] = c * this.cs;
    });
    // Area clusters that existing blocks count (the area can start inside a covered range).
    for (let x = start; x < areaEnd; x++) {
      const ti = Math.floor(x / per);
      if (ti < this.table.length && this.table[ti] !== 0) this.update(x, 1, 1);
    }
    // 2. The new table, whole.
    const raw = new Uint8Array(tableClusters * this.cs);
    for (let i = 0; i < entries; i++) if (table[i] !== 0) setBe64(raw, i * 8, table[i]);
    this.file.write(raw, start * this.cs);
    this.file.sync();
    // 3. The switch: refcount_table_offset and refcount_table_clusters are adjacent (48..59).
    const h = new Uint8Array(12);
    setBe64(h, 0, start * this.cs);
    setBe32(h, 8, tableClusters);
    this.file.write(h, H.refcountTableOffset);
    this.file.sync();
    const oldOffset = this.tableOffset;
    const oldClusters = this.tableClusters;
    this.table = table;
    this.tableOffset = start * this.cs;
    this.tableClusters = tableClusters;
    newBlocks.forEach((_, k) => this.blocks.add(start + tableClusters + k));
    if (this.freeHint >= start && this.freeHint < areaEnd) this.freeHint = areaEnd;
    // 4. The old table is free.
    this.release(oldOffset / this.cs, oldClusters);
  }

  /** Where `allocateRun(n)` would put `n` clusters, without handing them out. */
  private allocateRunPeek(n: number): number {
    const hint = this.freeHint;
    const start = this.allocateRun(n);
    this.freeHint = hint;
    return start;
  }
}
