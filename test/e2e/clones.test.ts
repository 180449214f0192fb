// vmctl clone through the real CLI and daemon, with the disk guest that writes "SEQ!" + n to
// sector n (fixtures/disk blk-seq.elf): linked clones are overlays over the source's layers and
// never change them; full clones are copies; a clone is a new VM (UUID, random seed); a source
// with linked clones is not deleted unless --flatten-clones.

import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { imageChain, openDiskImage } from '../../src/disk/image.js';
import { ROOT, VmctlHome } from './harness.js';

const h = new VmctlHome();
afterAll(() => h.cleanup());

function lastSeq(path: string): number {
  const img = openDiskImage(path, true);
  const b = Buffer.alloc(512);
  const at = (n: number) => { img.read(n, [b]); return b.toString('latin1', 0, 4) === 'SEQ!' && Number(b.readBigUInt64LE(8)) === n; };
  try {
    let lo = 0, hi = 1;
    while (at(hi)) { lo = hi; hi *= 2; }
    while (hi - lo > 1) { const m = Math.floor((lo + hi) / 2); if (at(m)) lo = m; else hi = m; }
    return lo;
  } finally {
    img.close();
  }
}

const info = async (vm: string) => JSON.parse(await h.expectExit(['info', vm, '--json']));
/** The VM's device tree as `vmctl dtb` builds it (a new one, with a new seed, each time). */
const dtb = async (vm: string) => {
  const f = join(h.home, `${vm}.dtb`);
  await h.expectExit(['dtb', vm, '-o', f]);
  return readFileSync(f);
};

describe('vmctl clone', () => {
  let srcLast = 0;
  it('a linked clone of a stopped VM: overlays over a snapshot the source takes, a new identity', async () => {
    const yaml = join(h.home, 'src.yaml');
    writeFileSync(yaml, `name: src\nmemory: 16MiB\nboot:\n  kernel: ${join(ROOT, 'fixtures/disk/blk-seq.elf')}\ndisks:\n  - path: ./root.img\n    size: 1GiB\n`);
    await h.expectExit(['create', '-f', yaml]);
    await h.expectExit(['start', 'src', '--wait-for', 'seq 300\\b', '--timeout', '60s']);
    await h.expectExit(['stop', 'src', '--force']);
    srcLast = lastSeq(join(h.home, 'root.img'));
    expect(srcLast).toBeGreaterThanOrEqual(300);

    const r = await h.run(['clone', 'src', 'lc', '--linked']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('Created VM lc, a linked clone of src at snapshot clone-lc, state stopped');
    const [s, c] = [await info('src'), await info('lc')];
    expect(c.uuid).not.toBe(s.uuid);
    expect(c.clonedFrom).toEqual({ vm: 'src', snapshot: 'clone-lc', linked: true });
    // The clone's disk is an overlay over the source's layer (its old top, now the snapshot's).
    const chain = imageChain(c.disks[0].path).map((l) => l.path);
    expect(chain).toEqual([join(h.home, 'vms', 'lc', 'disk0.qcow2'), join(h.home, 'root.img')]);
    expect(s.disks[0].path).toMatch(/vms\/src\/snapshots\/disk0\.[0-9a-f]{8}\.qcow2$/);
    // Same definition, so the same tree but for /chosen/rng-seed: never the same twice.
    const [a, b] = [await dtb('lc'), await dtb('src')];
    expect(a.includes('rng-seed')).toBe(true);
    expect(a.length).toBe(b.length);
    expect(a.equals(b)).toBe(false);
  });

  it('the linked clone boots afresh and writes its own disk, never the source\'s', async () => {
    await h.expectExit(['start', 'lc', '--wait-for', 'seq 1000\\b', '--timeout', '60s']);
    await h.expectExit(['stop', 'lc', '--force']);
    const lcDisk = (await info('lc')).disks[0].path;
    expect(lastSeq(lcDisk)).toBeGreaterThanOrEqual(1000);
    expect(lastSeq(join(h.home, 'root.img'))).toBe(srcLast); // the source's layer is untouched
    expect((await h.expectExit(['logs', 'lc'])).match(/^seq 1$/gm)).toHaveLength(1); // one fresh boot
  });

  it('a full clone of a running VM\'s snapshot is a standalone copy', async () => {
    await h.expectExit(['start', 'src', '--wait-for', 'seq 200\\b', '--timeout', '60s']);
    const running = await h.run(['clone', 'src', 'x']);
    expect(running.code).toBe(5);
    expect(running.stderr).toContain('VM src is running; a clone is made from disks at rest: stop it, or clone one of its snapshots (--snapshot SNAP)');
    await h.expectExit(['clone', 'src', 'fc', '--snapshot', 'clone-lc']);
    const fc = await info('fc');
    expect(fc.clonedFrom).toEqual({ vm: 'src', snapshot: 'clone-lc', linked: false });
    expect(imageChain(fc.disks[0].path)).toHaveLength(1);
    expect(lastSeq(fc.disks[0].path)).toBe(srcLast);
    await h.expectExit(['stop', 'src', '--force']);
  });

  it('a source with linked clones is not deleted, unless --flatten-clones', async () => {
    const r = await h.run(['delete', 'src']);
    expect(r.code).toBe(5);
    expect(r.stderr).toContain('VM src cannot be deleted: its disk layers back the disks of linked clone lc; delete it first, or delete with --flatten-clones');
    expect((await info('src')).name).toBe('src');
    await h.expectExit(['snapshot', 'take', 'lc', 'mine']); // a clone's own snapshot is flattened too
    const before = lastSeq((await info('lc')).disks[0].path);
    await h.expectExit(['delete', 'src', '--flatten-clones', '--delete-disks']);
    expect((await h.run(['info', 'src'])).code).toBe(4);
    const lc = await info('lc');
    expect(lc.clonedFrom.linked).toBe(false);
    for (const p of [lc.disks[0].path, JSON.parse(await h.expectExit(['snapshot', 'list', 'lc', '--json'])).snapshots[0].disks[0].layer]) {
      expect(imageChain(p).every((l) => !l.path.includes('/vms/src/') && l.path !== join(h.home, 'root.img'))).toBe(true);
    }
    expect(lastSeq(lc.disks[0].path)).toBe(before);
    await h.expectExit(['start', 'lc', '--wait-for', 'seq 5\\b', '--timeout', '60s']);
    await h.expectExit(['stop', 'lc', '--force']);
  });
});
