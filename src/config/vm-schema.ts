// Every key of a VM definition, declared once (see src/config/schema.ts for the mechanism).
// Validation, defaults, the JSON Schema (schemas/vm.schema.json, `vmctl schema vm`), the README's
// key table and the comments of vm-config.example.yaml all come from here (`npm run schemas`
// regenerates the files; a test checks they are up to date).
//
// To add a key: declare it below, then carry its value into VmDefinition in vm-definition.ts.
// A key that takes a second form (`cpus: {count, shares, cap}`) is a new field of the mapping form
// in `shapes(...)` plus its place in `normalize`; do not declare a key before something uses it.

import { MAX_CPUS, VIRTIO_COUNT } from '../board/memory-map.js';
import { boolean, duration, integer, keywordOrPath, list, object, path, percent, shapes, size, string, type ObjectValue } from './schema.js';

export const VM_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;
export const VM_NAME_TEXT = 'letters, digits, ".", "_" or "-" (1..63 characters, starting with a letter or digit)';
export const MIN_MEMORY = 1024 * 1024;
export const MAX_MEMORY = 16 * 1024 ** 3;
/** The virt board has 8 virtio-mmio slots (0x10001000..0x10008000), one disk each. */
export const MAX_DISKS = VIRTIO_COUNT;
export { MAX_CPUS };
const MiB = 1024 * 1024;

export const cpuCount = integer({ min: 1, max: MAX_CPUS, description: 'Number of harts (virtual CPUs)', example: 2, required: true });
/** CPU shares (a relative weight, as cgroup v2's cpu.weight) and cap (percent of one host core per hart). */
export const DEFAULT_CPU_SHARES = 100;
export const DEFAULT_CPU_CAP = 100;
export const cpuShares = integer({
  min: 1, max: 10000, default: DEFAULT_CPU_SHARES, example: 100,
  description: 'Relative weight of this VM when harts of several VMs want more host cores than vmctl has',
  details: ['As cgroup v2\'s cpu.weight: a VM with shares 200 gets twice the CPU time of one with 100 while both are busy; the time is split among its busy harts.'],
});
export const cpuCap = percent({
  default: DEFAULT_CPU_CAP, example: '50%',
  description: 'The most of one host core each hart may take, even on an idle host',
  details: ['As VirtualBox\'s --cpu-execution-cap.'],
});
export interface CpuSettings { readonly count: number; readonly shares: number; readonly cap: number }
const memorySize = size({
  min: MIN_MEMORY, max: MAX_MEMORY, multipleOf: 4096, example: '128MiB', required: true,
  description: 'Guest RAM, allocated lazily as the guest touches it',
});

export const VM_SCHEMA = object({
  name: string({
    pattern: VM_NAME_RE, expectedText: VM_NAME_TEXT, numbersAsText: true, required: true,
    missing: 'a VM name like "demo" (or pass --name)',
    description: 'The VM\'s name (or give `vmctl create --name NAME`)',
    example: 'example',
  }),
  cpus: shapes({ scalar: cpuCount, map: object({ count: cpuCount, shares: cpuShares, cap: cpuCap }, { description: 'CPU settings' }) },
    (v): CpuSettings => (typeof v === 'number' ? { count: v, shares: DEFAULT_CPU_SHARES, cap: DEFAULT_CPU_CAP } : v as CpuSettings), {
      default: { count: 1, shares: DEFAULT_CPU_SHARES, cap: DEFAULT_CPU_CAP }, defaultText: '1', example: 2,
      description: 'Number of harts (virtual CPUs): a number, or a mapping with count, shares and cap',
    }),
  memory: shapes({ scalar: memorySize, map: object({ size: memorySize }, { description: 'Memory settings' }) },
    (v) => (typeof v === 'number' ? v : (v as { size: number }).size), {
      default: 128 * MiB, example: '128MiB',
      description: 'Guest RAM: a size, or a mapping with size',
      details: ['Units B, KiB, MiB, GiB (K, M, G, KB, MB, GB are read as binary too). RAM is allocated lazily as the guest touches it.'],
    }),
  boot: object({
    firmware: keywordOrPath({
      keywords: ['none', 'builtin'], pathText: 'a path to a firmware binary', default: { kind: 'none' },
      description: 'What runs in M-mode before the kernel',
      details: [
        'none: the kernel starts at its ELF entry (or 0x80000000 for a raw image) in M-mode.',
        'builtin: vmctl\'s own SBI firmware runs in M-mode; the kernel starts in S-mode at 0x80200000.',
        'A path: a firmware binary (e.g. OpenSBI fw_jump.bin) loaded at 0x80000000.',
      ],
      example: 'none',
    }),
    kernel: path({
      description: 'The kernel: an ELF file or a raw image (e.g. Linux\'s arch/riscv/boot/Image)',
      details: [
        'Required unless firmware is a path. validate/create load firmware, kernel, initrd and device tree as `start` will: '
        + 'a 32-bit or non-RISC-V ELF, a kernel over the firmware, or images that do not fit in memory are errors here, with the memory size that would fit.',
      ],
      example: './Image',
    }),
    initrd: path({ description: 'Initial ramdisk, loaded high in RAM and named in the device tree (/chosen)', example: './initrd.cpio.gz' }),
    cmdline: string({ expectedText: 'a string', default: '', description: 'Kernel command line (/chosen/bootargs)', example: 'console=ttyS0' }),
  }, {
    required: true,
    missing: 'a mapping with at least boot.kernel (or boot.firmware)',
    description: 'How the VM boots',
    rules: [{
      text: 'kernel is required unless firmware is a path',
      check: (boot, ok, present) => {
        const fw = boot.firmware as { kind: string };
        if (present('kernel') || !ok('firmware') || fw.kind === 'file') return null;
        return { key: 'kernel', message: `missing key "boot.kernel"; with firmware ${fw.kind} a kernel (ELF or raw image) is required` };
      },
      // draft-07 if/then: firmware none, builtin or absent (none) needs a kernel.
      jsonSchema: { if: { properties: { firmware: { enum: ['none', 'builtin'] } } }, then: { required: ['kernel'] } },
    }],
  }),
  disks: list(object({
    path: path({
      required: true, missing: 'the path of a raw disk image',
      description: 'A raw image; created sparse on create when it does not exist and size is given',
      details: ['vmctl removes an image it created on delete; existing images are never deleted.'],
      example: './root.img',
    }),
    size: size({ min: 512, multipleOf: 512, multipleText: '512 bytes (one sector)', example: '1GiB', description: 'Size of the image vmctl creates when path does not exist' }),
    readonly: boolean({
      default: false, description: 'Attach read-only (the image may be shared by several VMs)',
      details: ['A writable disk may not be the kernel, initrd or firmware file, nor the same image as another disk (symlinks are followed).'],
      example: false,
    }),
    name: string({
      // virtio-blk spec 5.2.6: VIRTIO_BLK_T_GET_ID returns at most 20 bytes.
      pattern: /^[A-Za-z0-9._-]{1,20}$/, expectedText: '1..20 letters, digits, ".", "_" or "-"',
      default: ({ index }) => `disk${index}`, defaultText: 'disk0, disk1, …',
      description: 'The serial the guest reads (VIRTIO_BLK_T_GET_ID), unique in the VM', example: 'root',
    }),
  }, { description: 'A disk' }), {
    expectedText: 'a list of disks (- path: ...)', nullIsAbsent: true, default: [],
    maxItems: MAX_DISKS, itemsText: 'disks', maxReason: `the board has ${MAX_DISKS} virtio slots`,
    description: 'Disks, attached as virtio-blk devices in this order',
  }),
  shutdown: object({
    console: string({
      expectedText: 'the text to type, like "poweroff\\n"', minLength: 1,
      description: 'Text typed on the serial console by `vmctl stop`; then vmctl waits for the guest to power off',
      example: 'poweroff\n',
    }),
    timeout: duration({
      default: 30_000, example: '30s',
      description: 'How long `stop` waits before powering off anyway (`stop --timeout` overrides)',
    }),
  }, {
    nullIsAbsent: true,
    description: 'How `vmctl stop` asks the guest to shut down; without console, stop powers off at once',
  }),
}, { description: 'A vmctl VM definition' });

export type VmFile = ObjectValue<typeof VM_SCHEMA.fields>;
