// `vmctl disk convert SRC DST --format F`: a new image DST with what the guest sees in SRC (a
// qcow2 with a backing chain comes out flattened: one image, no backing file). Zero chunks are
// not written, so the result is sparse (raw) or has only the clusters that hold data (qcow2).
// SRC's chain is locked shared meanwhile (no VM may write it); DST is new (never overwritten) and
// removed again if the copy fails.

import { unlinkSync } from 'node:fs';
import { SECTOR_SIZE, type BlockBackend } from './block-backend.js';
import { createImage, openDiskImage, withChainLocked, type ImageFormat } from './image.js';
import { RawFileBackend } from './raw-image.js';

const CHUNK = 2 * 1024 * 1024;
/** Zero detection granularity: qcow2's default cluster size. */
const BLOCK = 64 * 1024;

export function convertImage(src: string, dst: string, format: ImageFormat, home: string): { virtualBytes: number } {
  return withChainLocked(src, 'disk convert', home, false, () => {
    const from = openDiskImage(src, true);
    try {
      const bytes = from.sectorCount() * SECTOR_SIZE;
      createImage(dst, { format, size: bytes });
      try {
        // A raw result is written as given: what the source holds is the user's choice, even a
        // sector 0 that looks like a qcow2 header (image.ts refuses that only to guests).
        const to = format === 'raw' ? new RawFileBackend(dst, false) : openDiskImage(dst, false);
        try {
          copy(from, to, bytes);
        } finally {
          to.close();
        }
      } catch (e) {
        try { unlinkSync(dst); } catch { /* best effort */ }
        throw e;
      }
      return { virtualBytes: bytes };
    } finally {
      from.close();
    }
  });
}

/** Copies in chunks; within a chunk only the runs of non-zero blocks are written (a new image
 *  reads as zeros already). */
function copy(from: BlockBackend, to: BlockBackend, bytes: number): void {
  const buf = Buffer.alloc(CHUNK);
  const zero = Buffer.alloc(BLOCK);
  for (let pos = 0; pos < bytes; pos += CHUNK) {
    const n = Math.min(CHUNK, bytes - pos);
    from.read(pos / SECTOR_SIZE, [buf.subarray(0, n)]);
    for (let at = 0; at < n;) {
      const isZero = (k: number) => buf.subarray(k, Math.min(n, k + BLOCK)).equals(zero.subarray(0, Math.min(BLOCK, n - k)));
      if (isZero(at)) { at += BLOCK; continue; }
      let end = at + BLOCK;
      while (end < n && !isZero(end)) end += BLOCK;
      end = Math.min(end, n);
      to.write((pos + at) / SECTOR_SIZE, [buf.subarray(at, end)]);
      at = end;
    }
  }
}
