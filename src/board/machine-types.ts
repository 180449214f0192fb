// The contract between the VM runtime (src/vm, inside a VM's worker) and the board (src/board).
// The runtime builds a MachineConfig from a validated VM definition and drives the machine
// through VirtMachine (src/board/virt.ts); the machine reports back through MachineHost.

import type { BalloonSettings } from '../devices/virtio/balloon-slot.js';

export type { BalloonSettings };

export interface DiskAttachment {
  /** Absolute path of a raw image file. */
  readonly path: string;
  readonly readonly: boolean;
  /** virtio-blk serial the guest reads as its ID (disk0, disk1, ... by default). */
  readonly name: string;
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
  /** A virtio-balloon, in the highest virtio slot left (src/board/virtio-slots.ts); none when absent. */
  readonly balloon?: BalloonSettings;
}

/** Why the guest stopped running. `code` is the guest's own exit code (0..255). */
export type PowerEvent =
  | { readonly kind: 'poweroff'; readonly code: number; readonly source: 'test-finisher' | 'sbi' | 'htif' | 'other'; readonly failed: boolean }
  | { readonly kind: 'reset'; readonly source: 'test-finisher' | 'sbi' | 'other' };

export interface MachineHost {
  /** Bytes the guest wrote to its console (UART, or SBI/HTIF console). */
  consoleOutput(bytes: Uint8Array): void;
  /** The guest powered off or asked for a reset. The machine stops running after this. */
  powerEvent(ev: PowerEvent): void;
  /** A line for the VM's log (device errors, malformed virtqueues, ...). */
  log(message: string): void;
  /** RAM chunks were dropped (balloon): the host may now collect them. */
  memoryReleased?(): void;
}
