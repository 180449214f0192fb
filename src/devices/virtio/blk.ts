// virtio-blk (virtio 1.2 section 5.2) over a BlockBackend.
//
// One request queue. A request is a chain: a 16-byte header {le32 type, le32 reserved, le64
// sector} in the device-readable part, data, and a status byte as the last device-writable byte
// (5.2.6). The header and status may share descriptors with the data, so the chain is treated as
// two byte streams (readable, writable) rather than as "descriptor 0 / 1 / 2".
//
// Durability (the rule): a write request completes only after the backend's write
// returned (the data is in the host kernel); a flush completes only after fsync.

import { SECTOR_SIZE, type BlockBackend } from '../../disk/block-backend.js';
import { feature, type VirtioDeviceModel } from './mmio.js';
import { VirtqueueError, type SplitVirtqueue } from './queue.js';

export const VIRTIO_ID_BLOCK = 2;

// Feature bits (5.2.3).
export const VIRTIO_BLK_F_SIZE_MAX = 1;
export const VIRTIO_BLK_F_SEG_MAX = 2;
export const VIRTIO_BLK_F_RO = 5;
export const VIRTIO_BLK_F_BLK_SIZE = 6;
export const VIRTIO_BLK_F_FLUSH = 9;
export const VIRTIO_BLK_F_DISCARD = 13;
export const VIRTIO_BLK_F_WRITE_ZEROES = 14;

// Request types and status (5.2.6).
export const VIRTIO_BLK_T_IN = 0;
export const VIRTIO_BLK_T_OUT = 1;
export const VIRTIO_BLK_T_FLUSH = 4;
export const VIRTIO_BLK_T_GET_ID = 8;
export const VIRTIO_BLK_T_DISCARD = 11;
export const VIRTIO_BLK_T_WRITE_ZEROES = 13;
export const VIRTIO_BLK_S_OK = 0;
export const VIRTIO_BLK_S_IOERR = 1;
export const VIRTIO_BLK_S_UNSUPP = 2;
export const VIRTIO_BLK_ID_BYTES = 20;
const WRITE_ZEROES_FLAG_UNMAP = 1;

export const BLK_QUEUE_SIZE = 256;       // QEMU 7.2's virtio-blk default queue size
// Limits we advertise (5.2.4). seg_max leaves room for header and status in a full queue (as QEMU
// does); size_max keeps one segment's I/O bounded; zeroing limits bound the time of one request
// when zeros have to be written rather than holes punched.
export const BLK_SEG_MAX = BLK_QUEUE_SIZE - 2;
export const BLK_SIZE_MAX = 1 << 20;
export const BLK_MAX_DISCARD_SECTORS = (1 << 30) / SECTOR_SIZE; // 1 GiB
export const BLK_MAX_DISCARD_SEG = 32;
export const BLK_DISCARD_ALIGNMENT = 4096 / SECTOR_SIZE;        // host file-system block
export const BLK_MAX_WRITE_ZEROES_SECTORS = (32 << 20) / SECTOR_SIZE; // 32 MiB
export const BLK_MAX_WRITE_ZEROES_SEG = 8;

/** Device configuration layout (5.2.4, struct virtio_blk_config): offset of each field. */
export const BLK_CFG = {
  capacity: 0, sizeMax: 8, segMax: 12, geometry: 16, blkSize: 20, topology: 24, writeback: 32, numQueues: 34,
  maxDiscardSectors: 36, maxDiscardSeg: 40, discardSectorAlignment: 44,
  maxWriteZeroesSectors: 48, maxWriteZeroesSeg: 52, writeZeroesMayUnmap: 56,
  size: 60,
} as const;

export interface VirtioBlkOptions {
  readonly backend: BlockBackend;
  /** What VIRTIO_BLK_T_GET_ID returns (at most 20 bytes). */
  readonly id: string;
  readonly log: (message: string) => void;
}

/** A disk's completed requests since the machine started (`vmctl stats`). */
export interface DiskIo {
  readonly reads: number;
  readonly writes: number;
  readonly readBytes: number;
  readonly writtenBytes: number;
  readonly flushes: number;
}

export class VirtioBlk implements VirtioDeviceModel {
  readonly deviceId = VIRTIO_ID_BLOCK;
  readonly queueMaxSizes = [BLK_QUEUE_SIZE];
  private readonly config = new Uint8Array(BLK_CFG.size);
  private readonly configView = new DataView(this.config.buffer);
  private readonly header = new Uint8Array(16);
  private readonly headerView = new DataView(this.header.buffer);
  private readonly segment = new Uint8Array(16);
  private readonly segmentView = new DataView(this.segment.buffer);
  private readonly idBytes: Uint8Array;
  private readonly status = new Uint8Array(1);
  private readonly io: Uint8Array[] = [];
  /** Requests served without error since the machine started. */
  private reads = 0;
  private writes = 0;
  private readBytes = 0;
  private writtenBytes = 0;
  private flushes = 0;

  constructor(private readonly opts: VirtioBlkOptions) {
    this.backendNow = opts.backend;
    this.idBytes = new Uint8Array(VIRTIO_BLK_ID_BYTES);
    this.idBytes.set(new TextEncoder().encode(opts.id).subarray(0, VIRTIO_BLK_ID_BYTES));
    const c = this.configView;
    this.setCapacity();
    c.setUint32(BLK_CFG.sizeMax, BLK_SIZE_MAX, true);
    c.setUint32(BLK_CFG.segMax, BLK_SEG_MAX, true);
    c.setUint32(BLK_CFG.blkSize, SECTOR_SIZE, true);
    c.setUint16(BLK_CFG.numQueues, 1, true);
    c.setUint32(BLK_CFG.maxDiscardSectors, BLK_MAX_DISCARD_SECTORS, true);
    c.setUint32(BLK_CFG.maxDiscardSeg, BLK_MAX_DISCARD_SEG, true);
    c.setUint32(BLK_CFG.discardSectorAlignment, BLK_DISCARD_ALIGNMENT, true);
    c.setUint32(BLK_CFG.maxWriteZeroesSectors, BLK_MAX_WRITE_ZEROES_SECTORS, true);
    c.setUint32(BLK_CFG.maxWriteZeroesSeg, BLK_MAX_WRITE_ZEROES_SEG, true);
    c.setUint8(BLK_CFG.writeZeroesMayUnmap, 1);
  }

  private backendNow: BlockBackend;

  get backend(): BlockBackend { return this.backendNow; }

  /** Puts another image with the same guest-visible disk behind the device (a snapshot's new
   *  top layer): same size and read-only flag, so nothing the driver negotiated changes. */
  replaceBackend(b: BlockBackend): void {
    if (b.sectorCount() !== this.backendNow.sectorCount() || b.readonly !== this.backendNow.readonly) {
      throw new RangeError(`virtio-blk ${this.opts.id}: the new image differs in size or read-only flag`);
    }
    this.backendNow = b;
  }

  deviceFeatures(): bigint {
    let f = feature(VIRTIO_BLK_F_SIZE_MAX) | feature(VIRTIO_BLK_F_SEG_MAX) | feature(VIRTIO_BLK_F_BLK_SIZE) | feature(VIRTIO_BLK_F_FLUSH);
    if (this.backendNow.readonly) f |= feature(VIRTIO_BLK_F_RO);
    else f |= feature(VIRTIO_BLK_F_DISCARD) | feature(VIRTIO_BLK_F_WRITE_ZEROES);
    return f;
  }

  configRead(offset: number, size: 1 | 2 | 4): number {
    if (offset < 0 || offset + size > this.config.length) return 0;
    const c = this.configView;
    return size === 1 ? c.getUint8(offset) : size === 2 ? c.getUint16(offset, true) : c.getUint32(offset, true);
  }

  // The only writable field is `writeback` (VIRTIO_BLK_F_CONFIG_WCE), which we do not offer.
  configWrite(): void {}

  reset(): void {}

  /** Re-reads the backend's size; true when the capacity changed (caller raises config change). */
  refreshCapacity(): boolean {
    if (!this.backendNow.refreshCapacity()) return false;
    this.setCapacity();
    return true;
  }

  private setCapacity(): void {
    const n = this.backendNow.sectorCount();
    this.configView.setUint32(BLK_CFG.capacity, n % 0x1_0000_0000, true);
    this.configView.setUint32(BLK_CFG.capacity + 4, Math.floor(n / 0x1_0000_0000), true);
  }

  handleChain(_queue: number, q: SplitVirtqueue): number {
    // 5.2.6.1: header first, status byte last; without them the request is unusable: the
    // driver broke the protocol, so the device needs a reset (QEMU does the same).
    if (q.readableBytes < 16) throw new VirtqueueError(`virtio-blk request with ${q.readableBytes} readable bytes, no room for the 16-byte header`);
    if (q.writableBytes < 1) throw new VirtqueueError('virtio-blk request without a writable status byte');
    q.readBytes(0, this.header);
    const type = this.headerView.getUint32(0, true);
    const sector = this.headerView.getUint32(8, true) + this.headerView.getUint32(12, true) * 0x1_0000_0000;
    const statusAt = q.writableBytes - 1;
    let written = 1; // the status byte
    let status: number;
    try {
      switch (type) {
        case VIRTIO_BLK_T_IN: {
          const len = statusAt;
          status = this.checkRange(sector, len);
          if (status === VIRTIO_BLK_S_OK) {
            this.io.length = 0;
            q.views(true, 0, len, this.io);
            this.backendNow.read(sector, this.io);
            written += len;
            this.reads++;
            this.readBytes += len;
          }
          break;
        }
        case VIRTIO_BLK_T_OUT: {
          const len = q.readableBytes - 16;
          // 5.2.6.2: a write to a read-only device fails with IOERR and writes nothing.
          if (this.backendNow.readonly) { status = VIRTIO_BLK_S_IOERR; break; }
          status = this.checkRange(sector, len);
          if (status === VIRTIO_BLK_S_OK) {
            this.io.length = 0;
            q.views(false, 16, len, this.io);
            this.backendNow.write(sector, this.io);
            this.writes++;
            this.writtenBytes += len;
          }
          break;
        }
        case VIRTIO_BLK_T_FLUSH:
          this.backendNow.flush();
          status = VIRTIO_BLK_S_OK;
          this.flushes++;
          break;
        case VIRTIO_BLK_T_GET_ID: {
          // 5.2.6: the ID is up to 20 bytes, NUL-padded, written into the data buffer.
          const n = Math.min(VIRTIO_BLK_ID_BYTES, statusAt);
          q.writeBytes(0, this.idBytes.subarray(0, n));
          written += n;
          status = VIRTIO_BLK_S_OK;
          break;
        }
        case VIRTIO_BLK_T_DISCARD:
        case VIRTIO_BLK_T_WRITE_ZEROES:
          status = this.zeroOrDiscard(type, q);
          break;
        default:
          status = VIRTIO_BLK_S_UNSUPP;
      }
    } catch (e) {
      if (e instanceof VirtqueueError) throw e;
      // The host refused (EIO, ENOSPC, ...): the guest gets an I/O error, the VM keeps running.
      // The log line is rate-limited by the VM (src/vm/log-limiter.ts), and prefixed with the device.
      this.opts.log(`request type ${type} at sector ${sector} failed: ${(e as Error).message}`);
      status = VIRTIO_BLK_S_IOERR;
    }
    this.status[0] = status;
    q.writeBytes(statusAt, this.status);
    return written;
  }

  ioFigures(): DiskIo {
    return { reads: this.reads, writes: this.writes, readBytes: this.readBytes, writtenBytes: this.writtenBytes, flushes: this.flushes };
  }

  /** IN/OUT ranges: whole sectors, inside the disk, no larger than the limits we advertised
   *  (seg_max segments of size_max bytes): a hostile chain of overlapping giant buffers cannot
   *  turn one request into minutes of I/O. */
  private checkRange(sector: number, len: number): number {
    if (len % SECTOR_SIZE !== 0 || len > BLK_SEG_MAX * BLK_SIZE_MAX) return VIRTIO_BLK_S_IOERR;
    if (sector + len / SECTOR_SIZE > this.backendNow.sectorCount()) return VIRTIO_BLK_S_IOERR;
    return VIRTIO_BLK_S_OK;
  }

  private segStart = 0;
  private segCount = 0;
  private segFlags = 0;

  /** Segment i of a discard/write-zeroes request (5.2.6: struct virtio_blk_discard_write_zeroes
   *  {le64 sector; le32 num_sectors; le32 flags}) into segStart/segCount/segFlags. */
  private readSegment(q: SplitVirtqueue, i: number): void {
    q.readBytes(16 + 16 * i, this.segment);
    const s = this.segmentView;
    this.segStart = s.getUint32(0, true) + s.getUint32(4, true) * 0x1_0000_0000;
    this.segCount = s.getUint32(8, true);
    this.segFlags = s.getUint32(12, true);
  }

  private zeroOrDiscard(type: number, q: SplitVirtqueue): number {
    if (this.backendNow.readonly) return VIRTIO_BLK_S_IOERR;
    const bytes = q.readableBytes - 16;
    const isZeroes = type === VIRTIO_BLK_T_WRITE_ZEROES;
    const maxSeg = isZeroes ? BLK_MAX_WRITE_ZEROES_SEG : BLK_MAX_DISCARD_SEG;
    const maxSectors = isZeroes ? BLK_MAX_WRITE_ZEROES_SECTORS : BLK_MAX_DISCARD_SECTORS;
    if (bytes === 0 || bytes % 16 !== 0 || bytes / 16 > maxSeg) return VIRTIO_BLK_S_UNSUPP;
    const capacity = this.backendNow.sectorCount();
    const n = bytes / 16;
    // Validate every segment before acting on any (all or nothing).
    for (let i = 0; i < n; i++) {
      this.readSegment(q, i);
      const flags = this.segFlags;
      // 5.2.6.2: unknown flag bits, or unmap on a discard, are unsupported.
      if ((flags & ~WRITE_ZEROES_FLAG_UNMAP) !== 0 || (!isZeroes && flags !== 0)) return VIRTIO_BLK_S_UNSUPP;
      if (this.segCount > maxSectors || this.segStart + this.segCount > capacity) return VIRTIO_BLK_S_IOERR;
    }
    for (let i = 0; i < n; i++) {
      this.readSegment(q, i);
      if (this.segCount === 0) continue;
      if (isZeroes) this.backendNow.writeZeroes(this.segStart, this.segCount, (this.segFlags & WRITE_ZEROES_FLAG_UNMAP) !== 0);
      else this.backendNow.discard(this.segStart, this.segCount);
    }
    return VIRTIO_BLK_S_OK;
  }
}
