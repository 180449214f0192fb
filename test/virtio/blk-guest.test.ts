// virtio-blk from inside a guest: our bare-metal driver (fixtures/disk/blk-test.elf and
// blk-seq.elf) on the real virt board, against real sparse image files, checked on the host.

import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createRawImage, imageInfo } from '../../src/disk/raw-image.js';
import { runGuest } from '../helpers/run-guest.js';

const FIX = join(__dirname, '../../fixtures/disk');
const dir = mkdtempSync(join(tmpdir(), 'vmctl-blkguest-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function imageWithSector0(name: string, bytes: number, text: string): string {
  const path = join(dir, name);
  createRawImage(path, bytes);
  const fd = openSync(path, 'r+');
  writeSync(fd, Buffer.from(text), 0, text.length, 0);
  closeSync(fd);
  return path;
}

describe('virtio-blk with a bare-metal guest driver', () => {
  it('negotiates, reads, writes, flushes, zeroes and reads back; the image holds what the guest wrote', async () => {
    const path = imageWithSector0('test.img', 1024 * 1024, 'HOST-WROTE-SECTOR-0');
    const r = await runGuest({
      kernelPath: join(FIX, 'blk-test.elf'), memoryBytes: 16 * 1024 * 1024,
      disks: [{ path, readonly: false, name: 'guest-disk-7' }],
    }, { timeoutMs: 60_000 });
    expect(r.output).toContain('blk: slot 0');
    expect(r.output).toMatch(/blk: id=guest-disk-7 capacity=2048 features=0x0000000110004200/);
    expect(r.output).toContain('blk: sector0=HOST-WROTE-SECTOR-0');
    expect(r.output).not.toContain('FAIL');
    expect(r.output).toContain('ok indirect read');
    expect(r.output).toContain('blk: ALL OK');
    expect(r.power).toMatchObject({ kind: 'poweroff', code: 0 });
    // On the host: the guest's pattern, its zeroed sectors and its marker.
    const img = readFileSync(path);
    for (let i = 0; i < 512; i++) expect(img[8 * 512 + i]).toBe((i * 13 + 7) & 0xff);
    expect(img.subarray(9 * 512, 11 * 512).every((b) => b === 0)).toBe(true);
    for (let s = 16; s < 24; s++) expect(img[s * 512 + 1]).toBe((13 + s) & 0xff);
    expect(img.subarray(2047 * 512, 2047 * 512 + 23).toString()).toBe('vmctl blk-test was here');
    expect(img.length).toBe(1024 * 1024);
  });

  it('a read-only disk refuses the write and stays unchanged', async () => {
    const path = imageWithSector0('ro.img', 64 * 1024, 'READ-ONLY');
    const before = readFileSync(path);
    const r = await runGuest({
      kernelPath: join(FIX, 'blk-test.elf'), memoryBytes: 16 * 1024 * 1024,
      disks: [{ path, readonly: true, name: 'ro' }],
    }, { timeoutMs: 60_000 });
    expect(r.output).toMatch(/features=0x0000000110000220/); // VERSION_1 | INDIRECT | FLUSH | RO
    expect(r.output).toContain('ok read-only write refused');
    expect(r.power).toMatchObject({ kind: 'poweroff', code: 0 });
    expect(readFileSync(path).equals(before)).toBe(true);
  });

  it('every sequence number the guest reported is in the image, and the file stays sparse', async () => {
    const path = join(dir, 'seq.img');
    createRawImage(path, 64 * 1024 * 1024);
    let reported = 0;
    const r = await runGuest({
      kernelPath: join(FIX, 'blk-seq.elf'), memoryBytes: 16 * 1024 * 1024,
      disks: [{ path, readonly: false, name: 'seq' }],
    }, { timeoutMs: 4_000, onOutput: () => {} });
    for (const m of r.output.matchAll(/^seq (\d+)$/gm)) reported = Math.max(reported, Number(m[1]));
    expect(reported).toBeGreaterThan(10);
    const img = readFileSync(path);
    for (let n = 1; n <= reported; n++) {
      const s = img.subarray(n * 512, n * 512 + 16);
      expect(s.subarray(0, 4).toString()).toBe('SEQ!');
      expect(s.readBigUInt64LE(8)).toBe(BigInt(n));
    }
    // ~reported sectors written: the 64 MiB image holds only those blocks.
    expect(imageInfo(path).allocatedBytes).toBeLessThan(reported * 512 + 8 * 1024 * 1024);
  });
});
