// A small LRU cache of metadata clusters (L2 tables, refcount blocks), keyed by their offset in
// the file. Bounded in bytes, so a huge or hostile image cannot make vmctl hold more than a few
// MiB of tables; buffers of evicted tables are reused, so a cache miss allocates nothing once the
// cache is full. The last hit is remembered apart: sequential I/O looks up the same table again
// and again.

export class ClusterCache {
  private readonly map = new Map<number, Uint8Array>();
  private spare: Uint8Array | null = null;
  private lastKey = -1;
  private last: Uint8Array | null = null;
  readonly maxEntries: number;

  constructor(readonly clusterBytes: number, maxBytes: number) {
    this.maxEntries = Math.max(2, Math.floor(maxBytes / clusterBytes));
  }

  get(key: number): Uint8Array | undefined {
    if (key === this.lastKey) return this.last!;
    const v = this.map.get(key);
    if (v !== undefined) {
      this.map.delete(key); // most recently used last
      this.map.set(key, v);
      this.lastKey = key;
      this.last = v;
    }
    return v;
  }

  /** A cluster-sized buffer for a table about to be cached (an evicted one when there is one). */
  buffer(): Uint8Array {
    const b = this.spare ?? new Uint8Array(this.clusterBytes);
    this.spare = null;
    return b;
  }

  set(key: number, v: Uint8Array): void {
    this.map.delete(key);
    this.map.set(key, v);
    this.lastKey = key;
    this.last = v;
    while (this.map.size > this.maxEntries) {
      const [oldest, buf] = this.map.entries().next().value as [number, Uint8Array];
      this.map.delete(oldest);
      this.spare = buf;
    }
  }

  delete(key: number): void {
    this.map.delete(key);
    if (key === this.lastKey) {
      this.lastKey = -1;
      this.last = null;
    }
  }
}

/** Big-endian 32-bit reads and writes on byte arrays (no DataView per table, no allocation). */
export function be32(b: Uint8Array, at: number): number {
  return ((b[at] << 24) | (b[at + 1] << 16) | (b[at + 2] << 8) | b[at + 3]) >>> 0;
}

export function setBe32(b: Uint8Array, at: number, v: number): void {
  b[at] = v >>> 24;
  b[at + 1] = (v >>> 16) & 0xff;
  b[at + 2] = (v >>> 8) & 0xff;
  b[at + 3] = v & 0xff;
}

/** A 64-bit big-endian field holding a file offset (< 2^53). */
export function setBe64(b: Uint8Array, at: number, v: number): void {
  setBe32(b, at, Math.floor(v / 0x1_0000_0000));
  setBe32(b, at + 4, v >>> 0);
}
