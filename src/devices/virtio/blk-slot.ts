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
  private backend: BlockBackend;
  /** The image file at the top of the disk's chain (it changes when a snapshot adds a layer). */
  private path: string;
  private timer: ReturnType<typeof setInterval> | undefined;
  private closed = false;
  /** Every log line of the slot starts with this (the virtio-blk model's lines get it here). */
  private readonly name: string;
  /** The image is closed for a while (detach/attach): the machine must not run meanwhile. */
  private detached = false;

  constructor(private readonly opts: VirtioBlkSlotOptions) {
    this.path = opts.disk.path;
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

  /** Puts the image at `path` (a chain showing the guest the same disk: a snapshot's new overlay
   *  over the old top) behind the device; the old image is flushed and closed. */
  reopen(path: string): void {
    this.swap(this.open(path, false), path);
  }

  /** reopen() in two steps, so that several disks can switch together or not at all: open()
   *  the new image (checked: same size, same read-only flag), then swap() it in. `onCurrent`:
   *  the new image is an overlay over the current top, which is not opened again but becomes its
   *  backing image as it is (a snapshot: the switch costs one file's opening). */
  open(path: string, onCurrent: boolean): BlockBackend {
    const next = openDiskImage(path, this.opts.disk.readonly, onCurrent && !this.detached ? { path: this.path, backend: this.backend } : undefined);
    if (next.sectorCount() !== this.blk.backend.sectorCount()) {
      if (!onCurrent) next.close(); // (closing an overlay built on the current top would close that too)
      throw new RangeError(`${path} has ${next.sectorCount()} sectors; the disk ${this.opts.disk.name} has ${this.blk.backend.sectorCount()}`);
    }
    return next;
  }

  /** Returns the old image when the new one is built on it (it is not closed then: the new
   *  chain owns it), else null. */
  swap(next: BlockBackend, path: string, onCurrent = false): BlockBackend | null {
    this.blk.replaceBackend(next);
    const old = this.backend;
    if (!this.detached && !onCurrent) old.close();
    this.backend = next;
    this.path = path;
    this.detached = false;
    return onCurrent ? old : null;
  }

  /** Flushes and closes the image for a while (its files change: a snapshot's layers are
   *  merged); attach() opens it, or another chain showing the same disk, again. */
  detach(): void {
    if (this.detached || this.closed) return;
    this.backend.close();
    this.detached = true;
  }

  /** Looks at the image's size; a change becomes a config-change interrupt (5.2.4: capacity). */
  checkResize(): boolean {
    if (this.closed || this.detached) return false;
    try {
      if (!this.blk.refreshCapacity()) return false;
    } catch (e) {
      this.opts.log(`${this.name}: cannot read the size of ${this.path}: ${(e as Error).message}`);
      return false;
    }
    this.opts.log(`${this.name}: ${this.path} is now ${this.backend.sectorCount()} sectors; telling the guest`);
    this.transport.configChanged();
    return true;
  }

  /** Flushes (fsync) and closes the image. Called on power-off, stop and machine close. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    if (!this.detached) this.backend.close();
  }
}
