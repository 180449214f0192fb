// One running VM per disk image: a lock file next to the image.
//
// Why a lock file and not flock/fcntl: Node has no binding for either (and vmctl has no native
// code), and POSIX record locks are per process, so they would not even tell two VMs of the same
// daemon apart. A lock file works across daemons, across VMCTL_HOMEs and across hosts sharing a
// file system, and `ls` shows who holds a disk.
//
// The file is `<image>.lock`, holding JSON {vm, pid, host, home, nonce, procStart, since}.
// - Taking it is atomic with its content: write a private temp file, then link(2) it to the lock
//   name; link fails with EEXIST when the lock exists (atomic on local file systems and on NFS,
//   unlike O_EXCL on old NFS), and nobody ever sees a half-written lock.
// - A lock is stale when its host is this host and its pid is dead (or a zombie: a killed daemon
//   nobody reaped yet), or the pid is alive but is a different process (its start time in
//   /proc/<pid>/stat differs: pid reuse after a reboot or wrap-around). A lock from another host is never considered stale: we cannot see its
//   processes, so the error says to remove the file by hand if that host is gone.
// - Breaking a stale lock: rename it to a private name, then check that what we moved is the
//   stale lock we examined (same nonce); if a live lock slipped in between, link it back.

import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, linkSync, openSync, readFileSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import { DiskError } from './errors.js';

export interface DiskLockHolder {
  /** VM name. */
  readonly vm: string;
  readonly pid: number;
  readonly host: string;
  /** The daemon's VMCTL_HOME. */
  readonly home: string;
  /** ISO time the lock was taken. */
  readonly since: string;
}

interface LockFileContent extends DiskLockHolder {
  readonly nonce: string;
  /** Field 22 of /proc/<pid>/stat (start time in clock ticks since boot), when readable. */
  readonly procStart: string | null;
}

export function lockPathFor(imagePath: string): string {
  return `${imagePath}.lock`;
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

function readLockFile(path: string): LockFileContent | null | 'unreadable' {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
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

function holderOf(c: LockFileContent): DiskLockHolder {
  return { vm: String(c.vm), pid: c.pid, host: c.host, home: String(c.home), since: String(c.since) };
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

/** Who holds the image's lock (a live holder only), or null. */
export function readDiskLock(imagePath: string): DiskLockHolder | null {
  const c = readLockFile(lockPathFor(imagePath));
  if (c === null || c === 'unreadable' || !isAlive(c)) return null;
  return holderOf(c);
}

export class DiskLock {
  private released = false;
  private constructor(readonly imagePath: string, private readonly nonce: string) {}

  /** Takes the image's lock for VM `vm` of the daemon at `home`; throws DiskError IN_USE. */
  static acquire(imagePath: string, vm: string, home: string): DiskLock {
    const lockPath = lockPathFor(imagePath);
    const nonce = randomBytes(12).toString('hex');
    const content: LockFileContent = {
      vm, pid: process.pid, host: hostname(), home, nonce, procStart: procStartTime(process.pid), since: new Date().toISOString(),
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
      for (let attempt = 0; attempt < 8; attempt++) {
        try {
          linkSync(tmp, lockPath);
          return new DiskLock(imagePath, nonce);
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'EEXIST') {
            throw new DiskError('IO', `cannot lock ${imagePath}: ${(e as Error).message}`);
          }
        }
        const held = readLockFile(lockPath);
        if (held === null) continue; // released meanwhile: try again
        if (held === 'unreadable') {
          throw new DiskError('IN_USE', `${imagePath} is locked by ${lockPath}, which cannot be read; remove it if no VM uses the disk`);
        }
        if (isAlive(held)) {
          const where = held.host === hostname() ? `pid ${held.pid}` : `pid ${held.pid} on host ${held.host}`;
          const hint = held.host === hostname() ? '' : `; if that host is gone, remove ${lockPath}`;
          throw new DiskError('IN_USE', `disk ${imagePath} is in use by VM ${held.vm} (${where}, daemon home ${held.home})${hint}`);
        }
        breakStaleLock(lockPath, held.nonce);
      }
      throw new DiskError('IN_USE', `could not lock ${imagePath}: the lock keeps changing hands`);
    } finally {
      try { unlinkSync(tmp); } catch { /* already gone */ }
    }
  }

  /** Gives the lock up (idempotent); a lock that is no longer ours is left alone. */
  release(): void {
    if (this.released) return;
    this.released = true;
    const lockPath = lockPathFor(this.imagePath);
    const c = readLockFile(lockPath);
    if (c !== null && c !== 'unreadable' && c.nonce === this.nonce) {
      try { unlinkSync(lockPath); } catch { /* gone */ }
    }
  }
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

/** Locks every disk of a VM, all or nothing. Read-only attachments are locked too: the issue's
 *  rule is one running VM per image, and a writer elsewhere would corrupt a reader's view. */
export function acquireDiskLocks(paths: readonly string[], vm: string, home: string): DiskLock[] {
  const got: DiskLock[] = [];
  try {
    for (const p of paths) got.push(DiskLock.acquire(p, vm, home));
    return got;
  } catch (e) {
    for (const l of got) l.release();
    throw e;
  }
}
