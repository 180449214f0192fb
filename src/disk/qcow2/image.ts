// A qcow2 image (QEMU docs/interop/qcow2.txt) as a BlockBackend: guest clusters are found through
// the L1 table and L2 tables; what is not allocated reads from the backing image (or as zeros);
// the first write to such a cluster allocates one of its own (copy-on-write).
//
// Write ordering (what a SIGKILL at any instant leaves is consistent, see refcounts.ts):
//   new data cluster: data -> its refcount -> the L2 entry (-> the old cluster's refcount drops)
//   new L2 table:     the table -> its refcount -> the L1 entry
// Every step is a pwrite that has reached the host kernel when it returns, so a completed guest
// write survives vmctl's death; a guest FLUSH is an fsync of the image. Metadata is written
// through (no write-back cache): an L2 entry costs one 8-byte pwrite per request, not an fsync.
//
// What vmctl does not implement is refused when the image is opened (header.ts); damage found
// later (an L2 entry pointing outside the file or into metadata) fails the request with an I/O
// error, and an image opened for writing is then marked corrupt, as QEMU does, so nothing keeps
// writing through broken tables.

import { constants as zc, inflateRawSync } from 'node:zlib';
import { SECTOR_SIZE, type BlockBackend } from '../block-backend.js';
import { DiskError } from '../errors.js';
import { punchHole } from '../hole-punch.js';
import type { HostFile } from '../host-file.js';
import { be32, ClusterCache, setBe32, setBe64 } from './cluster-cache.js';
import { H, hasBit, INCOMPAT_CORRUPT, INCOMPAT_DIRTY, MAX_L1_BYTES, type Qcow2Header } from './header.js';
import { Refcounts } from './refcounts.js';

/** L2 tables kept in memory at most (bytes): 8 MiB covers 64 GiB of disk with 64 KiB clusters. */
const L2_CACHE_BYTES = 8 * 1024 * 1024;
/** New clusters handled by one batch of data/refcount/L2 writes. */
const BATCH = 256;

// L1/L2 entry bits (spec "Cluster mapping"), in the high and low 32-bit halves.
const COPIED_HI = 0x80000000;      // bit 63: refcount is exactly 1, may be written in place
const COMPRESSED_HI = 0x40000000;  // bit 62
const ZERO_LO = 1;                 // bit 0 of a standard cluster descriptor (version 3)
const STD_RESERVED_LO = 0x1fe;     // bits 1-8
const STD_RESERVED_HI = 0x3f000000; // bits 56-61
const L1_RESERVED_HI = 0x7f000000; // bits 56-62
const OFFSET_HI = 0x00ffffff;      // bits 32-55 of an offset

/** What a guest cluster is (from its L2 entry). */
const enum Kind { Unallocated, ZeroPlain, ZeroAlloc, Normal, Compressed }

/** The guest's data as a cursor over its scatter list: views of the next n bytes, copies, zero
 *  fills. One per image, reused for every request. */
class BufCursor {
  private bufs: readonly Uint8Array[] = [];
  private i = 0;
  private off = 0;

  reset(bufs: readonly Uint8Array[]): void {
    this.bufs = bufs;
    this.i = 0;
    this.off = 0;
  }

  /** Appends views of the next `n` bytes to `out`. */
  take(n: number, out: Uint8Array[]): void {
    while (n > 0) {
      const b = this.bufs[this.i];
      const k = Math.min(n, b.length - this.off);
      out.push(this.off === 0 && k === b.length ? b : b.subarray(this.off, this.off + k));
      this.advance(b, k);
      n -= k;
    }
  }

  /** Copies the next `n` bytes into `dst` at `at`. */
  copyTo(dst: Uint8Array, at: number, n: number): void {
    while (n > 0) {
      const b = this.bufs[this.i];
      const k = Math.min(n, b.length - this.off);
      dst.set(b.subarray(this.off, this.off + k), at);
      this.advance(b, k);
      at += k;
      n -= k;
    }
  }

  /** Fills the next `n` bytes from `src` at `from`. */
  copyFrom(src: Uint8Array, from: number, n: number): void {
    while (n > 0) {
      const b = this.bufs[this.i];
      const k = Math.min(n, b.length - this.off);
      b.set(src.subarray(from, from + k), this.off);
      this.advance(b, k);
      from += k;
      n -= k;
    }
  }

  fillZero(n: number): void {
    while (n > 0) {
      const b = this.bufs[this.i];
      const k = Math.min(n, b.length - this.off);
      b.fill(0, this.off, this.off + k);
      this.advance(b, k);
      n -= k;
    }
  }

  private advance(b: Uint8Array, k: number): void {
    this.off += k;
    if (this.off === b.length) {
      this.i++;
      this.off = 0;
    }
  }
}

function totalLength(bufs: readonly Uint8Array[]): number {
  let n = 0;
  for (const b of bufs) n += b.length;
  return n;
}

const hex = (n: number): string => `0x${n.toString(16)}`;

export interface Qcow2ImageOptions {
  readonly file: HostFile;
  readonly header: Qcow2Header;
  /** The backing image (opened read-only), or null. Closed with this image. */
  readonly backing: BlockBackend | null;
  readonly readonly: boolean;
}

export class Qcow2Image implements BlockBackend {
  readonly readonly: boolean;
  readonly path: string;
  private readonly file: HostFile;
  private header!: Qcow2Header;
  private l1First = 0;
  private l1End = 0;
  readonly backing: BlockBackend | null;
  private readonly cs: number;
  private readonly l2Entries: number;
  /** Bytes of guest disk one L2 table maps. */
  private readonly l2Cover: number;
  private readonly v3: boolean;
  private size: number;
  /** The L1 table in memory: L2 table offsets and their COPIED flags. */
  private l1Off: Float64Array;
  private l1Copied: Uint8Array;
  /** Clusters holding the active L2 tables (never written as data). */
  private readonly l2Tables = new Set<number>();
  private readonly l2Cache: ClusterCache;
  private readonly refs: Refcounts;
  /** Bytes in the file: L2 entries must point inside it. */
  private fileEnd: number;
  private corrupt: boolean;
  private closed = false;

  private readonly cur = new BufCursor();
  private readonly iov: Uint8Array[] = [];
  /** One cluster for partial writes (copy-on-write merges) and compressed data. */
  private readonly scratch: Uint8Array;
  private zeros: Uint8Array | null = null;
  private inflated: Uint8Array | null = null;
  private inflatedKey = -1;
  // Batch state (new clusters of one write run), allocated once.
  private readonly batchHost = new Float64Array(BATCH);
  private readonly batchOldHi = new Uint32Array(BATCH);
  private readonly batchOldLo = new Uint32Array(BATCH);
  // The last L2 entry decoded by classify().
  private eOff = 0;
  private eCopied = false;
  private eCsize = 0;

  constructor(o: Qcow2ImageOptions) {
    const h = o.header;
    this.file = o.file;
    this.path = o.file.path;
    this.backing = o.backing;
    this.cs = 2 ** h.clusterBits;
    this.setHeader(h);
    this.l2Entries = this.cs / 8;
    this.l2Cover = this.cs * this.l2Entries;
    this.v3 = h.version === 3;
    this.size = h.size;
    this.readonly = o.readonly;
    this.corrupt = hasBit(h.incompatible, INCOMPAT_CORRUPT);
    this.fileEnd = o.file.size();
    this.scratch = new Uint8Array(this.cs);
    this.l2Cache = new ClusterCache(this.cs, L2_CACHE_BYTES);
    if (!o.readonly) {
      // Spec: the corrupt bit forbids writing; the dirty bit means refcounts are not to be
      // trusted (lazy refcounts and an unclean shutdown): vmctl does not repair them.
      if (this.corrupt) throw new DiskError('CORRUPT', `${this.path}: the image is marked corrupt; vmctl opens it only read-only (repair it with: qemu-img check -r all ${this.path})`);
      if (hasBit(h.incompatible, INCOMPAT_DIRTY)) {
        throw new DiskError('CORRUPT', `${this.path}: the image's dirty bit is set (lazy refcounts and an unclean shutdown), so its refcounts need repair before it is written: qemu-img check -r all ${this.path}`);
      }
    }
    this.l1Off = new Float64Array(h.l1Size);
    this.l1Copied = new Uint8Array(h.l1Size);
    this.loadL1();
    // Read also when read-only: the refcount table is checked, and the refcount blocks' clusters
    // take part in the overlap checks of L2 entries.
    this.refs = new Refcounts({
      file: o.file, clusterBits: h.clusterBits, order: h.refcountOrder, tableOffset: h.refcountTableOffset,
      tableClusters: h.refcountTableClusters, fileSize: this.fileEnd,
      isOtherMetadata: (c) => this.isOtherMetadata(c),
      corrupt: (m) => this.fail(m),
    });
    if (!o.readonly && this.v3 && h.autoclear !== 0n) {
      // Spec: software that does not understand an autoclear feature (bitmaps: vmctl does not
      // keep them up to date) clears its bit before writing, so others know it is stale.
      this.file.write(new Uint8Array(8), H.autoclearFeatures);
      this.setHeader({ ...h, autoclear: 0n });
    }
  }

  private damaged(what: string): DiskError {
    return new DiskError('CORRUPT', `${this.path}: damaged qcow2 image: ${what}`);
  }

  /** Damage found while working: marks a writable image corrupt (spec: incompatible bit 1) and throws. */
  private fail(what: string): never {
    let note = '';
    if (!this.readonly && this.v3 && !this.corrupt) {
      this.corrupt = true;
      try {
        const b = new Uint8Array(8);
        setBe64(b, 0, Number(this.header.incompatible | (1n << BigInt(INCOMPAT_CORRUPT))));
        this.file.write(b, H.incompatibleFeatures);
        note = '; the image is now marked corrupt (qemu-img check -r all repairs it)';
      } catch { /* the error below says what matters */ }
    }
    throw new DiskError('CORRUPT', `${this.path}: damaged qcow2 image: ${what}${note}`);
  }

  // ---- tables ----

  /** Sets the header the image works with, and the L1 table's clusters [l1First, l1End). */
  private setHeader(h: Qcow2Header): void {
    this.header = h;
    this.l1First = h.l1TableOffset / this.cs;
    this.l1End = h.l1Size === 0 ? this.l1First : this.l1First + Math.ceil((h.l1Size * 8) / this.cs);
  }

  /** Header, L1 table, snapshot table, L2 tables (refcount structures are the allocator's). */
  private isOtherMetadata(c: number): boolean {
    if (c === 0 || this.l2Tables.has(c)) return true;
    if (c >= this.l1First && c < this.l1End) return true;
    return this.header.nbSnapshots > 0 && c === this.header.snapshotsOffset / this.cs;
  }

  private isMetadata(c: number): boolean {
    return this.isOtherMetadata(c) || this.refs.isMetadata(c);
  }

  private loadL1(): void {
    const h = this.header;
    if (h.l1Size === 0) return;
    const raw = new Uint8Array(h.l1Size * 8);
    this.file.read(raw, h.l1TableOffset);
    for (let i = 0; i < h.l1Size; i++) {
      const hi = be32(raw, i * 8);
      const lo = be32(raw, i * 8 + 4);
      if (hi === 0 && lo === 0) continue;
      if ((lo & 0x1ff) !== 0 || (hi & L1_RESERVED_HI) !== 0) throw this.damaged(`L1 entry ${i} (${hex(hi)}${lo.toString(16).padStart(8, '0')}) has reserved bits set`);
      const off = (hi & OFFSET_HI) * 0x1_0000_0000 + lo;
      if (off === 0) continue;
      if (off % this.cs !== 0) throw this.damaged(`L1 entry ${i}: L2 table offset ${hex(off)} is not aligned to a cluster`);
      if (off + this.cs > this.fileEnd) throw this.damaged(`L1 entry ${i}: L2 table at ${hex(off)} is past the end of the file (${this.fileEnd} bytes)`);
      const c = off / this.cs;
      const rt = h.refcountTableOffset / this.cs;
      if (c === 0 || (c >= this.l1First && c < this.l1End) || (c >= rt && c < rt + h.refcountTableClusters)) throw this.damaged(`L1 entry ${i}: L2 table at ${hex(off)} overlaps the header, L1 or refcount table`);
      if (this.l2Tables.has(c)) throw this.damaged(`L1 entry ${i}: L2 table at ${hex(off)} is also used by another L1 entry`);
      this.l1Off[i] = off;
      this.l1Copied[i] = (hi & COPIED_HI) !== 0 ? 1 : 0;
      this.l2Tables.add(c);
    }
  }

  /** The L2 table at `off`, from the cache or the file (checked entry by entry when read). */
  private l2(off: number): Uint8Array {
    let t = this.l2Cache.get(off);
    if (t !== undefined) return t;
    t = this.l2Cache.buffer();
    this.file.read(t, off);
    this.checkL2(t, off);
    this.l2Cache.set(off, t);
    return t;
  }

  private checkL2(t: Uint8Array, off: number): void {
    for (let i = 0; i < this.l2Entries; i++) {
      const hi = be32(t, i * 8);
      const lo = be32(t, i * 8 + 4);
      if (hi === 0 && lo === 0) continue;
      const where = `L2 table at ${hex(off)}, entry ${i}`;
      if ((hi & COMPRESSED_HI) !== 0) {
        this.classify(hi, lo);
        if (this.eOff < this.cs || this.eOff >= this.fileEnd) this.fail(`${where}: compressed data at ${hex(this.eOff)} is outside the file`);
        continue;
      }
      if ((lo & STD_RESERVED_LO) !== 0 || (hi & STD_RESERVED_HI) !== 0 || (!this.v3 && (lo & ZERO_LO) !== 0)) {
        this.fail(`${where} (${hex(hi)}${lo.toString(16).padStart(8, '0')}) has reserved bits set`);
      }
      const dataOff = (hi & OFFSET_HI) * 0x1_0000_0000 + ((lo & ~0x1ff) >>> 0);
      if (dataOff === 0) continue;
      if (dataOff % this.cs !== 0) this.fail(`${where}: data cluster offset ${hex(dataOff)} is not aligned to a cluster`);
      if (dataOff >= this.fileEnd) this.fail(`${where}: data cluster at ${hex(dataOff)} is past the end of the file (${this.fileEnd} bytes)`);
      if (this.isMetadata(dataOff / this.cs)) this.fail(`${where}: data cluster at ${hex(dataOff)} overlaps metadata`);
    }
  }

  /** Decodes an L2 entry into eOff / eCopied / eCsize; returns its kind. */
  private classify(hi: number, lo: number): Kind {
    if ((hi & COMPRESSED_HI) !== 0) {
      // Spec: bits 0..x-1 host offset, x..61 additional 512-byte sectors, x = 62 - (cluster_bits - 8).
      const x = 62 - (this.header.clusterBits - 8);
      const offBitsHi = x - 32;
      this.eOff = (hi & ((1 << offBitsHi) - 1)) * 0x1_0000_0000 + lo;
      const sectors = ((hi & 0x3fffffff) >>> offBitsHi) + 1;
      this.eCsize = sectors * SECTOR_SIZE - (this.eOff % SECTOR_SIZE);
      this.eCopied = false;
      return Kind.Compressed;
    }
    this.eOff = (hi & OFFSET_HI) * 0x1_0000_0000 + ((lo & ~0x1ff) >>> 0);
    this.eCopied = (hi & COPIED_HI) !== 0;
    if ((lo & ZERO_LO) !== 0) return this.eOff === 0 ? Kind.ZeroPlain : Kind.ZeroAlloc;
    return this.eOff === 0 ? Kind.Unallocated : Kind.Normal;
  }

  // ---- BlockBackend ----

  sectorCount(): number {
    return Math.floor(this.size / SECTOR_SIZE);
  }

  /** Virtual size in bytes. */
  virtualSize(): number {
    return this.size;
  }

  read(sector: number, bufs: readonly Uint8Array[]): void {
    let pos = sector * SECTOR_SIZE;
    const end = pos + totalLength(bufs);
    const cur = this.cur;
    cur.reset(bufs);
    while (pos < end) {
      if (pos >= this.size) { cur.fillZero(end - pos); break; }
      const l1i = Math.floor(pos / this.l2Cover);
      const stop = Math.min(end, (l1i + 1) * this.l2Cover, this.size);
      const l2off = this.l1Off[l1i];
      if (l2off === 0) {
        this.readUnallocated(pos, stop - pos);
        pos = stop;
        continue;
      }
      const t = this.l2(l2off);
      while (pos < stop) {
        // One run: consecutive clusters of the same kind (for data: contiguous in the file too).
        const gc = Math.floor(pos / this.cs);
        let idx = gc - l1i * this.l2Entries;
        const kind = this.classify(be32(t, idx * 8), be32(t, idx * 8 + 4));
        const inCluster = pos - gc * this.cs;
        let n = Math.min(this.cs - inCluster, stop - pos);
        if (kind === Kind.Compressed) {
          cur.copyFrom(this.inflate(), inCluster, n);
          pos += n;
          continue;
        }
        const host = this.eOff + inCluster;
        let nextHost = this.eOff + this.cs;
        while (pos + n < stop) {
          idx++;
          const k = this.classify(be32(t, idx * 8), be32(t, idx * 8 + 4));
          const sameZero = (k === Kind.ZeroPlain || k === Kind.ZeroAlloc) && (kind === Kind.ZeroPlain || kind === Kind.ZeroAlloc);
          if (!(k === kind && (kind !== Kind.Normal || this.eOff === nextHost)) && !sameZero) break;
          nextHost += this.cs;
          n += Math.min(this.cs, stop - pos - n);
        }
        if (kind === Kind.Normal) {
          this.iov.length = 0;
          cur.take(n, this.iov);
          this.file.readv(this.iov, host);
        } else if (kind === Kind.Unallocated) this.readUnallocated(pos, n);
        else cur.fillZero(n);
        pos += n;
      }
    }
  }

  /** The guest byte ranges [start, end) this image itself defines — data, compressed or zero
   *  clusters, not what falls through to its backing file — in order, adjacent ones merged.
   *  (Snapshot layers are merged by copying these: src/disk/layers.ts.) */
  ownExtents(): [number, number][] {
    const out: [number, number][] = [];
    for (let l1i = 0; l1i < this.l1Off.length; l1i++) {
      const off = this.l1Off[l1i];
      if (off === 0) continue;
      const t = this.l2(off);
      for (let i = 0; i < this.l2Entries; i++) {
        const hi = be32(t, i * 8), lo = be32(t, i * 8 + 4);
        if ((hi === 0 && lo === 0) || this.classify(hi, lo) === Kind.Unallocated) continue;
        const start = (l1i * this.l2Entries + i) * this.cs;
        if (start >= this.size) break;
        const end = Math.min(start + this.cs, this.size);
        const last = out[out.length - 1];
        if (last !== undefined && last[1] === start) last[1] = end; else out.push([start, end]);
      }
    }
    return out;
  }

  /** Guest bytes [pos, pos+n) that this image does not hold: the backing image's, or zeros. */
  private readUnallocated(pos: number, n: number): void {
    if (this.backing === null) {
      this.cur.fillZero(n);
      return;
    }
    const views: Uint8Array[] = [];
    this.cur.take(n, views);
    this.backing.read(pos / SECTOR_SIZE, views);
  }

  /** The guest cluster behind the compressed entry last classified, inflated (raw deflate). */
  private inflate(): Uint8Array {
    const key = this.eOff;
    if (this.inflated !== null && this.inflatedKey === key) return this.inflated;
    const compressed = this.scratch.length >= this.eCsize ? this.scratch.subarray(0, this.eCsize) : new Uint8Array(this.eCsize);
    this.file.read(compressed, key);
    let out: Buffer;
    try {
      // A stream may end exactly at the cluster's end without a final block (QEMU accepts that):
      // sync-flush finishing; maxOutputLength bounds what a hostile stream can inflate to.
      out = inflateRawSync(compressed, { finishFlush: zc.Z_SYNC_FLUSH, maxOutputLength: this.cs });
    } catch (e) {
      this.fail(`compressed cluster at ${hex(key)} does not inflate: ${(e as Error).message}`);
    }
    if (out.length !== this.cs) this.fail(`compressed cluster at ${hex(key)} inflates to ${out.length} bytes, not a cluster (${this.cs})`);
    this.inflated ??= new Uint8Array(this.cs);
    this.inflated.set(out);
    this.inflatedKey = key;
    return this.inflated;
  }

  private checkWritable(): void {
    if (this.closed) throw new DiskError('IO', `${this.path} is closed`);
    if (this.readonly) throw new DiskError('READONLY', `${this.path} is attached read-only`);
    if (this.corrupt) throw new DiskError('CORRUPT', `${this.path}: the image is marked corrupt; not writing to it`);
  }

  write(sector: number, bufs: readonly Uint8Array[]): void {
    this.checkWritable();
    let pos = sector * SECTOR_SIZE;
    const end = pos + totalLength(bufs);
    if (end > this.size) throw new DiskError('IO', `${this.path}: write past the end of the disk (${end} > ${this.size})`);
    this.cur.reset(bufs);
    while (pos < end) {
      const l1i = Math.floor(pos / this.l2Cover);
      const stop = Math.min(end, (l1i + 1) * this.l2Cover);
      const t = this.l2ForWrite(l1i);
      this.writeInTable(l1i, t, pos, stop);
      pos = stop;
    }
  }

  /** The L2 table of L1 entry `l1i`, ready to be changed in place: a new one when there is none,
   *  a private copy when it is shared (an internal snapshot holds it: no COPIED flag). */
  private l2ForWrite(l1i: number): Uint8Array {
    const refs = this.refs;
    const old = this.l1Off[l1i];
    if (old !== 0 && this.l1Copied[l1i] === 1) return this.l2(old);
    const c = refs.allocate();
    const t = this.l2Cache.buffer();
    if (old === 0) t.fill(0);
    else t.set(this.l2(old));
    this.file.write(t, c * this.cs);
    this.grew((c + 1) * this.cs);
    refs.markUsed(c, 1);
    const e = new Uint8Array(8);
    setBe32(e, 0, (COPIED_HI | Math.floor((c * this.cs) / 0x1_0000_0000)) >>> 0);
    setBe32(e, 4, (c * this.cs) >>> 0);
    this.file.write(e, this.header.l1TableOffset + l1i * 8);
    this.l1Off[l1i] = c * this.cs;
    this.l1Copied[l1i] = 1;
    this.l2Tables.add(c);
    this.l2Cache.set(c * this.cs, t);
    if (old !== 0) {
      this.l2Tables.delete(old / this.cs);
      this.l2Cache.delete(old);
      refs.release(old / this.cs, 1);
    }
    return t;
  }

  /** Overlap check before guest data is written in place (QEMU's "pre-write overlap check"):
   *  an L2 entry pointing into metadata would otherwise let the guest rewrite the tables. */
  private checkData(first: number, count: number): void {
    for (let c = first; c < first + count; c++) {
      if (this.isMetadata(c)) this.fail(`guest data would overwrite metadata at ${hex(c * this.cs)}`);
    }
  }

  private grew(end: number): void {
    if (end > this.fileEnd) this.fileEnd = end;
  }

  /** Writes guest bytes [pos, stop), all inside the L2 table `t` of L1 entry `l1i`. */
  private writeInTable(l1i: number, t: Uint8Array, pos: number, stop: number): void {
    const base = l1i * this.l2Entries;
    while (pos < stop) {
      const gc = Math.floor(pos / this.cs);
      const idx = gc - base;
      const inCluster = pos - gc * this.cs;
      const n = Math.min(this.cs - inCluster, stop - pos);
      const kind = this.classify(be32(t, idx * 8), be32(t, idx * 8 + 4));
      if (kind === Kind.Normal && this.eCopied) {
        // In place: as many following clusters as are also private and contiguous in the file.
        const host = this.eOff;
        let len = n;
        let k = idx + 1;
        while (pos + len < stop && this.classify(be32(t, k * 8), be32(t, k * 8 + 4)) === Kind.Normal && this.eCopied && this.eOff === host + (k - idx) * this.cs) {
          len += Math.min(this.cs, stop - pos - len);
          k++;
        }
        this.checkData(host / this.cs, Math.ceil((inCluster + len) / this.cs));
        this.iov.length = 0;
        this.cur.take(len, this.iov);
        this.file.writev(this.iov, host + inCluster);
        this.grew(host + inCluster + len);
        pos += len;
      } else if (n < this.cs || (kind === Kind.ZeroAlloc && this.eCopied)) {
        this.writeMerged(t, l1i, idx, inCluster, n);
        pos += n;
      } else {
        // Whole clusters that need new host clusters: a batch.
        let k = 0;
        while (k < BATCH && idx + k < this.l2Entries && pos + (k + 1) * this.cs <= stop) {
          const hi = be32(t, (idx + k) * 8);
          const lo = be32(t, (idx + k) * 8 + 4);
          const kk = this.classify(hi, lo);
          if ((kk === Kind.Normal || kk === Kind.ZeroAlloc) && this.eCopied) break;
          this.batchOldHi[k] = hi;
          this.batchOldLo[k] = lo;
          k++;
        }
        this.writeNewClusters(t, l1i, idx, k);
        pos += k * this.cs;
      }
    }
  }

  /** Whole guest clusters idx..idx+k-1 of table `t` get new host clusters filled from the guest:
   *  data, then refcounts, then the L2 entries (one write), then the old clusters are released. */
  private writeNewClusters(t: Uint8Array, l1i: number, idx: number, k: number): void {
    const refs = this.refs;
    for (let j = 0; j < k; j++) this.batchHost[j] = refs.allocate();
    for (let j = 0; j < k;) {
      let m = 1;
      while (j + m < k && this.batchHost[j + m] === this.batchHost[j] + m) m++;
      this.iov.length = 0;
      this.cur.take(m * this.cs, this.iov);
      this.file.writev(this.iov, this.batchHost[j] * this.cs);
      this.grew((this.batchHost[j] + m) * this.cs);
      j += m;
    }
    for (let j = 0; j < k;) {
      let m = 1;
      while (j + m < k && this.batchHost[j + m] === this.batchHost[j] + m) m++;
      refs.markUsed(this.batchHost[j], m);
      j += m;
    }
    for (let j = 0; j < k; j++) this.setL2(t, idx + j, this.batchHost[j] * this.cs, false);
    this.writeL2(t, l1i, idx, k);
    for (let j = 0; j < k; j++) this.releaseEntry(this.batchOldHi[j], this.batchOldLo[j]);
  }

  /** Part of one guest cluster (or all of a preallocated zero cluster): the cluster's current
   *  contents with the guest's bytes over them, written whole. */
  private writeMerged(t: Uint8Array, l1i: number, idx: number, inCluster: number, n: number): void {
    const refs = this.refs;
    const hi = be32(t, idx * 8);
    const lo = be32(t, idx * 8 + 4);
    const kind = this.classify(hi, lo);
    const s = this.scratch;
    const gcPos = (l1i * this.l2Entries + idx) * this.cs;
    switch (kind) {
      case Kind.Unallocated:
        if (this.backing === null) s.fill(0);
        else this.backing.read(gcPos / SECTOR_SIZE, [s]);
        break;
      case Kind.ZeroPlain:
      case Kind.ZeroAlloc:
        s.fill(0);
        break;
      case Kind.Compressed:
        s.set(this.inflate());
        break;
      case Kind.Normal:
        this.file.read(s, this.eOff);
        break;
    }
    this.cur.copyTo(s, inCluster, n);
    if (kind === Kind.ZeroAlloc && this.eCopied) {
      // A preallocated zero cluster of our own: write it in place, then drop the zero flag.
      const host = this.eOff;
      this.checkData(host / this.cs, 1);
      this.file.write(s, host);
      this.grew(host + this.cs);
      this.setL2(t, idx, host, false);
      this.writeL2(t, l1i, idx, 1);
      return;
    }
    const c = refs.allocate();
    this.file.write(s, c * this.cs);
    this.grew((c + 1) * this.cs);
    refs.markUsed(c, 1);
    this.setL2(t, idx, c * this.cs, false);
    this.writeL2(t, l1i, idx, 1);
    this.releaseEntry(hi, lo);
  }

  /** Sets entry `idx` of `t` in memory: a private data cluster at `off`, or a zero cluster. */
  private setL2(t: Uint8Array, idx: number, off: number, zero: boolean, copied = off !== 0): void {
    setBe32(t, idx * 8, ((copied ? COPIED_HI : 0) | Math.floor(off / 0x1_0000_0000)) >>> 0);
    setBe32(t, idx * 8 + 4, ((off >>> 0) | (zero ? ZERO_LO : 0)) >>> 0);
  }

  /** Writes entries idx..idx+k-1 of L1 entry `l1i`'s table to the file (one pwrite). */
  private writeL2(t: Uint8Array, l1i: number, idx: number, k: number): void {
    const off = this.l1Off[l1i];
    try {
      this.file.write(t.subarray(idx * 8, (idx + k) * 8), off + idx * 8);
    } catch (e) {
      this.l2Cache.delete(off); // the table in memory is ahead of the file: read it again
      throw e;
    }
  }

  /** Drops the reference an old L2 entry held (after the entry was replaced in the file). */
  private releaseEntry(hi: number, lo: number, freed?: (c: number) => void): void {
    const kind = this.classify(hi, lo);
    if (kind === Kind.Compressed) {
      // The compressed bytes' sectors, as QEMU counts them: [offset & ~511, + sectors * 512).
      const start = this.eOff - (this.eOff % SECTOR_SIZE);
      const first = Math.floor(start / this.cs);
      const last = Math.floor((start + this.eCsize + (this.eOff % SECTOR_SIZE) - 1) / this.cs);
      if (this.inflatedKey === this.eOff) this.inflatedKey = -1;
      this.refs.release(first, last - first + 1, freed);
    } else if (kind === Kind.Normal || kind === Kind.ZeroAlloc) {
      this.refs.release(this.eOff / this.cs, 1, freed);
    }
  }

  flush(): void {
    if (!this.readonly && !this.closed) this.file.sync();
  }

  writeZeroes(sector: number, count: number, mayUnmap: boolean): void {
    this.zeroRange(sector * SECTOR_SIZE, (sector + count) * SECTOR_SIZE, mayUnmap ? 'unmap' : 'zero');
  }

  discard(sector: number, count: number): void {
    this.zeroRange(sector * SECTOR_SIZE, (sector + count) * SECTOR_SIZE, 'discard');
  }

  /**
   * Write-zeroes (`zero`: keep our own clusters allocated, flagged as zero; `unmap`: free them)
   * and discard (a hint: whole clusters are dropped, parts of clusters left alone). Whole
   * clusters change only their L2 entries (version 3 zero flag); parts are written as zeros.
   */
  private zeroRange(pos: number, end: number, mode: 'zero' | 'unmap' | 'discard'): void {
    this.checkWritable();
    if (end > this.size) throw new DiskError('IO', `${this.path}: request past the end of the disk`);
    const freed: number[] = [];
    while (pos < end) {
      const gc = Math.floor(pos / this.cs);
      const inCluster = pos - gc * this.cs;
      const n = Math.min(this.cs - inCluster, end - pos);
      if (n < this.cs || (!this.v3 && this.backing !== null && mode !== 'discard')) {
        if (mode !== 'discard') this.writeZeroBytes(pos, n);
        pos += n;
        continue;
      }
      // Whole clusters up to the end of this L2 table.
      const l1i = Math.floor(pos / this.l2Cover);
      const k = Math.min(Math.floor((end - pos) / this.cs), (l1i + 1) * this.l2Entries - gc);
      this.zeroClusters(l1i, gc - l1i * this.l2Entries, k, mode, freed);
      pos += k * this.cs;
    }
    if (mode !== 'zero') this.punch(freed);
  }

  /** Zeros through the write path (part of a cluster), unless the bytes already read as zeros. */
  private writeZeroBytes(pos: number, n: number): void {
    const l1i = Math.floor(pos / this.l2Cover);
    const off = this.l1Off[l1i];
    const zeroAlready = (k: Kind) => k === Kind.ZeroPlain || k === Kind.ZeroAlloc || (k === Kind.Unallocated && this.backing === null);
    if (off === 0 ? this.backing === null : zeroAlready(this.kindAt(this.l2(off), pos))) return;
    this.zeros ??= new Uint8Array(this.cs);
    this.write(pos / SECTOR_SIZE, [this.zeros.subarray(0, n)]);
  }

  private kindAt(t: Uint8Array, pos: number): Kind {
    const idx = Math.floor(pos / this.cs) % this.l2Entries;
    return this.classify(be32(t, idx * 8), be32(t, idx * 8 + 4));
  }

  /** Whole clusters idx..idx+k-1 of L1 entry `l1i`'s table read as zeros afterwards (or, for a
   *  discard, whatever is cheapest). Their L2 entries change in one write, then old clusters go. */
  private zeroClusters(l1i: number, idx: number, k: number, mode: 'zero' | 'unmap' | 'discard', freed: number[]): void {
    // Without a backing image, a cluster that is not allocated already reads as zeros.
    if (this.l1Off[l1i] === 0 && (this.backing === null || mode === 'discard')) return;
    const t = this.l2ForWrite(l1i);
    let first = -1;
    let last = -1;
    const olds: [number, number][] = [];
    for (let j = idx; j < idx + k; j++) {
      const hi = be32(t, j * 8);
      const lo = be32(t, j * 8 + 4);
      const kind = this.classify(hi, lo);
      if (kind === Kind.Unallocated && (this.backing === null || mode === 'discard')) continue;
      if (kind === Kind.ZeroPlain) continue;
      if (!this.v3 || (mode === 'discard' && this.backing === null)) {
        // No zero flag in version 2 (reached only without a backing image for zeroing), and
        // nothing below a discarded cluster: unallocated reads as zeros.
        if (mode === 'discard' && this.backing !== null) continue; // v2: discard is only a hint
        this.setL2(t, j, 0, false);
        olds.push([hi, lo]);
      } else if (mode === 'zero' && kind === Kind.ZeroAlloc && this.eCopied) {
        continue;
      } else if (mode === 'zero' && kind === Kind.Normal && this.eCopied) {
        this.setL2(t, j, this.eOff, true); // stays allocated, reads as zeros
      } else {
        this.setL2(t, j, 0, true, false);
        olds.push([hi, lo]);
      }
      if (first < 0) first = j;
      last = j;
    }
    if (first < 0) return;
    this.writeL2(t, l1i, first, last - first + 1);
    for (const [hi, lo] of olds) this.releaseEntry(hi, lo, (c) => freed.push(c));
  }

  /** Gives freed clusters' space back to the host (contiguous ranges, one hole each). */
  private punch(freed: number[]): void {
    freed.sort((a, b) => a - b);
    for (let i = 0; i < freed.length;) {
      let j = i + 1;
      while (j < freed.length && freed[j] === freed[j - 1] + 1) j++;
      // Only clusters that are still free (nothing was allocated in between: all synchronous).
      punchHole(this.path, freed[i] * this.cs, (j - i) * this.cs);
      i = j;
    }
  }

  refreshCapacity(): boolean {
    // A qcow2 image is resized only while no VM uses it (vmctl disk resize takes its lock).
    return false;
  }

  /**
   * Grows the virtual size (the image must be open for writing, by nobody else). The L1 table
   * grows in place when its clusters have room; otherwise a larger copy is written elsewhere and
   * the header switches to it in one write, after an fsync, before the old one is freed.
   */
  grow(newSize: number): void {
    this.checkWritable();
    if (newSize < this.size) throw new DiskError('INVALID', `${this.path}: shrinking a qcow2 image is not supported`);
    const refs = this.refs;
    const h = this.header;
    const need = Math.ceil(newSize / this.l2Cover);
    if (need * 8 > MAX_L1_BYTES) throw new DiskError('INVALID', `${this.path}: ${newSize} bytes is too large for ${this.cs}-byte clusters (the L1 table would exceed ${MAX_L1_BYTES} bytes)`);
    let l1Offset = h.l1TableOffset;
    const l1Size = Math.max(need, h.l1Size);
    const haveClusters = Math.ceil((h.l1Size * 8) / this.cs);
    const needClusters = Math.ceil((l1Size * 8) / this.cs);
    if (l1Size > h.l1Size && (h.l1Size === 0 || needClusters > haveClusters)) {
      const raw = new Uint8Array(needClusters * this.cs);
      for (let i = 0; i < h.l1Size; i++) {
        if (this.l1Off[i] === 0) continue;
        setBe64(raw, i * 8, this.l1Off[i]);
        if (this.l1Copied[i]) raw[i * 8] |= 0x80;
      }
      const c = refs.allocateRun(needClusters);
      this.file.write(raw, c * this.cs);
      this.grew((c + needClusters) * this.cs);
      refs.markUsed(c, needClusters);
      l1Offset = c * this.cs;
    } else if (l1Size > h.l1Size) {
      // The new entries are in clusters the table already owns: make sure they read as empty.
      this.file.write(new Uint8Array((l1Size - h.l1Size) * 8), h.l1TableOffset + h.l1Size * 8);
    }
    this.file.sync();
    // size (24), crypt_method (32), l1_size (36), l1_table_offset (40): one write.
    const b = new Uint8Array(24);
    setBe64(b, 0, newSize);
    setBe32(b, 12, l1Size);
    setBe64(b, 16, l1Offset);
    this.file.write(b, H.size);
    this.file.sync();
    const oldL1 = h.l1TableOffset;
    const oldClusters = haveClusters;
    this.setHeader({ ...h, size: newSize, l1Size, l1TableOffset: l1Offset });
    const off = new Float64Array(l1Size);
    off.set(this.l1Off);
    const copied = new Uint8Array(l1Size);
    copied.set(this.l1Copied);
    this.l1Off = off;
    this.l1Copied = copied;
    this.size = newSize;
    if (l1Offset !== oldL1 && h.l1Size > 0) refs.release(oldL1 / this.cs, oldClusters);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      this.file.close();
    } finally {
      this.backing?.close();
    }
  }
}
