// The contract between the VM runtime (src/vm, inside a VM's worker) and the board (src/board).
// The runtime builds a MachineConfig from a validated VM definition and drives the machine
// through VirtMachine (src/board/virt.ts); the machine reports back through MachineHost.

import type { NetBackend } from '../net/nic.js';
import type { HartState } from '../riscv/hart.js';
import type { ClockState } from '../devices/clock.js';
import type { ClintState } from '../devices/clint.js';
import type { PlicState } from '../devices/plic.js';
import type { UartState } from '../devices/uart16550.js';
import type { RtcState } from '../devices/goldfish-rtc.js';
import type { VirtioMmioState } from '../devices/virtio/mmio.js';
import type { BalloonSettings } from '../devices/virtio/balloon-slot.js';

export type { BalloonSettings };

export interface DiskAttachment {
  /** Absolute path of a raw image file. */
  readonly path: string;
  readonly readonly: boolean;
  /** virtio-blk serial the guest reads as its ID (disk0, disk1, ... by default). */
  readonly name: string;
}

/** A host port forwarded to a guest port through the user-mode network (QEMU's hostfwd). */
export interface PortForward {
  readonly proto: 'tcp' | 'udp';
  /** The host address to listen on (127.0.0.1 unless the VM definition names another). */
  readonly hostAddress: string;
  /** 0: any free port (the bound one is reported back). */
  readonly hostPort: number;
  readonly guestPort: number;
}

/** Where a NIC's frames go (src/vm connects the card to it). */
export type NicNetwork =
  /** User-mode NAT: the TCP/IP stack of src/net in the VM's worker (QEMU's -netdev user). */
  | { readonly mode: 'user'; readonly forwards: readonly PortForward[]; readonly restrict: boolean }
  /** A daemon switch joining the NICs of several VMs (frames cross to the daemon thread). */
  | { readonly mode: 'switch'; readonly name: string };

export interface NicAttachment {
  /** "52:54:00:xx:xx:xx" */
  readonly mac: string;
  readonly network: NicNetwork;
}

export type FirmwareSpec =
  | { readonly kind: 'none' }              // hart starts at the kernel's entry in M-mode
  | { readonly kind: 'builtin' }           // our TypeScript SBI; kernel starts in S-mode at 0x80200000
  | { readonly kind: 'file'; readonly path: string }; // loaded at 0x80000000 (OpenSBI, ...)

export interface MachineConfig {
  readonly memoryBytes: number;
  readonly cpus: number;
  readonly firmware: FirmwareSpec;
  /** ELF or raw image (absolute path). */
  readonly kernelPath?: string;
  readonly initrdPath?: string;
  readonly cmdline: string;
  readonly disks: readonly DiskAttachment[];
  /** Network cards (virtio-net), in the VM definition's order; absent = none. Disks take the
   *  virtio-mmio slots from 0 up, NICs from 7 down (so Linux, which probes the highest slot
   *  first, calls the first NIC eth0). */
  readonly nics?: readonly NicAttachment[];
  /** Public keys (OpenSSH lines) put in the device tree for the guest's ssh server (vmctl ssh). */
  readonly sshAuthorizedKeys?: string;
  /** A virtio-balloon, in the highest virtio slot left (src/board/virtio-slots.ts); none when absent. */
  readonly balloon?: BalloonSettings;
}

/** Why the guest stopped running. `code` is the guest's own exit code (0..255). */
export type PowerEvent =
  | { readonly kind: 'poweroff'; readonly code: number; readonly source: 'test-finisher' | 'sbi' | 'htif' | 'other'; readonly failed: boolean }
  /** 'vmctl': asked for by `vmctl reset` (src/vm/run-loop.ts), ending the boot as a guest's reset does. */
  | { readonly kind: 'reset'; readonly source: 'test-finisher' | 'sbi' | 'other' | 'vmctl' };

export interface MachineHost {
  /** Bytes the guest wrote to its console (UART, or SBI/HTIF console). */
  consoleOutput(bytes: Uint8Array): void;
  /** The guest powered off or asked for a reset. The machine stops running after this. */
  powerEvent(ev: PowerEvent): void;
  /** A line for the VM's log (device errors, malformed virtqueues, ...). */
  log(message: string): void;
  /** The host side of NIC `index` of `config.nics`. Without it a NIC is connected to nothing
   *  (frames it sends are dropped, nothing arrives): enough to build a machine for its tree. */
  openNic?(index: number, nic: NicAttachment): NetBackend;
  /** Something outside the harts (a frame received from the network) raised an interrupt: an
   *  idle machine should run now rather than at its next timer. */
  wake?(): void;
  /** RAM chunks were dropped (balloon): the host may now collect them. */
  memoryReleased?(): void;
}

/** What a saved machine state must match to be loaded: the board as the VM's definition builds
 *  it (another memory size, hart count, firmware kind or disk set cannot take the state). */
export interface BoardShape {
  readonly harts: number;
  readonly memoryBytes: number;
  readonly firmware: FirmwareSpec['kind'];
  /** Each attached disk as the guest sees it (the image files may change: snapshots add layers). */
  readonly disks: readonly { readonly name: string; readonly readonly: boolean; readonly sectors: number }[];
  /** Each network card's MAC. */
  readonly nics: readonly string[];
  /** The memory-mapped devices by name, in address order. */
  readonly devices: readonly string[];
}

/** A whole machine at one instant, between two slices (VirtMachine.saveState): plain data apart
 *  from RAM; src/vm/machine-state.ts writes it to a file and reads it back. */
export interface MachineState {
  readonly shape: BoardShape;
  readonly board: {
    readonly nextHart: number;
    /** The boot ROM's bytes and the device tree as booted (base64): a restored machine does not
     *  load its images again. */
    readonly bootRom: string;
    readonly dtb: string;
    /** HTIF's tohost/fromhost addresses, when the booted ELF had them. */
    readonly htif: { readonly tohost: number; readonly fromhost: number | null } | null;
  };
  readonly harts: readonly HartState[];
  readonly devices: {
    readonly clock: ClockState;
    readonly clint: ClintState;
    readonly plic: PlicState;
    readonly uart: UartState;
    readonly rtc: RtcState;
    /** One per virtio-mmio slot (disks and network cards); null for an empty slot. (The test
     *  finisher and the empty slots hold no state; a network card's host side, the user-mode
     *  NAT or a switch port, is not part of the machine: the guest's connections through the NAT
     *  are reset after a restore (src/vm/networks.ts) and its port forwards are set up again.) */
    readonly virtio: readonly (VirtioMmioState | null)[];
  };
  /** The RAM chunks the guest touched (CHUNK_SIZE bytes each), by index from DRAM_BASE. */
  readonly ram: readonly { readonly index: number; readonly bytes: Uint8Array }[];
}
