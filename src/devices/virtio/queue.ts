// Split virtqueues (virtio 1.2 section 2.7), device side, over guest RAM.
//
// Layout the driver puts in its RAM for a queue of `size` entries (2.7, 2.7.5-2.7.8):
//   descriptor table  16 bytes each: le64 addr, le32 len, le16 flags, le16 next     (16-aligned)
//   available ring    le16 flags, le16 idx, le16 ring[size], le16 used_event       (2-aligned)
//   used ring         le16 flags, le16 idx, {le32 id, le32 len} ring[size], le16 avail_event (4-aligned)
//
// Everything here reads memory the guest controls, so every index and address is checked
// before use. A malformed ring throws VirtqueueError; the transport turns that into
// DEVICE_NEEDS_RESET (2.1.1) and a log line, never an exception into the hart.
//
// A popped chain is kept as arrays of segments (preallocated, no allocation per request),
// split into the device-readable part (first) and the device-writable part (after it, 2.7.4.2).

import { CHUNK_SIZE, type GuestRam } from '../../memory/ram.js';

export const VIRTQ_DESC_F_NEXT = 1;
export const VIRTQ_DESC_F_WRITE = 2;
export const VIRTQ_DESC_F_INDIRECT = 4;
export const VIRTQ_AVAIL_F_NO_INTERRUPT = 1;

/** Most segments one chain may have, indirect tables included: our limit for "oversized". */
export const MAX_CHAIN_SEGMENTS = 1024;

export class VirtqueueError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'VirtqueueError';
  }
}

const hex = (n: number): string => `0x${n.toString(16)}`;

export interface VirtqueueState {
  size: number; ready: boolean; descAddr: number; availAddr: number; usedAddr: number;
  indirectEnabled: boolean; eventIdxEnabled: boolean; lastAvailIdx: number; usedIdx: number;
}

export class SplitVirtqueue {
  // Set by the transport's queue registers (4.2.2).
  size = 0;
  ready = false;
  descAddr = 0;
  availAddr = 0;
  usedAddr = 0;
  // Negotiated features that change ring handling.
  indirectEnabled = false;
  eventIdxEnabled = false;

  /** Next available-ring index to consume (2.7.6 "last seen avail idx", device's shadow). */
  lastAvailIdx = 0;
  /** Our copy of used.idx (we are its only writer). */
  usedIdx = 0;

  // The current chain.
  segCount = 0;
  readonly segAddr = new Float64Array(MAX_CHAIN_SEGMENTS);
  readonly segLen = new Uint32Array(MAX_CHAIN_SEGMENTS);
  /** Index of the first device-writable segment (== segCount when none). */
  firstWritable = 0;
  readableBytes = 0;
  writableBytes = 0;

  constructor(readonly ram: GuestRam, readonly maxSize: number) {
    this.size = maxSize;
  }

  /** Device reset / queue reset: back to "not ready" with default size. */
  reset(): void {
    this.size = this.maxSize;
    this.ready = false;
    this.descAddr = this.availAddr = this.usedAddr = 0;
    this.lastAvailIdx = this.usedIdx = 0;
    this.indirectEnabled = this.eventIdxEnabled = false;
    this.segCount = 0;
  }

  /** Saved state: the registers the driver set and the device's ring indices (the rings
   *  themselves live in guest RAM). Requests never stay in flight between two instructions
   *  (a notify serves them all before the store retires), so there is nothing more. */
  saveState(): VirtqueueState {
    return {
      size: this.size, ready: this.ready, descAddr: this.descAddr, availAddr: this.availAddr, usedAddr: this.usedAddr,
      indirectEnabled: this.indirectEnabled, eventIdxEnabled: this.eventIdxEnabled, lastAvailIdx: this.lastAvailIdx, usedIdx: this.usedIdx,
    };
  }

  loadState(s: VirtqueueState): void {
    if (s.size > this.maxSize) throw new RangeError(`virtqueue: saved size ${s.size} is larger than ${this.maxSize}`);
    this.size = s.size; this.ready = s.ready; this.descAddr = s.descAddr; this.availAddr = s.availAddr; this.usedAddr = s.usedAddr;
    this.indirectEnabled = s.indirectEnabled; this.eventIdxEnabled = s.eventIdxEnabled;
    this.lastAvailIdx = s.lastAvailIdx; this.usedIdx = s.usedIdx;
    this.segCount = 0;
  }

  /** Checks the queue's configuration when the driver sets QueueReady; returns a problem or null.
   *  As QEMU, a size that is not a power of 2 and rings not aligned as 2.7's table "Virtqueue
   *  Part Alignment" asks are accepted (ring positions are taken modulo the size, and guest RAM
   *  is read byte-wise); what does not fit the queue we offered or lies outside RAM is refused. */
  validate(): string | null {
    const n = this.size;
    if (n === 0 || n > this.maxSize) return `queue size ${n} is not in 1..${this.maxSize}`;
    if (!this.ram.contains(this.descAddr, 16 * n)) return `descriptor table ${hex(this.descAddr)}+${16 * n} is outside RAM`;
    if (!this.ram.contains(this.availAddr, 6 + 2 * n)) return `available ring ${hex(this.availAddr)}+${6 + 2 * n} is outside RAM`;
    if (!this.ram.contains(this.usedAddr, 6 + 8 * n)) return `used ring ${hex(this.usedAddr)}+${6 + 8 * n} is outside RAM`;
    // The device's indices start at 0 (2.7.6, 2.7.8: the driver zeroes both idx fields before
    // enabling); garbage there shows up as "avail.idx too far ahead" at the first notify.
    this.lastAvailIdx = 0;
    this.usedIdx = 0;
    return null;
  }

  /** Takes the next available chain into the segment arrays. Returns its head index, or -1 when
   *  the driver has made nothing new available. Throws VirtqueueError on a malformed ring. */
  pop(): number {
    const ram = this.ram;
    const availIdx = ram.readU16(this.availAddr + 2);
    if (availIdx === this.lastAvailIdx) return -1;
    // 2.7.6: the driver can be at most `size` entries ahead of the device.
    const pending = (availIdx - this.lastAvailIdx) & 0xffff;
    if (pending > this.size) {
      throw new VirtqueueError(`avail.idx ${availIdx} is ${pending} entries ahead of the device (${this.lastAvailIdx}), more than the queue size ${this.size}`);
    }
    const head = ram.readU16(this.availAddr + 4 + 2 * (this.lastAvailIdx % this.size));
    this.lastAvailIdx = (this.lastAvailIdx + 1) & 0xffff;
    if (head >= this.size) throw new VirtqueueError(`available ring entry names descriptor ${head}, outside the queue of ${this.size}`);
    this.walk(head);
    return head;
  }

  private walk(head: number): void {
    const ram = this.ram;
    let table = this.descAddr;
    let tableSize = this.size;
    let i = head;
    let visited = 0;      // descriptors visited in the current table: more than its size = a loop
    let indirect = false;
    let seenWritable = false;
    this.segCount = 0;
    this.readableBytes = 0;
    this.writableBytes = 0;
    this.firstWritable = -1;
    for (;;) {
      if (++visited > tableSize) throw new VirtqueueError(`descriptor chain from head ${head} loops (more than ${tableSize} descriptors)`);
      const d = table + 16 * i;
      const addr = ram.readU64(d);
      const len = ram.readU32(d + 8);
      const flags = ram.readU16(d + 12);
      const next = ram.readU16(d + 14);
      if ((flags & VIRTQ_DESC_F_INDIRECT) !== 0) {
        // 2.7.5.3: an indirect descriptor points to a table of descriptors forming the rest of the chain.
        if (!this.indirectEnabled) throw new VirtqueueError(`descriptor ${i} is indirect but VIRTIO_F_INDIRECT_DESC was not negotiated`);
        if (indirect) throw new VirtqueueError('indirect descriptor inside an indirect table (2.7.5.3.1 forbids it)');
        if ((flags & VIRTQ_DESC_F_NEXT) !== 0) throw new VirtqueueError(`descriptor ${i} sets both INDIRECT and NEXT (2.7.5.3.1 forbids it)`);
        if (len === 0 || len % 16 !== 0) throw new VirtqueueError(`indirect table length ${len} is not a non-zero multiple of 16`);
        if (len / 16 > MAX_CHAIN_SEGMENTS) throw new VirtqueueError(`indirect table of ${len / 16} descriptors is larger than ${MAX_CHAIN_SEGMENTS}`);
        if (!ram.contains(addr, len)) throw new VirtqueueError(`indirect table ${hex(addr)}+${len} is outside RAM`);
        table = addr;
        tableSize = len / 16;
        i = 0;
        visited = 0;
        indirect = true;
        continue;
      }
      if (len !== 0 && !ram.contains(addr, len)) throw new VirtqueueError(`descriptor ${i} buffer ${hex(addr)}+${len} is outside RAM`);
      const writable = (flags & VIRTQ_DESC_F_WRITE) !== 0;
      if (writable) {
        if (!seenWritable) { seenWritable = true; this.firstWritable = this.segCount; }
        this.writableBytes += len;
      } else {
        // 2.7.4.2: device-readable descriptors come before device-writable ones.
        if (seenWritable) throw new VirtqueueError(`device-readable descriptor ${i} after a device-writable one`);
        this.readableBytes += len;
      }
      if (this.segCount === MAX_CHAIN_SEGMENTS) throw new VirtqueueError(`descriptor chain from head ${head} has more than ${MAX_CHAIN_SEGMENTS} segments`);
      this.segAddr[this.segCount] = addr;
      this.segLen[this.segCount] = len;
      this.segCount++;
      if ((flags & VIRTQ_DESC_F_NEXT) === 0) break;
      if (next >= tableSize) throw new VirtqueueError(`descriptor ${i} chains to ${next}, outside its table of ${tableSize}`);
      i = next;
    }
    if (this.firstWritable < 0) this.firstWritable = this.segCount;
  }

  /** Gives back the chains popped since the available-ring position `availIdx` (a value of
   *  lastAvailIdx saved before popping): they were not used, the driver still owns them. */
  unpop(availIdx: number): void {
    this.lastAvailIdx = availIdx & 0xffff;
    this.segCount = 0;
  }

  /** Guest RAM views for bytes [start, start+len) of the chain's readable (or writable) part,
   *  split at RAM chunk boundaries: zero-copy I/O straight between guest memory and the disk. */
  views(writable: boolean, start: number, len: number, out: Uint8Array[]): void {
    const from = writable ? this.firstWritable : 0;
    const to = writable ? this.segCount : this.firstWritable;
    let skip = start;
    let left = len;
    for (let s = from; s < to && left > 0; s++) {
      const sl = this.segLen[s];
      if (skip >= sl) { skip -= sl; continue; }
      let paddr = this.segAddr[s] + skip;
      let n = Math.min(sl - skip, left);
      skip = 0;
      left -= n;
      while (n > 0) {
        const off = paddr - this.ram.base;
        const idx = Math.floor(off / CHUNK_SIZE);
        const inChunk = off - idx * CHUNK_SIZE;
        const m = Math.min(n, CHUNK_SIZE - inChunk);
        out.push(this.ram.chunk(idx).subarray(inChunk, inChunk + m));
        paddr += m;
        n -= m;
      }
    }
    if (left > 0) throw new VirtqueueError(`chain too short: needed ${len} ${writable ? 'writable' : 'readable'} bytes from ${start}`);
  }

  /** Copies readable bytes [start, start+dst.length) of the chain into dst. */
  readBytes(start: number, dst: Uint8Array): void {
    const v: Uint8Array[] = [];
    this.views(false, start, dst.length, v);
    let o = 0;
    for (const b of v) { dst.set(b, o); o += b.length; }
  }

  /** Copies src into writable bytes starting at `start`. */
  writeBytes(start: number, src: Uint8Array): void {
    const v: Uint8Array[] = [];
    this.views(true, start, src.length, v);
    let o = 0;
    for (const b of v) { b.set(src.subarray(o, o + b.length)); o += b.length; }
  }

  /** Returns a chain to the driver: used ring entry {id: head, len: bytes written} (2.7.8). */
  push(head: number, written: number): void {
    const ram = this.ram;
    const slot = this.usedAddr + 4 + 8 * (this.usedIdx % this.size);
    ram.writeU32(slot, head);
    ram.writeU32(slot + 4, written);
    this.usedIdx = (this.usedIdx + 1) & 0xffff;
    // 2.7.8: the entry is written before used.idx moves (single thread: program order suffices).
    ram.writeU16(this.usedAddr + 2, this.usedIdx);
  }

  /** With VIRTIO_F_EVENT_IDX, tells the driver to notify when it adds past what we consumed (2.7.10). */
  publishAvailEvent(): void {
    if (this.eventIdxEnabled) this.ram.writeU16(this.usedAddr + 4 + 8 * this.size, this.lastAvailIdx);
  }

  /** For a device waiting for buffers (a receive queue with a frame that does not fit yet): with
   *  VIRTIO_F_EVENT_IDX, asks the driver to notify as soon as it makes any more available (2.7.10:
   *  avail_event = the driver's current avail.idx). Without it the driver always notifies. */
  notifyOnNextAvail(): void {
    if (this.eventIdxEnabled) this.ram.writeU16(this.usedAddr + 4 + 8 * this.size, this.ram.readU16(this.availAddr + 2));
  }

  /** True when the driver has made buffers available that we have not consumed. */
  hasPending(): boolean {
    return this.ram.readU16(this.availAddr + 2) !== this.lastAvailIdx;
  }

  /** Whether the driver wants a used-buffer notification after used.idx moved from `oldUsed`
   *  (2.7.7.2 without event index; 2.7.10 vring_need_event with it). */
  needsInterrupt(oldUsed: number): boolean {
    const now = this.usedIdx;
    if (now === oldUsed) return false;
    if (this.eventIdxEnabled) {
      const usedEvent = this.ram.readU16(this.availAddr + 4 + 2 * this.size);
      return ((now - usedEvent - 1) & 0xffff) < ((now - oldUsed) & 0xffff);
    }
    return (this.ram.readU16(this.availAddr) & VIRTQ_AVAIL_F_NO_INTERRUPT) === 0;
  }
}
