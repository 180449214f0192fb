// Snapshot layers (external snapshots, as libvirt's and VirtualBox's differencing images): a
// qcow2 overlay per snapshot and disk, each backed by the layer before it. Deleting a snapshot
// merges its layer into a neighbour, in one of two directions, each leaving what every image of
// the chain shows to a guest exactly as it was:
//   commitLayer(top, base)   top's own clusters are written into base, its backing file (QEMU's
//                            `qemu-img commit`): base then shows what top showed, and top can go
//                            once whatever was backed by top is rebased onto base.
//   pullLayer(layer, child)  layer's own clusters that child does not have are copied into child
//                            (QEMU's block-stream): child no longer needs layer, and is rebased
//                            onto layer's backing file.
//   rebaseImage(path, to)    points an overlay vmctl made at another backing file (`qemu-img
//                            rebase -u`), only after one of the above made that safe.
// Each step can be repeated after a crash (the copies are idempotent, the rebase is one header
// write), which the snapshot journal (src/daemon/snapshots.ts) relies on.

import { statSync } from 'node:fs';
import { SECTOR_SIZE, type BlockBackend } from './block-backend.js';
import { DiskError } from './errors.js';
import { HostFile } from './host-file.js';
import { canonicalImagePath } from './lock.js';
import { buildHeaderCluster, VMCTL_HEADER_BYTES } from './qcow2/header.js';
import { Qcow2Image } from './qcow2/image.js';
import { detectFormat, imageChain, openDiskImage, readQcow2Header } from './image.js';

/** Bytes copied per read/write while merging. */
const COPY_BYTES = 1024 * 1024;

/** One qcow2 image on its own (no backing file opened), read-only. */
function openAlone(path: string): Qcow2Image {
  const file = new HostFile(path, false);
  try {
    return new Qcow2Image({ file, header: readQcow2Header(file), backing: null, readonly: true });
  } catch (e) {
    file.close();
    throw e;
  }
}

/** The guest ranges an image itself defines: a qcow2 image's own clusters, all of a raw image. */
export function ownExtents(path: string): [number, number][] {
  if (detectFormat(path) === 'raw') {
    const size = statSync(path).size;
    return size === 0 ? [] : [[0, size]];
  }
  const img = openAlone(path);
  try { return img.ownExtents(); } finally { img.close(); }
}

/** The backing file of `path` as a canonical path (null: none). */
export function backingOf(path: string): string | null {
  const chain = imageChain(path);
  return chain.length > 1 ? canonicalImagePath(chain[1].path) : null;
}

function requireBacking(path: string, expected: string): void {
  const b = backingOf(path);
  if (b !== canonicalImagePath(expected)) {
    throw new DiskError('INVALID', `${path} is backed by ${b ?? 'nothing'}, not by ${expected}`);
  }
}

let zeroBlock: Buffer | null = null;
function isZero(b: Uint8Array): boolean {
  zeroBlock ??= Buffer.alloc(COPY_BYTES);
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).equals(zeroBlock.subarray(0, b.length));
}

/** Copies guest bytes [start, end) from `from` to `to` (zeros as write-zeroes). */
function copyRange(from: BlockBackend, to: BlockBackend, start: number, end: number, buf: Uint8Array): number {
  let copied = 0;
  for (let pos = start; pos < end; pos += COPY_BYTES) {
    const n = Math.min(COPY_BYTES, end - pos);
    const b = buf.subarray(0, n);
    from.read(pos / SECTOR_SIZE, [b]);
    if (isZero(b)) to.writeZeroes(pos / SECTOR_SIZE, n / SECTOR_SIZE, false);
    else to.write(pos / SECTOR_SIZE, [b]);
    copied += n;
  }
  return copied;
}

/** Writes `top`'s own clusters into `base`, its backing file; returns the bytes copied. */
export function commitLayer(top: string, base: string): number {
  requireBacking(top, base);
  const from = openAlone(top);
  let to: BlockBackend | null = null;
  try {
    to = openDiskImage(base, false);
    const buf = new Uint8Array(COPY_BYTES);
    let copied = 0;
    for (const [s, e] of from.ownExtents()) copied += copyRange(from, to, s, e, buf);
    to.flush();
    return copied;
  } finally {
    from.close();
    to?.close();
  }
}

/** Copies into `child` (an overlay backed by `layer`) every cluster `layer` defines itself and
 *  `child` does not; returns the bytes copied. Afterwards child may be rebased onto layer's
 *  backing file. */
export function pullLayer(layer: string, child: string): number {
  requireBacking(child, layer);
  const extents = ownExtents(layer);
  const chain = openDiskImage(child, false);
  try {
    if (!(chain instanceof Qcow2Image)) throw new DiskError('INVALID', `${child} is not a qcow2 overlay`);
    const cs = 2 ** readClusterBits(child);
    const owned = new Set<number>();
    for (const [s, e] of chain.ownExtents()) for (let c = s / cs; c < e / cs; c++) owned.add(c);
    const size = chain.sectorCount() * SECTOR_SIZE;
    const buf = new Uint8Array(COPY_BYTES);
    let copied = 0;
    for (const [s, e] of extents) {
      for (let c = Math.floor(s / cs); c * cs < Math.min(e, size); c++) {
        if (owned.has(c)) continue;
        owned.add(c);
        copied += copyRange(chain, chain, c * cs, Math.min((c + 1) * cs, size), buf);
      }
    }
    chain.flush();
    return copied;
  } finally {
    chain.close();
  }
}

function readClusterBits(path: string): number {
  const f = new HostFile(path, false);
  try { return readQcow2Header(f).clusterBits; } finally { f.close(); }
}

/**
 * Points the qcow2 overlay `path` at `backing` (an absolute path, or null: no backing file),
 * recording its format. Only the header changes, so the caller must have made it safe first
 * (commitLayer / pullLayer). Only images laid out as vmctl makes them are rewritten.
 */
export function rebaseImage(path: string, backing: string | null): void {
  const f = new HostFile(path, true);
  try {
    const h = readQcow2Header(f);
    if (h.version !== 3 || h.headerLength !== VMCTL_HEADER_BYTES || h.refcountOrder !== 4 || h.nbSnapshots !== 0 ||
        h.incompatible !== 0n || h.compatible !== 0n || h.autoclear !== 0n) {
      throw new DiskError('UNSUPPORTED', `${path}: only overlays vmctl made are rebased (this header has other features)`);
    }
    const cluster = buildHeaderCluster({
      clusterBits: h.clusterBits, size: h.size, l1Size: h.l1Size, l1TableOffset: h.l1TableOffset,
      refcountTableOffset: h.refcountTableOffset, refcountTableClusters: h.refcountTableClusters,
      ...(backing !== null ? { backingFile: backing, backingFormat: detectFormat(backing) } : {}),
    });
    // Everything the header uses fits in its first 4 KiB: one write that reaches the kernel whole.
    f.write(cluster.subarray(0, Math.min(cluster.length, 4096)), 0);
    f.sync();
  } finally {
    f.close();
  }
}
