// An image file on the host as positioned, synchronous reads and writes (pread/pwrite,
// preadv/pwritev) with the loops that short transfers need. Every write is a plain syscall: when
// it returns the bytes are in the host kernel, so they survive the death of vmctl (SIGKILL).
//
// The qcow2 backend does all its I/O through one HostFile, so tests can put a file in its place
// that "dies" after N writes and check what a crash at each point leaves behind.

import { closeSync, fstatSync, fsyncSync, readSync, readvSync, writeSync, writevSync } from 'node:fs';
import { FileRefused, openRegular } from '../host/regular-file.js';
import { DiskError } from './errors.js';

/** Linux's IOV_MAX: readv/writev take at most this many buffers per call. */
const IOV_MAX = 1024;

/** The buffers from buffer `i`, byte `skip` on, at most `max` of them. */
export function iovec(bufs: readonly Uint8Array[], i: number, skip: number, max = IOV_MAX): Uint8Array[] {
  const list = bufs.slice(i, i + max);
  if (skip !== 0 && list.length > 0) list[0] = list[0].subarray(skip);
  return list;
}

/** Moves the whole buffer list with readv/writev-like `op` (bytes moved at a file position),
 *  at most IOV_MAX buffers a call, resuming inside a buffer after a short transfer. Returns null
 *  when everything moved, or where it stopped when `op` moved nothing (end of file). */
export function vectored(bufs: readonly Uint8Array[], pos: number, op: (list: Uint8Array[], pos: number) => number): { i: number; skip: number } | null {
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

/** Opens an existing image file, never blocking (src/host/regular-file.ts): an image replaced by
 *  a FIFO or a device is refused (INVALID); a missing file is NOT_FOUND, anything else the host
 *  refused is IO. */
export function openImageFile(path: string, writable: boolean): number {
  try {
    return openRegular(path, writable ? 'readwrite' : 'read').fd;
  } catch (e) {
    if (!(e instanceof FileRefused)) throw e;
    if (e.code === 'NOT_FOUND') throw new DiskError('NOT_FOUND', `${path}: no such disk image`);
    throw new DiskError(e.code === 'NOT_REGULAR' ? 'INVALID' : 'IO', `disk image ${e.message}${writable ? ' (opened for writing)' : ''}`);
  }
}

export class HostFile {
  private fd: number;

  constructor(readonly path: string, readonly writable: boolean) {
    this.fd = openImageFile(path, writable);
  }

  size(): number {
    return fstatSync(this.fd).size;
  }

  /** Fills `buf` from `pos`; what lies past the end of the file reads as zeros. */
  read(buf: Uint8Array, pos: number): void {
    let done = 0;
    while (done < buf.length) {
      const n = readSync(this.fd, buf, done, buf.length - done, pos + done);
      if (n === 0) { buf.fill(0, done); return; }
      done += n;
    }
  }

  /** Fills the buffers in order from `pos`; past the end of the file they read as zeros. */
  readv(bufs: readonly Uint8Array[], pos: number): void {
    const stop = vectored(bufs, pos, (list, p) => readvSync(this.fd, list, p));
    if (stop !== null) for (const b of iovec(bufs, stop.i, stop.skip, bufs.length)) b.fill(0);
  }

  write(buf: Uint8Array, pos: number): void {
    let done = 0;
    while (done < buf.length) {
      const n = writeSync(this.fd, buf, done, buf.length - done, pos + done);
      if (n === 0) throw new DiskError('IO', `${this.path}: the host wrote nothing at byte ${pos + done}`);
      done += n;
    }
  }

  writev(bufs: readonly Uint8Array[], pos: number): void {
    const stop = vectored(bufs, pos, (list, p) => writevSync(this.fd, list, p));
    if (stop !== null) throw new DiskError('IO', `${this.path}: the host wrote nothing at byte ${pos}`);
  }

  /** Makes every completed write durable. */
  sync(): void {
    fsyncSync(this.fd);
  }

  close(): void {
    if (this.fd < 0) return;
    try {
      if (this.writable) fsyncSync(this.fd);
    } finally {
      closeSync(this.fd);
      this.fd = -1;
    }
  }
}
