// What `vmctl create` and `vmctl delete` do to a VM's disks (called by the daemon).
//
// - A disk whose file does not exist is created sparse at its `size`; the daemon records which
//   paths it created so `delete` removes those and never an image that existed before.
// - An existing file (raw, or qcow2 with its backing chain) is used as it is: its virtual size
//   wins, and a different `size` in the definition is reported as a warning.

import { existsSync, statSync, unlinkSync } from 'node:fs';
import { formatSize } from '../config/units.js';
import { imageInfo } from './image.js';
import { createRawImage } from './raw-image.js';
import { DiskError } from './errors.js';
import { describeHolders, readDiskLocks, removeStaleLocks } from './lock.js';

export interface DiskSpec {
  readonly path: string;
  readonly sizeBytes?: number;
  readonly readonly: boolean;
  readonly name: string;
}

export interface PreparedDisks {
  /** Paths created by this call (the daemon stores them; `delete` removes exactly these). */
  readonly created: string[];
  /** Human-readable warnings (size mismatches), one per line. */
  readonly warnings: string[];
}

export function prepareDisks(disks: readonly DiskSpec[]): PreparedDisks {
  const created: string[] = [];
  const warnings: string[] = [];
  try {
    for (const d of disks) {
      if (!existsSync(d.path)) {
        if (d.sizeBytes === undefined) {
          throw new DiskError('NOT_FOUND', `disk ${d.name}: ${d.path} does not exist and no size was given to create it`);
        }
        createRawImage(d.path, d.sizeBytes);
        created.push(d.path);
        continue;
      }
      const st = statSync(d.path);
      if (!st.isFile()) throw new DiskError('INVALID', `disk ${d.name}: ${d.path} is not a regular file`);
      const { format, virtualBytes: size } = imageInfo(d.path); // headers and backing chain checked
      if (d.sizeBytes !== undefined && size !== d.sizeBytes) {
        warnings.push(`disk ${d.name}: ${d.path} already exists with ${formatSize(size)}, not the ${formatSize(d.sizeBytes)} in the definition; using the ${format} image as it is`);
      }
      if (size % 512 !== 0) {
        warnings.push(`disk ${d.name}: ${d.path} is ${size} bytes, not a multiple of 512; the guest sees ${Math.floor(size / 512)} sectors`);
      }
    }
  } catch (e) {
    deleteCreatedDisks(created);
    throw e;
  }
  return { created, warnings };
}

/** Removes images vmctl created for a VM (on `delete`). Refuses one that a running VM holds. */
export function deleteCreatedDisks(paths: readonly string[]): void {
  for (const p of paths) {
    const holders = readDiskLocks(p);
    if (holders.length > 0) throw new DiskError('IN_USE', `disk ${p} is in use by ${describeHolders(holders)}; not deleting it`);
  }
  for (const p of paths) {
    try { unlinkSync(p); } catch (e) { if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e; }
    removeStaleLocks(p); // no stale lock files left behind
  }
}
