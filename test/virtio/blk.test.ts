// virtio-blk requests through the real transport, against a memory disk and a sparse file.

import { mkdtempSync, rmSync, statSync, writeFileSync, truncateSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { MemoryBackend } from '../../src/disk/block-backend.js';
import { createRawImage, RawFileBackend } from '../../src/disk/raw-image.js';
import {
  BLK_CFG, VirtioBlk, VIRTIO_BLK_F_DISCARD, VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_RO, VIRTIO_BLK_F_WRITE_ZEROES,
  VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK, VIRTIO_BLK_S_UNSUPP, VIRTIO_BLK_T_DISCARD, VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_GET_ID,
  VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT, VIRTIO_BLK_T_WRITE_ZEROES,
} from '../../src/devices/virtio/blk.js';
import {
  INT_CONFIG_CHANGE, REG, STATUS_DEVICE_NEEDS_RESET, VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC, VIRTIO_F_VERSION_1, feature,
} from '../../src/devices/virtio/mmio.js';
import type { BlockBackend } from '../../src/disk/block-backend.js';
import { DATA, RAM_BASE, TestDriver } from './test-driver.js';

const HDR = DATA;             // request header
const BUF = DATA + 0x1000;    // data
const STATUS = DATA + 0x800;  // status byte

function blkDriver(backend: BlockBackend, id = 'disk0'): { d: TestDriver; blk: VirtioBlk } {
  const blk = new VirtioBlk({ backend, id, log: () => {} });
  const d = new TestDriver(blk);
  const offered = d.deviceFeatures();
  expect(d.negotiate(offered & (feature(VIRTIO_F_VERSION_1) | feature(VIRTIO_F_INDIRECT_DESC) | feature(VIRTIO_F_EVENT_IDX) | 0xffffffn))).toBe(true);
  d.setupQueue(16);
  return { d, blk };
}

/** Sends one request; returns {status, usedLen}. `data` is written to BUF first for OUT-like requests. */
function request(d: TestDriver, type: number, sector: number, opts: { len?: number; data?: Uint8Array; split?: boolean } = {}): { status: number; usedLen: number } {
  d.ram.writeU32(HDR, type);
  d.ram.writeU32(HDR + 4, 0);
  d.ram.writeU64(HDR + 8, sector);
  d.ram.writeU8(STATUS, 0xff);
  const len = opts.data?.length ?? opts.len ?? 0;
  if (opts.data) d.ram.write(BUF, opts.data);
  const writable = type === VIRTIO_BLK_T_IN || type === VIRTIO_BLK_T_GET_ID;
  const segs = [{ addr: HDR, len: 16 }];
  if (len > 0) {
    if (opts.split) {
      // Split the data at odd places across descriptors, as scatter-gather does.
      segs.push({ addr: BUF, len: 100, write: writable } as never, { addr: BUF + 100, len: len - 100, write: writable } as never);
    } else segs.push({ addr: BUF, len, write: writable } as never);
  }
  segs.push({ addr: STATUS, len: 1, write: true } as never);
  const before = d.usedIdx();
  d.submit(d.chain(segs));
  expect(d.usedIdx()).toBe((before + 1) & 0xffff);
  return { status: d.ram.readU8(STATUS), usedLen: d.used(before).len };
}

const pattern = (n: number, seed: number): Uint8Array => Uint8Array.from({ length: n }, (_, i) => (i * 7 + seed) & 0xff);

describe('virtio-blk on a memory disk', () => {
  it('exposes capacity, limits and features in its config space', () => {
    const { d, blk } = blkDriver(new MemoryBackend(new Uint8Array(64 * 512)));
    expect(d.r(REG.DeviceID)).toBe(2);
    expect(d.dev.read(REG.Config + BLK_CFG.capacity, 4)).toBe(64);
    expect(d.dev.read(REG.Config + BLK_CFG.capacity + 4, 4)).toBe(0);
    expect(d.dev.read(REG.Config + BLK_CFG.segMax, 4)).toBe(254);
    expect(d.dev.read(REG.Config + BLK_CFG.blkSize, 4)).toBe(512);
    const f = blk.deviceFeatures();
    expect(f & feature(VIRTIO_BLK_F_FLUSH)).not.toBe(0n);
    expect(f & feature(VIRTIO_BLK_F_DISCARD)).not.toBe(0n);
    expect(f & feature(VIRTIO_BLK_F_WRITE_ZEROES)).not.toBe(0n);
    expect(f & feature(VIRTIO_BLK_F_RO)).toBe(0n);
  });

  it('writes, reads back (also scattered), flushes and returns its ID', () => {
    const mem = new MemoryBackend(new Uint8Array(64 * 512));
    const { d, blk } = blkDriver(mem, 'my-serial');
    const data = pattern(1024, 3);
    expect(request(d, VIRTIO_BLK_T_OUT, 5, { data })).toEqual({ status: VIRTIO_BLK_S_OK, usedLen: 1 });
    expect([...mem.data.subarray(5 * 512, 7 * 512)]).toEqual([...data]);
    d.ram.zero(BUF, 1024);
    expect(request(d, VIRTIO_BLK_T_IN, 5, { len: 1024, split: true })).toEqual({ status: VIRTIO_BLK_S_OK, usedLen: 1025 });
    const back = new Uint8Array(1024);
    d.ram.read(BUF, back);
    expect([...back]).toEqual([...data]);
    expect(request(d, VIRTIO_BLK_T_FLUSH, 0).status).toBe(VIRTIO_BLK_S_OK);
    expect(mem.flushes).toBe(1);
    d.ram.zero(BUF, 32);
    expect(request(d, VIRTIO_BLK_T_GET_ID, 0, { len: 20 })).toEqual({ status: VIRTIO_BLK_S_OK, usedLen: 21 });
    const id = new Uint8Array(20);
    d.ram.read(BUF, id);
    expect(new TextDecoder().decode(id).replace(/\0+$/, '')).toBe('my-serial');
    // What `vmctl stats` shows: the requests served and their bytes.
    expect(blk.ioFigures()).toEqual({ reads: 1, writes: 1, readBytes: 1024, writtenBytes: 1024, flushes: 1 });
  });

  it('serves requests through indirect descriptors', () => {
    const mem = new MemoryBackend(new Uint8Array(64 * 512));
    mem.data.set(pattern(512, 9), 512 * 10);
    const { d } = blkDriver(mem);
    d.ram.writeU32(HDR, VIRTIO_BLK_T_IN);
    d.ram.writeU64(HDR + 8, 10);
    d.submit(d.indirectChain([{ addr: HDR, len: 16 }, { addr: BUF, len: 512, write: true }, { addr: STATUS, len: 1, write: true }], RAM_BASE + 0x5_0000));
    expect(d.ram.readU8(STATUS)).toBe(VIRTIO_BLK_S_OK);
    const back = new Uint8Array(512);
    d.ram.read(BUF, back);
    expect([...back]).toEqual([...pattern(512, 9)]);
  });

  it('fails out-of-range and partial-sector I/O with IOERR, unknown types with UNSUPP', () => {
    const { d, blk } = blkDriver(new MemoryBackend(new Uint8Array(64 * 512)));
    expect(request(d, VIRTIO_BLK_T_IN, 63, { len: 1024 }).status).toBe(VIRTIO_BLK_S_IOERR);
    expect(request(d, VIRTIO_BLK_T_OUT, 64, { data: pattern(512, 1) }).status).toBe(VIRTIO_BLK_S_IOERR);
    expect(request(d, VIRTIO_BLK_T_OUT, 2 ** 52, { data: pattern(512, 1) }).status).toBe(VIRTIO_BLK_S_IOERR);
    expect(request(d, VIRTIO_BLK_T_OUT, 0, { data: pattern(100, 1) }).status).toBe(VIRTIO_BLK_S_IOERR);
    expect(request(d, 99, 0).status).toBe(VIRTIO_BLK_S_UNSUPP);
    expect(d.r(REG.Status) & STATUS_DEVICE_NEEDS_RESET).toBe(0);
    // Failed requests are not counted as served.
    expect(blk.ioFigures()).toEqual({ reads: 0, writes: 0, readBytes: 0, writtenBytes: 0, flushes: 0 });
  });

  it('refuses a request larger than seg_max * size_max (overlapping giant buffers)', () => {
    const disk = { ...new MemoryBackend(new Uint8Array(512)), sectorCount: () => 2 ** 40, read: () => { throw new Error('must not read'); } } as unknown as BlockBackend;
    const { d } = blkDriver(disk);
    d.ram.writeU32(HDR, VIRTIO_BLK_T_IN);
    d.ram.writeU64(HDR + 8, 0);
    // 300 descriptors of 1 MiB, all over the same guest memory: 300 MiB > 254 * 1 MiB.
    const t = RAM_BASE + 0x5_0000;
    const segs = [{ addr: HDR, len: 16 }, ...Array.from({ length: 300 }, () => ({ addr: RAM_BASE + 0x20_0000, len: 1 << 20, write: true })), { addr: STATUS, len: 1, write: true }];
    d.submit(d.indirectChain(segs, t));
    expect(d.ram.readU8(STATUS)).toBe(VIRTIO_BLK_S_IOERR);
    expect(d.r(REG.Status) & STATUS_DEVICE_NEEDS_RESET).toBe(0);
  });

  it('refuses writes, discards and zeroing on a read-only disk, and offers VIRTIO_BLK_F_RO', () => {
    const mem = new MemoryBackend(new Uint8Array(64 * 512), true);
    mem.data.fill(0x55);
    const { d, blk } = blkDriver(mem);
    expect(blk.deviceFeatures() & feature(VIRTIO_BLK_F_RO)).not.toBe(0n);
    expect(blk.deviceFeatures() & feature(VIRTIO_BLK_F_DISCARD)).toBe(0n);
    expect(request(d, VIRTIO_BLK_T_OUT, 0, { data: pattern(512, 1) }).status).toBe(VIRTIO_BLK_S_IOERR);
    expect(mem.data[0]).toBe(0x55);
    expect(request(d, VIRTIO_BLK_T_IN, 0, { len: 512 }).status).toBe(VIRTIO_BLK_S_OK);
  });

  it('write-zeroes and discard segments, validated all-or-nothing', () => {
    const mem = new MemoryBackend(new Uint8Array(64 * 512));
    mem.data.fill(0xaa);
    const { d } = blkDriver(mem);
    const seg = (sector: number, count: number, flags: number): Uint8Array => {
      const b = new Uint8Array(16);
      const v = new DataView(b.buffer);
      v.setUint32(0, sector, true);
      v.setUint32(8, count, true);
      v.setUint32(12, flags, true);
      return b;
    };
    const two = new Uint8Array(32);
    two.set(seg(1, 2, 0), 0);
    two.set(seg(10, 1, 1), 16);
    expect(request(d, VIRTIO_BLK_T_WRITE_ZEROES, 0, { data: two }).status).toBe(VIRTIO_BLK_S_OK);
    expect(mem.data.subarray(512, 3 * 512).every((b) => b === 0)).toBe(true);
    expect(mem.data.subarray(10 * 512, 11 * 512).every((b) => b === 0)).toBe(true);
    expect(mem.data[3 * 512]).toBe(0xaa);
    // One bad segment (past the end): nothing is done.
    const bad = new Uint8Array(32);
    bad.set(seg(20, 2, 0), 0);
    bad.set(seg(63, 2, 0), 16);
    expect(request(d, VIRTIO_BLK_T_WRITE_ZEROES, 0, { data: bad }).status).toBe(VIRTIO_BLK_S_IOERR);
    expect(mem.data[20 * 512]).toBe(0xaa);
    // Unknown flag bits, or unmap on a discard: unsupported.
    expect(request(d, VIRTIO_BLK_T_WRITE_ZEROES, 0, { data: seg(0, 1, 2) }).status).toBe(VIRTIO_BLK_S_UNSUPP);
    expect(request(d, VIRTIO_BLK_T_DISCARD, 0, { data: seg(0, 1, 1) }).status).toBe(VIRTIO_BLK_S_UNSUPP);
    expect(request(d, VIRTIO_BLK_T_DISCARD, 0, { data: seg(30, 4, 0) }).status).toBe(VIRTIO_BLK_S_OK);
  });

  it('a request without header or status byte puts the device in DEVICE_NEEDS_RESET', () => {
    const { d } = blkDriver(new MemoryBackend(new Uint8Array(64 * 512)));
    d.submit(d.chain([{ addr: HDR, len: 8 }, { addr: STATUS, len: 1, write: true }]));
    expect(d.r(REG.Status) & STATUS_DEVICE_NEEDS_RESET).toBe(STATUS_DEVICE_NEEDS_RESET);
    const e = blkDriver(new MemoryBackend(new Uint8Array(64 * 512)));
    e.d.submit(e.d.chain([{ addr: HDR, len: 16 }]));
    expect(e.d.r(REG.Status) & STATUS_DEVICE_NEEDS_RESET).toBe(STATUS_DEVICE_NEEDS_RESET);
  });

  it('announces a capacity change with a config-change interrupt and a new generation', () => {
    const mem = new MemoryBackend(new Uint8Array(64 * 512));
    const { d, blk } = blkDriver(mem);
    const gen = d.r(REG.ConfigGeneration);
    expect(blk.refreshCapacity()).toBe(false);
    mem.resize(128 * 512);
    expect(blk.refreshCapacity()).toBe(true);
    d.dev.configChanged();
    expect(d.r(REG.ConfigGeneration)).not.toBe(gen);
    expect(d.r(REG.InterruptStatus) & INT_CONFIG_CHANGE).toBe(INT_CONFIG_CHANGE);
    expect(d.dev.read(REG.Config + BLK_CFG.capacity, 4)).toBe(128);
    expect(request(d, VIRTIO_BLK_T_OUT, 100, { data: pattern(512, 2) }).status).toBe(VIRTIO_BLK_S_OK);
  });
});

describe('virtio-blk on a sparse raw file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'vmctl-blk-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('a completed write is in the file before the used ring moves; flush and zeroing hit the file', () => {
    const path = join(dir, 'a.img');
    createRawImage(path, 8 * 1024 * 1024);
    const be = new RawFileBackend(path, false);
    const { d } = blkDriver(be);
    const data = pattern(4096, 5);
    expect(request(d, VIRTIO_BLK_T_OUT, 2048, { data, split: true }).status).toBe(VIRTIO_BLK_S_OK);
    // Read through a separate descriptor: the kernel has it, without any flush or close.
    const onDisk = readFileSync(path).subarray(2048 * 512, 2048 * 512 + 4096);
    expect([...onDisk]).toEqual([...data]);
    expect(request(d, VIRTIO_BLK_T_FLUSH, 0).status).toBe(VIRTIO_BLK_S_OK);
    const seg = new Uint8Array(16);
    new DataView(seg.buffer).setUint32(0, 2048, true);
    new DataView(seg.buffer).setUint32(8, 8, true);
    new DataView(seg.buffer).setUint32(12, 1, true);
    expect(request(d, VIRTIO_BLK_T_WRITE_ZEROES, 0, { data: seg }).status).toBe(VIRTIO_BLK_S_OK);
    expect(readFileSync(path).subarray(2048 * 512, 2048 * 512 + 4096).every((b) => b === 0)).toBe(true);
    expect(statSync(path).size).toBe(8 * 1024 * 1024);
    be.close();
  });

  it('sees a resize of the image file (refreshCapacity)', () => {
    const path = join(dir, 'b.img');
    createRawImage(path, 1024 * 1024);
    const be = new RawFileBackend(path, false);
    const { d, blk } = blkDriver(be);
    truncateSync(path, 2 * 1024 * 1024);
    expect(blk.refreshCapacity()).toBe(true);
    expect(d.dev.read(REG.Config + BLK_CFG.capacity, 4)).toBe(4096);
    be.close();
  });

  it('reports host I/O errors to the guest as IOERR without failing the device', () => {
    const path = join(dir, 'c.img');
    writeFileSync(path, new Uint8Array(64 * 512));
    const be = new RawFileBackend(path, false);
    const broken: BlockBackend = Object.assign(Object.create(be) as BlockBackend, {
      write: () => { throw Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' }); },
    });
    const { d } = blkDriver(broken);
    expect(request(d, VIRTIO_BLK_T_OUT, 0, { data: pattern(512, 1) }).status).toBe(VIRTIO_BLK_S_IOERR);
    expect(d.r(REG.Status) & STATUS_DEVICE_NEEDS_RESET).toBe(0);
    be.close();
  });
});
