// Loading guest images into RAM: ELF64 executables, Linux RISC-V `Image` files and raw binaries.
//   ELF: ELF-64 Object File Format (System V gABI, "Program Header"); PT_LOAD segments go to
//        their physical addresses (p_paddr), as QEMU's load_elf does; the symbol table is
//        searched for `tohost`/`fromhost` (the HTIF convention of spike and riscv-tests).
//   Image: Linux Documentation/riscv/boot-image-header.rst: magic2 "RSC\x05" at 0x38,
//        image_size at 0x10; loaded as a flat binary at a 2 MiB aligned address.
//   raw: copied as is.

import type { GuestRam } from '../memory/ram.js';

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

function place(ram: GuestRam, path: string, addr: number, data: Uint8Array, memsz: number): void {
  if (!ram.contains(addr, Math.max(memsz, 1))) {
    throw new LoadError(path, `0x${addr.toString(16)}+0x${memsz.toString(16)} does not fit in RAM ` +
      `0x${ram.base.toString(16)}..0x${(ram.base + ram.size).toString(16)} (more memory, or a different link address?)`);
  }
  ram.write(addr, data);
  if (memsz > data.length) ram.zero(addr + data.length, memsz - data.length);
}

export function loadElf(ram: GuestRam, path: string, b: Uint8Array): LoadedImage {
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
    place(ram, path, paddr, b.subarray(offset, offset + filesz), memsz);
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

/** Loads a Linux `Image` or raw binary at `addr`. */
export function loadFlat(ram: GuestRam, path: string, b: Uint8Array, addr: number): LoadedImage {
  if (isLinuxImage(b)) {
    const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
    // image_size is the memory the kernel occupies once running (bss included); reserve it so
    // the initrd and device tree are not placed over it.
    const imageSize = Math.max(u64(dv, 0x10), b.length);
    place(ram, path, addr, b, b.length);
    return { kind: 'image', start: addr, end: addr + imageSize, entry: addr };
  }
  place(ram, path, addr, b, b.length);
  return { kind: 'raw', start: addr, end: addr + b.length, entry: addr };
}

/** Loads a kernel or firmware file: ELF at its own addresses, anything else at `addr`. */
export function loadImage(ram: GuestRam, path: string, bytes: Uint8Array, addr: number): LoadedImage {
  // Loading nothing would leave the harts to run whatever RAM holds (zeros: an illegal-instruction loop).
  if (bytes.length === 0) throw new LoadError(path, 'the file is empty (0 bytes)');
  return isElf(bytes) ? loadElf(ram, path, bytes) : loadFlat(ram, path, bytes, addr);
}
