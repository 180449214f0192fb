// virtio-blk from inside a guest: our bare-metal driver (fixtures/disk/blk-test.elf and
// blk-seq.elf) on the real virt board, against real sparse image files, checked on the host.

import { spawnSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { imageInfo } from '../../src/disk/image.js';
import { createRawImage } from '../../src/disk/raw-image.js';
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

  it('a guest that builds a descriptor loop gets DEVICE_NEEDS_RESET and a config interrupt (as on QEMU); the VM runs on', async () => {
    const path = imageWithSector0('hostile.img', 64 * 1024, 'STILL-HERE');
    const r = await runGuest({
      kernelPath: join(FIX, 'blk-hostile.elf'), memoryBytes: 16 * 1024 * 1024,
      disks: [{ path, readonly: false, name: 'hostile' }],
    }, { timeoutMs: 60_000 });
    expect(r.output).toContain('ok descriptor loop: DEVICE_NEEDS_RESET');
    expect(r.output).toContain('ok descriptor loop: configuration change interrupt');
    expect(r.output).toContain('ok works again after reset');
    expect(r.output).toContain('blk: ALL OK');
    expect(r.power).toMatchObject({ kind: 'poweroff', code: 0 });
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

  // The same guests on QEMU 7.2 (the reference virtio-blk): every line but the slot number
  // (QEMU fills its slots from the top) must be the same. blk-lenient shows that the transport
  // accepts the drivers QEMU's accepts (no feature page 1, bits not offered, no FEATURES_OK,
  // a queue size that is not a power of 2).
  for (const guest of ['blk-test', 'blk-hostile', 'blk-lenient']) {
    it(`${guest}.elf prints the same on vmctl and on QEMU`, async () => {
      const vmImg = imageWithSector0(`${guest}-vm.img`, 1024 * 1024, 'SAME-ON-BOTH');
      const qImg = imageWithSector0(`${guest}-q.img`, 1024 * 1024, 'SAME-ON-BOTH');
      const ours = await runGuest({
        kernelPath: join(FIX, `${guest}.elf`), memoryBytes: 64 * 1024 * 1024,
        disks: [{ path: vmImg, readonly: false, name: 'same-id' }],
      }, { timeoutMs: 60_000 });
      const q = spawnSync('qemu-system-riscv64', [
        '-machine', 'virt', '-cpu', 'rv64,h=false,zba=false,zbb=false,zbc=false,zbs=false', '-m', '64M', '-nographic', '-bios', 'none',
        '-kernel', join(FIX, `${guest}.elf`), '-global', 'virtio-mmio.force-legacy=false',
        '-drive', `file=${qImg},if=none,format=raw,id=d0`, '-device', 'virtio-blk-device,drive=d0,serial=same-id',
      ], { encoding: 'latin1', timeout: 60_000 });
      const clean = (t: string): string[] => t.replace(/\r/g, '').split('\n').filter((l) => l.startsWith('blk: ') || l.startsWith('ok ') || l.startsWith('FAIL '))
        .filter((l) => !l.startsWith('blk: slot'));
      expect(clean(q.stdout)).toContain('blk: ALL OK');
      expect(clean(ours.output)).toEqual(clean(q.stdout));
      expect(readFileSync(vmImg).equals(readFileSync(qImg))).toBe(true);
    });
  }
});
