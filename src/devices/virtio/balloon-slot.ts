// Plugging a virtio-balloon into a virtio-mmio slot of the board: the model, the transport, the
// page bookkeeping behind it, and the timer that asks the guest for fresh statistics.

import type { MmioDevice } from '../../memory/bus.js';
import type { GuestRam } from '../../memory/ram.js';
import { PAGE_SIZE, PageReclaim } from '../../memory/reclaim.js';
import { VirtioBalloon, type BalloonStats } from './balloon.js';
import { VirtioMmioDevice } from './mmio.js';

export interface BalloonSettings {
  readonly deflateOnOom: boolean;
  readonly freePageReporting: boolean;
  /** How often the guest is asked for statistics; 0: never (the stats queue is not offered). */
  readonly statsIntervalMs: number;
}

export interface VirtioBalloonSlotOptions {
  readonly settings: BalloonSettings;
  readonly ram: GuestRam;
  /** Memory the guest is told about (RAM may be larger, up to its last whole chunk). */
  readonly guestBytes: number;
  /** Drops RAM chunks everywhere (VirtMachine.releaseChunks). */
  readonly dropChunks: (indices: readonly number[]) => void;
  readonly irq: (level: boolean) => void;
  readonly log: (message: string) => void;
  /** Slot base address, for messages. */
  readonly base: number;
}

/** What `vmctl info` shows of a balloon. */
export interface BalloonFigures {
  /** Memory the guest is asked to keep (its size minus the balloon target). */
  readonly targetBytes: number;
  /** Memory the guest has outside the balloon, by the pages it has put in (our own count). */
  readonly actualBytes: number;
  /** Bytes in the balloon. */
  readonly balloonBytes: number;
  /** The driver's own count (`actual` in config space), in bytes; null before it binds. */
  readonly driverBalloonBytes: number | null;
  readonly driverBound: boolean;
  readonly chunksDropped: number;
  readonly reportedBytes: number;
  readonly stats: BalloonStats;
}

export class VirtioBalloonSlot {
  readonly device: MmioDevice;
  readonly transport: VirtioMmioDevice;
  readonly balloon: VirtioBalloon;
  readonly reclaim: PageReclaim;
  private timer: ReturnType<typeof setInterval> | undefined;

  constructor(private readonly opts: VirtioBalloonSlotOptions) {
    const name = `virtio-balloon @0x${opts.base.toString(16)}`;
    this.reclaim = new PageReclaim(opts.ram, Math.floor(opts.guestBytes / PAGE_SIZE), opts.dropChunks);
    const s = opts.settings;
    this.balloon = new VirtioBalloon({
      reclaim: this.reclaim, statsVq: s.statsIntervalMs > 0, deflateOnOom: s.deflateOnOom, freePageReporting: s.freePageReporting,
      onStatsAvailable: (q) => this.transport.fillQueue(q, (vq) => this.balloon.takeStats(vq)),
    });
    this.transport = new VirtioMmioDevice({ ram: opts.ram, model: this.balloon, setIrq: opts.irq, log: opts.log, name });
    this.device = this.transport;
    if (s.statsIntervalMs > 0) {
      this.timer = setInterval(() => this.requestStats(), s.statsIntervalMs);
      this.timer.unref();
    }
  }

  /** Asks the guest for fresh statistics: returns the buffer it sent last time. Linux sends its
   *  first buffer before DRIVER_OK, when the device may not serve the queue yet: it is taken here. */
  requestStats(): boolean {
    const q = this.balloon.queueOf('stats');
    let given = false;
    if (q >= 0) {
      this.transport.fillQueue(q, (vq) => {
        this.balloon.takeStats(vq);
        given = this.balloon.requestStats(vq);
      });
    }
    return given;
  }

  /** Moves the balloon so that the guest keeps `bytes` of its memory (rounded down to pages). */
  setTarget(bytes: number): void {
    const keep = Math.min(this.opts.guestBytes, Math.max(0, Math.floor(bytes / PAGE_SIZE) * PAGE_SIZE));
    const pages = Math.floor(this.opts.guestBytes / PAGE_SIZE) - keep / PAGE_SIZE;
    if (pages === this.balloon.targetPages) return;
    this.balloon.setTargetPages(pages);
    this.transport.configChanged();
  }

  figures(): BalloonFigures {
    const guestPages = Math.floor(this.opts.guestBytes / PAGE_SIZE);
    const bound = (this.transport.deviceStatus() & 4) !== 0;
    return {
      targetBytes: (guestPages - this.balloon.targetPages) * PAGE_SIZE,
      actualBytes: (guestPages - this.reclaim.inflatedPages) * PAGE_SIZE,
      balloonBytes: this.reclaim.inflatedPages * PAGE_SIZE,
      driverBalloonBytes: bound ? this.balloon.actualPages * PAGE_SIZE : null,
      driverBound: bound,
      chunksDropped: this.reclaim.chunksDropped,
      reportedBytes: this.reclaim.reportedBytes,
      stats: this.balloon.figures(),
    };
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}
