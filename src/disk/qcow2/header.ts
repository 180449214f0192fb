// The qcow2 header (QEMU docs/interop/qcow2.txt, "Header" and "Header extensions"): parsing
// with every field checked before anything trusts it, and writing a new one.
//
// All numbers are big-endian. Offsets in the file are JS numbers: exact up to 2^53 bytes, far past
// any real file; a field that does not fit is reported as damaged rather than rounded.

import { DiskError } from '../errors.js';

export const QCOW2_MAGIC = 0x514649fb; // "QFI\xfb"

/** Cluster sizes QEMU accepts: 512 B .. 2 MiB. */
export const MIN_CLUSTER_BITS = 9;
export const MAX_CLUSTER_BITS = 21;
/** QEMU's limits on table sizes (qcow2.h QCOW_MAX_L1_SIZE, QCOW_MAX_REFTABLE_SIZE): bound what a
 *  hostile header can make us allocate. */
export const MAX_L1_BYTES = 32 * 1024 * 1024;
export const MAX_REFTABLE_BYTES = 8 * 1024 * 1024;
export const MAX_SNAPSHOTS = 65536;
export const MAX_BACKING_NAME = 1023;

/** Header fields: byte offsets (spec "Header"). */
export const H = {
  magic: 0, version: 4, backingFileOffset: 8, backingFileSize: 16, clusterBits: 20, size: 24, cryptMethod: 32,
  l1Size: 36, l1TableOffset: 40, refcountTableOffset: 48, refcountTableClusters: 56, nbSnapshots: 60,
  snapshotsOffset: 64, incompatibleFeatures: 72, compatibleFeatures: 80, autoclearFeatures: 88,
  refcountOrder: 96, headerLength: 100, compressionType: 104,
} as const;
export const V2_HEADER_BYTES = 72;
export const V3_HEADER_BYTES = 104;
/** What vmctl writes: the v3 header with the compression type byte, padded to 8 (as QEMU). */
export const VMCTL_HEADER_BYTES = 112;

// Feature bits.
export const INCOMPAT_DIRTY = 0;
export const INCOMPAT_CORRUPT = 1;
export const INCOMPAT_DATA_FILE = 2;
export const INCOMPAT_COMPRESSION = 3;
export const INCOMPAT_EXTL2 = 4;
export const COMPAT_LAZY_REFCOUNTS = 0;
export const AUTOCLEAR_BITMAPS = 0;
export const AUTOCLEAR_DATA_FILE_RAW = 1;

/** Feature names (spec "Feature name table"), used when the image has no table of its own. */
const KNOWN_FEATURES: readonly [number, number, string][] = [
  [0, INCOMPAT_DIRTY, 'dirty bit'], [0, INCOMPAT_CORRUPT, 'corrupt bit'], [0, INCOMPAT_DATA_FILE, 'external data file'],
  [0, INCOMPAT_COMPRESSION, 'compression type'], [0, INCOMPAT_EXTL2, 'extended L2 entries'],
  [1, COMPAT_LAZY_REFCOUNTS, 'lazy refcounts'],
  [2, AUTOCLEAR_BITMAPS, 'bitmaps'], [2, AUTOCLEAR_DATA_FILE_RAW, 'raw external data'],
];

// Header extension types.
export const EXT_END = 0;
export const EXT_BACKING_FORMAT = 0xe2792aca;
export const EXT_FEATURE_NAMES = 0x6803f857;
export const EXT_BITMAPS = 0x23852875;
export const EXT_ENCRYPTION = 0x0537be77;
export const EXT_DATA_FILE = 0x44415441;

export interface Qcow2Header {
  readonly version: 2 | 3;
  readonly clusterBits: number;
  /** Virtual size in bytes. */
  readonly size: number;
  readonly l1Size: number;
  readonly l1TableOffset: number;
  readonly refcountTableOffset: number;
  readonly refcountTableClusters: number;
  readonly nbSnapshots: number;
  readonly snapshotsOffset: number;
  readonly incompatible: bigint;
  readonly compatible: bigint;
  readonly autoclear: bigint;
  readonly refcountOrder: number;
  readonly headerLength: number;
  readonly compressionType: number;
  /** The backing file name as recorded (null: none). */
  readonly backingFile: string | null;
  /** From the backing-format extension (null: not recorded). */
  readonly backingFormat: string | null;
}

const bit = (n: number): bigint => 1n << BigInt(n);
export const hasBit = (v: bigint, n: number): boolean => (v & bit(n)) !== 0n;

function u64(v: DataView, at: number): number | null {
  const hi = v.getUint32(at);
  const lo = v.getUint32(at + 4);
  if (hi > 0x1fffff) return null; // >= 2^53: no file is that large
  return hi * 0x1_0000_0000 + lo;
}

/** The header's first bytes to read before the cluster size is known. */
export const HEADER_PROBE_BYTES = VMCTL_HEADER_BYTES;

export function isQcow2(first4: Uint8Array): boolean {
  return first4.length >= 4 && new DataView(first4.buffer, first4.byteOffset, 4).getUint32(0) === QCOW2_MAGIC;
}

/** Reads the cluster size from the first bytes (before the whole header cluster is read). */
export function peekClusterBits(start: Uint8Array, path: string): number {
  if (start.length < V2_HEADER_BYTES) throw damaged(path, `the file is ${start.length} bytes, shorter than a qcow2 header`);
  const v = new DataView(start.buffer, start.byteOffset, start.length);
  const version = v.getUint32(H.version);
  if (version !== 2 && version !== 3) {
    throw new DiskError('UNSUPPORTED', `${path}: qcow2 version ${version} is not supported (vmctl reads versions 2 and 3)`);
  }
  const cb = v.getUint32(H.clusterBits);
  if (cb < MIN_CLUSTER_BITS || cb > MAX_CLUSTER_BITS) {
    throw damaged(path, `cluster_bits is ${cb}; expected ${MIN_CLUSTER_BITS}..${MAX_CLUSTER_BITS} (512 B to 2 MiB clusters)`);
  }
  return cb;
}

function damaged(path: string, what: string): DiskError {
  return new DiskError('CORRUPT', `${path}: damaged qcow2 header: ${what}`);
}

const hex = (n: number): string => `0x${n.toString(16)}`;

/**
 * Parses and checks the header cluster `c` (the file's first cluster, zero-filled past the end
 * of the file) of a file of `fileSize` bytes. Throws DiskError CORRUPT for a damaged header and
 * UNSUPPORTED for features vmctl does not implement, naming them.
 */
export function parseHeader(c: Uint8Array, fileSize: number, path: string): Qcow2Header {
  const clusterBits = peekClusterBits(c, path);
  const cs = 2 ** clusterBits;
  if (c.length < cs) throw new RangeError('parseHeader needs the whole first cluster');
  const v = new DataView(c.buffer, c.byteOffset, cs);
  if (v.getUint32(H.magic) !== QCOW2_MAGIC) throw damaged(path, 'no qcow2 magic');
  const version = v.getUint32(H.version) as 2 | 3;
  const field = (name: keyof typeof H): number => {
    const n = u64(v, H[name]);
    if (n === null) throw damaged(path, `${name} ${v.getBigUint64(H[name])} is past any possible file size`);
    return n;
  };
  const size = field('size');
  const l1TableOffset = field('l1TableOffset');
  const refcountTableOffset = field('refcountTableOffset');
  const snapshotsOffset = field('snapshotsOffset');
  const backingFileOffset = field('backingFileOffset');
  const backingFileSize = v.getUint32(H.backingFileSize);
  const cryptMethod = v.getUint32(H.cryptMethod);
  const l1Size = v.getUint32(H.l1Size);
  const refcountTableClusters = v.getUint32(H.refcountTableClusters);
  const nbSnapshots = v.getUint32(H.nbSnapshots);

  let incompatible = 0n, compatible = 0n, autoclear = 0n, refcountOrder = 4, headerLength = V2_HEADER_BYTES, compressionType = 0;
  if (version === 3) {
    incompatible = v.getBigUint64(H.incompatibleFeatures);
    compatible = v.getBigUint64(H.compatibleFeatures);
    autoclear = v.getBigUint64(H.autoclearFeatures);
    refcountOrder = v.getUint32(H.refcountOrder);
    headerLength = v.getUint32(H.headerLength);
    if (headerLength < V3_HEADER_BYTES || headerLength > cs) throw damaged(path, `header_length is ${headerLength}; expected ${V3_HEADER_BYTES}..${cs}`);
    if (headerLength % 8 !== 0) throw damaged(path, `header_length ${headerLength} is not a multiple of 8`);
    if (headerLength > H.compressionType) compressionType = v.getUint8(H.compressionType);
  }
  if (refcountOrder > 6) throw damaged(path, `refcount_order is ${refcountOrder}; expected 0..6 (1- to 64-bit refcounts)`);

  if (backingFileOffset !== 0) {
    if (backingFileSize > MAX_BACKING_NAME) throw damaged(path, `the backing file name is ${backingFileSize} bytes; at most ${MAX_BACKING_NAME}`);
    if (backingFileOffset < headerLength || backingFileOffset + backingFileSize > cs) throw damaged(path, `the backing file name (byte ${backingFileOffset}, ${backingFileSize} bytes) is not inside the header cluster`);
    if (backingFileSize === 0) throw damaged(path, 'the backing file name is empty');
  }

  // Header extensions: from the end of the header to the backing file name (or the cluster's end).
  const extEnd = backingFileOffset !== 0 ? Math.min(backingFileOffset, cs) : cs;
  let backingFormat: string | null = null;
  const featureNames = new Map<string, string>();
  for (let at = headerLength; ;) {
    if (at + 8 > extEnd) {
      if (at === extEnd && backingFileOffset !== 0) break; // extensions end where the name starts
      throw damaged(path, `header extension at byte ${at} runs past ${extEnd === cs ? 'the first cluster' : 'the backing file name'}`);
    }
    const type = v.getUint32(at);
    const len = v.getUint32(at + 4);
    if (type === EXT_END) break;
    if (len > extEnd - at - 8) throw damaged(path, `header extension ${hex(type)} at byte ${at} is ${len} bytes long, past the end of the header area`);
    const data = c.subarray(at + 8, at + 8 + len);
    if (type === EXT_BACKING_FORMAT) backingFormat = new TextDecoder().decode(data).replace(/\0+$/, '');
    else if (type === EXT_FEATURE_NAMES) {
      for (let i = 0; i + 48 <= len; i += 48) featureNames.set(`${data[i]}:${data[i + 1]}`, new TextDecoder().decode(data.subarray(i + 2, i + 48)).replace(/\0.*$/s, ''));
    }
    // Other extensions (bitmaps, encryption, external data file name, unknown ones) say nothing
    // vmctl needs: the features that depend on them are checked through the feature bits.
    at += 8 + Math.ceil(len / 8) * 8;
  }

  // Features vmctl does not implement: refused by name (spec: an unknown incompatible bit means
  // the image cannot be read correctly).
  const name = (type: number, b: number): string =>
    featureNames.get(`${type}:${b}`) || KNOWN_FEATURES.find(([t, n]) => t === type && n === b)?.[2] || `incompatible feature bit ${b}`;
  const refused: string[] = [];
  for (let b = 0; b < 64; b++) {
    if (!hasBit(incompatible, b) || b === INCOMPAT_DIRTY || b === INCOMPAT_CORRUPT) continue;
    if (b === INCOMPAT_COMPRESSION) refused.push(compressionType === 1 ? 'zstd compression type' : `compression type ${compressionType}`);
    else refused.push(name(0, b));
  }
  if (refused.length > 0) {
    throw new DiskError('UNSUPPORTED', `${path}: qcow2 feature${refused.length > 1 ? 's' : ''} not supported by vmctl: ${refused.join(', ')}`);
  }
  if (compressionType !== 0) throw damaged(path, `compression_type is ${compressionType} but the compression type feature bit is not set`);
  if (cryptMethod !== 0) {
    throw new DiskError('UNSUPPORTED', `${path}: encrypted qcow2 images (${cryptMethod === 1 ? 'AES' : cryptMethod === 2 ? 'LUKS' : `method ${cryptMethod}`}) are not supported by vmctl`);
  }

  // Tables: aligned, inside the file, clear of the header and of each other.
  const aligned = (n: number) => n % cs === 0;
  if (size > Number.MAX_SAFE_INTEGER - cs) throw damaged(path, `virtual size ${size} is too large`);
  const l2Cover = cs * (cs / 8);
  const l1Needed = Math.ceil(size / l2Cover);
  if (l1Size < l1Needed) throw damaged(path, `l1_size is ${l1Size}, too small for the virtual size ${size} (needs ${l1Needed})`);
  if (l1Size * 8 > MAX_L1_BYTES) throw damaged(path, `l1_size is ${l1Size}; at most ${MAX_L1_BYTES / 8} entries are supported`);
  if (l1Size > 0) {
    if (!aligned(l1TableOffset)) throw damaged(path, `the L1 table offset ${hex(l1TableOffset)} is not aligned to a cluster (${cs} bytes)`);
    if (l1TableOffset < cs) throw damaged(path, `the L1 table offset ${hex(l1TableOffset)} overlaps the header`);
    if (l1TableOffset + l1Size * 8 > fileSize) throw damaged(path, `the L1 table (${hex(l1TableOffset)}, ${l1Size * 8} bytes) ends past the end of the file (${fileSize} bytes)`);
  }
  if (refcountTableClusters === 0) throw damaged(path, 'refcount_table_clusters is 0');
  if (refcountTableClusters * cs > MAX_REFTABLE_BYTES) throw damaged(path, `the refcount table is ${refcountTableClusters} clusters; at most ${MAX_REFTABLE_BYTES} bytes are supported`);
  if (!aligned(refcountTableOffset)) throw damaged(path, `the refcount table offset ${hex(refcountTableOffset)} is not aligned to a cluster (${cs} bytes)`);
  if (refcountTableOffset < cs) throw damaged(path, `the refcount table offset ${hex(refcountTableOffset)} overlaps the header`);
  const rtEnd = refcountTableOffset + refcountTableClusters * cs;
  if (rtEnd > fileSize) throw damaged(path, `the refcount table (${hex(refcountTableOffset)}, ${refcountTableClusters} clusters) ends past the end of the file (${fileSize} bytes)`);
  if (l1Size > 0 && l1TableOffset < rtEnd && refcountTableOffset < l1TableOffset + l1Size * 8) throw damaged(path, 'the L1 table and the refcount table overlap');
  if (nbSnapshots > MAX_SNAPSHOTS) throw damaged(path, `nb_snapshots is ${nbSnapshots}; at most ${MAX_SNAPSHOTS}`);
  if (nbSnapshots > 0 && (!aligned(snapshotsOffset) || snapshotsOffset < cs || snapshotsOffset >= fileSize)) {
    throw damaged(path, `the snapshot table offset ${hex(snapshotsOffset)} is not a cluster inside the file`);
  }

  let backingFile: string | null = null;
  if (backingFileOffset !== 0) {
    backingFile = new TextDecoder('utf-8', { fatal: false }).decode(c.subarray(backingFileOffset, backingFileOffset + backingFileSize));
    if (backingFile.includes('\0')) throw damaged(path, 'the backing file name contains a NUL byte');
  }
  return {
    version, clusterBits, size, l1Size, l1TableOffset, refcountTableOffset, refcountTableClusters, nbSnapshots, snapshotsOffset,
    incompatible, compatible, autoclear, refcountOrder, headerLength, compressionType, backingFile, backingFormat,
  };
}

/** What a fresh image's first cluster says (the rest are vmctl's defaults). */
export type NewHeader = Pick<Qcow2Header, 'clusterBits' | 'size' | 'l1Size' | 'l1TableOffset' | 'refcountTableOffset' | 'refcountTableClusters'>
  & { readonly backingFile?: string; readonly backingFormat?: string };

/** The first cluster of a new version 3 image: header, backing-format and feature-name
 *  extensions, then the backing file name (as qemu-img lays it out). */
export function buildHeaderCluster(h: NewHeader): Uint8Array {
  const cs = 2 ** h.clusterBits;
  const c = new Uint8Array(cs);
  const v = new DataView(c.buffer);
  const put64 = (at: number, n: number) => { v.setUint32(at, Math.floor(n / 0x1_0000_0000)); v.setUint32(at + 4, n >>> 0); };
  v.setUint32(H.magic, QCOW2_MAGIC);
  v.setUint32(H.version, 3);
  v.setUint32(H.clusterBits, h.clusterBits);
  put64(H.size, h.size);
  v.setUint32(H.l1Size, h.l1Size);
  put64(H.l1TableOffset, h.l1TableOffset);
  put64(H.refcountTableOffset, h.refcountTableOffset);
  v.setUint32(H.refcountTableClusters, h.refcountTableClusters);
  v.setUint32(H.refcountOrder, 4);
  v.setUint32(H.headerLength, VMCTL_HEADER_BYTES);
  let at = VMCTL_HEADER_BYTES;
  const ext = (type: number, data: Uint8Array) => {
    v.setUint32(at, type);
    v.setUint32(at + 4, data.length);
    c.set(data, at + 8);
    at += 8 + Math.ceil(data.length / 8) * 8;
  };
  const name = new TextEncoder().encode(h.backingFile ?? '');
  if (name.length > MAX_BACKING_NAME) throw new DiskError('INVALID', `backing file name ${JSON.stringify(h.backingFile)} is ${name.length} bytes; qcow2 allows at most ${MAX_BACKING_NAME}`);
  if (h.backingFormat !== undefined) ext(EXT_BACKING_FORMAT, new TextEncoder().encode(h.backingFormat));
  // The feature name table only helps other tools' messages: left out when it does not fit
  // (small clusters), as qemu-img does.
  const names = new Uint8Array(KNOWN_FEATURES.length * 48);
  if (at + 8 + names.length + 8 + name.length <= cs) {
    KNOWN_FEATURES.forEach(([type, b, feature], i) => {
      names[i * 48] = type;
      names[i * 48 + 1] = b;
      names.set(new TextEncoder().encode(feature), i * 48 + 2);
    });
    ext(EXT_FEATURE_NAMES, names);
  }
  at += 8; // the end marker (zeros)
  if (h.backingFile !== undefined) {
    if (at + name.length > cs) throw new DiskError('INVALID', `backing file name ${JSON.stringify(h.backingFile)} does not fit in the header cluster (${cs} bytes)`);
    put64(H.backingFileOffset, at);
    v.setUint32(H.backingFileSize, name.length);
    c.set(name, at);
  }
  return c;
}
