// SiFive test finisher ("sifive,test0", QEMU hw/misc/sifive_test.c) at 0x100000 on virt.
// A 32-bit write to offset 0 ends the machine: low 16 bits are the status, high 16 bits the code.
//   0x3333 FAIL (exit code = value >> 16), 0x5555 PASS (exit code 0), 0x7777 RESET.
// Linux's syscon-poweroff/syscon-reboot nodes point at this device with those values.
// Other values are ignored, and reads return 0, as in QEMU.

import type { MmioDevice } from '../memory/bus.js';

export const FINISHER_FAIL = 0x3333;
export const FINISHER_PASS = 0x5555;
export const FINISHER_RESET = 0x7777;

/** What the guest asked for; `code` is the exit code (0..255, as a process exit status). */
export type FinisherEvent = { readonly kind: 'pass' | 'fail' | 'reset'; readonly code: number };

export class TestFinisher implements MmioDevice {
  constructor(private readonly power: (ev: FinisherEvent) => void) {}

  read(_offset: number, _size: 1 | 2 | 4): number {
    return 0;
  }

  write(offset: number, size: 1 | 2 | 4, value: number): void {
    // QEMU's model takes 2- and 4-byte accesses at offset 0 (OpenSBI's driver uses a 16-bit
    // `writew`, so a 2-byte write carries the status alone and exit code 0).
    if (offset !== 0 || size === 1) return;
    const status = value & 0xffff;
    const code = (value >>> 16) & 0xffff;
    if (status === FINISHER_PASS) this.power({ kind: 'pass', code: 0 });
    else if (status === FINISHER_FAIL) this.power({ kind: 'fail', code: code & 0xff });
    else if (status === FINISHER_RESET) this.power({ kind: 'reset', code: 0 });
  }
}
