// Plugging a disk image into a virtio-mmio slot of the board: the image (raw, or qcow2 with its
// backing chain: src/disk/image.ts), the virtio-blk model and the transport, plus the watch that
// notices a resize while running.

import type { MmioDevice } from '../../memory/bus.js';
import type { GuestRam } from '../../memory/ram.js';
import { openDiskImage } from '../../disk/image.js';
import type { BlockBackend } from '../../disk/block-backend.js';
import { VirtioBlk } from './blk.js';
import { VirtioMmioDevice } from './mmio.js';

/** How often a running VM looks at its images' sizes (`vmctl disk resize` from another process). */
export const RESIZE_POLL_MS = 1000;

export interface VirtioBlkSlotOptions {
  /** The attachment (board's DiskAttachment): absolute path, read-only flag, virtio-blk ID. */
  readonly disk: { readonly path: string; readonly readonly: boolean; readonly name: string };
  readonly ram: GuestRam;
  /** The slot's PLIC source level. */
  readonly irq: (level: boolean) => void;
  readonly log: (message: string) => void;
  /** Slot base address, for messages. */
  readonly base: number;
  /** For tests: a backend instead of opening `disk.path`. */
  readonly backend?: BlockBackend;
  /** 0 disables the resize watch (tests drive checkResize themselves). */
  readonly resizePollMs?: number;
}

export class VirtioBlkSlot {
  readonly device: MmioDevice;
  readonly transport: VirtioMmioDevice;
  readonly blk: VirtioBlk;
  private readonly backend: BlockBackend;
  private timer: ReturnType<typeof setInterval> | undefined;
  private closed = false;
  /** Every log line of the slot starts with this (the virtio-blk model's lines get it here). */
  private readonly name: string;

  constructor(private readonly opts: VirtioBlkSlotOptions) {
    this.backend = opts.backend ?? openDiskImage(opts.disk.path, opts.disk.readonly);
    const name = `virtio-blk ${opts.disk.name} @0x${opts.base.toString(16)}`;
    this.name = name;
    this.blk = new VirtioBlk({ backend: this.backend, id: opts.disk.name, log: (m) => opts.log(`${name}: ${m}`) });
    this.transport = new VirtioMmioDevice({ ram: opts.ram, model: this.blk, setIrq: opts.irq, log: opts.log, name });
    this.device = this.transport;
    const every = opts.resizePollMs ?? RESIZE_POLL_MS;
    if (every > 0) {
      this.timer = setInterval(() => this.checkResize(), every);
      this.timer.unref(); // never keeps a process alive on its own
    }
  }

  /** Looks at the image's size; a change becomes a config-change interrupt (5.2.4: capacity). */
  checkResize(): boolean {
    if (this.closed) return false;
    try {
      if (!this.blk.refreshCapacity()) return false;
    } catch (e) {
      this.opts.log(`${this.name}: cannot read the size of ${this.opts.disk.path}: ${(e as Error).message}`);
      return false;
    }
    this.opts.log(`${this.name}: ${this.opts.disk.path} is now ${this.backend.sectorCount()} sectors; telling the guest`);
    this.transport.configChanged();
    return true;
  }

  /** Flushes (fsync) and closes the image. Called on power-off, stop and machine close. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.backend.close();
  }
}
