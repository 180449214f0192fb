// The physical address space of one machine: RAM plus memory-mapped device regions.
// The hart consults this only on soft-TLB misses and for MMIO; RAM hits never come here.

import { GuestRam } from './ram.js';

/** A memory-mapped device: TinyEMU-style read/write callbacks on a physical range.
 *  `offset` is relative to the region base. Accesses are 1, 2 or 4 bytes; the bus splits an
 *  8-byte access into two 4-byte ones, low half first (devices that need an atomic 64-bit view,
 *  like mtime, latch the high half when the low half is read). */
export interface MmioDevice {
  read(offset: number, size: 1 | 2 | 4): number;
  write(offset: number, size: 1 | 2 | 4, value: number): void;
}

export interface MmioRegion {
  readonly base: number;
  readonly size: number;
  readonly name: string;
  readonly device: MmioDevice;
}

/** Called after a store lands in a watched RAM range (HTIF's `tohost`). */
export type WriteWatcher = (paddr: number, size: number) => void;

export class PhysicalMemoryMap {
  private readonly regions: MmioRegion[] = [];
  /** Page numbers (paddr >>> 12, as numbers) with a write watcher; the soft TLB never maps them writable. */
  private readonly watchedPages = new Map<number, { base: number; size: number; fn: WriteWatcher }[]>();

  constructor(readonly ram: GuestRam) {}

  addDevice(base: number, size: number, name: string, device: MmioDevice): void {
    for (const r of this.regions) {
      if (base < r.base + r.size && r.base < base + size) {
        throw new Error(`device ${name} at 0x${base.toString(16)} overlaps ${r.name} at 0x${r.base.toString(16)}`);
      }
    }
    this.regions.push({ base, size, name, device });
    this.regions.sort((a, b) => a.base - b.base);
  }

  /** The device region containing `paddr`, or null (RAM or unmapped). */
  findDevice(paddr: number): MmioRegion | null {
    for (const r of this.regions) if (paddr >= r.base && paddr < r.base + r.size) return r;
    return null;
  }

  listDevices(): readonly MmioRegion[] { return this.regions; }

  /** High word of the last 8-byte readDevice. */
  readHi = 0;

  /** Reads `size` (1, 2, 4 or 8) bytes at `offset` of device region `r`: an 8-byte access is two
   *  4-byte ones, low half first; the low word is returned and the high one left in readHi.
   *  (A machine whose devices live on another thread overrides this to forward the access
   *  whole, see src/board/smp.ts.) */
  readDevice(r: MmioRegion, offset: number, size: number): number {
    if (size === 8) {
      const lo = r.device.read(offset, 4);
      this.readHi = r.device.read(offset + 4, 4);
      return lo;
    }
    return r.device.read(offset, size as 1 | 2 | 4);
  }

  /** Writes `size` bytes at `offset` of device region `r` (an 8-byte access: low half first). */
  writeDevice(r: MmioRegion, offset: number, size: number, lo: number, hi: number): void {
    if (size === 8) {
      r.device.write(offset, 4, lo >>> 0);
      r.device.write(offset + 4, 4, hi >>> 0);
    } else {
      r.device.write(offset, size as 1 | 2 | 4, size === 4 ? lo >>> 0 : lo & (size === 1 ? 0xff : 0xffff));
    }
  }

  /** Registers a watcher for stores into [paddr, paddr+size) of RAM. */
  watchWrites(paddr: number, size: number, fn: WriteWatcher): void {
    for (let p = Math.floor(paddr / 4096); p <= Math.floor((paddr + size - 1) / 4096); p++) {
      const list = this.watchedPages.get(p) ?? [];
      list.push({ base: paddr, size, fn });
      this.watchedPages.set(p, list);
    }
  }

  /** True when stores to this physical page must take the slow path (and call notifyWrite). */
  isPageWatched(pageNumber: number): boolean {
    return this.watchedPages.size !== 0 && this.watchedPages.has(pageNumber);
  }

  /** Slow-path hook: the hart calls this after storing `size` bytes at `paddr` in a watched page. */
  notifyWrite(paddr: number, size: number): void {
    const list = this.watchedPages.get(Math.floor(paddr / 4096));
    if (!list) return;
    for (const w of list) if (paddr < w.base + w.size && w.base < paddr + size) w.fn(paddr, size);
  }
}
