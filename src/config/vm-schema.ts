// Every key of a VM definition, declared once (see src/config/schema.ts for the mechanism).
// Validation, defaults, the JSON Schema (schemas/vm.schema.json, `vmctl schema vm`), the README's
// key table and the comments of vm-config.example.yaml all come from here (`npm run schemas`
// regenerates the files; a test checks they are up to date).
//
// To add a key: declare it below, then carry its value into VmDefinition in vm-definition.ts.
// A key that takes a second form (`cpus: {count, shares, cap}`) is a new field of the mapping form
// in `shapes(...)` plus its place in `normalize`; do not declare a key before something uses it.

import { MAX_CPUS, VIRTIO_COUNT } from '../board/memory-map.js';
import { boolean, duration, integer, keywordOrPath, list, object, path, percent, shapes, size, string, type ObjectRule, type ObjectValue } from './schema.js';
import { formatSize } from './units.js';

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
/** The floor of the balloon target when `memory.min` is not given: what a small Linux guest
 *  still runs in (or all of the memory, when it is smaller). */
export const DEFAULT_MEMORY_MIN = 64 * 1024 * 1024;
/** `memory: SIZE`, or `memory: {size, min}`. */
export type MemoryValue = number | { size: number; min?: number };
/** The guest's memory size, whichever form was written. */
export const memoryBytesOf = (m: MemoryValue): number => (typeof m === 'number' ? m : m.size);
/** The balloon target's floor, whichever form was written. */
export const memoryMinOf = (m: MemoryValue): number => {
  const size = memoryBytesOf(m);
  return typeof m === 'object' && m.min !== undefined ? m.min : Math.min(size, DEFAULT_MEMORY_MIN);
};

// ---- network: NICs (virtio-net) and where their frames go (src/net) ----

/** A switch network's name (daemon config.yaml `networks:` keys, and `name:` of a switch NIC). */
export const NETWORK_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;
const NETWORK_NAME_TEXT = 'a network name: letters, digits, ".", "_" or "-" (1..63, starting with a letter or digit)';
const MAC_RE = /^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$/;
/** "2222", "0", "127.0.0.1:2222", "0.0.0.0:8080" (ranges are checked after the shape). */
const HOST_ENDPOINT_RE = /^(?:\d{1,3}(?:\.\d{1,3}){3}:)?\d{1,5}$/;

const forward = object({
  proto: string({ pattern: /^(tcp|udp)$/, expectedText: 'tcp or udp', default: 'tcp', description: 'tcp or udp', example: 'tcp' }),
  host: string({
    pattern: HOST_ENDPOINT_RE, expectedText: 'a port, or ADDRESS:PORT like "0.0.0.0:8080"', numbersAsText: true, required: true,
    missing: 'the host port (e.g. 2222, or "0.0.0.0:2222")',
    description: 'The host side: a port on 127.0.0.1, or ADDRESS:PORT (port 0: any free port)', example: 2222,
  }),
  guest: integer({ min: 1, max: 65535, required: true, description: 'The guest port', example: 22 }),
}, { description: 'A port forward, host -> guest (as QEMU\'s hostfwd)' });

/** A key of a NIC that belongs to one mode only. */
const onlyWithMode = (key: string, mode: string): ObjectRule => ({
  text: `${key} only with mode: ${mode}`,
  check: (nic, ok, present, pathOf) => (present(key) && ok('mode') && nic.mode !== mode
    ? { key, message: `${pathOf(key)}: ${key} is for mode: ${mode}, and this NIC is mode: ${String(nic.mode)}; expected no ${key} here` } : null),
  jsonSchema: { if: { required: [key] }, then: { properties: { mode: { const: mode } }, required: ['mode'] } },
});

const nic = object({
  mode: string({
    pattern: /^(user|switch)$/, expectedText: 'user or switch', default: 'user', example: 'user',
    description: 'user: NAT to the host and beyond (10.0.2.0/24, as QEMU\'s -netdev user); switch: a VM-to-VM network the daemon joins by name',
  }),
  name: string({ pattern: NETWORK_NAME_RE, expectedText: NETWORK_NAME_TEXT, description: 'The switch network to join (mode: switch); its settings are config.yaml\'s networks.NAME', example: 'lab' }),
  forwards: list(forward, {
    expectedText: 'a list of forwards (- { host: 2222, guest: 22 })', nullIsAbsent: true, default: [],
    description: 'Host ports forwarded to the guest (mode: user); 127.0.0.1 unless an address is given',
  }),
  restrict: boolean({
    default: false, example: false,
    description: 'As QEMU\'s restrict=on (mode: user): DHCP, ARP, ping to 10.0.2.2/10.0.2.3 and the forwards only; every other packet toward the outside is dropped',
  }),
  mac: string({
    pattern: MAC_RE, expectedText: 'a MAC address like 52:54:00:12:34:56',
    description: 'The NIC\'s MAC address; by default 52:54:00 and three bytes derived from the VM\'s UUID', example: '52:54:00:12:34:56',
  }),
}, {
  description: 'A network card (virtio-net)',
  rules: [
    {
      text: 'name is required with mode: switch',
      check: (n, ok, present, pathOf) => (ok('mode') && n.mode === 'switch' && !present('name')
        ? { key: 'name', message: `missing key "${pathOf('name')}"; a NIC with mode: switch needs the network's name` } : null),
      jsonSchema: { if: { properties: { mode: { const: 'switch' } }, required: ['mode'] }, then: { required: ['name'] } },
    },
    onlyWithMode('name', 'switch'), onlyWithMode('forwards', 'user'), onlyWithMode('restrict', 'user'),
  ],
});

export type NicFile = ObjectValue<typeof nic.fields>;
/** The network key as read: absent (the default NIC), none, or NICs. */
export type NetworkFile = { readonly kind: 'default' } | { readonly kind: 'list'; readonly nics: readonly NicFile[] };

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
  memory: shapes({
    scalar: memorySize,
    map: object({
      size: memorySize,
      min: size({
        min: MIN_MEMORY, max: MAX_MEMORY, multipleOf: 4096, example: '256MiB', defaultText: `${DEFAULT_MEMORY_MIN / MiB}MiB, or size when smaller`,
        description: 'The least memory the balloon leaves the guest (`vmctl set --memory-target`, the daemon\'s balloon policy)',
      }),
    }, {
      description: 'Memory settings',
      rules: [{
        text: 'min is at most size',
        check: (m, ok) => (ok('size') && ok('min') && m.min !== undefined && (m.min as number) > (m.size as number)
          ? { key: 'min', message: `memory.min: ${formatSize(m.min as number)} is more than memory.size (${formatSize(m.size as number)}); expected at most ${formatSize(m.size as number)}` }
          : null),
      }],
    }),
  }, (v) => v as MemoryValue, {
    default: 128 * MiB as MemoryValue, example: '128MiB',
    description: 'Guest RAM: a size, or a mapping with size and min',
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
      required: true, missing: 'the path of a disk image (raw or qcow2)',
      description: 'A raw or qcow2 image (told apart by its header, not its name); a raw image is created sparse on create when it does not exist and size is given',
      details: [
        'A qcow2 overlay brings its backing chain (vmctl disk create PATH --backing BASE); its backing files are shared read-only.',
        'vmctl removes an image it created on delete; existing images are never deleted.',
      ],
      example: './root.img',
    }),
    size: size({ min: 512, multipleOf: 512, multipleText: '512 bytes (one sector)', example: '1GiB', description: 'Size of the image vmctl creates when path does not exist' }),
    readonly: boolean({
      default: false, description: 'Attach read-only (the image may be shared by several VMs)',
      details: ['A writable disk may not be the kernel, initrd or firmware file, nor the same image as another disk (symlinks are followed), nor a backing file of another disk.'],
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
  network: shapes({
    scalar: string({ pattern: /^(none|user)$/, expectedText: 'none or user', description: 'none: no NIC; user: one NIC on user-mode NAT' }),
    seq: list(nic, {
      expectedText: 'a list of NICs (- mode: user)', maxItems: VIRTIO_COUNT, itemsText: 'NICs', maxReason: `the board has ${VIRTIO_COUNT} virtio slots`,
      description: 'NICs, in this order (eth0, eth1, ...)',
    }),
  }, (v, kind): NetworkFile => {
    if (kind === 'seq') return { kind: 'list', nics: v as NicFile[] };
    return v === 'none' ? { kind: 'list', nics: [] } : { kind: 'list', nics: [{ mode: 'user', name: undefined, forwards: [], restrict: false, mac: undefined }] };
  }, {
    default: (): NetworkFile => ({ kind: 'default' }), defaultText: 'one NIC on user-mode NAT',
    example: [{ mode: 'user', forwards: [{ host: 2222, guest: 22 }, { proto: 'udp', host: '0.0.0.0:5353', guest: 53 }], restrict: false }, { mode: 'switch', name: 'lab' }],
    description: 'Network cards: none, user (one NIC on user-mode NAT), or a list of NICs',
    details: [
      'Absent: one NIC on user-mode NAT, where a virtio slot is left after the disks (as QEMU and VirtualBox default to).',
      'A NIC takes a virtio slot from the top (slot 7 first), disks from the bottom: disks and NICs share the 8 slots.',
      'user-mode NAT: the guest is 10.0.2.15 (DHCP), the gateway 10.0.2.2 is also the host (its 127.0.0.1), DNS is 10.0.2.3.',
    ],
  }),
  balloon: object({
    enabled: boolean({
      default: true, example: true,
      description: 'Give the VM a virtio-balloon (QEMU\'s virtio-balloon-device)',
      details: [
        'Without a balloon: key the VM gets one where a virtio slot is left (8 slots: disks first), and validate warns when none is; '
        + 'with a balloon: key asking for one, a definition that leaves no slot for it is an error.',
      ],
    }),
    deflateOnOom: boolean({
      default: true, example: true,
      description: 'Offer VIRTIO_BALLOON_F_DEFLATE_ON_OOM: the guest takes pages back from the balloon rather than run out of memory',
    }),
    statsInterval: duration({
      default: 5_000, example: '5s',
      description: 'How often the guest is asked for its memory statistics (VIRTIO_BALLOON_F_STATS_VQ); 0 turns them off',
    }),
    freePageReporting: boolean({
      default: true, example: true,
      description: 'Offer VIRTIO_BALLOON_F_PAGE_REPORTING: memory the guest frees goes back to the host',
    }),
  }, {
    nullIsAbsent: true,
    description: 'The memory balloon: lets the host take memory back from the guest and give it again',
  }),
  shutdown: object({
    console: string({
      expectedText: 'the text to type, like "poweroff\\n"', minLength: 1,
      description: 'Text typed on the serial console by `vmctl stop`; then vmctl waits for the guest to power off',
      example: 'poweroff\n',
    }),
    timeout: duration({
      default: 30_000, example: '30s',
      description: 'How long `stop`, `restart` and `daemon stop` wait before powering off anyway (0: no limit; `stop --timeout` overrides)',
    }),
  }, {
    nullIsAbsent: true,
    description: 'How `vmctl stop` asks the guest to shut down; without console, stop powers off at once',
  }),
}, { description: 'A vmctl VM definition' });

export type VmFile = ObjectValue<typeof VM_SCHEMA.fields>;
