// Who may use a disk image: any number of running VMs that attach it read-only, or one VM that
// writes it (QEMU's and VirtualBox's rule for shared images): a reader never sees the image change
// under it, and a writer has it to itself. Lock files next to the image record the holders.
//
// Why lock files and not flock/fcntl: Node has no binding for either (and vmctl has no native
// code), and POSIX record locks are per process, so they would not even tell two VMs of the same
// daemon apart. Lock files work across daemons, across VMCTL_HOMEs and across hosts sharing a
// file system, and `ls` shows who holds a disk.
//
// - A writer holds `<image>.lock`; each reader holds a file of its own, `<image>.lock.shared.<nonce>`.
//   Both hold JSON {vm, pid, host, home, nonce, procStart, since, readonly} (a vmctl command that
//   works on the image, like `disk resize`, has vm null and `command` instead), complete before the
//   file appears under its name: a private temp file is written, then link(2)ed to the name; for
//   `<image>.lock` link fails with EEXIST when the lock exists (atomic on local file systems and
//   on NFS, unlike O_EXCL on old NFS).
// - Readers and writers exclude each other by announcing first and looking second: a reader
//   creates its file, then looks for a live writer; a writer takes `<image>.lock`, then looks for
//   live readers; whoever finds the other backs out (removes its own file) and is refused. Of a
//   reader and a writer racing, at least the one that looks last sees the other, so they never
//   both succeed (at worst both back out and are told the disk is in use).
// - A lock is stale when its host is this host and its pid is dead (or a zombie: a killed daemon
//   nobody reaped yet), or the pid is alive but is a different process (its start time in
//   /proc/<pid>/stat differs: pid reuse after a reboot or wrap-around). A lock from another host is never considered stale: we cannot see its
//   processes, so the error says to remove the file by hand if that host is gone.
// - Breaking a stale writer lock: rename it to a private name, then check that what we moved is
//   the stale lock we examined (same nonce); if a live lock slipped in between, link it back.
//   A stale reader file is simply removed: its name is its dead owner's alone.

import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, linkSync, openSync, readdirSync, readFileSync, realpathSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { hostname } from 'node:os';
import { FileRefused, readRegular } from '../host/regular-file.js';
import { DiskError } from './errors.js';

export interface DiskLockHolder {
  /** VM name (null: a vmctl command holds the image, named by `command`). */
  readonly vm: string | null;
  /** The vmctl command working on the image, like "disk convert" (absent for VMs). */
  readonly command?: string;
  readonly pid: number;
  readonly host: string;
  /** The daemon's VMCTL_HOME. */
  readonly home: string;
  /** ISO time the lock was taken. */
  readonly since: string;
  /** A read-only attachment (shared with other readers) or the one writer. */
  readonly readonly: boolean;
}

interface LockFileContent extends DiskLockHolder {
  readonly nonce: string;
  /** Field 22 of /proc/<pid>/stat (start time in clock ticks since boot), when readable. */
  readonly procStart: string | null;
  /** When the lock was taken in microseconds since the epoch: orders readers that took their
   *  locks within the same millisecond (`since`). Absent in older lock files. */
  readonly takenAtUs?: number;
}

/** Wall-clock microseconds, increasing between two calls of one process. */
function nowUs(): number {
  return Math.round((performance.timeOrigin + performance.now()) * 1000);
}

function takenAt(c: LockFileContent): number {
  return typeof c.takenAtUs === 'number' ? c.takenAtUs : Date.parse(c.since) * 1000 || 0;
}

/**
 * The image's own path: locks belong to the file, not to the name a VM reached it by. Without
 * this, a VM naming a symlink to an image (or a path through a symlinked folder) took a lock
 * next to the link, and two VMs wrote the same image at once. (Hard links are not detected.)
 */
export function canonicalImagePath(imagePath: string): string {
  try {
    return realpathSync(imagePath);
  } catch {
    try { return join(realpathSync(dirname(imagePath)), basename(imagePath)); } catch { return imagePath; }
  }
}

/** The writer's lock file. */
export function lockPathFor(imagePath: string): string {
  return `${imagePath}.lock`;
}

const SHARED_INFIX = '.shared.';

/** Reader lock files of the image (names only checked, contents not read). */
function sharedLockPaths(imagePath: string): string[] {
  const prefix = `${basename(lockPathFor(imagePath))}${SHARED_INFIX}`;
  const dir = dirname(imagePath);
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  return names.filter((n) => n.startsWith(prefix) && !n.endsWith('.tmp')).sort().map((n) => join(dir, n));
}

/** Fields 3.. of /proc/<pid>/stat (proc(5)), or null where there is no /proc or no such process. */
function procStat(pid: number): string[] | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) is in parentheses and may contain spaces: split after the last ')'.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return null;
  }
}

function procStartTime(pid: number): string | null {
  return procStat(pid)?.[19] ?? null; // field 22 (starttime); fields 3.. start at index 0
}

/** A lock file is one short JSON line; anything larger (or not a regular file) is not ours. */
const MAX_LOCK_FILE_BYTES = 64 * 1024;

function readLockFile(path: string): LockFileContent | null | 'unreadable' {
  let text: string;
  try {
    // Never blocks: a lock file replaced by a FIFO is 'unreadable' (it keeps the disk locked and
    // the error says to remove it), not a wait for a writer that never comes.
    text = readRegular(path, { maxBytes: MAX_LOCK_FILE_BYTES }).toString('utf8');
  } catch (e) {
    if (e instanceof FileRefused && e.code === 'NOT_FOUND') return null;
    return 'unreadable';
  }
  try {
    const v = JSON.parse(text) as LockFileContent;
    if (typeof v.pid !== 'number' || typeof v.host !== 'string' || typeof v.nonce !== 'string') return 'unreadable';
    return v;
  } catch {
    return 'unreadable';
  }
}

function holderOf(c: LockFileContent, readonly: boolean): DiskLockHolder {
  const who = typeof c.command === 'string' ? { vm: null, command: c.command } : { vm: String(c.vm) };
  return { ...who, pid: c.pid, host: c.host, home: String(c.home), since: String(c.since), readonly };
}

/** "VM a (pid 1, daemon home /h)" */
function describeHolder(h: DiskLockHolder): string {
  const where = h.host === hostname() ? `pid ${h.pid}` : `pid ${h.pid} on host ${h.host}`;
  if (h.command !== undefined) return `vmctl ${h.command} (${where})`;
  return `VM ${h.vm} (${where}, daemon home ${h.home})`;
}

/** True when the lock's owner may still be running. */
function isAlive(c: LockFileContent): boolean {
  if (c.host !== hostname()) return true;
  try {
    process.kill(c.pid, 0);
  } catch (e) {
    // EPERM: the process exists but belongs to someone else: alive.
    if ((e as NodeJS.ErrnoException).code === 'ESRCH') return false;
  }
  const stat = procStat(c.pid);
  // A SIGKILLed daemon whose parent has not reaped it yet is a zombie: kill(pid, 0) still
  // succeeds, but it holds nothing (field 3, state: Z zombie, X dead).
  if (stat !== null && (stat[0] === 'Z' || stat[0] === 'X')) return false;
  if (c.procStart !== null && stat !== null && stat[19] !== c.procStart) return false;
  return true;
}

interface Readers {
  readonly live: { holder: DiskLockHolder; path: string }[];
  /** Reader files that cannot be parsed (written whole before they got their name, so not one
   *  caught half-way: something else wrote them). */
  readonly unreadable: string[];
}

/** The image's readers; with `removeStale`, reader files of dead owners are deleted. */
function readers(imagePath: string, removeStale: boolean): Readers {
  const r: Readers = { live: [], unreadable: [] };
  const order = new Map<string, number>();
  for (const path of sharedLockPaths(imagePath)) {
    const c = readLockFile(path);
    if (c === null) continue;
    if (c === 'unreadable') r.unreadable.push(path);
    else if (isAlive(c)) {
      r.live.push({ holder: holderOf(c, true), path });
      order.set(path, takenAt(c));
    } else if (removeStale) try { unlinkSync(path); } catch { /* gone */ }
  }
  r.live.sort((a, b) => order.get(a.path)! - order.get(b.path)!);
  return r;
}

/** Who uses the image: the live writer, or the live readers (oldest first); [] when nobody. */
export function readDiskLocks(path: string): DiskLockHolder[] {
  const imagePath = canonicalImagePath(path);
  const out: DiskLockHolder[] = [];
  const c = readLockFile(lockPathFor(imagePath));
  if (c !== null && c !== 'unreadable' && isAlive(c)) out.push(holderOf(c, false));
  return [...out, ...readers(imagePath, false).live.map((r) => r.holder)];
}

/** "VM a (...)" / "VMs a (...) and b (...)" for error messages. */
export function describeHolders(hs: readonly DiskLockHolder[]): string {
  const parts = hs.map(describeHolder);
  if (parts.length <= 1) return parts[0] ?? 'nobody';
  return `${parts.slice(0, -1).join(', ')} and ${parts[parts.length - 1]}`;
}

/** How a VM attaches an image: `readonly: true` shares it with other readers. */
export interface DiskUse {
  readonly path: string;
  readonly readonly: boolean;
}

export class DiskLock {
  private released = false;
  private constructor(readonly imagePath: string, readonly readonly: boolean, private readonly nonce: string, private readonly file: string) {}

  /**
   * Takes the image's lock for VM `vm` of the daemon at `home` (or for a vmctl command, `{command}`):
   * shared with other readers when `readonly`, otherwise exclusive. Throws DiskError IN_USE naming
   * the VMs in the way.
   */
  static acquire(path: string, who: string | { command: string }, home: string, readonly = false): DiskLock {
    const imagePath = canonicalImagePath(path);
    const lockPath = lockPathFor(imagePath);
    const nonce = randomBytes(12).toString('hex');
    const content: LockFileContent = {
      ...(typeof who === 'string' ? { vm: who } : { vm: null, command: who.command }), pid: process.pid, host: hostname(), home, nonce, procStart: procStartTime(process.pid), since: new Date().toISOString(), readonly, takenAtUs: nowUs(),
    };
    const tmp = `${lockPath}.${nonce}.tmp`;
    let fd: number;
    try {
      fd = openSync(tmp, 'wx', 0o644);
    } catch (e) {
      throw new DiskError('IO', `cannot create a lock file next to ${imagePath}: ${(e as Error).message}`);
    }
    try {
      writeSync(fd, JSON.stringify(content) + '\n');
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    try {
      return readonly ? DiskLock.acquireShared(imagePath, tmp, nonce) : DiskLock.acquireExclusive(imagePath, tmp, nonce);
    } finally {
      try { unlinkSync(tmp); } catch { /* already gone */ }
    }
  }

  /** A reader: announce (our own reader file), then look for a live writer. */
  private static acquireShared(imagePath: string, tmp: string, nonce: string): DiskLock {
    const lockPath = lockPathFor(imagePath);
    const mine = `${lockPath}${SHARED_INFIX}${nonce}`;
    try {
      linkSync(tmp, mine);
    } catch (e) {
      throw new DiskError('IO', `cannot lock ${imagePath}: ${(e as Error).message}`);
    }
    const lock = new DiskLock(imagePath, true, nonce, mine);
    const writer = readLockFile(lockPath);
    if (writer === 'unreadable') {
      lock.release();
      throw unreadableLock(imagePath, lockPath);
    }
    // A dead writer's lock is left for the next writer to break: our file already keeps writers
    // out, and breaking it here could race with a writer that is taking the lock right now.
    if (writer !== null && isAlive(writer)) {
      lock.release();
      throw new DiskError('IN_USE', `disk ${imagePath} is in use read-write by ${describeHolder(holderOf(writer, false))}; ` +
        `it can be shared only by VMs that all attach it read-only${remoteHint([writer], lockPath)}`);
    }
    readers(imagePath, true); // and remove dead readers' files
    return lock;
  }

  /** The writer: take `<image>.lock`, then look for live readers. */
  private static acquireExclusive(imagePath: string, tmp: string, nonce: string): DiskLock {
    const lockPath = lockPathFor(imagePath);
    for (let attempt = 0; attempt < 8; attempt++) {
      try {
        linkSync(tmp, lockPath);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') {
          throw new DiskError('IO', `cannot lock ${imagePath}: ${(e as Error).message}`);
        }
        const held = readLockFile(lockPath);
        if (held === null) continue; // released meanwhile: try again
        if (held === 'unreadable') {
          throw unreadableLock(imagePath, lockPath);
        }
        if (isAlive(held)) {
          throw new DiskError('IN_USE', `disk ${imagePath} is in use by ${describeHolder(holderOf(held, false))}${remoteHint([held], lockPath)}`);
        }
        breakStaleLock(lockPath, held.nonce);
        continue;
      }
      const lock = new DiskLock(imagePath, false, nonce, lockPath);
      const r = readers(imagePath, true);
      if (r.unreadable.length > 0) {
        lock.release();
        throw unreadableLock(imagePath, r.unreadable[0]);
      }
      if (r.live.length > 0) {
        lock.release();
        const hs = r.live.map((x) => x.holder);
        throw new DiskError('IN_USE', `disk ${imagePath} is in use read-only by ${describeHolders(hs)}; ` +
          `a VM that writes it needs it alone (attach it with readonly: true to share it)${remoteHint(hs, r.live[0].path)}`);
      }
      return lock;
    }
    throw new DiskError('IN_USE', `could not lock ${imagePath}: the lock keeps changing hands`);
  }

  /** Gives the lock up (idempotent); a lock that is no longer ours is left alone. */
  release(): void {
    if (this.released) return;
    this.released = true;
    const c = readLockFile(this.file);
    if (c !== null && c !== 'unreadable' && c.nonce === this.nonce) {
      try { unlinkSync(this.file); } catch { /* gone */ }
    }
  }
}

/** A lock file nobody can read (something other than vmctl wrote it) keeps everyone out. */
function unreadableLock(imagePath: string, file: string): DiskError {
  return new DiskError('IN_USE', `${imagePath} is locked by ${file}, which cannot be read; remove it if no VM uses the disk`);
}

/** Holders on other hosts are never stale: say how to clear them if that host is gone. */
function remoteHint(hs: readonly { host: string }[], file: string): string {
  return hs.some((h) => h.host !== hostname()) ? `; if that host is gone, remove ${file}` : '';
}

function breakStaleLock(lockPath: string, staleNonce: string): void {
  const moved = `${lockPath}.stale.${randomBytes(6).toString('hex')}`;
  try {
    renameSync(lockPath, moved);
  } catch {
    return; // someone else broke or released it: the caller retries
  }
  const c = readLockFile(moved);
  if (c !== null && c !== 'unreadable' && c.nonce !== staleNonce) {
    // A live lock replaced the stale one between our read and our rename: give it back.
    try { linkSync(moved, lockPath); } catch { /* a third party holds it now; theirs stands */ }
  }
  try { unlinkSync(moved); } catch { /* gone */ }
}

/** Locks every disk of a VM, all or nothing: read-only attachments shared, the others exclusive. */
export function acquireDiskLocks(disks: readonly DiskUse[], vm: string, home: string): DiskLock[] {
  const got: DiskLock[] = [];
  try {
    for (const d of disks) got.push(DiskLock.acquire(d.path, vm, home, d.readonly));
    return got;
  } catch (e) {
    for (const l of got) l.release();
    throw e;
  }
}

/** Removes the image's lock files whose holders are gone (when the image itself is deleted). */
export function removeStaleLocks(path: string): void {
  const imagePath = canonicalImagePath(path);
  const lockPath = lockPathFor(imagePath);
  const c = readLockFile(lockPath);
  if (c === 'unreadable') try { unlinkSync(lockPath); } catch { /* gone */ }
  else if (c !== null && !isAlive(c)) breakStaleLock(lockPath, c.nonce);
  for (const f of readers(imagePath, true).unreadable) try { unlinkSync(f); } catch { /* gone */ }
}
