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
import { FileRefused, openRegular, type OpenMode } from '../host/regular-file.js';
import { SECTOR_SIZE, type BlockBackend } from './block-backend.js';
import { DiskError } from './errors.js';
import { punchHole } from './hole-punch.js';
import { describeHolders, readDiskLocks, type DiskLockHolder } from './lock.js';

export const IMAGE_FORMAT = 'raw';

export interface DiskImageInfo {
  readonly path: string;
  /** What the guest sees (qemu-img's "virtual size"). */
  readonly virtualBytes: number;
  /** Host space really used (qemu-img's "disk size"): st_blocks * 512. */
  readonly allocatedBytes: number;
  readonly format: typeof IMAGE_FORMAT;
  /** The running VMs using the image: its one writer, or its readers (oldest first); [] if none. */
  readonly usedBy: DiskLockHolder[];
}

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

export function imageInfo(path: string): DiskImageInfo {
  let st;
  try {
    st = statSync(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new DiskError('NOT_FOUND', `${path}: no such disk image`);
    throw new DiskError('IO', `cannot read ${path}: ${(e as Error).message}`);
  }
  if (!st.isFile()) throw new DiskError('INVALID', `${path} is not a regular file`);
  return { path, virtualBytes: st.size, allocatedBytes: st.blocks * 512, format: IMAGE_FORMAT, usedBy: readDiskLocks(path) };
}

export interface ResizeResult { readonly oldBytes: number; readonly newBytes: number }

/** Grows an image (also while a VM uses it: the guest gets a config-change interrupt), or shrinks
 *  it when `shrink` is set and no VM holds it (shrinking under a running guest loses its data). */
export function resizeRawImage(path: string, newBytes: number, opts: { shrink?: boolean } = {}): ResizeResult {
  checkSize(newBytes);
  const info = imageInfo(path);
  if (newBytes < info.virtualBytes) {
    if (!opts.shrink) {
      throw new DiskError('SHRINK', `${path} is ${info.virtualBytes} bytes; shrinking to ${newBytes} discards data at its end: pass --shrink to do it`);
    }
    if (info.usedBy.length > 0) {
      throw new DiskError('IN_USE', `${path} is in use by ${describeHolders(info.usedBy)}; stop ${info.usedBy.length === 1 ? 'it' : 'them'} before shrinking the disk`);
    }
  }
  const fd = openImage(path, 'readwrite');
  try {
    ftruncateSync(fd, newBytes);
    fsyncSync(fd);
  } catch (e) {
    throw sizeError(path, newBytes, e);
  } finally {
    closeSync(fd);
  }
  return { oldBytes: info.virtualBytes, newBytes };
}

/** Opens an existing image, never blocking: an image replaced by a FIFO or a device is refused. */
function openImage(path: string, mode: OpenMode): number {
  try {
    return openRegular(path, mode).fd;
  } catch (e) {
    if (!(e instanceof FileRefused)) throw e;
    if (e.code === 'NOT_FOUND') throw new DiskError('NOT_FOUND', `${path}: no such disk image`);
    throw new DiskError(e.code === 'NOT_REGULAR' ? 'INVALID' : 'IO', `disk image ${e.message}${mode === 'read' ? '' : ' (opened for writing)'}`);
  }
}

const ZERO_CHUNK = 1024 * 1024;
/** Linux's IOV_MAX: readv/writev take at most this many buffers per call. */
const IOV_MAX = 1024;

/** The buffers from buffer `i`, byte `skip` on, at most `max` of them. */
function iovec(bufs: readonly Uint8Array[], i: number, skip: number, max = IOV_MAX): Uint8Array[] {
  const list = bufs.slice(i, i + max);
  if (skip !== 0 && list.length > 0) list[0] = list[0].subarray(skip);
  return list;
}

/** Moves the whole buffer list with readv/writev-like `op` (bytes moved at a file position),
 *  at most IOV_MAX buffers a call, resuming inside a buffer after a short transfer. Returns null
 *  when everything moved, or where it stopped when `op` moved nothing (end of file). */
function vectored(bufs: readonly Uint8Array[], pos: number, op: (list: Uint8Array[], pos: number) => number): { i: number; skip: number } | null {
  let i = 0;
  let skip = 0;
  while (i < bufs.length) {
    let n = op(iovec(bufs, i, skip), pos);
    if (n === 0 && bufs[i].length > skip) return { i, skip };
    pos += n;
    n += skip;
    while (i < bufs.length && n >= bufs[i].length) { n -= bufs[i].length; i++; }
    skip = n;
  }
  return null;
}
let zeroBuffer: Uint8Array | undefined;

/** A raw image file as a BlockBackend. Every call is a plain synchronous syscall: a write is in
 *  the host kernel when it returns, so a completed virtio request survives the death of vmctl. */
export class RawFileBackend implements BlockBackend {
  private fd: number;
  private sectors: number;
  /** Bytes in the file the last time we looked (the file may not be a multiple of 512). */
  private fileBytes: number;

  constructor(readonly path: string, readonly readonly: boolean) {
    this.fd = openImage(path, readonly ? 'read' : 'readwrite');
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
