// Opening and reading the files vmctl uses for a VM (firmware, kernel, initrd, disk images, lock
// files, state files, YAML, logs), which a user or another program can replace at any time.
//
// Every such file goes through here, so that none of them can hang or bloat the process:
// - open(2) with O_NONBLOCK: opening a FIFO never waits for its other end (a read-only open returns
//   at once; a write-only open without a reader fails with ENXIO), and O_NOCTTY: a terminal never
//   becomes our controlling terminal;
// - fstat(2) on the open descriptor must say "regular file": a FIFO, a character device (a symlink
//   to /dev/zero or /dev/urandom), a socket or a folder is refused, naming what it is;
// - a read is bounded in advance by what the caller can use (an image is never larger than the
//   memory it goes to), from the size fstat gave, in chunks: a worker thread reading a large image
//   can still be terminated between two chunks.
// On a regular file O_NONBLOCK changes nothing (reads and writes are never "would block"), so the
// descriptor is used as it is afterwards.

import { closeSync, constants as fsc, fstatSync, lstatSync, openSync, readlinkSync, readSync, statSync, writeSync, type Stats } from 'node:fs';

export type FileRefusedCode = 'NOT_FOUND' | 'NOT_REGULAR' | 'TOO_LARGE' | 'IO';

/** A file vmctl will not use, and why. `message` is `PATH: REASON`; `reason` reads after a noun
 *  ("the kernel " + reason). */
export class FileRefused extends Error {
  constructor(readonly path: string, readonly code: FileRefusedCode, readonly reason: string, readonly size?: number) {
    super(`${path}: ${reason}`);
    this.name = 'FileRefused';
  }
}

export type OpenMode = 'read' | 'readwrite' | 'append';

const MODE_FLAGS: Record<OpenMode, number> = {
  read: fsc.O_RDONLY,
  readwrite: fsc.O_RDWR,
  // A log: created when missing.
  append: fsc.O_WRONLY | fsc.O_APPEND | fsc.O_CREAT,
};

/** "a FIFO (named pipe)", "a character device", ... for a file that is not regular. */
function kindOf(st: Stats): string {
  if (st.isFIFO()) return 'a FIFO (named pipe)';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isSocket()) return 'a socket';
  if (st.isDirectory()) return 'a folder';
  return 'not a regular file';
}

/** " (a symlink to /dev/zero)" when the path is a symlink, so the message shows what was reached. */
function viaLink(path: string): string {
  try {
    if (lstatSync(path).isSymbolicLink()) return ` (a symlink to ${readlinkSync(path)})`;
  } catch { /* gone meanwhile */ }
  return '';
}

function notRegular(path: string, st: Stats): FileRefused {
  const kind = kindOf(st);
  return new FileRefused(path, 'NOT_REGULAR', `${kind === 'not a regular file' ? 'is not a regular file' : `is ${kind}`}${viaLink(path)}; expected a regular file`);
}

function openError(path: string, e: unknown): FileRefused {
  const err = e as NodeJS.ErrnoException;
  if (err.code === 'ENOENT') return new FileRefused(path, 'NOT_FOUND', 'does not exist');
  if (err.code === 'ENXIO' || err.code === 'EISDIR') {
    // ENXIO: a FIFO without a reader, or a socket (open(2)); EISDIR: a folder opened for writing.
    try { return notRegular(path, statSync(path)); } catch { /* fall through */ }
  }
  return new FileRefused(path, 'IO', `cannot be opened (${err.code ?? err.message})`);
}

/**
 * Opens a regular file without ever blocking; anything else is refused (FileRefused). The caller
 * owns the descriptor. `append` creates the file (mode `createMode`) when it is missing.
 */
export function openRegular(path: string, mode: OpenMode, createMode = 0o600): { fd: number; stat: Stats } {
  let fd: number;
  try {
    fd = openSync(path, MODE_FLAGS[mode] | fsc.O_NONBLOCK | fsc.O_NOCTTY, createMode);
  } catch (e) {
    throw openError(path, e);
  }
  try {
    const stat = fstatSync(fd);
    if (!stat.isFile()) throw notRegular(path, stat);
    return { fd, stat };
  } catch (e) {
    closeSync(fd);
    throw e;
  }
}

/** Reads are done in pieces of this size (a terminate request is seen between two). */
const CHUNK = 8 * 1024 * 1024;

/** Reads `dst.length` bytes at `from` into `dst`, in pieces; the count read (less when the file
 *  shrank under us). */
function readInto(path: string, fd: number, dst: Uint8Array, from: number): number {
  let got = 0;
  while (got < dst.length) {
    let n: number;
    try {
      n = readSync(fd, dst, got, Math.min(CHUNK, dst.length - got), from + got);
    } catch (e) {
      throw new FileRefused(path, 'IO', `cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
    }
    if (n === 0) break; // shrunk under us: what is there
    got += n;
  }
  return got;
}

/** `length` bytes at `from` in a new buffer (shorter when the file shrank), read by `read`. */
function readRange(read: (dst: Uint8Array, pos: number) => number, from: number, length: number): Buffer {
  const buf = Buffer.allocUnsafe(length);
  const got = read(buf, from);
  return got === length ? buf : buf.subarray(0, got);
}

/** An open regular file, read where its bytes go (withRegular). */
export interface RegularFileReader {
  readonly path: string;
  readonly size: number;
  /** Reads `dst.length` bytes at `pos` into `dst`; the count read (less when the file shrank). */
  read(dst: Uint8Array, pos: number): number;
}

/** Runs `use` on a regular file of at most `limit.maxBytes` bytes, open for positional reads
 *  into the caller's buffers: a boot image goes straight into guest RAM, never whole into a
 *  buffer of its own (megabytes the allocator would keep). */
export function withRegular<T>(path: string, limit: ReadLimit, use: (file: RegularFileReader) => T): T {
  const { fd, stat } = openRegular(path, 'read');
  try {
    if (stat.size > limit.maxBytes) {
      throw new FileRefused(path, 'TOO_LARGE', limit.tooLarge?.(stat.size) ?? `is ${stat.size} bytes, more than the ${limit.maxBytes} bytes expected`, stat.size);
    }
    return use({ path, size: stat.size, read: (dst, pos) => readInto(path, fd, dst, pos) });
  } finally {
    closeSync(fd);
  }
}

export interface ReadLimit {
  /** The most the caller can use; a larger file is refused before anything is read. */
  readonly maxBytes: number;
  /** The reason for a file that is larger, e.g. "is 9MiB, more than the 8MiB of memory"; default
   *  "is N bytes, more than the M bytes expected". */
  readonly tooLarge?: (size: number) => string;
}

/** The whole of a regular file of at most `limit.maxBytes` bytes. */
export function readRegular(path: string, limit: ReadLimit): Buffer {
  return withRegular(path, limit, (f) => readRange(f.read, 0, f.size));
}

/** The last (at most) `maxBytes` bytes of a regular file: for logs, whose start may be dropped. */
export function readRegularTail(path: string, maxBytes: number): Buffer {
  const { fd, stat } = openRegular(path, 'read');
  try {
    const from = Math.max(0, stat.size - maxBytes);
    return readRange((dst, pos) => readInto(path, fd, dst, pos), from, stat.size - from);
  } finally {
    closeSync(fd);
  }
}

/** The size of a regular file (refusing anything else), without reading it. */
export function regularFileSize(path: string): number {
  const { fd, stat } = openRegular(path, 'read');
  closeSync(fd);
  return stat.size;
}

/** Appends `data` to a regular file (created when missing), never blocking on a FIFO in its place. */
export function appendRegular(path: string, data: string | Uint8Array): void {
  const { fd } = openRegular(path, 'append');
  try {
    const buf = typeof data === 'string' ? Buffer.from(data) : data;
    let off = 0;
    while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off);
  } finally {
    closeSync(fd);
  }
}
