// Checks a VM's boot images the way the board will load them, so that a kernel the board would
// refuse at `start` (a 32-bit or non-RISC-V ELF, segments outside RAM or over the firmware, an
// initrd that does not fit) is refused by `validate` and `create`, at the YAML key that names it.
//
// The images go through the board's own loader (src/board/loader.ts), placed in the extent of the
// VM's RAM (RamExtent) rather than in RAM: the same placement and checks, and nothing is copied;
// of a Linux Image or raw binary only the header is read (measured: checking the Linux test
// guest's 3 MB kernel into a scratch RAM cost the daemon's definition thread 3.3 MiB of RSS). Images are placed by src/board/boot-layout.ts, as VirtMachine.load places
// them (QEMU's hw/riscv/boot.c): firmware at DRAM base, then the kernel, the initrd, and the
// device tree (with the cmdline in /chosen/bootargs) in the last 2 MiB aligned block below the
// top of RAM, above kernel and initrd.

import { buildDeviceTree } from '../board/device-tree.js';
import { loadImage, LoadError, RamExtent, type LoadedImage } from '../board/loader.js';
import type { FirmwareSpec } from '../board/machine-types.js';
import { DRAM_BASE } from '../board/memory-map.js';
import { fdtLoadAddress, initrdLoadAddress, kernelLoadAddress } from '../board/boot-layout.js';
import { CHUNK_SIZE } from '../memory/ram.js';
import { FileRefused, regularFileSize, withRegular } from '../host/regular-file.js';
import { quotePath } from './quote.js';
import { formatSize } from './units.js';

const MiB = 1024 * 1024;

export interface BootImageProblem {
  readonly key: 'boot.firmware' | 'boot.kernel' | 'boot.initrd' | 'boot.cmdline' | 'memory';
  readonly message: string;
}

const hex = (n: number): string => `0x${n.toString(16)}`;

export function bootImageProblems(boot: { firmware: FirmwareSpec; kernel?: string; initrd?: string; cmdline: string }, memoryBytes: number, cpus: number): BootImageProblem[] {
  const problems: BootImageProblem[] = [];
  const ramEnd = DRAM_BASE + memoryBytes;
  const ram = new RamExtent(DRAM_BASE, Math.ceil(memoryBytes / CHUNK_SIZE) * CHUNK_SIZE);

  // A file replaced since it was checked (a FIFO, a symlink to /dev/zero) is refused, not waited on.
  const refused = (key: BootImageProblem['key'], path: string, e: unknown): null => {
    if (!(e instanceof FileRefused)) throw e;
    problems.push({ key, message: `${key}: ${quotePath(path)} ${e.reason}` });
    return null;
  };

  const load = (key: 'boot.firmware' | 'boot.kernel', path: string, at: number): LoadedImage | null => {
    let img: LoadedImage;
    try {
      // An image can never be larger than the memory it goes to: nothing more is read.
      img = withRegular(path, { maxBytes: memoryBytes, tooLarge: (size) => `is ${formatSize(size)}, more than the ${formatSize(memoryBytes)} of memory; expected a larger memory: or a smaller image` },
        (f) => loadImage(ram, f, at));
    } catch (e) {
      if (!(e instanceof LoadError)) return refused(key, path, e);
      // LoadError's message starts with the path already.
      problems.push({ key, message: `${key}: ${e.message}` });
      return null;
    }
    if (img.end > ramEnd) {
      problems.push({ key, message: `${key}: ${quotePath(path)} needs RAM up to ${hex(img.end)}, but the ${formatSize(memoryBytes)} of memory end at ${hex(ramEnd)}; expected memory: of at least ${formatSize(Math.ceil((img.end - DRAM_BASE) / MiB) * MiB)}` });
      return null;
    }
    return img;
  };

  let firmware: LoadedImage | null = null;
  if (boot.firmware.kind === 'file') firmware = load('boot.firmware', boot.firmware.path, DRAM_BASE);

  let kernel: LoadedImage | null = null;
  if (boot.kernel !== undefined) {
    const at = kernelLoadAddress(boot.firmware.kind, firmware?.end ?? null);
    kernel = load('boot.kernel', boot.kernel, at);
    // The board loads the firmware first and the kernel over it: the firmware would be corrupt.
    if (kernel && firmware && kernel.start < firmware.end && firmware.start < kernel.end) {
      problems.push({ key: 'boot.kernel', message: `boot.kernel: ${quotePath(boot.kernel)} loads at ${hex(kernel.start)}..${hex(kernel.end)}, over the firmware at ${hex(firmware.start)}..${hex(firmware.end)}; expected a kernel linked at or above ${hex(at)}` });
    }
  }

  let initrd: { start: number; end: number } | undefined;
  if (boot.initrd !== undefined && kernel) {
    let size: number;
    try {
      size = regularFileSize(boot.initrd);
    } catch (e) {
      refused('boot.initrd', boot.initrd, e);
      return problems;
    }
    const start = initrdLoadAddress(kernel.entry, memoryBytes);
    if (start + size > ramEnd) {
      problems.push({ key: 'boot.initrd', message: `boot.initrd: ${quotePath(boot.initrd)} is ${formatSize(size)}; loaded at ${hex(start)} it needs RAM up to ${hex(start + size)}, but the ${formatSize(memoryBytes)} of memory end at ${hex(ramEnd)}; expected more memory: or a smaller initrd` });
      return problems;
    }
    initrd = { start, end: start + size };
  }

  if (problems.length > 0) return problems;
  const below = initrd?.end ?? kernel?.end ?? firmware?.end ?? DRAM_BASE;
  const fits = (dtbBytes: number): boolean => {
    const fdtAddr = fdtLoadAddress(memoryBytes, dtbBytes);
    return fdtAddr >= DRAM_BASE && fdtAddr >= below;
  };
  const dtbBytes = buildDeviceTree({ cpus, memoryBytes, bootargs: boot.cmdline, initrd }).length;
  if (!fits(dtbBytes)) {
    const what = initrd ? 'the initrd' : kernel ? 'the kernel' : 'the firmware';
    // Blame the cmdline when the tree would fit without it.
    const key = boot.cmdline !== '' && fits(buildDeviceTree({ cpus, memoryBytes, initrd }).length) ? 'boot.cmdline' : 'memory';
    const need = Math.ceil((Math.ceil((below - DRAM_BASE) / (2 * MiB)) * 2 * MiB + dtbBytes) / MiB) * MiB;
    problems.push({ key, message: `${key}: no room for the device tree (${dtbBytes} bytes, ${Buffer.byteLength(boot.cmdline)} of them the cmdline): ` +
      `it goes at a 2MiB boundary below the end of the ${formatSize(memoryBytes)} of memory (${hex(ramEnd)}) and above ${what} (which ends at ${hex(below)}); ` +
      `expected ${key === 'boot.cmdline' ? 'a shorter cmdline or ' : ''}memory: of at least ${formatSize(need)}` });
  }
  return problems;
}
