// Raw sparse disk images: a file whose byte N is the disk's byte N, nothing else (QEMU
// `format=raw`), created at its full virtual size as a file with holes so only written blocks
// take host space.
//
// Why raw and sparse rather than a format of our own (qcow2-like): QEMU and every host tool
// (e2fsck, debugfs, mount -o loop) read it as it is, and the host file system already does the
// allocate-on-write bookkeeping. The cost is that "allocated" is whatever the host file system
// says (st_blocks), and giving space back needs hole punching (see hole-punch.ts).

import {
  closeSync, constants as fsc, existsSync, fstatSync, fsyncSync, ftruncateSync, openSync, readvSync, statSync, unlinkSync, writeSync, writevSync,
} from 'node:fs';
import { formatSize } from '../config/units.js';
import { SECTOR_SIZE, type BlockBackend } from './block-backend.js';
import { DiskError } from './errors.js';
import { punchHole } from './hole-punch.js';
import { iovec, openImageFile, vectored } from './host-file.js';
import { describeHolders, readDiskLocks } from './lock.js';
import { isQcow2 } from './qcow2/header.js';

function checkSize(sizeBytes: number): void {
  if (!Number.isSafeInteger(sizeBytes) || sizeBytes <= 0 || sizeBytes % SECTOR_SIZE !== 0) {
    throw new DiskError('INVALID', `disk size ${sizeBytes} must be a positive multiple of ${SECTOR_SIZE} bytes`);
  }
}

/** Creates a new sparse image of `sizeBytes` (refuses to overwrite an existing file). */
export function createRawImage(path: string, sizeBytes: number): void {
  checkSize(sizeBytes);
  let fd: number;
  try {
    // O_EXCL: never clobber an image somebody already has.
    fd = openSync(path, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL, 0o644);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') throw new DiskError('EXISTS', `${path} already exists; vmctl never overwrites a disk image`);
    throw new DiskError('IO', `cannot create ${path}: ${(e as Error).message}`);
  }
  try {
    // ftruncate extends with a hole: no data blocks are allocated (POSIX: the extension reads as zeros).
    ftruncateSync(fd, sizeBytes);
    fsyncSync(fd);
  } catch (e) {
    // The file is ours (O_EXCL): do not leave a 0-byte image behind that a retry would refuse.
    closeSync(fd);
    fd = -1;
    try { unlinkSync(path); } catch { /* best effort */ }
    throw sizeError(path, sizeBytes, e);
  } finally {
    if (fd >= 0) closeSync(fd);
  }
}

/** An ftruncate failure as a DiskError: EFBIG/EINVAL mean the size does not fit this file system
 *  (or the process's file size limit, RLIMIT_FSIZE); anything else is the host saying no. */
function sizeError(path: string, sizeBytes: number, e: unknown): DiskError {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'EFBIG' || code === 'EINVAL') {
    return new DiskError('INVALID', `${path}: a file of ${formatSize(sizeBytes)} (${sizeBytes} bytes) does not fit on this file system or within the file size limit (${code}); expected a smaller size`);
  }
  return new DiskError('IO', `cannot set the size of ${path} to ${sizeBytes} bytes: ${(e as Error).message}`);
}

/** Grows an image (also while a VM uses it: the guest gets a config-change interrupt), or shrinks
 *  it when `shrink` is set and no VM holds it (shrinking under a running guest loses its data). */
export function resizeRawImage(path: string, newBytes: number, opts: { shrink?: boolean } = {}): { oldBytes: number; newBytes: number } {
  checkSize(newBytes);
  let oldBytes: number;
  try {
    oldBytes = statSync(path).size;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new DiskError('NOT_FOUND', `${path}: no such disk image`);
    throw new DiskError('IO', `cannot read ${path}: ${(e as Error).message}`);
  }
  if (newBytes < oldBytes) {
    if (!opts.shrink) {
      throw new DiskError('SHRINK', `${path} is ${oldBytes} bytes; shrinking to ${newBytes} discards data at its end: pass --shrink to do it`);
    }
    const usedBy = readDiskLocks(path);
    if (usedBy.length > 0) {
      throw new DiskError('IN_USE', `${path} is in use by ${describeHolders(usedBy)}; stop ${usedBy.length === 1 ? 'it' : 'them'} before shrinking the disk`);
    }
  }
  const fd = openImageFile(path, true);
  try {
    ftruncateSync(fd, newBytes);
    fsyncSync(fd);
  } catch (e) {
    throw sizeError(path, newBytes, e);
  } finally {
    closeSync(fd);
  }
  return { oldBytes, newBytes };
}

const ZERO_CHUNK = 1024 * 1024;
let zeroBuffer: Uint8Array | undefined;

/** A raw image file as a BlockBackend. Every call is a plain synchronous syscall: a write is in
 *  the host kernel when it returns, so a completed virtio request survives the death of vmctl. */
export class RawFileBackend implements BlockBackend {
  private fd: number;
  private sectors: number;
  /** Bytes in the file the last time we looked (the file may not be a multiple of 512). */
  private fileBytes: number;

  /** `refuseQcow2Magic`: the format was probed (image.ts), so the guest may not write qcow2's
   *  magic into sector 0: the next probe would take its sector 0 for a qcow2 header. */
  constructor(readonly path: string, readonly readonly: boolean, private readonly opts: { refuseQcow2Magic?: boolean } = {}) {
    this.fd = openImageFile(path, !readonly);
    this.fileBytes = fstatSync(this.fd).size;
    // A trailing partial sector is not visible to the guest (QEMU rounds the same way for raw).
    this.sectors = Math.floor(this.fileBytes / SECTOR_SIZE);
  }

  sectorCount(): number { return this.sectors; }

  read(sector: number, bufs: readonly Uint8Array[]): void {
    // readv straight into guest RAM. Past the end of a file shrunk under us, the rest reads as
    // zeros rather than stale bytes.
    const stop = vectored(bufs, sector * SECTOR_SIZE, (list, pos) => readvSync(this.fd, list, pos));
    if (stop !== null) for (const b of iovec(bufs, stop.i, stop.skip, bufs.length)) b.fill(0);
  }

  write(sector: number, bufs: readonly Uint8Array[]): void {
    if (this.readonly) throw new DiskError('READONLY', `${this.path} is attached read-only`);
    if (sector === 0 && this.opts.refuseQcow2Magic && bufs.length > 0 && isQcow2(bufs[0].length >= 4 ? bufs[0] : concatStart(bufs))) {
      throw new DiskError('IO', `${this.path}: refusing a write that puts a qcow2 header into sector 0 of a raw image (vmctl would read the image as qcow2 next time)`);
    }
    const stop = vectored(bufs, sector * SECTOR_SIZE, (list, pos) => writevSync(this.fd, list, pos));
    if (stop !== null) throw new DiskError('IO', `${this.path}: the host wrote nothing at byte ${sector * SECTOR_SIZE}`);
  }

  flush(): void {
    if (!this.readonly) fsyncSync(this.fd);
  }

  writeZeroes(sector: number, count: number, mayUnmap: boolean): void {
    if (this.readonly) throw new DiskError('READONLY', `${this.path} is attached read-only`);
    const offset = sector * SECTOR_SIZE;
    const length = count * SECTOR_SIZE;
    // A punched hole reads as zeros, so it satisfies write-zeroes (virtio 1.2 5.2.6.2) and frees space.
    if (mayUnmap && punchHole(this.path, offset, length)) return;
    if (zeroBuffer === undefined) zeroBuffer = new Uint8Array(ZERO_CHUNK);
    let pos = offset;
    const end = offset + length;
    while (pos < end) {
      const n = Math.min(ZERO_CHUNK, end - pos);
      pos += writeSync(this.fd, zeroBuffer, 0, n, pos);
    }
  }

  discard(sector: number, count: number): void {
    if (this.readonly) throw new DiskError('READONLY', `${this.path} is attached read-only`);
    // Discard is a hint: afterwards the contents are unspecified (virtio 1.2 5.2.6.2 only requires
    // zeros for write-zeroes). When the host cannot punch holes, writing zeros would *allocate* the
    // range in a sparse file, the opposite of what the guest asked for, so we then do nothing
    // (QEMU's raw driver does the same when the host lacks hole punching).
    punchHole(this.path, sector * SECTOR_SIZE, count * SECTOR_SIZE);
  }

  refreshCapacity(): boolean {
    const size = fstatSync(this.fd).size;
    if (size === this.fileBytes) return false;
    this.fileBytes = size;
    const sectors = Math.floor(size / SECTOR_SIZE);
    const changed = sectors !== this.sectors;
    this.sectors = sectors;
    return changed;
  }

  close(): void {
    if (this.fd < 0) return;
    try {
      if (!this.readonly) fsyncSync(this.fd);
    } finally {
      closeSync(this.fd);
      this.fd = -1;
    }
  }
}

export function imageExists(path: string): boolean {
  return existsSync(path);
}

/** The first 4 bytes of a scatter list whose first buffer is shorter. */
function concatStart(bufs: readonly Uint8Array[]): Uint8Array {
  const b = new Uint8Array(4);
  let n = 0;
  for (const x of bufs) {
    const k = Math.min(4 - n, x.length);
    b.set(x.subarray(0, k), n);
    n += k;
    if (n === 4) break;
  }
  return b.subarray(0, n);
}
