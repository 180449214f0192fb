// The virtio-mmio transport, modern interface only (virtio 1.2 section 4.2.2: "Version 2"),
// as QEMU's virt board exposes it with force-legacy=false.
//
// Register map (4.2.2, table "MMIO Device Register Layout"); control registers are 32-bit and
// 32-bit aligned (4.2.2.2: the driver MUST use only such accesses), device config from 0x100
// may be accessed with 8/16/32-bit accesses.
//
// Requests run synchronously: a QueueNotify write processes every available chain of that queue
// before the store retires, so the hart is held for exactly the I/O the driver asked for.
//
// The interrupt line is signalled as QEMU 7.2's virtio-mmio signals it (virtio_mmio_update_irq,
// level InterruptStatus != 0), because the PLIC makes a source pending on every high signal
// (plic.ts): when a notification is due (a used buffer the driver asked to hear about, 2.7.10;
// a configuration change), on every InterruptACK write, and on reset; reading InterruptStatus
// does not signal. So a used-buffer interrupt a handler never acknowledges is delivered once,
// and again only when the next request completes. Also as QEMU: a configuration notification
// sets both InterruptStatus bits (virtio_notify_config), and a device that has failed and
// announced it (DEVICE_NEEDS_RESET, QEMU's "broken") signals nothing more until it is reset.
// What a driver may get wrong is accepted as QEMU 7.2's hw/virtio/virtio-mmio.c accepts it, so
// that guests written against QEMU run unchanged:
//   - FEATURES_OK without VIRTIO_F_VERSION_1 (a driver that only ever writes feature page 0):
//     accepted; the device then follows the legacy layout where one differs (virtio-net's
//     10-byte header, 5.1.6.1);
//   - feature bits the device did not offer: masked off (QEMU's virtio_set_features), logged;
//   - DRIVER_OK without FEATURES_OK (the legacy initialisation order): the queues run with no
//     feature negotiated;
//   - rings that are not aligned as 2.7 asks, or a queue size that is not a power of 2: served.
// What would let a guest harm the host stays refused: a queue larger than QueueNumMax or of size
// 0, rings outside RAM, and every malformed chain (queue.ts) put the device in
// DEVICE_NEEDS_RESET, as QEMU's virtio_error does.

import type { MmioDevice } from '../../memory/bus.js';
import type { GuestRam } from '../../memory/ram.js';
import { SplitVirtqueue, VirtqueueError, type VirtqueueState } from './queue.js';

export const VIRTIO_MMIO_MAGIC = 0x74726976;       // "virt" little-endian
export const VIRTIO_MMIO_VERSION = 2;              // modern
export const VIRTIO_MMIO_VENDOR = 0x554d4551;      // "QEMU", what QEMU reports
export const VIRTIO_MMIO_SIZE = 0x1000;

export const REG = {
  MagicValue: 0x000, Version: 0x004, DeviceID: 0x008, VendorID: 0x00c,
  DeviceFeatures: 0x010, DeviceFeaturesSel: 0x014, DriverFeatures: 0x020, DriverFeaturesSel: 0x024,
  QueueSel: 0x030, QueueNumMax: 0x034, QueueNum: 0x038, QueueReady: 0x044, QueueNotify: 0x050,
  InterruptStatus: 0x060, InterruptACK: 0x064, Status: 0x070,
  QueueDescLow: 0x080, QueueDescHigh: 0x084, QueueDriverLow: 0x090, QueueDriverHigh: 0x094,
  QueueDeviceLow: 0x0a0, QueueDeviceHigh: 0x0a4,
  SHMSel: 0x0ac, SHMLenLow: 0x0b0, SHMLenHigh: 0x0b4, SHMBaseLow: 0x0b8, SHMBaseHigh: 0x0bc,
  QueueReset: 0x0c0,
  ConfigGeneration: 0x0fc, Config: 0x100,
} as const;

// Device status bits (2.1).
export const STATUS_ACKNOWLEDGE = 1;
export const STATUS_DRIVER = 2;
export const STATUS_DRIVER_OK = 4;
export const STATUS_FEATURES_OK = 8;
export const STATUS_DEVICE_NEEDS_RESET = 64;
export const STATUS_FAILED = 128;

// InterruptStatus bits (4.2.2).
export const INT_USED_BUFFER = 1;
export const INT_CONFIG_CHANGE = 2;

// Reserved feature bits (6).
export const VIRTIO_F_INDIRECT_DESC = 28;
export const VIRTIO_F_EVENT_IDX = 29;
export const VIRTIO_F_VERSION_1 = 32;

export const feature = (bit: number): bigint => 1n << BigInt(bit);

/** The device-type half of a virtio device (blk, ...): the transport owns queues and registers. */
export interface VirtioDeviceModel {
  /** Virtio device ID (5: 2 = block). */
  readonly deviceId: number;
  /** Largest size of each queue (QueueNumMax). */
  readonly queueMaxSizes: readonly number[];
  /** Device-specific feature bits; the transport adds VERSION_1, INDIRECT_DESC and EVENT_IDX. */
  deviceFeatures(): bigint;
  configRead(offset: number, size: 1 | 2 | 4): number;
  configWrite(offset: number, size: 1 | 2 | 4, value: number): void;
  /** Serves the chain currently popped on `queue`; returns the bytes written into its writable
   *  part (used.len). May throw VirtqueueError for a malformed request. */
  handleChain(queueIndex: number, queue: SplitVirtqueue): number;
  /** Device reset (status 0): forget negotiated state. */
  reset(): void;
  /** Called once FEATURES_OK is accepted, with the negotiated features. */
  featuresAccepted?(features: bigint): void;
  /** The driver notified a queue whose buffers the device fills on its own schedule (virtio-net's
   *  receive queue): return true to leave its chains in place (the device takes them later with
   *  VirtioMmioDevice.fillQueue); false to have them served by handleChain as usual. */
  queueNotified?(queueIndex: number): boolean;
  /** The driver set DRIVER_OK. */
  driverReady?(): void;
  /** The model's own state for a machine-state file (JSON), where it has any beyond the
   *  transport's (virtio-balloon: its target and the pages in it). */
  saveState?(): unknown;
  /** Puts a saved model state back (after the transport's; a state saved without one leaves the
   *  model as built). Throws a RangeError for a state that does not fit this device. */
  loadState?(s: unknown): void;
  /** The chains of one notify on `queueIndex` have all been served. */
  queueServed?(queueIndex: number): void;
}

export interface VirtioMmioOptions {
  readonly ram: GuestRam;
  readonly model: VirtioDeviceModel;
  /** Signals the device's interrupt line (PLIC source) at a level. */
  readonly setIrq: (level: boolean) => void;
  /** One line per problem (malformed ring, bad register access), for the VM's log. */
  readonly log: (message: string) => void;
  /** Prefix for log lines, e.g. "virtio-blk disk0 @0x10001000". */
  readonly name: string;
}

export interface VirtioMmioState {
  status: number; deviceFeaturesSel: number; driverFeaturesSel: number;
  /** bigints in hex */
  driverFeatures: string; negotiated: string;
  queueSel: number; interruptStatus: number; configGeneration: number; broken: boolean;
  queues: VirtqueueState[];
  /** The device model's own state (VirtioDeviceModel.saveState), when it has one. */
  model?: unknown;
}

export class VirtioMmioDevice implements MmioDevice {
  readonly queues: SplitVirtqueue[];
  private readonly model: VirtioDeviceModel;
  private readonly offered: bigint;
  private status = 0;
  private deviceFeaturesSel = 0;
  private driverFeaturesSel = 0;
  private driverFeatures = 0n;
  private negotiated = 0n;
  private queueSel = 0;
  private interruptStatus = 0;
  private configGeneration = 0;
  /** The device failed and told the driver: no more signals until reset (QEMU: vdev->broken). */
  private broken = false;

  constructor(private readonly opts: VirtioMmioOptions) {
    this.model = opts.model;
    this.queues = opts.model.queueMaxSizes.map((n) => new SplitVirtqueue(opts.ram, n));
    this.offered = opts.model.deviceFeatures() | feature(VIRTIO_F_VERSION_1) | feature(VIRTIO_F_INDIRECT_DESC) | feature(VIRTIO_F_EVENT_IDX);
  }

  /** Negotiated feature bits (0 before FEATURES_OK). */
  features(): bigint { return this.negotiated; }
  deviceStatus(): number { return this.status; }
  needsReset(): boolean { return (this.status & STATUS_DEVICE_NEEDS_RESET) !== 0; }

  /** Saved state: device status, feature negotiation, selectors, interrupt status, the
   *  configuration generation and every queue. The device-type half (virtio-blk) keeps nothing
   *  of its own: its configuration comes from the disk, which the board checks is the same. */
  saveState(): VirtioMmioState {
    return {
      status: this.status, deviceFeaturesSel: this.deviceFeaturesSel, driverFeaturesSel: this.driverFeaturesSel,
      driverFeatures: this.driverFeatures.toString(16), negotiated: this.negotiated.toString(16), queueSel: this.queueSel,
      interruptStatus: this.interruptStatus, configGeneration: this.configGeneration, broken: this.broken,
      queues: this.queues.map((q) => q.saveState()),
      ...(this.model.saveState ? { model: this.model.saveState() } : {}),
    };
  }

  /** Restores a saved transport; refuses one whose features this device does not offer (a disk
   *  that became read-only, say). The PLIC keeps its own pending state: nothing is signalled. */
  loadState(s: VirtioMmioState): void {
    const negotiated = BigInt(`0x${s.negotiated}`);
    if ((negotiated & ~this.offered) !== 0n) {
      throw new RangeError(`${this.opts.name}: the saved state negotiated features 0x${negotiated.toString(16)}, this device offers 0x${this.offered.toString(16)}`);
    }
    if (s.queues.length !== this.queues.length) throw new RangeError(`${this.opts.name}: the saved state has ${s.queues.length} queues, this device ${this.queues.length}`);
    this.status = s.status; this.deviceFeaturesSel = s.deviceFeaturesSel; this.driverFeaturesSel = s.driverFeaturesSel;
    this.driverFeatures = BigInt(`0x${s.driverFeatures}`); this.negotiated = negotiated; this.queueSel = s.queueSel;
    this.interruptStatus = s.interruptStatus; this.configGeneration = s.configGeneration; this.broken = s.broken;
    s.queues.forEach((q, i) => this.queues[i].loadState(q));
    if ((this.status & STATUS_FEATURES_OK) !== 0) this.model.featuresAccepted?.(this.negotiated);
    if (s.model !== undefined) this.model.loadState?.(s.model);
    // A running driver's device is live again (virtio-net: frames may be received).
    if ((this.status & STATUS_DRIVER_OK) !== 0 && !this.needsReset()) this.model.driverReady?.();
  }

  read(offset: number, size: 1 | 2 | 4): number {
    if (offset >= REG.Config) return this.model.configRead(offset - REG.Config, size);
    if (size !== 4 || (offset & 3) !== 0) {
      this.warnAccess(`${size}-byte read at +0x${offset.toString(16)}`);
      return 0;
    }
    const q = this.queues[this.queueSel];
    switch (offset) {
      case REG.MagicValue: return VIRTIO_MMIO_MAGIC;
      case REG.Version: return VIRTIO_MMIO_VERSION;
      case REG.DeviceID: return this.model.deviceId;
      case REG.VendorID: return VIRTIO_MMIO_VENDOR;
      case REG.DeviceFeatures: {
        if (this.deviceFeaturesSel > 1) return 0;
        return Number((this.offered >> BigInt(32 * this.deviceFeaturesSel)) & 0xffffffffn);
      }
      case REG.QueueNumMax: return q ? q.maxSize : 0;
      case REG.QueueNum: return q ? q.size : 0;
      case REG.QueueReady: return q && q.ready ? 1 : 0;
      case REG.InterruptStatus: return this.interruptStatus;
      case REG.Status: return this.status;
      case REG.QueueDescLow: return q ? q.descAddr >>> 0 : 0;
      case REG.QueueDescHigh: return q ? Math.floor(q.descAddr / 0x1_0000_0000) : 0;
      case REG.QueueDriverLow: return q ? q.availAddr >>> 0 : 0;
      case REG.QueueDriverHigh: return q ? Math.floor(q.availAddr / 0x1_0000_0000) : 0;
      case REG.QueueDeviceLow: return q ? q.usedAddr >>> 0 : 0;
      case REG.QueueDeviceHigh: return q ? Math.floor(q.usedAddr / 0x1_0000_0000) : 0;
      // 4.2.2: no shared memory regions: length reads as all ones (-1).
      case REG.SHMLenLow: case REG.SHMLenHigh: return 0xffffffff;
      case REG.SHMBaseLow: case REG.SHMBaseHigh: return 0xffffffff;
      case REG.ConfigGeneration: return this.configGeneration;
      default: return 0;
    }
  }

  write(offset: number, size: 1 | 2 | 4, value: number): void {
    if (offset >= REG.Config) {
      this.model.configWrite(offset - REG.Config, size, value);
      return;
    }
    if (size !== 4 || (offset & 3) !== 0) {
      this.warnAccess(`${size}-byte write at +0x${offset.toString(16)}`);
      return;
    }
    value >>>= 0;
    const q = this.queues[this.queueSel];
    switch (offset) {
      case REG.DeviceFeaturesSel: this.deviceFeaturesSel = value; return;
      case REG.DriverFeaturesSel: this.driverFeaturesSel = value; return;
      case REG.DriverFeatures: {
        // 3.1.1: features are fixed once FEATURES_OK is set.
        if ((this.status & STATUS_FEATURES_OK) !== 0 || this.driverFeaturesSel > 1) return;
        const shift = BigInt(32 * this.driverFeaturesSel);
        this.driverFeatures = (this.driverFeatures & ~(0xffffffffn << shift)) | (BigInt(value) << shift);
        return;
      }
      case REG.QueueSel: this.queueSel = value; return;
      case REG.QueueNum: if (q && !q.ready) q.size = value; return;
      case REG.QueueReady: this.setQueueReady(q, value); return;
      case REG.QueueNotify: this.notify(value & 0xffff); return;
      case REG.InterruptACK:
        this.interruptStatus &= ~value;
        this.signal();
        return;
      case REG.Status: this.setStatus(value & 0xff); return;
      case REG.QueueDescLow: if (q && !q.ready) q.descAddr = setLow(q.descAddr, value); return;
      case REG.QueueDescHigh: if (q && !q.ready) q.descAddr = setHigh(q.descAddr, value); return;
      case REG.QueueDriverLow: if (q && !q.ready) q.availAddr = setLow(q.availAddr, value); return;
      case REG.QueueDriverHigh: if (q && !q.ready) q.availAddr = setHigh(q.availAddr, value); return;
      case REG.QueueDeviceLow: if (q && !q.ready) q.usedAddr = setLow(q.usedAddr, value); return;
      case REG.QueueDeviceHigh: if (q && !q.ready) q.usedAddr = setHigh(q.usedAddr, value); return;
      default: return; // read-only or unknown registers: writes are ignored
    }
  }

  /**
   * For a device that fills a queue when it has something for the driver (virtio-net's receive
   * queue), outside of any notify: runs `fill` with the queue when the driver has it ready, then
   * raises the used-buffer interrupt the driver asked for (`fill` asks for a notification with
   * SplitVirtqueue.notifyOnNextAvail when it waits for buffers). A malformed ring puts the device in DEVICE_NEEDS_RESET. Returns false (without
   * calling `fill`) when the queue cannot be used now: not ready, DRIVER_OK not set, needs reset.
   */
  fillQueue(index: number, fill: (q: SplitVirtqueue) => void): boolean {
    const q = this.queues[index];
    if (q === undefined || !q.ready || this.needsReset() || (this.status & STATUS_DRIVER_OK) === 0) return false;
    const oldUsed = q.usedIdx;
    try {
      fill(q);
    } catch (e) {
      if (e instanceof VirtqueueError || e instanceof RangeError) this.fail(`queue ${index}: ${e.message}`);
      else this.fail(`queue ${index}: internal error: ${(e as Error).stack ?? String(e)}`);
      return false;
    }
    if (q.needsInterrupt(oldUsed)) {
      this.interruptStatus |= INT_USED_BUFFER;
      this.signal();
    }
    return true;
  }

  /** The device configuration changed (e.g. the disk grew): bump the generation and, once the
   *  driver is running, raise a configuration change notification (4.2.3.4 / 2.5). */
  configChanged(): void {
    this.configGeneration = (this.configGeneration + 1) >>> 0;
    if ((this.status & STATUS_DRIVER_OK) !== 0) this.notifyConfig();
  }

  /** Puts the device into DEVICE_NEEDS_RESET (2.1.2) and tells the driver with a config change
   *  notification; until the driver resets the device, queues are no longer processed. */
  fail(reason: string): void {
    this.opts.log(`${this.opts.name}: ${reason}; device needs reset`);
    if (this.needsReset()) return;
    this.status |= STATUS_DEVICE_NEEDS_RESET;
    if ((this.status & STATUS_DRIVER_OK) !== 0) this.announceFailure();
  }

  private setStatus(value: number): void {
    if (value === 0) {
      this.reset();
      return;
    }
    let v = value & ~STATUS_DEVICE_NEEDS_RESET; // device-owned bit
    if ((v & STATUS_FEATURES_OK) !== 0 && (this.status & STATUS_FEATURES_OK) === 0) {
      // 3.1.1 step 5-6. As QEMU (virtio_set_features): bits we did not offer are dropped rather
      // than refused, and a driver without VIRTIO_F_VERSION_1 proceeds with legacy semantics.
      const extra = this.driverFeatures & ~this.offered;
      if (extra !== 0n) this.opts.log(`${this.opts.name}: driver accepted features 0x${extra.toString(16)} that were not offered; ignoring them`);
      this.negotiated = this.driverFeatures & this.offered;
      const indirect = (this.negotiated & feature(VIRTIO_F_INDIRECT_DESC)) !== 0n;
      const eventIdx = (this.negotiated & feature(VIRTIO_F_EVENT_IDX)) !== 0n;
      for (const q of this.queues) { q.indirectEnabled = indirect; q.eventIdxEnabled = eventIdx; }
      this.model.featuresAccepted?.(this.negotiated);
    }
    const becameOk = (v & STATUS_DRIVER_OK) !== 0 && (this.status & STATUS_DRIVER_OK) === 0;
    this.status = v | (this.status & STATUS_DEVICE_NEEDS_RESET);
    if (becameOk && !this.needsReset()) this.model.driverReady?.();
    // A failure found before DRIVER_OK (e.g. a bad queue at QueueReady) is announced once the
    // driver is ready to receive notifications.
    if (becameOk && this.needsReset()) this.announceFailure();
  }

  private announceFailure(): void {
    this.notifyConfig();
    this.broken = true;
  }

  /** A configuration change notification (2.5): QEMU sets the used-buffer bit too. */
  private notifyConfig(): void {
    this.interruptStatus |= INT_USED_BUFFER | INT_CONFIG_CHANGE;
    this.signal();
  }

  private reset(): void {
    this.status = 0;
    this.broken = false;
    this.driverFeatures = 0n;
    this.negotiated = 0n;
    this.deviceFeaturesSel = this.driverFeaturesSel = this.queueSel = 0;
    for (const q of this.queues) q.reset();
    this.interruptStatus = 0;
    this.signal();
    this.model.reset();
  }

  private setQueueReady(q: SplitVirtqueue | undefined, value: number): void {
    if (!q) return;
    if ((value & 1) === 0) {
      q.ready = false;
      return;
    }
    if (q.ready) return;
    const problem = q.validate();
    if (problem !== null) {
      this.fail(`queue ${this.queueSel}: ${problem}`);
      return;
    }
    q.ready = true;
  }

  private notify(index: number): void {
    const q = this.queues[index];
    // No FEATURES_OK needed (QEMU's virtio_queue_notify does not look at the status): a driver
    // using the legacy order runs with no feature negotiated.
    if (q === undefined || !q.ready || this.needsReset()) return;
    if (this.model.queueNotified?.(index) === true) return;
    const oldUsed = q.usedIdx;
    try {
      // Consume everything available, then (event index) tell the driver where we are and look
      // again, so a buffer added meanwhile is not left waiting for a notification (2.7.10).
      for (;;) {
        for (let head = q.pop(); head >= 0; head = q.pop()) {
          q.push(head, this.model.handleChain(index, q));
        }
        q.publishAvailEvent();
        if (!q.hasPending()) break;
      }
    } catch (e) {
      if (e instanceof VirtqueueError || e instanceof RangeError) this.fail(`queue ${index}: ${e.message}`);
      else this.fail(`queue ${index}: internal error: ${(e as Error).stack ?? String(e)}`);
    }
    if (!this.needsReset() && q.needsInterrupt(oldUsed)) {
      this.interruptStatus |= INT_USED_BUFFER;
      this.signal();
    }
    this.model.queueServed?.(index);
  }

  /** Signals the interrupt line at its level (every call is a signal, see above). */
  private signal(): void {
    if (!this.broken) this.opts.setIrq(this.interruptStatus !== 0);
  }

  private warnAccess(what: string): void {
    // A hostile guest can do this in a loop: the VM rate-limits its log lines (src/vm/log-limiter.ts).
    this.opts.log(`${this.opts.name}: ignored ${what} (control registers take aligned 32-bit accesses, 4.2.2.2)`);
  }
}

function setLow(addr: number, low: number): number {
  return Math.floor(addr / 0x1_0000_0000) * 0x1_0000_0000 + (low >>> 0);
}
function setHigh(addr: number, high: number): number {
  return (high >>> 0) * 0x1_0000_0000 + (addr % 0x1_0000_0000);
}
