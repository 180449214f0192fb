// A new, empty qcow2 version 3 image, laid out as qemu-img does: the header cluster, the refcount
// table, the refcount blocks that count all of these, then the L1 table (empty: no L2 tables, no
// data). 16-bit refcounts, zlib compression type, no lazy refcounts.

import { closeSync, constants as fsc, ftruncateSync, fsyncSync, openSync, unlinkSync, writeSync } from 'node:fs';
import { DiskError } from '../errors.js';
import { setBe64 } from './cluster-cache.js';
import { buildHeaderCluster, MAX_CLUSTER_BITS, MAX_L1_BYTES, MIN_CLUSTER_BITS } from './header.js';

export const DEFAULT_CLUSTER_BITS = 16; // 64 KiB, qemu-img's default

export interface NewQcow2 {
  readonly size: number;
  readonly clusterBits?: number;
  /** The backing file's name as it is to be recorded (relative to the new image's folder, or absolute). */
  readonly backingFile?: string;
  readonly backingFormat?: 'raw' | 'qcow2';
}

/** Where the metadata of a new image goes (cluster indices) and how big it is. */
function layout(size: number, clusterBits: number) {
  const cs = 2 ** clusterBits;
  const l1Size = Math.ceil(size / (cs * (cs / 8)));
  const l1Clusters = Math.max(1, Math.ceil((l1Size * 8) / cs));
  const perBlock = (cs * 8) / 16;
  let tableClusters = 1;
  let blocks = 1;
  for (;;) {
    const total = 1 + tableClusters + blocks + l1Clusters;
    const b = Math.ceil(total / perBlock);
    const t = Math.ceil((b * 8) / cs);
    if (b === blocks && t === tableClusters) break;
    blocks = b;
    tableClusters = t;
  }
  return { cs, l1Size, l1Clusters, tableClusters, blocks, perBlock, total: 1 + tableClusters + blocks + l1Clusters };
}

/** Creates the image (never overwrites an existing file; nothing is left behind on failure). */
export function createQcow2Image(path: string, o: NewQcow2): void {
  const clusterBits = o.clusterBits ?? DEFAULT_CLUSTER_BITS;
  if (!Number.isInteger(clusterBits) || clusterBits < MIN_CLUSTER_BITS || clusterBits > MAX_CLUSTER_BITS) {
    throw new DiskError('INVALID', `cluster size ${2 ** clusterBits} bytes: expected a power of two from 512 bytes to 2 MiB`);
  }
  if (!Number.isSafeInteger(o.size) || o.size < 0) throw new DiskError('INVALID', `disk size ${o.size} is not a size in bytes`);
  const L = layout(o.size, clusterBits);
  if (L.l1Size * 8 > MAX_L1_BYTES) {
    throw new DiskError('INVALID', `${o.size} bytes is too large for a qcow2 image with ${L.cs}-byte clusters (its L1 table would exceed ${MAX_L1_BYTES} bytes); expected a smaller size or larger clusters`);
  }
  const tableAt = 1;
  const blocksAt = tableAt + L.tableClusters;
  const l1At = blocksAt + L.blocks;
  const header = buildHeaderCluster({
    clusterBits, size: o.size, l1Size: L.l1Size, l1TableOffset: l1At * L.cs,
    refcountTableOffset: tableAt * L.cs, refcountTableClusters: L.tableClusters,
    backingFile: o.backingFile, backingFormat: o.backingFormat,
  });
  const table = new Uint8Array(L.tableClusters * L.cs);
  for (let b = 0; b < L.blocks; b++) setBe64(table, b * 8, (blocksAt + b) * L.cs);
  const blocks = new Uint8Array(L.blocks * L.cs);
  for (let c = 0; c < L.total; c++) blocks[c * 2 + 1] = 1; // 16-bit big-endian refcount 1

  let fd: number;
  try {
    fd = openSync(path, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL, 0o644);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') throw new DiskError('EXISTS', `${path} already exists; vmctl never overwrites a disk image`);
    throw new DiskError('IO', `cannot create ${path}: ${(e as Error).message}`);
  }
  try {
    writeAll(fd, header, 0);
    writeAll(fd, table, tableAt * L.cs);
    writeAll(fd, blocks, blocksAt * L.cs);
    ftruncateSync(fd, L.total * L.cs); // the empty L1 table: a hole reads as zeros
    fsyncSync(fd);
  } catch (e) {
    closeSync(fd);
    try { unlinkSync(path); } catch { /* best effort */ }
    throw new DiskError('IO', `cannot write ${path}: ${(e as Error).message}`);
  }
  closeSync(fd);
}

function writeAll(fd: number, b: Uint8Array, pos: number): void {
  for (let done = 0; done < b.length;) done += writeSync(fd, b, done, b.length - done, pos + done);
}
