// The reset vector at 0x1000, doing what QEMU's does (hw/riscv/boot.c riscv_setup_rom_reset_vec):
// every hart starts here in M-mode, loads a0 = mhartid, a1 = device-tree address and
// a2 = address of a fw_dynamic_info block, then jumps to the firmware (or to the kernel entry
// when there is no firmware). fw_dynamic_info is OpenSBI's (include/sbi/fw_dynamic.h):
// { magic "OSBI" = 0x4942534f, version 2, next_addr, next_mode, options, boot_hart }, each a
// 64-bit word; next_addr is where OpenSBI's fw_dynamic jumps, next_mode 1 = S-mode.

export const FW_DYNAMIC_INFO_MAGIC = 0x4942534f;
export const FW_DYNAMIC_INFO_VERSION = 2;
export const FW_DYNAMIC_NEXT_MODE_S = 1;

export interface BootRomParams {
  /** Where the harts jump: firmware (0x80000000) or the kernel entry. */
  readonly startAddr: number;
  readonly fdtAddr: number;
  /** fw_dynamic_info.next_addr: the kernel's load address (what OpenSBI starts in S-mode). */
  readonly nextAddr: number;
  /** fw_dynamic_info.boot_hart; QEMU puts 0 there. */
  readonly bootHart?: number;
}

const LO = (v: number) => v % 0x1_0000_0000 >>> 0;
const HI = (v: number) => Math.floor(v / 0x1_0000_0000) >>> 0;

export function buildBootRom(p: BootRomParams): Uint8Array {
  const words = [
    0x00000297,          // 1: auipc t0, 0              t0 = 0x1000
    0x02828613,          //    addi  a2, t0, 40         a2 = &fw_dynamic_info (0x1028)
    0xf1402573,          //    csrr  a0, mhartid
    0x0202b583,          //    ld    a1, 32(t0)         a1 = fdt_laddr
    0x0182b283,          //    ld    t0, 24(t0)         t0 = start_addr
    0x00028067,          //    jr    t0
    LO(p.startAddr), HI(p.startAddr),   // 0x1018 start_addr
    LO(p.fdtAddr), HI(p.fdtAddr),       // 0x1020 fdt_laddr
    // 0x1028 fw_dynamic_info
    FW_DYNAMIC_INFO_MAGIC, 0,
    FW_DYNAMIC_INFO_VERSION, 0,
    LO(p.nextAddr), HI(p.nextAddr),
    FW_DYNAMIC_NEXT_MODE_S, 0,
    0, 0,                               // options
    LO(p.bootHart ?? 0), HI(p.bootHart ?? 0),
  ];
  const rom = new Uint8Array(words.length * 4);
  const dv = new DataView(rom.buffer);
  words.forEach((w, i) => dv.setUint32(i * 4, w, true));
  return rom;
}

/** Read-only MMIO view of the ROM (QEMU maps it as ROM: writes are ignored). */
export class BootRom {
  private readonly image: Uint8Array;
  constructor(rom: Uint8Array, size: number) {
    this.image = new Uint8Array(size);
    this.image.set(rom);
  }
  read(offset: number, size: 1 | 2 | 4): number {
    const b = this.image;
    if (offset + size > b.length) return 0;
    if (size === 1) return b[offset];
    if (size === 2) return b[offset] | (b[offset + 1] << 8);
    return (b[offset] | (b[offset + 1] << 8) | (b[offset + 2] << 16) | (b[offset + 3] << 24)) >>> 0;
  }
  write(_offset: number, _size: 1 | 2 | 4, _value: number): void {}
  /** The ROM's bytes up to the last non-zero one (a machine's saved state keeps them, so a
   *  restored machine does not depend on the images it was booted from). */
  contents(): Uint8Array {
    let n = this.image.length;
    while (n > 0 && this.image[n - 1] === 0) n--;
    return this.image.slice(0, n);
  }
}
