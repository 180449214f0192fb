// Damaged and hostile qcow2 images: each header field and table broken on its own, unsupported
// features, looping or missing backing chains. Every one is refused with an error that names the
// problem (DiskError CORRUPT / UNSUPPORTED / NOT_FOUND), never read as garbage.

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deflateRawSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DiskError } from '../../src/disk/errors.js';
import { createImage, imageChain, imageInfo, openDiskImage } from '../../src/disk/image.js';
import { createRawImage } from '../../src/disk/raw-image.js';
import { qemuImg, qemuInfo } from '../helpers/qemu-img.js';

const dir = mkdtempSync(join(tmpdir(), 'vmctl-qcow2-damage-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const CS = 65536;
const good = join(dir, 'good.qcow2');

// vmctl's layout (create.ts): header 0, refcount table 0x10000, refcount block 0x20000, L1 table
// 0x30000; the first write allocates the L2 table (0x40000), then the data cluster (0x50000).
beforeAll(() => {
  createImage(good, { format: 'qcow2', size: 4 * 1024 * 1024 });
  const be = openDiskImage(good, false);
  be.write(0, [new Uint8Array(CS).fill(0x11)]);
  be.close();
  const b = readFileSync(good);
  expect(b.readBigUInt64BE(0x30000)).toBe(0x8000000000040000n); // L1[0]: COPIED | 0x40000
  expect(b.readBigUInt64BE(0x40000)).toBe(0x8000000000050000n); // L2[0]: COPIED | 0x50000
});

let n = 0;
/** A copy of the good image with `edit` applied to its bytes. */
function damaged(edit: (b: Buffer) => void): string {
  const p = join(dir, `bad${n++}.qcow2`);
  const b = readFileSync(good);
  edit(b);
  writeFileSync(p, b);
  return p;
}

function refusal(fn: () => unknown): { code: string; message: string } {
  try {
    fn();
  } catch (e) {
    if (e instanceof DiskError) return { code: e.code, message: e.message };
    throw e;
  }
  return { code: 'accepted', message: '' };
}

const openRw = (p: string) => () => openDiskImage(p, false).close();
const openRo = (p: string) => () => openDiskImage(p, true).close();

describe('damaged qcow2 headers are refused when opened, naming the field', () => {
  const u32 = (at: number, v: number) => (b: Buffer) => b.writeUInt32BE(v >>> 0, at);
  const u64 = (at: number, v: bigint) => (b: Buffer) => b.writeBigUInt64BE(v, at);
  const cases: [string, (b: Buffer) => void, string, string][] = [
    ['version 1', u32(4, 1), 'UNSUPPORTED', 'qcow2 version 1 is not supported'],
    ['version 4', u32(4, 4), 'UNSUPPORTED', 'qcow2 version 4 is not supported'],
    ['cluster_bits 8', u32(20, 8), 'CORRUPT', 'cluster_bits is 8; expected 9..21'],
    ['cluster_bits 22', u32(20, 22), 'CORRUPT', 'cluster_bits is 22; expected 9..21'],
    ['size past 2^53', u64(24, 1n << 60n), 'CORRUPT', 'size 1152921504606846976 is past any possible file size'],
    ['AES encryption', u32(32, 1), 'UNSUPPORTED', 'encrypted qcow2 images (AES) are not supported'],
    ['LUKS encryption', u32(32, 2), 'UNSUPPORTED', 'encrypted qcow2 images (LUKS) are not supported'],
    ['l1_size too small', u32(36, 0), 'CORRUPT', 'l1_size is 0, too small for the virtual size 4194304'],
    ['l1_size beyond limits', u32(36, 0x10000000), 'CORRUPT', 'l1_size is 268435456; at most 4194304 entries'],
    ['L1 offset misaligned', u64(40, 0x30008n), 'CORRUPT', 'the L1 table offset 0x30008 is not aligned to a cluster'],
    ['L1 offset past EOF', u64(40, 0x1000000n), 'CORRUPT', 'the L1 table (0x1000000, 8 bytes) ends past the end of the file'],
    ['L1 over the header', u64(40, 0n), 'CORRUPT', 'the L1 table offset 0x0 overlaps the header'],
    ['L1 over the refcount table', u64(40, 0x10000n), 'CORRUPT', 'the L1 table and the refcount table overlap'],
    ['refcount table misaligned', u64(48, 0x10200n), 'CORRUPT', 'the refcount table offset 0x10200 is not aligned'],
    ['refcount table past EOF', u64(48, 0x7770000n), 'CORRUPT', 'the refcount table (0x7770000, 1 clusters) ends past the end of the file'],
    ['refcount table over the header', u64(48, 0n), 'CORRUPT', 'the refcount table offset 0x0 overlaps the header'],
    ['refcount table of 0 clusters', u32(56, 0), 'CORRUPT', 'refcount_table_clusters is 0'],
    ['refcount table too large', u32(56, 1000), 'CORRUPT', 'the refcount table is 1000 clusters; at most 8388608 bytes'],
    ['too many snapshots', u32(60, 70000), 'CORRUPT', 'nb_snapshots is 70000; at most 65536'],
    ['snapshot table misaligned', (b) => { b.writeUInt32BE(1, 60); b.writeBigUInt64BE(0x123n, 64); }, 'CORRUPT', 'the snapshot table offset 0x123 is not a cluster inside the file'],
    ['external data file', u64(72, 1n << 2n), 'UNSUPPORTED', 'qcow2 feature not supported by vmctl: external data file'],
    ['zstd', (b) => { b.writeBigUInt64BE(1n << 3n, 72); b[104] = 1; }, 'UNSUPPORTED', 'qcow2 feature not supported by vmctl: zstd compression type'],
    ['extended L2 entries', u64(72, 1n << 4n), 'UNSUPPORTED', 'qcow2 feature not supported by vmctl: extended L2 entries'],
    ['unknown incompatible bits', u64(72, (1n << 2n) | (1n << 33n)), 'UNSUPPORTED', 'qcow2 features not supported by vmctl: external data file, incompatible feature bit 33'],
    ['compression type without its bit', (b) => { b[104] = 1; }, 'CORRUPT', 'compression_type is 1 but the compression type feature bit is not set'],
    ['refcount_order 7', u32(96, 7), 'CORRUPT', 'refcount_order is 7; expected 0..6'],
    ['header_length 100', u32(100, 100), 'CORRUPT', 'header_length is 100; expected 104..65536'],
    ['header_length past the cluster', u32(100, 0x20000), 'CORRUPT', 'header_length is 131072; expected 104..65536'],
    ['header_length not a multiple of 8', u32(100, 108), 'CORRUPT', 'header_length 108 is not a multiple of 8'],
    ['header extension overrunning', u32(112 + 4, 0xfff0), 'CORRUPT', 'header extension 0x6803f857 at byte 112 is 65520 bytes long, past the end of the header area'],
    ['backing name too long', (b) => { b.writeBigUInt64BE(0x200n, 8); b.writeUInt32BE(2000, 16); }, 'CORRUPT', 'the backing file name is 2000 bytes; at most 1023'],
    ['backing name past the cluster', (b) => { b.writeBigUInt64BE(0xfff0n, 8); b.writeUInt32BE(100, 16); }, 'CORRUPT', 'the backing file name (byte 65520, 100 bytes) is not inside the header cluster'],
    ['backing name inside the header', (b) => { b.writeBigUInt64BE(0x10n, 8); b.writeUInt32BE(4, 16); }, 'CORRUPT', 'the backing file name (byte 16, 4 bytes) is not inside the header cluster'],
  ];
  for (const [what, edit, code, message] of cases) {
    it(what, () => {
      const p = damaged(edit);
      const r = refusal(openRo(p));
      expect(r.code, r.message).toBe(code);
      expect(r.message).toContain(message);
      expect(r.message).toContain(p); // says which image
      expect(refusal(() => imageInfo(p)).message).toBe(r.message);
    });
  }
  it('a file too short for a header, with the magic', () => {
    const p = join(dir, 'short.qcow2');
    writeFileSync(p, Buffer.from([0x51, 0x46, 0x49, 0xfb, 0, 0, 0, 3]));
    expect(refusal(openRo(p))).toEqual({ code: 'CORRUPT', message: `${p}: damaged qcow2 header: the file is 8 bytes, shorter than a qcow2 header` });
  });
});

describe('damaged tables', () => {
  const cases: [string, number, bigint, string][] = [
    ['L1 entry with reserved bits', 0x30000, 0x8000000000040001n, 'L1 entry 0 (0x8000000000040001) has reserved bits set'],
    ['L1 entry misaligned', 0x30000, 0x8000000000040200n, 'L1 entry 0: L2 table offset 0x40200 is not aligned to a cluster'],
    ['L1 entry past EOF', 0x30000, 0x8000000100000000n, 'L1 entry 0: L2 table at 0x100000000 is past the end of the file'],
    ['L1 entry onto the refcount table', 0x30000, 0x8000000000010000n, 'L1 entry 0: L2 table at 0x10000 overlaps the header, L1 or refcount table'],
    ['refcount table entry misaligned', 0x10000, 0x20200n, 'refcount table entry 0: refcount block offset 0x20200 is not aligned'],
    ['refcount table entry past EOF', 0x10000, 0x900000n, 'refcount table entry 0: refcount block at 0x900000 is past the end of the file'],
    ['refcount block onto the L1 table', 0x10000, 0x30000n, 'refcount table entry 0: refcount block at 0x30000 overlaps other metadata'],
  ];
  for (const [what, at, value, message] of cases) {
    it(`${what}: refused at open`, () => {
      const p = damaged((b) => b.writeBigUInt64BE(value, at));
      expect(refusal(openRo(p))).toMatchObject({ code: 'CORRUPT', message: expect.stringContaining(message) });
    });
  }

  const l2cases: [string, bigint, string][] = [
    ['reserved bits', 0x8000000000050002n, 'entry 0 (0x8000000000050002) has reserved bits set'],
    ['a misaligned data cluster', 0x8000000000050200n, 'entry 0: data cluster offset 0x50200 is not aligned'],
    ['a data cluster past EOF', 0x8000000010000000n, 'entry 0: data cluster at 0x10000000 is past the end of the file'],
    ['a data cluster on the L1 table', 0x8000000000030000n, 'entry 0: data cluster at 0x30000 overlaps metadata'],
    ['a data cluster on its own L2 table', 0x8000000000040000n, 'entry 0: data cluster at 0x40000 overlaps metadata'],
    ['compressed data outside the file', 0x4000000010000000n, 'entry 0: compressed data at 0x10000000 is outside the file'],
  ];
  for (const [what, value, message] of l2cases) {
    it(`L2 entry with ${what}: the read fails naming it; a writable image is marked corrupt and no longer written`, () => {
      const p = damaged((b) => b.writeBigUInt64BE(value, 0x40000));
      const ro = openDiskImage(p, true);
      const r = refusal(() => ro.read(0, [new Uint8Array(512)]));
      ro.close();
      expect(r).toMatchObject({ code: 'CORRUPT', message: expect.stringContaining(`L2 table at 0x40000, ${message}`) });
      expect(qemuInfo(p)['format-specific'].data.corrupt).toBe(false); // read-only: untouched
      const rw = openDiskImage(p, false);
      expect(refusal(() => rw.write(0, [new Uint8Array(512)])).message).toContain('the image is now marked corrupt');
      expect(refusal(() => rw.write(256, [new Uint8Array(512)])).message).toContain('the image is marked corrupt; not writing to it');
      rw.close();
      expect(qemuInfo(p)['format-specific'].data.corrupt).toBe(true);
      expect(refusal(openRw(p)).message).toContain('the image is marked corrupt; vmctl opens it only read-only');
      expect(refusal(openRo(p)).code).toBe('accepted');
    });
  }

  it('compressed data that does not inflate to a cluster is refused, not returned', () => {
    // A compressed entry pointing at the data cluster (0x50000) holding 0x11 bytes: not deflate.
    const x = 62 - (16 - 8);
    const p = damaged((b) => b.writeBigUInt64BE((1n << 62n) | (1n << BigInt(x)) | 0x50000n, 0x40000));
    const be = openDiskImage(p, true);
    expect(refusal(() => be.read(0, [new Uint8Array(512)]))).toMatchObject({ code: 'CORRUPT', message: expect.stringContaining('compressed cluster at 0x50000') });
    be.close();
    // A valid stream of the wrong size is refused too.
    const q = damaged((b) => {
      const short = deflateRawSync(Buffer.alloc(1000, 7));
      short.copy(b, 0x50000);
      b.writeBigUInt64BE((1n << 62n) | 0x50000n, 0x40000);
    });
    const be2 = openDiskImage(q, true);
    expect(refusal(() => be2.read(0, [new Uint8Array(512)])).message).toContain('inflates to 1000 bytes, not a cluster (65536)');
    be2.close();
  });
});

describe('dirty and corrupt bits', () => {
  it('dirty (lazy refcounts after a crash): read-only works, writing is refused with the repair command', () => {
    const p = damaged((b) => b.writeBigUInt64BE(1n, 72));
    expect(refusal(openRw(p)).message).toContain(`the image's dirty bit is set (lazy refcounts and an unclean shutdown), so its refcounts need repair before it is written: qemu-img check -r all ${p}`);
    const be = openDiskImage(p, true);
    const got = new Uint8Array(512);
    be.read(0, [got]);
    be.close();
    expect(got[0]).toBe(0x11);
  });
  it('corrupt: read-only works, writing is refused', () => {
    const p = damaged((b) => b.writeBigUInt64BE(2n, 72));
    expect(refusal(openRw(p))).toMatchObject({ code: 'CORRUPT', message: expect.stringContaining('marked corrupt') });
    expect(refusal(openRo(p)).code).toBe('accepted');
  });
  it('autoclear bits (bitmaps) are cleared when vmctl opens the image for writing', () => {
    const p = damaged((b) => b.writeBigUInt64BE(1n, 88));
    openDiskImage(p, true).close();
    expect(readFileSync(p).readBigUInt64BE(88)).toBe(1n);
    openDiskImage(p, false).close();
    expect(readFileSync(p).readBigUInt64BE(88)).toBe(0n);
  });
});

describe('backing chains that cannot be followed', () => {
  it('a loop (a -> b -> a), a self-reference, a chain deeper than 64: refused, naming the chain', () => {
    const a = join(dir, 'loop-a.qcow2');
    const b = join(dir, 'loop-b.qcow2');
    qemuImg(['create', '-q', '-f', 'qcow2', '-u', '-b', 'loop-b.qcow2', '-F', 'qcow2', a, '1M']);
    qemuImg(['create', '-q', '-f', 'qcow2', '-u', '-b', 'loop-a.qcow2', '-F', 'qcow2', b, '1M']);
    expect(refusal(openRw(b))).toEqual({ code: 'CORRUPT', message: `${b}: the backing chain loops: ${b} -> ${a} -> ${b}` });
    expect(refusal(() => imageChain(a)).message).toContain('the backing chain loops');

    const self = join(dir, 'self.qcow2');
    qemuImg(['create', '-q', '-f', 'qcow2', '-u', '-b', 'self.qcow2', '-F', 'qcow2', self, '1M']);
    expect(refusal(openRo(self))).toEqual({ code: 'CORRUPT', message: `${self}: the backing chain loops: ${self} -> ${self}` });

    let below = join(dir, 'deep-base.raw');
    createRawImage(below, 1024 * 1024);
    for (let i = 0; i < 64; i++) {
      const p = join(dir, `deep${i}.qcow2`);
      createImage(p, { format: 'qcow2', backing: below });
      below = p;
    }
    // 65 images: deep63 .. deep0 and the raw base.
    expect(refusal(openRo(below))).toEqual({ code: 'UNSUPPORTED', message: `${below}: the backing chain is deeper than 64 images` });
    expect(refusal(() => createImage(join(dir, 'deeper.qcow2'), { format: 'qcow2', backing: below })).message).toContain('the backing chain is deeper than 64 images');
  });

  it('a missing backing file, an unsupported backing format or protocol, a "qcow2" base that is raw', () => {
    const base = join(dir, 'gone.raw');
    createRawImage(base, 1024 * 1024);
    const top = join(dir, 'orphan.qcow2');
    createImage(top, { format: 'qcow2', backing: base });
    rmSync(base);
    expect(refusal(openRw(top))).toEqual({ code: 'NOT_FOUND', message: `${top}: its backing file ${base} does not exist` });

    const raw = join(dir, 'plain.raw');
    createRawImage(raw, 1024 * 1024);
    const vmdk = join(dir, 'vmdk-backed.qcow2');
    qemuImg(['create', '-q', '-f', 'qcow2', '-u', '-b', raw, '-F', 'vmdk', vmdk, '1M']);
    expect(refusal(openRo(vmdk))).toEqual({ code: 'UNSUPPORTED', message: `${vmdk}: backing file ${raw} has format "vmdk"; vmctl reads raw and qcow2` });
    const lie = join(dir, 'lie.qcow2');
    qemuImg(['create', '-q', '-f', 'qcow2', '-u', '-b', raw, '-F', 'qcow2', lie, '1M']);
    expect(refusal(openRo(lie))).toEqual({ code: 'CORRUPT', message: `${lie}: its backing file ${raw} is recorded as qcow2 but has no qcow2 header` });
    const nbd = join(dir, 'nbd.qcow2');
    qemuImg(['create', '-q', '-f', 'qcow2', '-u', '-b', 'nbd://host/export', '-F', 'raw', nbd, '1M']);
    expect(refusal(openRo(nbd)).message).toContain('names a protocol (nbd:) vmctl does not support');
  });

  it('a raw image whose guest writes a qcow2 header into sector 0 is refused that write (format probing stays safe)', () => {
    const raw = join(dir, 'probe.raw');
    createRawImage(raw, 1024 * 1024);
    const hdr = readFileSync(good).subarray(0, 512);
    const be = openDiskImage(raw, false);
    expect(refusal(() => be.write(0, [new Uint8Array(hdr)])).message).toContain('refusing a write that puts a qcow2 header into sector 0 of a raw image');
    be.write(1, [new Uint8Array(hdr)]); // elsewhere it is just data
    be.close();
    expect(imageInfo(raw).format).toBe('raw');
  });
});
