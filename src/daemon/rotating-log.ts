// A log file rotated to `<file>.1` at a size limit, so that nothing vmctl writes for a long time
// can fill the disk: at most twice the limit is kept. Used for each VM's serial.log (a byte
// stream, split exactly at the limit) and for the daemon's vmd.log (lines, never split).
//
// The file stays open between writes (a chatty guest writes often). Rotation is close, rename to
// `.1` (replacing the older one), reopen: a line is written whole to one file or the other, so a
// reader of `.1` followed by the current file sees every line once and in order.

import { closeSync, renameSync, statSync, writeSync } from 'node:fs';
import { openRegular } from '../host/regular-file.js';

export class RotatingLog {
  private fd = -1;
  private size = 0;
  private ino = -1;

  /**
   * @param onRotate called after each rotation, once the new file is open, with the size the
   *   rotated file had (serial-log.ts keeps stream positions across files with it).
   */
  constructor(private readonly path: string, private maxBytes: number, private readonly onRotate?: (rotatedSize: number) => void) {
    this.open();
  }

  /** A new limit (e.g. once the daemon has read config.yaml); applies from the next write. */
  setLimit(maxBytes: number): void {
    this.maxBytes = maxBytes;
  }

  /** A byte stream (console output): filled up to the limit exactly, the rest goes to a new file. */
  append(data: Uint8Array): void {
    if (this.fd < 0) this.open(); // a reopen that failed before
    let off = 0;
    while (off < data.length) {
      if (this.size >= this.maxBytes) this.rotate();
      const n = Math.min(data.length - off, this.maxBytes - this.size);
      writeSync(this.fd, data, off, n);
      off += n;
      this.size += n;
    }
  }

  /**
   * One record (a log line), never split between two files: when it would take the file past
   * the limit, the file is rotated first. A record longer than the limit gets a file of its own.
   * Also follows the path: if the file was moved or deleted by hand, a new one is started there.
   */
  appendRecord(data: Uint8Array | string): void {
    const buf = typeof data === 'string' ? Buffer.from(data) : data;
    this.reopenIfMoved();
    if (this.size > 0 && this.size + buf.length > this.maxBytes) this.rotate();
    let off = 0;
    while (off < buf.length) off += writeSync(this.fd, buf, off, buf.length - off);
    this.size += buf.length;
  }

  private reopenIfMoved(): void {
    let ino = -1;
    try { ino = statSync(this.path).ino; } catch { /* deleted */ }
    if (ino === this.ino && this.fd >= 0) return;
    this.close();
    this.open();
  }

  private rotate(): void {
    const rotatedSize = this.size;
    this.close();
    renameSync(this.path, `${this.path}.1`);
    this.open();
    this.onRotate?.(rotatedSize);
  }

  /** The current file's size and inode (which file it is, for a reader that finds it renamed). */
  get current(): { readonly size: number; readonly ino: number } {
    return { size: this.size, ino: this.ino };
  }

  private open(): void {
    // Never blocks: a log replaced by a FIFO is refused (FileRefused), not opened for writing.
    const { fd, stat } = openRegular(this.path, 'append');
    this.fd = fd;
    this.size = stat.size;
    this.ino = stat.ino;
  }

  close(): void {
    if (this.fd < 0) return;
    closeSync(this.fd);
    this.fd = -1;
  }
}
