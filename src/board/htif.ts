// HTIF, the host-target interface of spike and riscv-tests (riscv-isa-sim fesvr/htif.cc and
// riscv-pk machine/htif.h): the guest writes a 64-bit command to the `tohost` symbol,
//   bits 63:56 device, 55:48 command, 47:0 payload
//   device 0 command 0: payload odd -> exit with code payload >> 1;
//                       payload even -> address of a syscall block (magic_mem: which, a0, a1, a2)
//   device 1 command 1: console putchar (payload & 0xff)
// and the host answers by clearing `tohost` (and writing `fromhost` where a reply is due).
// QEMU only has HTIF with -machine spike; we offer it on virt to ELF guests that define tohost.

import type { GuestRam } from '../memory/ram.js';

const SYS_WRITE = 64;

export class Htif {
  constructor(private readonly ram: GuestRam, readonly tohost: number, private readonly fromhost: number | undefined,
              private readonly putchar: (b: number) => void, private readonly exit: (code: number) => void) {}

  /** A store landed in the tohost doubleword. Act once the high word has been written (an sd,
   *  or the second sw of an RV32-style pair), when the command is complete. */
  onWrite(paddr: number, size: number): void {
    if (paddr + size <= this.tohost + 4) return;
    const lo = this.ram.readU32(this.tohost);
    const hi = this.ram.readU32(this.tohost + 4);
    if (lo === 0 && hi === 0) return;
    const dev = hi >>> 24;
    const cmd = (hi >>> 16) & 0xff;
    const payload = (hi & 0xffff) * 0x1_0000_0000 + lo;
    this.ram.writeU32(this.tohost, 0);
    this.ram.writeU32(this.tohost + 4, 0);
    if (dev === 0 && cmd === 0) {
      if (payload % 2 === 1) { this.exit(Math.floor(payload / 2)); return; }
      this.syscall(payload);
    } else if (dev === 1 && cmd === 1) {
      this.putchar(lo & 0xff);
      this.reply(dev, cmd, 0x100 | (lo & 0xff)); // what spike's bcd device answers
    }
    // device 1 command 0 (getchar) and other devices: not offered; the command is dropped.
  }

  private syscall(block: number): void {
    if (!this.ram.contains(block, 32)) return;
    const which = this.ram.readU64(block);
    let ret = -38; // -ENOSYS
    if (which === SYS_WRITE) {
      const fd = this.ram.readU64(block + 8);
      const buf = this.ram.readU64(block + 16);
      const len = this.ram.readU64(block + 24);
      if ((fd === 1 || fd === 2) && this.ram.contains(buf, len)) {
        // in pieces: a guest may name gigabytes, the host must not allocate them at once
        const piece = new Uint8Array(Math.min(len, 64 * 1024));
        for (let off = 0; off < len; off += piece.length) {
          const n = Math.min(piece.length, len - off);
          this.ram.read(buf + off, piece.subarray(0, n));
          for (let i = 0; i < n; i++) this.putchar(piece[i]);
        }
        ret = len;
      }
    }
    this.ram.writeU32(block, ret >>> 0);
    this.ram.writeU32(block + 4, ret < 0 ? 0xffffffff : Math.floor(ret / 0x1_0000_0000));
    this.reply(0, 0, 1);
  }

  private reply(dev: number, cmd: number, payload: number): void {
    if (this.fromhost === undefined || !this.ram.contains(this.fromhost, 8)) return;
    this.ram.writeU32(this.fromhost, payload >>> 0);
    this.ram.writeU32(this.fromhost + 4, ((dev << 24) | (cmd << 16)) >>> 0);
  }
}
