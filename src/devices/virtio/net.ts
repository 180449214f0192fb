// virtio-net (virtio 1.2 section 5.1), as QEMU's `virtio-net-device`, over a NetBackend (the
// user-mode stack or a switch port, src/net).
//
// Queues: 0 = receiveq (the device fills buffers the driver posted), 1 = transmitq. No control
// queue (QEMU offers one; Linux works without it: no runtime MAC/filter/offload changes).
// Every frame is preceded by a struct virtio_net_hdr (5.1.6): 12 bytes when VIRTIO_F_VERSION_1
// or VIRTIO_NET_F_MRG_RXBUF is negotiated (num_buffers included), 10 bytes otherwise (a legacy-
// style driver, 5.1.6.1 "Legacy Interface: Device Operation").
//
// Offloads, offered only when the backend takes them (as QEMU offers them only with a vnet-hdr
// peer): CSUM + HOST_TSO4, the guest hands over TCP segments up to 64 KiB with the checksum left
// partial; GUEST_CSUM + GUEST_TSO4, the host hands the guest segments up to 64 KiB marked with
// their MSS. A stack that terminates TCP has no segmenting or checksumming to do for these, and
// the guest handles a fraction of the packets: they are what makes the user-mode network fast.

import type { FrameOffload, GuestNic, NetBackend } from '../../net/nic.js';
import { NET_HDR_F_DATA_VALID, NET_HDR_F_NEEDS_CSUM, NET_HDR_GSO_NONE } from '../../net/nic.js';
import { STATUS_DRIVER_OK, VIRTIO_F_VERSION_1, feature, type VirtioDeviceModel, type VirtioMmioDevice } from './mmio.js';
import { VirtqueueError, type SplitVirtqueue } from './queue.js';

export const VIRTIO_ID_NET = 1;

// Feature bits (5.1.3).
export const VIRTIO_NET_F_CSUM = 0;
export const VIRTIO_NET_F_GUEST_CSUM = 1;
export const VIRTIO_NET_F_MTU = 3;
export const VIRTIO_NET_F_MAC = 5;
export const VIRTIO_NET_F_GUEST_TSO4 = 7;
export const VIRTIO_NET_F_HOST_TSO4 = 11;
export const VIRTIO_NET_F_MRG_RXBUF = 15;
export const VIRTIO_NET_F_STATUS = 16;
export const VIRTIO_NET_S_LINK_UP = 1;

export const NET_QUEUE_SIZE = 256;     // QEMU 7.2's rx_queue_size / tx_queue_size default
export const NET_MTU = 1500;
export const RX_QUEUE = 0;
export const TX_QUEUE = 1;
/** Largest frame the guest may send: an IPv4 TSO segment of 64 KiB plus Ethernet and VLAN
 *  headers. Larger ones are dropped (a guest cannot make the host allocate more). */
export const MAX_TX_FRAME = 65535 + 14 + 4;
const MIN_FRAME = 14;

/** Device configuration layout (5.1.4, struct virtio_net_config): offset of each field. */
export const NET_CFG = { mac: 0, status: 6, maxVirtqueuePairs: 8, mtu: 10, size: 12 } as const;

export interface VirtioNetOptions {
  readonly mac: Uint8Array;
  readonly backend: NetBackend;
  readonly log: (message: string) => void;
}

export class VirtioNet implements VirtioDeviceModel, GuestNic {
  readonly deviceId = VIRTIO_ID_NET;
  readonly queueMaxSizes = [NET_QUEUE_SIZE, NET_QUEUE_SIZE];
  readonly mac: Uint8Array;
  /** Set by the slot once the transport exists. */
  transport: VirtioMmioDevice | null = null;
  private readonly config = new Uint8Array(NET_CFG.size);
  private hdrLen = 10;
  private mergeable = false;
  private guestCsum = false;
  private guestTso4 = false;
  private paused = false;
  private readonly hdr = new Uint8Array(12);
  private readonly hdrView = new DataView(this.hdr.buffer);
  private readonly txFrame = new Uint8Array(MAX_TX_FRAME);
  private readonly txOffload: FrameOffload = { flags: 0, gsoType: 0, gsoSize: 0, hdrLen: 0, csumStart: 0, csumOffset: 0 };
  private readonly views: Uint8Array[] = [];
  private readonly numBuffersAt: Uint8Array[] = [];
  private readonly heads: number[] = [];
  private readonly lens: number[] = [];
  private problems = 0;

  constructor(private readonly opts: VirtioNetOptions) {
    if (opts.mac.length !== 6) throw new RangeError('a MAC address has 6 bytes');
    this.mac = opts.mac.slice();
    this.config.set(this.mac, NET_CFG.mac);
    const c = new DataView(this.config.buffer);
    c.setUint16(NET_CFG.status, VIRTIO_NET_S_LINK_UP, true);
    c.setUint16(NET_CFG.maxVirtqueuePairs, 1, true);
    c.setUint16(NET_CFG.mtu, NET_MTU, true);
    opts.backend.attach(this);
  }

  get rxCsumOffload(): boolean { return this.guestCsum; }
  get rxTso4(): boolean { return this.guestTso4; }

  deviceFeatures(): bigint {
    let f = feature(VIRTIO_NET_F_MAC) | feature(VIRTIO_NET_F_STATUS) | feature(VIRTIO_NET_F_MTU) | feature(VIRTIO_NET_F_MRG_RXBUF);
    if (this.opts.backend.offloads) {
      f |= feature(VIRTIO_NET_F_CSUM) | feature(VIRTIO_NET_F_HOST_TSO4) | feature(VIRTIO_NET_F_GUEST_CSUM) | feature(VIRTIO_NET_F_GUEST_TSO4);
    }
    return f;
  }

  configRead(offset: number, size: 1 | 2 | 4): number {
    if (offset < 0 || offset + size > this.config.length) return 0;
    let v = 0;
    for (let i = size - 1; i >= 0; i--) v = (v << 8) | this.config[offset + i];
    return v >>> 0;
  }

  // The MAC is writable only through the control queue's VIRTIO_NET_CTRL_MAC_ADDR_SET (not
  // offered); with VERSION_1 the config space is read-only for the driver (5.1.4.2).
  configWrite(): void {}

  reset(): void {
    this.hdrLen = 10;
    this.mergeable = this.guestCsum = this.guestTso4 = false;
  }

  featuresAccepted(f: bigint): void {
    this.mergeable = (f & feature(VIRTIO_NET_F_MRG_RXBUF)) !== 0n;
    this.hdrLen = this.mergeable || (f & feature(VIRTIO_F_VERSION_1)) !== 0n ? 12 : 10;
    this.guestCsum = (f & feature(VIRTIO_NET_F_GUEST_CSUM)) !== 0n;
    this.guestTso4 = this.guestCsum && (f & feature(VIRTIO_NET_F_GUEST_TSO4)) !== 0n;
  }

  driverReady(): void {
    this.opts.backend.rxSpace();
  }

  queueNotified(queueIndex: number): boolean {
    if (queueIndex !== RX_QUEUE) return false;
    // New receive buffers: frames waiting on the host side may go in now.
    if (!this.paused) this.opts.backend.rxSpace();
    return true;
  }

  queueServed(queueIndex: number): void {
    if (queueIndex !== TX_QUEUE) return;
    try {
      this.opts.backend.txDone?.();
    } catch (e) {
      this.problem(`the network backend failed after a transmit burst: ${(e as Error).stack ?? String(e)}`);
    }
  }

  /** While the VM is paused nothing is written into its memory (as QEMU's can_receive). */
  setPaused(paused: boolean): void {
    if (this.paused === paused) return;
    this.paused = paused;
    if (!paused) this.opts.backend.rxSpace();
  }

  // ---- transmit: guest -> host ----

  handleChain(queueIndex: number, q: SplitVirtqueue): number {
    if (queueIndex !== TX_QUEUE) throw new VirtqueueError(`virtio-net: chain on queue ${queueIndex}`);
    // 5.1.6.2: every frame carries the header; QEMU treats a shorter chain as a broken driver.
    if (q.readableBytes < this.hdrLen) throw new VirtqueueError(`virtio-net transmit chain of ${q.readableBytes} bytes, shorter than the ${this.hdrLen}-byte header`);
    const t = this.transport;
    // QEMU drops what a driver transmits before DRIVER_OK (virtio_net_drop_tx_queue_data).
    if (t !== null && (t.deviceStatus() & STATUS_DRIVER_OK) === 0) return 0;
    const len = q.readableBytes - this.hdrLen;
    if (len < MIN_FRAME || len > MAX_TX_FRAME) {
      this.problem(`dropped a transmitted frame of ${len} bytes (expected ${MIN_FRAME}..${MAX_TX_FRAME})`);
      return 0;
    }
    q.readBytes(0, this.hdr.subarray(0, this.hdrLen));
    const frame = this.txFrame.subarray(0, len);
    q.readBytes(this.hdrLen, frame);
    const h = this.hdrView;
    const o = this.txOffload;
    o.flags = h.getUint8(0);
    o.gsoType = h.getUint8(1);
    o.hdrLen = h.getUint16(2, true);
    o.gsoSize = h.getUint16(4, true);
    o.csumStart = h.getUint16(6, true);
    o.csumOffset = h.getUint16(8, true);
    const plain = o.flags === 0 && o.gsoType === NET_HDR_GSO_NONE;
    try {
      this.opts.backend.transmit(frame, plain ? null : o);
    } catch (e) {
      // The host side must never take the VM down: drop the frame, say why.
      this.problem(`the network backend failed on a transmitted frame: ${(e as Error).stack ?? String(e)}`);
    }
    return 0;
  }

  // ---- receive: host -> guest ----

  deliver(frame: Uint8Array, offload?: FrameOffload): boolean {
    const t = this.transport;
    if (t === null || this.paused) return false;
    let taken = false;
    const ok = t.fillQueue(RX_QUEUE, (q) => { taken = this.fill(q, frame, offload); });
    return ok && taken;
  }

  /** Writes header + frame into the receive queue; false when the posted buffers cannot hold it
   *  yet (nothing is consumed then). A frame that can never fit is dropped (returns true). */
  private fill(q: SplitVirtqueue, frame: Uint8Array, offload: FrameOffload | undefined): boolean {
    const h = this.hdrView;
    this.hdr.fill(0);
    if (offload !== undefined) {
      let flags = 0;
      if (this.guestCsum) flags = offload.flags & (NET_HDR_F_NEEDS_CSUM | NET_HDR_F_DATA_VALID);
      h.setUint8(0, flags);
      if ((flags & NET_HDR_F_NEEDS_CSUM) !== 0) {
        h.setUint16(6, offload.csumStart, true);
        h.setUint16(8, offload.csumOffset, true);
      }
      if (this.guestTso4 && offload.gsoType !== NET_HDR_GSO_NONE) {
        h.setUint8(1, offload.gsoType);
        h.setUint16(2, offload.hdrLen, true);
        h.setUint16(4, offload.gsoSize, true);
      }
    }
    const total = this.hdrLen + frame.length;
    const start = q.lastAvailIdx;
    if (!this.mergeable) {
      const head = q.pop();
      if (head < 0) return this.waitForBuffers(q);
      if (q.writableBytes === 0) throw new VirtqueueError('virtio-net receive chain without device-writable buffers');
      if (q.writableBytes < total) {
        // QEMU: "truncated non-mergeable packet": the buffer stays with the driver, the frame goes.
        q.unpop(start);
        this.problem(`dropped a ${frame.length}-byte frame: receive buffers of ${q.writableBytes} bytes are too small (no VIRTIO_NET_F_MRG_RXBUF)`);
        return true;
      }
      // 5.1.6.4: without MRG_RXBUF a 12-byte header says num_buffers = 1.
      if (this.hdrLen === 12) h.setUint16(10, 1, true);
      this.write(q, 0, this.hdr.subarray(0, this.hdrLen));
      this.write(q, this.hdrLen, frame);
      q.push(head, total);
      return true;
    }
    // 5.1.6.4.2: the frame spans as many buffers as it needs; num_buffers in the first header.
    this.heads.length = 0;
    this.lens.length = 0;
    this.numBuffersAt.length = 0;
    let done = 0;
    while (done < total) {
      const head = q.pop();
      if (head < 0) {
        q.unpop(start);
        // A ring full of buffers that still cannot hold the frame never will: drop it.
        if (this.heads.length >= q.size) {
          this.problem(`dropped a ${frame.length}-byte frame: the whole receive ring cannot hold it`);
          return true;
        }
        return this.waitForBuffers(q);
      }
      const room = q.writableBytes;
      if (room === 0) throw new VirtqueueError('virtio-net receive chain without device-writable buffers');
      let n = 0;
      if (done === 0) {
        if (room < this.hdrLen) throw new VirtqueueError(`virtio-net receive buffer of ${room} bytes cannot hold the ${this.hdrLen}-byte header`);
        this.write(q, 0, this.hdr.subarray(0, this.hdrLen));
        q.views(true, 10, 2, this.numBuffersAt);
        n = this.hdrLen;
      }
      const m = Math.min(room - n, total - done - n);
      const from = done + n - this.hdrLen;
      if (m > 0) this.write(q, n, frame.subarray(from, from + m));
      done += n + m;
      this.heads.push(head);
      this.lens.push(n + m);
    }
    const count = this.heads.length;
    const v = this.numBuffersAt;
    v[0][0] = count & 0xff;
    if (v[0].length > 1) v[0][1] = count >> 8; else v[1][0] = count >> 8;
    for (let i = 0; i < count; i++) q.push(this.heads[i], this.lens[i]);
    return true;
  }

  /** Not enough receive buffers: the driver must tell us when it posts more (then rxSpace). */
  private waitForBuffers(q: SplitVirtqueue): false {
    q.notifyOnNextAvail();
    return false;
  }

  private write(q: SplitVirtqueue, at: number, src: Uint8Array): void {
    const v = this.views;
    v.length = 0;
    q.views(true, at, src.length, v);
    let o = 0;
    for (const b of v) { b.set(src.subarray(o, o + b.length)); o += b.length; }
  }

  private problem(message: string): void {
    if (this.problems++ < 16) this.opts.log(message);
  }
}
