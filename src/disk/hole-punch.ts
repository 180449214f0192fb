// Giving a range of a sparse image back to the host file system ("punching a hole").
//
// Node has no fallocate(2) binding, and vmctl has no native code, so there is no in-process way
// to deallocate the middle of a file: writing zeros allocates blocks, ftruncate only works at the
// end of the file (and shrinking-then-growing would leave a window where a crash truncates the
// disk). What the host usually does have is util-linux's `fallocate` command, which issues
// fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE) on the path: the file keeps its size and
// the range reads as zeros afterwards. We use it when it exists and works on the image's file
// system; the first failure (missing tool, EOPNOTSUPP) turns punching off for the process, and
// callers fall back (write zeros for write-zeroes, nothing for discard).
//
// Cost: one process spawn (a few ms) per request. Guests issue discards rarely (mkfs, fstrim,
// `-o discard` file systems), and the virtio-blk limits cap the work per request.

import { spawnSync } from 'node:child_process';

let available: boolean | undefined;

/** Punches [offset, offset+length) of the file at `path`. Returns false when it cannot. */
export function punchHole(path: string, offset: number, length: number): boolean {
  if (available === false || length <= 0) return false;
  const r = spawnSync('fallocate', ['--punch-hole', '--keep-size', '--offset', String(offset), '--length', String(length), path], {
    stdio: 'ignore',
    timeout: 10_000,
  });
  const ok = r.error === undefined && r.status === 0;
  if (!ok) available = false;
  else available = true;
  return ok;
}

/** For tests: whether the last attempt worked (undefined before the first). */
export function holePunchingAvailable(): boolean | undefined {
  return available;
}
