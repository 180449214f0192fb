// Where the virt board puts each boot image in RAM, as QEMU's hw/riscv/boot.c does. The board's
// loader (virt.ts) and the VM definition's checks (config/boot-images.ts) both place images
// with these functions, so what `validate` accepts is what `start` loads.

import type { FirmwareSpec } from './machine-types.js';
import { DRAM_BASE, KERNEL_BASE_WITH_FIRMWARE } from './memory-map.js';

const MiB = 1024 * 1024;
const ALIGN = 2 * MiB;
/** riscv_load_fdt keeps the device tree below 3 GiB so that 32-bit kernels can reach it. */
const FDT_CEILING = 3 * 1024 * MiB;

/** The kernel's load address for raw images (ELFs go where their segments say): without
 *  firmware at DRAM base; with firmware at the first 2 MiB boundary after it (RV64), which is
 *  0x80200000 for OpenSBI and for the builtin SBI. `firmwareEnd` is null when no image is known. */
export function kernelLoadAddress(firmware: FirmwareSpec['kind'], firmwareEnd: number | null): number {
  if (firmware === 'none') return DRAM_BASE;
  if (firmware === 'builtin' || firmwareEnd === null) return KERNEL_BASE_WITH_FIRMWARE;
  return Math.max(KERNEL_BASE_WITH_FIRMWARE, Math.ceil(firmwareEnd / ALIGN) * ALIGN);
}

/** riscv_load_initrd: far enough above the kernel that it is not overwritten when the kernel
 *  unpacks, low enough to be in the kernel's lowmem. */
export function initrdLoadAddress(kernelEntry: number, memoryBytes: number): number {
  return kernelEntry + Math.min(memoryBytes / 2, 128 * MiB);
}

/** riscv_load_fdt: the top 2 MiB-aligned spot that holds `dtbBytes` below min(RAM end, 3 GiB).
 *  The caller checks that it lies above DRAM base and above the other images. */
export function fdtLoadAddress(memoryBytes: number, dtbBytes: number): number {
  const top = Math.min(DRAM_BASE + memoryBytes, FDT_CEILING);
  return Math.floor((top - dtbBytes) / ALIGN) * ALIGN;
}
