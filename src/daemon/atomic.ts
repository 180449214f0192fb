// Crash-safe file replacement: write a temporary file, fsync it, rename it over the target, fsync the
// folder. After a crash (or SIGKILL) the target holds either the old or the new content, never half.

import { closeSync, constants as fsc, fsyncSync, openSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

/** A new temporary name next to `path` (".NAME.PID.RANDOM.tmp"): never taken for the real file,
 *  and recognisable (isTempFileFor) to clean up what a killed process left. */
export function tempPathFor(path: string): string {
  return join(dirname(path), `.${basename(path)}.${process.pid}.${Math.random().toString(36).slice(2, 8)}.tmp`);
}

/** Is `name` (a file name in the same folder) a temporary file of tempPathFor(path)? */
export function isTempFileFor(path: string, name: string): boolean {
  return name.startsWith(`.${basename(path)}.`) && name.endsWith('.tmp');
}

/** Moves a complete, fsynced `tmp` into place over `path`, durably. */
export function renameIntoPlace(tmp: string, path: string): void {
  renameSync(tmp, path);
  fsyncDir(dirname(path));
}

export function writeFileAtomic(path: string, data: string | Uint8Array, mode = 0o600): void {
  const tmp = tempPathFor(path);
  const fd = openSync(tmp, 'wx', mode);
  try {
    const buf = typeof data === 'string' ? Buffer.from(data) : data;
    let off = 0;
    while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off);
    fsyncSync(fd);
  } catch (e) {
    closeSync(fd);
    try { unlinkSync(tmp); } catch { /* already gone */ }
    throw e;
  }
  closeSync(fd);
  renameIntoPlace(tmp, path);
}

export function fsyncDir(dir: string): void {
  let fd: number | undefined;
  try {
    // O_DIRECTORY: a folder replaced by a FIFO fails at once instead of waiting for a writer.
    fd = openSync(dir, fsc.O_RDONLY | fsc.O_DIRECTORY | fsc.O_NONBLOCK);
    fsyncSync(fd);
  } catch {
    // Some filesystems refuse fsync on a directory; the rename itself is still atomic.
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}
