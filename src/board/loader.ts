// Loading guest images into RAM: ELF64 executables, Linux RISC-V `Image` files and raw binaries.
//   ELF: ELF-64 Object File Format (System V gABI, "Program Header"); PT_LOAD segments go to
//        their physical addresses (p_paddr), as QEMU's load_elf does; the symbol table is
//        searched for `tohost`/`fromhost` (the HTIF convention of spike and riscv-tests).
//   Image: Linux Documentation/riscv/boot-image-header.rst: magic2 "RSC\x05" at 0x38,
//        image_size at 0x10; loaded as a flat binary at a 2 MiB aligned address.
//   raw: copied as is.
// A flat image is read from its file straight into guest RAM (never whole into a buffer of its
// own, which the allocator would keep: megabytes of the VM thread's memory); an ELF is read
// whole, as its headers may lie anywhere in it.

import type { RegularFileReader } from '../host/regular-file.js';

/** Where images are loaded: guest RAM (GuestRam), or only its extent when a VM definition is
 *  checked (RamExtent: the same placement and checks, nothing written). */
export interface LoadTarget {
  readonly base: number;
  readonly size: number;
  contains(paddr: number, len?: number): boolean;
  /** Writes `len` bytes of a source, a piece at a time: `source(dst, at)` fills `dst` with the
   *  source's bytes from offset `at` (GuestRam.writeFrom). */
  writeFrom(paddr: number, len: number, source: (dst: Uint8Array, at: number) => void): void;
  zero(paddr: number, len: number): void;
}

/** A boot image: its size, and its bytes read where they go (an open file, withRegular; or
 *  bytesImage for bytes already in memory). */
export type ImageFile = RegularFileReader;

/** An image whose bytes are in memory already. */
export function bytesImage(path: string, bytes: Uint8Array): ImageFile {
  return {
    path, size: bytes.length,
    read: (dst, pos) => { const b = bytes.subarray(pos, pos + dst.length); dst.set(b); return b.length; },
  };
}

/** The extent of guest RAM without the RAM: images are placed and checked as in GuestRam, and
 *  nothing is written or read (config/boot-images.ts checks a definition's images with it). */
export class RamExtent implements LoadTarget {
  constructor(readonly base: number, readonly size: number) {}
  contains(paddr: number, len = 1): boolean {
    return paddr >= this.base && paddr + len <= this.base + this.size;
  }
  writeFrom(paddr: number, len: number): void {
    if (!this.contains(paddr, len)) throw new RangeError(`guest physical range 0x${paddr.toString(16)}+${len} is outside RAM`);
  }
  zero(paddr: number, len: number): void {
    this.writeFrom(paddr, len);
  }
}

export interface LoadedImage {
  readonly kind: 'elf' | 'image' | 'raw';
  /** Lowest and highest (exclusive) physical addresses written, and where to start. */
  readonly start: number;
  readonly end: number;
  readonly entry: number;
  /** HTIF mailboxes found in an ELF's symbol table. */
  readonly tohost?: number;
  readonly fromhost?: number;
}

export class LoadError extends Error {
  constructor(readonly path: string, message: string) {
    super(`${path}: ${message}`);
    this.name = 'LoadError';
  }
}

const PT_LOAD = 1;
const SHT_SYMTAB = 2;
const EM_RISCV = 243;

export function isElf(b: Uint8Array): boolean {
  return b.length >= 4 && b[0] === 0x7f && b[1] === 0x45 && b[2] === 0x4c && b[3] === 0x46;
}

/** True for a Linux RISC-V `Image` (boot image header version 0.2+: magic2 "RSC\x05"). */
export function isLinuxImage(b: Uint8Array): boolean {
  return b.length >= 0x40 && b[0x38] === 0x52 && b[0x39] === 0x53 && b[0x3a] === 0x43 && b[0x3b] === 0x05;
}

function u64(dv: DataView, off: number): number {
  return dv.getUint32(off, true) + dv.getUint32(off + 4, true) * 0x1_0000_0000;
}

/** Puts `file` at `addr` followed by zeros up to `memsz` (an ELF segment's bss). */
function place(ram: LoadTarget, file: ImageFile, addr: number, memsz: number): void {
  if (!ram.contains(addr, Math.max(memsz, 1))) {
    throw new LoadError(file.path, `0x${addr.toString(16)}+0x${memsz.toString(16)} does not fit in RAM ` +
      `0x${ram.base.toString(16)}..0x${(ram.base + ram.size).toString(16)} (more memory, or a different link address?)`);
  }
  // Past the end of a file that shrank while it was read, zeros.
  ram.writeFrom(addr, file.size, (dst, at) => dst.fill(0, file.read(dst, at)));
  if (memsz > file.size) ram.zero(addr + file.size, memsz - file.size);
}

export function loadElf(ram: LoadTarget, path: string, b: Uint8Array): LoadedImage {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  if (b[4] !== 2) throw new LoadError(path, 'not a 64-bit ELF (EI_CLASS != ELFCLASS64)');
  if (b[5] !== 1) throw new LoadError(path, 'not a little-endian ELF');
  if (dv.getUint16(18, true) !== EM_RISCV) throw new LoadError(path, `not a RISC-V ELF (e_machine ${dv.getUint16(18, true)})`);
  const entry = u64(dv, 24);
  const phoff = u64(dv, 32);
  const shoff = u64(dv, 40);
  const phentsize = dv.getUint16(54, true);
  const phnum = dv.getUint16(56, true);
  const shentsize = dv.getUint16(58, true);
  const shnum = dv.getUint16(60, true);
  let start = Infinity, end = 0;
  for (let i = 0; i < phnum; i++) {
    const ph = phoff + i * phentsize;
    if (dv.getUint32(ph, true) !== PT_LOAD) continue;
    const offset = u64(dv, ph + 8);
    const paddr = u64(dv, ph + 24);
    const filesz = u64(dv, ph + 32);
    const memsz = u64(dv, ph + 40);
    if (memsz === 0) continue;
    if (offset + filesz > b.length) throw new LoadError(path, `segment ${i} lies outside the file`);
    place(ram, bytesImage(path, b.subarray(offset, offset + filesz)), paddr, memsz);
    start = Math.min(start, paddr);
    end = Math.max(end, paddr + memsz);
  }
  if (end === 0) throw new LoadError(path, 'no loadable segments');

  // HTIF mailboxes: look `tohost` and `fromhost` up in the symbol table.
  let tohost: number | undefined, fromhost: number | undefined;
  for (let i = 0; i < shnum && shoff !== 0; i++) {
    const sh = shoff + i * shentsize;
    if (dv.getUint32(sh + 4, true) !== SHT_SYMTAB) continue;
    const symOff = u64(dv, sh + 24);
    const symSize = u64(dv, sh + 32);
    const link = dv.getUint32(sh + 40, true);
    const entsize = u64(dv, sh + 56) || 24;
    const strSh = shoff + link * shentsize;
    const strOff = u64(dv, strSh + 24);
    for (let s = symOff; s + entsize <= symOff + symSize; s += entsize) {
      const name = cstr(b, strOff + dv.getUint32(s, true));
      if (name === 'tohost') tohost = u64(dv, s + 8);
      else if (name === 'fromhost') fromhost = u64(dv, s + 8);
    }
  }
  return { kind: 'elf', start, end, entry, tohost, fromhost };
}

function cstr(b: Uint8Array, off: number): string {
  let e = off;
  while (e < b.length && b[e] !== 0) e++;
  return new TextDecoder().decode(b.subarray(off, e));
}

/** Loads a Linux `Image` or raw binary at `addr`; only its header is read first. */
export function loadFlat(ram: LoadTarget, file: ImageFile, addr: number): LoadedImage {
  const head = new Uint8Array(Math.min(file.size, 0x40));
  file.read(head, 0);
  if (!isLinuxImage(head)) return loadRaw(ram, file, addr);
  place(ram, file, addr, file.size);
  // image_size is the memory the kernel occupies once running (bss included); reserve it so
  // the initrd and device tree are not placed over it.
  const imageSize = Math.max(u64(new DataView(head.buffer), 0x10), file.size);
  return { kind: 'image', start: addr, end: addr + imageSize, entry: addr };
}

/** Loads a file as it is at `addr` (an initrd, a raw binary). */
export function loadRaw(ram: LoadTarget, file: ImageFile, addr: number): LoadedImage {
  place(ram, file, addr, file.size);
  return { kind: 'raw', start: addr, end: addr + file.size, entry: addr };
}

/** Loads a kernel or firmware file: ELF at its own addresses, anything else at `addr`. */
export function loadImage(ram: LoadTarget, file: ImageFile, addr: number): LoadedImage {
  // Loading nothing would leave the harts to run whatever RAM holds (zeros: an illegal-instruction loop).
  if (file.size === 0) throw new LoadError(file.path, 'the file is empty (0 bytes)');
  const magic = new Uint8Array(Math.min(file.size, 4));
  file.read(magic, 0);
  if (!isElf(magic)) return loadFlat(ram, file, addr);
  const b = new Uint8Array(file.size);
  b.fill(0, file.read(b, 0));
  return loadElf(ram, file.path, b);
}
