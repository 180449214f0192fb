// Snapshots through the real CLI and daemon, with the disk guest that writes "SEQ!" + n to
// sector n and prints "seq n" once that write completed (fixtures/disk blk-seq.elf): what a
// snapshot's layer holds, what restore brings back (disk and running machine), and that deleting
// snapshots merges layers without changing what any other snapshot or the VM shows.

import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openDiskImage } from '../../src/disk/image.js';
import { ROOT, until, VmctlHome } from './harness.js';

const h = new VmctlHome();
afterAll(() => h.cleanup());
const yaml = join(h.home, 'seq.yaml');

/** The n of "SEQ!"+n in sector n of the image (its whole chain), or 0. */
function seqAt(path: string, n: number): number {
  const img = openDiskImage(path, true);
  try {
    const b = Buffer.alloc(512);
    img.read(n, [b]);
    return b.toString('latin1', 0, 4) === 'SEQ!' && Number(b.readBigUInt64LE(8)) === n ? n : 0;
  } finally {
    img.close();
  }
}

/** The last sector n holding its sequence number (sectors are written in order). */
function lastSeq(path: string): number {
  let lo = 0, hi = 1;
  while (seqAt(path, hi) === hi) { lo = hi; hi *= 2; }
  while (hi - lo > 1) { const m = Math.floor((lo + hi) / 2); if (seqAt(path, m) === m) lo = m; else hi = m; }
  return lo;
}

async function seqs(boot?: number): Promise<number[]> {
  const log = await h.expectExit(['logs', 'seq', ...(boot !== undefined ? ['--boot', String(boot)] : [])]);
  // Whole lines only: a VM paused while the guest prints "seq 48682" may have printed "seq 486".
  return [...log.matchAll(/^seq (\d+)\r?\n/gm)].map((m) => Number(m[1]));
}

async function snapList(): Promise<{ current: string | null; snapshots: any[] }> {
  return JSON.parse(await h.expectExit(['snapshot', 'list', 'seq', '--json']));
}

async function vmInfo(): Promise<any> {
  return JSON.parse(await h.expectExit(['info', 'seq', '--json']));
}

const top = async () => (await vmInfo()).disks[0].path as string;

describe('snapshots', () => {
  it('takes a snapshot of a stopped VM: disks only; the VM moves onto an overlay', async () => {
    writeFileSync(yaml, `name: seq\nmemory: 16MiB\nboot:\n  kernel: ${join(ROOT, 'fixtures/disk/blk-seq.elf')}\n` +
      `disks:\n  - path: ./root.img\n    size: 512MiB\n`);
    await h.expectExit(['create', '-f', yaml]);
    const out = await h.expectExit(['snapshot', 'take', 'seq', 'empty', '--description', 'before the first boot']);
    expect(out).toContain('Took snapshot empty of VM seq (stopped): disks');
    const l = await snapList();
    expect(l.current).toBe('empty');
    expect(l.snapshots).toMatchObject([{ name: 'empty', parent: null, children: [], vmState: 'stopped', withState: false, description: 'before the first boot', current: true }]);
    expect(l.snapshots[0].disks[0].layer).toBe(join(h.home, 'root.img'));
    expect(await top()).toMatch(/vms\/seq\/snapshots\/disk0\.[0-9a-f]{8}\.qcow2$/);
    const i = await vmInfo();
    expect(i.snapshots).toBe(1);
    expect(i.currentSnapshot).toBe('empty');
  });

  let k1 = 0;
  let k2 = 0;
  it('takes a running VM\'s snapshot: its layer holds exactly the writes done by then, and the guest goes on', async () => {
    await h.expectExit(['start', 'seq', '--wait-for', 'seq 3000\\b', '--timeout', '90s']);
    const out = await h.expectExit(['snapshot', 'take', 'seq', 's1']);
    expect(out).toMatch(/Took snapshot s1 of VM seq \(running\): disks and machine state \([\d.]+\s?[KM]iB\); the guest was held \d+ ms/);
    const s1 = (await snapList()).snapshots.find((s) => s.name === 's1');
    expect(s1).toMatchObject({ parent: 'empty', vmState: 'running', withState: true, current: true });
    expect(s1.stateBytes).toBeGreaterThan(0);
    expect(s1.pauseSeconds).toBeGreaterThanOrEqual(0);
    k1 = lastSeq(s1.disks[0].layer);
    expect(k1).toBeGreaterThanOrEqual(3000);
    // The guest goes on, on the new overlay: well past k1, and the frozen layer did not change.
    await until(async () => (await seqs()).at(-1)! > k1 + 3000, 90_000, 'the guest writing on after the snapshot');
    expect(lastSeq(s1.disks[0].layer)).toBe(k1);
    await h.expectExit(['pause', 'seq']); // (the live top layer is read while nothing writes it)
    expect(lastSeq(await top())).toBeGreaterThan(k1 + 3000);
    await h.expectExit(['resume', 'seq']);
    await h.expectExit(['snapshot', 'take', 'seq', 's2', '--description', 'later']);
    const s2 = (await snapList()).snapshots.find((s) => s.name === 's2');
    k2 = lastSeq(s2.disks[0].layer);
    expect(k2).toBeGreaterThan(k1 + 3000);
    expect(s2.parent).toBe('s1');
  });

  it('restores a running snapshot to running: the disk and the guest are back where they were', async () => {
    const r = await h.run(['snapshot', 'restore', 'seq', 's1']);
    expect(r.code, r.stderr).toBe(5);
    expect(r.stderr).toContain('VM seq is running; stop it first, or restore with --force (it is powered off at once)');
    await h.expectExit(['snapshot', 'restore', 'seq', 's1', '--force']);
    expect((await vmInfo()).state).toBe('running');
    await h.expectExit(['pause', 'seq']);
    // The disk is s1's again: what came after it (up to k2) is gone, unless rewritten since.
    const now = lastSeq(await top());
    expect(now).toBeGreaterThanOrEqual(k1);
    expect(now).toBeLessThan(k2);
    expect(seqAt(await top(), k2)).toBe(0);
    // The guest went on from the snapshot: the new boot's first write is the one after k1.
    const boot = (await vmInfo()).bootId;
    const after = await seqs(boot);
    expect(after.length).toBeGreaterThan(0);
    expect(after[0] === k1 || after[0] === k1 + 1).toBe(true);
    expect(after).toEqual(after.map((_, i) => after[0] + i)); // one by one, none skipped
    expect((await snapList()).current).toBe('s1');
    await h.expectExit(['resume', 'seq']);
  });

  it('restores the other branch too (s2), and lists the tree', async () => {
    await h.expectExit(['snapshot', 'take', 'seq', 's1b']);
    await h.expectExit(['snapshot', 'restore', 'seq', 's2', '--force']);
    await h.expectExit(['pause', 'seq']);
    expect(lastSeq(await top())).toBeGreaterThanOrEqual(k2);
    const text = await h.expectExit(['snapshot', 'list', 'seq']);
    expect(text).toMatch(/^empty\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\s+stopped\s+-\s+\S+\s+before the first boot$/m);
    expect(text).toMatch(/^└─ s1\s/m);
    expect(text).toMatch(/^   ├─ s2 \(current\)\s.*running\s+yes\s+\S+\s+later$/m);
    expect(text).toMatch(/^   └─ s1b\s/m);
  });

  it('deletes a snapshot the running VM is built on: layers merged, every snapshot and the VM show what they showed', async () => {
    const before = await snapList();
    const layerOf = (l: typeof before, n: string) => l.snapshots.find((s) => s.name === n).disks[0].layer as string;
    const s1bLast = lastSeq(layerOf(before, 's1b'));
    const topLast = lastSeq(await top());
    await h.expectExit(['snapshot', 'delete', 'seq', 's1']);
    const after = await snapList();
    expect(after.snapshots.map((s) => s.name).sort()).toEqual(['empty', 's1b', 's2']);
    expect(after.snapshots.find((s) => s.name === 's2').parent).toBe('empty');
    expect(after.snapshots.find((s) => s.name === 's1b').parent).toBe('empty');
    expect(lastSeq(layerOf(after, 's2'))).toBe(k2);
    expect(lastSeq(layerOf(after, 's1b'))).toBe(s1bLast);
    expect(lastSeq(await top())).toBe(topLast);
    // s1's own layer is gone (merged), its state file too.
    const files = readdirSync(join(h.home, 'vms', 'seq', 'snapshots'));
    expect(files.filter((f) => f.endsWith('.vmstate'))).toHaveLength(2);
    expect(existsSync(layerOf(before, 's1'))).toBe(false);
    // The VM goes on (it was paused; the merge held it with its disks closed meanwhile).
    await h.expectExit(['resume', 'seq']);
    const n = (await seqs()).at(-1)!;
    await until(async () => (await seqs()).at(-1)! > n + 100, 60_000, 'the guest going on after the delete');
    // s2 restores exactly as before.
    await h.expectExit(['snapshot', 'restore', 'seq', 's2', '--force']);
    await h.expectExit(['pause', 'seq']);
    expect(lastSeq(await top())).toBeGreaterThanOrEqual(k2);
  });

  it('deletes the first snapshot (the user\'s base image takes its child\'s clusters), and restores a stopped snapshot', async () => {
    await h.expectExit(['snapshot', 'delete', 'seq', 's1b']);
    await h.expectExit(['stop', 'seq', '--force']);
    await h.expectExit(['snapshot', 'delete', 'seq', 'empty']);
    const l = await snapList();
    expect(l.snapshots.map((s) => s.name)).toEqual(['s2']);
    expect(l.snapshots[0].parent).toBeNull();
    // s2's layer was committed into root.img, which now is s2's layer.
    expect(l.snapshots[0].disks[0].layer).toBe(join(h.home, 'root.img'));
    expect(lastSeq(join(h.home, 'root.img'))).toBe(k2);
    await h.expectExit(['snapshot', 'take', 'seq', 'stopped-again']);
    await h.expectExit(['start', 'seq', '--wait-for', 'seq 10\\b', '--timeout', '60s']);
    await h.expectExit(['snapshot', 'restore', 'seq', 'stopped-again', '--force']);
    expect((await vmInfo()).state).toBe('stopped'); // a stopped VM's snapshot restores to stopped
  });

  it('refuses bad names, duplicates and unknown snapshots; keeps the tree across a daemon restart', async () => {
    expect((await h.run(['snapshot', 'take', 'seq', 'bad/name'])).code).toBe(2);
    const dup = await h.run(['snapshot', 'take', 'seq', 's2']);
    expect(dup.code).toBe(5); // a name taken, as for VMs
    expect(dup.stderr).toContain('VM seq already has a snapshot named "s2"');
    const none = await h.run(['snapshot', 'restore', 'seq', 'nope']);
    expect(none.code).toBe(4);
    expect(none.stderr).toContain('VM seq has no snapshot named "nope" (it has s2, stopped-again)');
    expect((await h.run(['snapshot', 'delete', 'seq', 'nope'])).code).toBe(4);
    const before = await snapList();
    await h.expectExit(['daemon', 'stop']);
    expect(await snapList()).toEqual(before);
  });
});
