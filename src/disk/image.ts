// Disk images of either format, and their backing chains: what vmctl opens for a VM, describes
// with `disk info`, creates, resizes and locks.
//
// - The format comes from the file's first bytes (qcow2's magic "QFI\xfb"), never from its name;
//   a qcow2 overlay's backing file has the format its header records (the backing-format
//   extension) or, without one, the one its first bytes say.
// - A backing file name is relative to the folder of the image that names it (as QEMU reads
//   it). Chains are walked with their loops detected and their depth capped.
// - A raw image found by probing could be made to look like qcow2 by its guest (writing the magic
//   into sector 0, with a backing file name pointing at any host file): such writes are refused,
//   as QEMU refuses them for probed raw images.

import { statSync } from 'node:fs';
import { dirname, isAbsolute, relative, resolve } from 'node:path';
import type { BlockBackend } from './block-backend.js';
import { DiskError } from './errors.js';
import { HostFile } from './host-file.js';
import { acquireDiskLocks, canonicalImagePath, DiskLock, readDiskLocks, type DiskLock as Lock, type DiskLockHolder, type DiskUse } from './lock.js';
import { createQcow2Image } from './qcow2/create.js';
import { hasBit, HEADER_PROBE_BYTES, INCOMPAT_CORRUPT, INCOMPAT_DIRTY, COMPAT_LAZY_REFCOUNTS, isQcow2, parseHeader, peekClusterBits, type Qcow2Header } from './qcow2/header.js';
import { Qcow2Image } from './qcow2/image.js';
import { createRawImage, RawFileBackend, resizeRawImage } from './raw-image.js';

export type ImageFormat = 'raw' | 'qcow2';
export const IMAGE_FORMATS: readonly ImageFormat[] = ['raw', 'qcow2'];
/** Layers a backing chain may have (each is an open file while a VM runs). */
export const MAX_CHAIN_DEPTH = 64;

/** One image of a chain, as its header describes it. */
export interface ChainLayer {
  readonly path: string;
  readonly format: ImageFormat;
  /** qcow2 only. */
  readonly header: Qcow2Header | null;
  /** The backing file, resolved (null: the chain ends here). */
  readonly backingPath: string | null;
}

function readStart(file: HostFile, n: number): Uint8Array {
  const b = new Uint8Array(n);
  file.read(b, 0);
  return b;
}

/** The header of an open qcow2 file, checked (header.ts). */
export function readQcow2Header(file: HostFile): Qcow2Header {
  const size = file.size();
  const start = readStart(file, Math.min(HEADER_PROBE_BYTES, size));
  const cs = 2 ** peekClusterBits(start, file.path);
  return parseHeader(readStart(file, cs), size, file.path);
}

function detect(file: HostFile): ImageFormat {
  return isQcow2(readStart(file, Math.min(4, file.size()))) ? 'qcow2' : 'raw';
}

/** The format of the image at `path`, from its first bytes. */
export function detectFormat(path: string): ImageFormat {
  const f = new HostFile(path, false);
  try { return detect(f); } finally { f.close(); }
}

/** Where a backing file name recorded in `imagePath` points (QEMU: relative to the image's folder). */
export function resolveBackingPath(imagePath: string, name: string): string {
  let n = name;
  if (n.startsWith('file:')) n = n.slice(5);
  else if (/^[A-Za-z][A-Za-z0-9+.-]*:/.test(n)) {
    throw new DiskError('UNSUPPORTED', `${imagePath}: backing file ${JSON.stringify(name)} names a protocol (${n.split(':')[0]}:) vmctl does not support; expected a file path`);
  }
  return isAbsolute(n) ? n : resolve(dirname(imagePath), n);
}

/** The format a layer has: recorded (the overlay says what its backing file is) or probed. */
function layerFormat(file: HostFile, recorded: string | null, namedBy: string | null): ImageFormat {
  const probed = detect(file);
  if (recorded === null) return probed;
  if (recorded === 'raw') return 'raw';
  if (recorded === 'qcow2') {
    if (probed !== 'qcow2') throw new DiskError('CORRUPT', `${namedBy}: its backing file ${file.path} is recorded as qcow2 but has no qcow2 header`);
    return 'qcow2';
  }
  throw new DiskError('UNSUPPORTED', `${namedBy}: backing file ${file.path} has format ${JSON.stringify(recorded)}; vmctl reads raw and qcow2`);
}

/**
 * Walks the chain from `path` down: each layer's file opened (writable for the top layer when
 * `writableTop`), its header read and checked, then handed to `visit` (which keeps or closes the
 * file). Refuses a loop, a chain deeper than MAX_CHAIN_DEPTH and a missing backing file.
 */
function walkChain(path: string, writableTop: boolean, visit: (layer: ChainLayer, file: HostFile) => void, stopAt?: string): void {
  const seen: string[] = [];
  let p: string | null = path;
  let recorded: string | null = null;
  let namedBy: string | null = null;
  while (p !== null) {
    const canonical = canonicalImagePath(p);
    if (stopAt !== undefined && canonical === stopAt && seen.length > 0) return;
    if (seen.includes(canonical)) {
      throw new DiskError('CORRUPT', `${path}: the backing chain loops: ${[...seen, canonical].join(' -> ')}`);
    }
    if (seen.length >= MAX_CHAIN_DEPTH) throw new DiskError('UNSUPPORTED', `${path}: the backing chain is deeper than ${MAX_CHAIN_DEPTH} images`);
    seen.push(canonical);
    let file: HostFile;
    try {
      file = new HostFile(p, writableTop && seen.length === 1);
    } catch (e) {
      if (namedBy !== null && e instanceof DiskError && e.code === 'NOT_FOUND') {
        throw new DiskError('NOT_FOUND', `${namedBy}: its backing file ${p} does not exist`);
      }
      throw e;
    }
    let layer: ChainLayer;
    try {
      if (namedBy === null && !statSync(p).isFile()) throw new DiskError('INVALID', `${p} is not a regular file`);
      const format = layerFormat(file, recorded, namedBy);
      const header = format === 'qcow2' ? readQcow2Header(file) : null;
      const backingPath = header?.backingFile != null ? resolveBackingPath(p, header.backingFile) : null;
      layer = { path: p, format, header, backingPath };
    } catch (e) {
      file.close();
      throw e;
    }
    visit(layer, file);
    recorded = layer.header?.backingFormat ?? null;
    namedBy = p;
    p = layer.backingPath;
  }
}

/** The chain from `path` down (top first), headers checked; no file stays open. */
export function imageChain(path: string): ChainLayer[] {
  const layers: ChainLayer[] = [];
  walkChain(path, false, (layer, file) => {
    file.close();
    layers.push(layer);
  });
  return layers;
}

/**
 * Opens the image at `path` with its whole backing chain as one BlockBackend. Backing layers are
 * always read-only; the top one is writable unless `readonly`. `on`: a chain already open
 * (`backend`, whose top is the file `path`) that the new image is built on: where the walk
 * reaches that file, the open chain is used as the backing image instead of opening it again (a
 * snapshot's new overlay over a running disk: the new chain then owns it and closes it).
 */
export function openDiskImage(path: string, readonly: boolean, on?: { readonly path: string; readonly backend: BlockBackend }): BlockBackend {
  const opened: { layer: ChainLayer; file: HostFile }[] = [];
  const stopAt = on !== undefined ? canonicalImagePath(on.path) : undefined;
  try {
    walkChain(path, !readonly, (layer, file) => opened.push({ layer, file }), stopAt);
  } catch (e) {
    for (const o of opened) o.file.close();
    throw e;
  }
  const last = opened[opened.length - 1];
  if (on !== undefined && (last === undefined || last.layer.backingPath === null || canonicalImagePath(last.layer.backingPath) !== stopAt)) {
    for (const o of opened) o.file.close();
    throw new DiskError('INVALID', `${path} is not built on ${on.path}`);
  }
  // Bottom up: each layer gets the one below as its backing image.
  let below: BlockBackend | null = on?.backend ?? null;
  try {
    for (let i = opened.length - 1; i >= 0; i--) {
      const { layer, file } = opened[i];
      const ro = readonly || i > 0;
      if (layer.format === 'raw') {
        file.close(); // the raw backend opens its own descriptor
        below = new RawFileBackend(layer.path, ro, { refuseQcow2Magic: i === 0 });
      } else {
        below = new Qcow2Image({ file, header: layer.header!, backing: below, readonly: ro });
      }
      opened.length = i; // from here on, `below` owns this layer's file and the ones below
    }
  } catch (e) {
    for (const o of opened) o.file.close();
    if (below !== on?.backend) below?.close(); // (an open chain we were given stays open)
    throw e;
  }
  return below!;
}

// ---- info ----

export interface Qcow2Details {
  /** 2 (compat 0.10) or 3 (compat 1.1). */
  readonly version: number;
  readonly clusterBytes: number;
  readonly refcountBits: number;
  readonly lazyRefcounts: boolean;
  readonly dirty: boolean;
  readonly corrupt: boolean;
  /** Internal snapshots (vmctl keeps them intact and does not list or use them). */
  readonly snapshots: number;
}

export interface DiskImageInfo {
  readonly path: string;
  readonly format: ImageFormat;
  /** What the guest sees (qemu-img's "virtual size"). */
  readonly virtualBytes: number;
  /** Host space really used (qemu-img's "disk size"): st_blocks * 512. */
  readonly allocatedBytes: number;
  /** The backing file name as recorded in the image (qemu-img's "backing file"), or null. */
  readonly backingFile: string | null;
  /** ... resolved to a path (qemu-img's "full-backing-filename"). */
  readonly backingPath: string | null;
  /** The backing file's format as recorded, or null. */
  readonly backingFormat: string | null;
  readonly qcow2: Qcow2Details | null;
  /** The running VMs (or vmctl commands) using the image: its one writer, or its readers. */
  readonly usedBy: DiskLockHolder[];
}

export interface DiskChainInfo extends DiskImageInfo {
  /** The images below this one, nearest first (qemu-img info --backing-chain). */
  readonly backingChain: DiskImageInfo[];
}

function layerInfo(l: ChainLayer): DiskImageInfo {
  const st = statSync(l.path);
  const h = l.header;
  return {
    path: l.path,
    format: l.format,
    virtualBytes: h ? h.size : st.size,
    allocatedBytes: st.blocks * 512,
    backingFile: h?.backingFile ?? null,
    backingPath: l.backingPath,
    backingFormat: h?.backingFormat ?? null,
    qcow2: h === null ? null : {
      version: h.version, clusterBytes: 2 ** h.clusterBits, refcountBits: 2 ** h.refcountOrder,
      lazyRefcounts: hasBit(h.compatible, COMPAT_LAZY_REFCOUNTS), dirty: hasBit(h.incompatible, INCOMPAT_DIRTY),
      corrupt: hasBit(h.incompatible, INCOMPAT_CORRUPT), snapshots: h.nbSnapshots,
    },
    usedBy: readDiskLocks(l.path),
  };
}

/** What `disk info` shows: the image and every image below it. */
export function imageInfo(path: string): DiskChainInfo {
  const [top, ...below] = imageChain(path).map(layerInfo);
  return { ...top, backingChain: below };
}

// ---- locks over chains ----

/** The lock each file of each disk's chain needs: the top layer as the VM attaches it, every
 *  backing file shared read-only (so overlays of one base run side by side). */
export function chainDiskUses(disks: readonly DiskUse[]): DiskUse[] {
  return disks.flatMap((d) => imageChain(d.path).map((l, i) => ({ path: l.path, readonly: i === 0 ? d.readonly : true })));
}

/** Locks every file of every disk's chain for VM `vm`, all or nothing (src/disk/lock.ts). */
export function lockDiskChains(disks: readonly DiskUse[], vm: string, home: string): Lock[] {
  return acquireDiskLocks(chainDiskUses(disks), vm, home);
}

/** Runs `fn` while vmctl command `command` holds the image's chain: the top file exclusively when
 *  `writeTop`, everything else shared. */
export function withChainLocked<T>(path: string, command: string, home: string, writeTop: boolean, fn: () => T): T {
  const got: Lock[] = [];
  try {
    for (const u of chainDiskUses([{ path, readonly: !writeTop }])) got.push(DiskLock.acquire(u.path, { command }, home, u.readonly));
    return fn();
  } finally {
    for (const l of got) l.release();
  }
}

// ---- create, resize ----

export interface NewImage {
  readonly format: ImageFormat;
  /** Bytes; with a backing file, defaults to the backing file's virtual size. */
  readonly size?: number;
  /** An image to build on (qcow2 only): as the user named it, relative to the current folder. */
  readonly backing?: string;
  /** qcow2 cluster size (log2); default 64 KiB. */
  readonly clusterBits?: number;
}

/**
 * Creates a new image. A backing file is recorded relative to the new image's folder when it was
 * given as a relative path (the pair can move together), absolute when given absolute; its format
 * is detected and recorded too.
 */
export function createImage(path: string, o: NewImage): { size: number } {
  if (o.backing !== undefined && o.format !== 'qcow2') throw new DiskError('INVALID', `a backing file needs the qcow2 format, not ${o.format}`);
  if (o.backing === undefined) {
    if (o.size === undefined) throw new DiskError('INVALID', 'a new image needs a size (or a backing file to take it from)');
    if (o.format === 'raw') createRawImage(path, o.size);
    else createQcow2Image(path, { size: o.size, clusterBits: o.clusterBits });
    return { size: o.size };
  }
  const backingAbs = resolve(o.backing);
  if (canonicalImagePath(backingAbs) === canonicalImagePath(path)) throw new DiskError('INVALID', `${path} cannot be its own backing file`);
  const chain = imageChain(backingAbs); // the base must be readable, its own chain whole
  const size = o.size ?? layerInfo(chain[0]).virtualBytes;
  const recorded = isAbsolute(o.backing) ? backingAbs : relative(dirname(resolve(path)), backingAbs);
  createQcow2Image(path, { size, clusterBits: o.clusterBits, backingFile: recorded, backingFormat: chain[0].format });
  return { size };
}

export interface ResizeResult { readonly oldBytes: number; readonly newBytes: number }

/** Changes an image's virtual size. Raw: as resizeRawImage (also while a VM runs). qcow2: grows
 *  only, and only while no VM uses it (vmctl holds its lock meanwhile). */
export function resizeImage(path: string, newBytes: number, opts: { shrink?: boolean; home: string }): ResizeResult {
  if (detectFormat(path) === 'raw') return resizeRawImage(path, newBytes, opts);
  return withChainLocked(path, 'disk resize', opts.home, true, () => {
    const file = new HostFile(path, true);
    let img: Qcow2Image;
    try {
      img = new Qcow2Image({ file, header: readQcow2Header(file), backing: null, readonly: false });
    } catch (e) {
      file.close();
      throw e;
    }
    try {
      const oldBytes = img.virtualSize();
      if (newBytes < oldBytes) throw new DiskError(opts.shrink ? 'INVALID' : 'SHRINK', `${path} is a qcow2 image of ${oldBytes} bytes; vmctl grows qcow2 images but does not shrink them`);
      img.grow(newBytes);
      return { oldBytes, newBytes };
    } finally {
      img.close();
    }
  });
}
