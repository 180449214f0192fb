// Where a virtual disk's blocks live, as the virtio-blk device sees them (TinyEMU's BlockDevice
// idea): a sector count and synchronous read/write/flush/zeroing. The device never learns whether
// the blocks are a sparse file, memory (tests) or something else.
//
// Synchronous on purpose: a request runs when the driver notifies the queue and completes before
// the hart continues, so "the guest saw it complete" always means "the backend call returned".

export const SECTOR_SIZE = 512;
export const SECTOR_SHIFT = 9;

export interface BlockBackend {
  /** Capacity in 512-byte sectors (virtio-blk `capacity`). Can change when the image is resized. */
  sectorCount(): number;
  readonly readonly: boolean;
  /** Fills the buffers, in order, from byte offset `sector * 512` (scatter: guest RAM pieces). */
  read(sector: number, bufs: readonly Uint8Array[]): void;
  /** Writes the buffers, in order, from `sector * 512`; when this returns, the data is in the
   *  host kernel (page cache is fine), so it survives the death of vmctl. */
  write(sector: number, bufs: readonly Uint8Array[]): void;
  /** Makes every completed write durable (fsync). */
  flush(): void;
  /** After this, the sectors read as zeros. `mayUnmap`: the space may be given back to the host. */
  writeZeroes(sector: number, count: number, mayUnmap: boolean): void;
  /** A hint that the sectors are unused; their contents afterwards are unspecified. */
  discard(sector: number, count: number): void;
  /** Re-reads the capacity from the backing store; true when it changed (resize while running). */
  refreshCapacity(): boolean;
  close(): void;
}

/** Backend over a Uint8Array (unit tests, scratch disks). */
export class MemoryBackend implements BlockBackend {
  flushes = 0;
  private sectors: number;
  constructor(public data: Uint8Array, readonly readonly = false) {
    if (data.length % SECTOR_SIZE !== 0) throw new RangeError('memory disk size must be a multiple of 512');
    this.sectors = data.length / SECTOR_SIZE;
  }
  sectorCount(): number { return this.sectors; }
  read(sector: number, bufs: readonly Uint8Array[]): void {
    let pos = sector * SECTOR_SIZE;
    for (const b of bufs) { b.set(this.data.subarray(pos, pos + b.length)); pos += b.length; }
  }
  write(sector: number, bufs: readonly Uint8Array[]): void {
    let pos = sector * SECTOR_SIZE;
    for (const b of bufs) { this.data.set(b, pos); pos += b.length; }
  }
  flush(): void { this.flushes++; }
  writeZeroes(sector: number, count: number): void { this.data.fill(0, sector * SECTOR_SIZE, (sector + count) * SECTOR_SIZE); }
  discard(sector: number, count: number): void { this.writeZeroes(sector, count); }
  refreshCapacity(): boolean {
    const n = this.data.length / SECTOR_SIZE;
    if (n === this.sectors) return false;
    this.sectors = n;
    return true;
  }
  /** Test hook: grows or shrinks the disk as a resize on the host would (seen at refreshCapacity). */
  resize(bytes: number): void {
    const d = new Uint8Array(bytes);
    d.set(this.data.subarray(0, Math.min(bytes, this.data.length)));
    this.data = d;
  }
  close(): void {}
}
