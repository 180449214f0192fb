// Merging snapshot layers (src/disk/layers.ts): pulling a layer into its child and committing a
// top into its base leave every image showing what it showed, by qemu-img compare, and images
// qemu-img check finds no errors or leaks in; rebasing refuses images vmctl did not make.

import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { SECTOR_SIZE } from '../../src/disk/block-backend.js';
import { createImage, openDiskImage } from '../../src/disk/image.js';
import { backingOf, commitLayer, ownExtents, pullLayer, rebaseImage } from '../../src/disk/layers.js';
import { qemuCheck, qemuImg, qemuInfo, qemuSame } from '../helpers/qemu-img.js';

const dir = mkdtempSync(join(tmpdir(), 'vmctl-layers-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const MiB = 1024 * 1024;
const p = (n: string) => join(dir, n);

/** Writes `fill` bytes at `at` (or zeroes them with fill === 0) through the image's chain. */
function put(path: string, at: number, len: number, fill: number): void {
  const img = openDiskImage(path, false);
  try {
    if (fill === 0) img.writeZeroes(at / SECTOR_SIZE, len / SECTOR_SIZE, false);
    else img.write(at / SECTOR_SIZE, [new Uint8Array(len).fill(fill)]);
  } finally {
    img.close();
  }
}

function snapshotOf(path: string, name: string): string {
  const copy = p(name);
  qemuImg(['convert', '-O', 'raw', path, copy]);
  return copy;
}

/** base (raw, data everywhere) <- a (some clusters, a zeroed range) <- b (more clusters) */
function chain(tag: string): { base: string; a: string; b: string } {
  const base = p(`${tag}-base.img`), a = p(`${tag}-a.qcow2`), b = p(`${tag}-b.qcow2`);
  createImage(base, { format: 'raw', size: 8 * MiB });
  put(base, 0, 8 * MiB, 0x11);
  createImage(a, { format: 'qcow2', backing: base });
  put(a, 1 * MiB, 64 * 1024, 0xaa);
  put(a, 3 * MiB + 4096, 100 * 1024, 0xab); // partial clusters: copy-on-write merges
  put(a, 5 * MiB, 256 * 1024, 0);           // zero clusters hide the base's data
  createImage(b, { format: 'qcow2', backing: a });
  put(b, 1 * MiB + 32 * 1024, 64 * 1024, 0xbb); // overlaps a's cluster
  put(b, 6 * MiB, 128 * 1024, 0xbc);
  return { base, a, b };
}

describe('snapshot layers', () => {
  it('ownExtents lists a layer\'s own clusters (zero clusters too), nothing of its backing', () => {
    const { a } = chain('ext');
    expect(ownExtents(a)).toEqual([
      [1 * MiB, 1 * MiB + 64 * 1024],
      [3 * MiB, 3 * MiB + 128 * 1024],
      [5 * MiB, 5 * MiB + 256 * 1024],
    ]);
  });

  it('pullLayer + rebaseImage: the child no longer needs the layer and shows the same', () => {
    const { base, a, b } = chain('pull');
    const before = snapshotOf(b, 'pull-b.raw');
    const bytes = pullLayer(a, b);
    expect(bytes).toBeGreaterThan(0);
    rebaseImage(b, base);
    expect(backingOf(b)).toBe(base);
    expect(qemuInfo(b)['backing-filename']).toBe(base);
    expect(qemuInfo(b)['backing-filename-format']).toBe('raw');
    expect(qemuSame(before, b).same).toBe(true);
    rmSync(a); // the pulled layer is not needed any more
    expect(qemuSame(before, b).same).toBe(true);
    const c = qemuCheck(b);
    expect(c.errors, c.text).toBe(0);
    expect(c.leaks, c.text).toBe(0);
    // Repeating a pull is harmless (what a crash half-way would make the journal do).
    const again = snapshotOf(b, 'pull-b2.raw');
    createImage(a, { format: 'qcow2', backing: base });
    rebaseImage(b, a);
    expect(pullLayer(a, b)).toBe(0);
    rebaseImage(b, base);
    expect(qemuSame(again, b).same).toBe(true);
  });

  it('commitLayer: the base shows what the top showed; the top\'s children can be rebased onto it', () => {
    const { a, b } = chain('commit');
    const c = p('commit-c.qcow2');
    createImage(c, { format: 'qcow2', backing: b });
    put(c, 7 * MiB, 64 * 1024, 0xcc);
    const bBefore = snapshotOf(b, 'commit-b.raw');
    const cBefore = snapshotOf(c, 'commit-c.raw');
    commitLayer(b, a);
    expect(qemuSame(bBefore, a).same).toBe(true); // a now is what b was
    rebaseImage(c, a);
    rmSync(b);
    expect(qemuSame(cBefore, c).same).toBe(true);
    for (const img of [a, c]) {
      const r = qemuCheck(img);
      expect(r.errors, r.text).toBe(0);
      expect(r.leaks, r.text).toBe(0);
    }
  });

  it('commits into a raw base too', () => {
    const { base, a } = chain('raw');
    const before = snapshotOf(a, 'raw-a.raw');
    commitLayer(a, base);
    expect(qemuSame(before, base).same).toBe(true);
  });

  it('refuses layers that are not neighbours, and rebasing images vmctl did not make', () => {
    const { base, a, b } = chain('refuse');
    expect(() => pullLayer(base, b)).toThrow(/is backed by .*refuse-a\.qcow2, not by .*refuse-base\.img/);
    expect(() => commitLayer(b, base)).toThrow(/not by/);
    const foreign = p('foreign.qcow2');
    qemuImg(['create', '-f', 'qcow2', '-o', 'lazy_refcounts=on', '-b', a, '-F', 'qcow2', foreign]);
    expect(() => rebaseImage(foreign, base)).toThrow(/only overlays vmctl made are rebased/);
    copyFileSync(foreign, p('foreign-copy.qcow2'));
  });
});
