// Fault tests: the real daemon is killed with SIGKILL in the middle of `vmctl save` and of
// `vmctl snapshot take`, at the instants where damage could be done. The daemon is started with
// VMCTL_TEST_HOLD=POINT:FILE (src/host/test-hold.ts), which makes it (or its VM's worker thread)
// stop at POINT and say so in FILE; the test then kills it there. The next daemon must show the VM
// as it was before the operation: no half-written state taken for a good one, no temporary file
// left, the snapshot tree and every file of an existing snapshot unchanged, images that qemu-img
// checks without errors, and a VM that starts and restores as before.
// The guest is the disk guest that writes "SEQ!" + n to sector n (fixtures/disk blk-seq.elf).

import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { qemuCheck } from '../helpers/qemu-img.js';
import { ROOT, until, VmctlHome } from './harness.js';

const h = new VmctlHome();
afterAll(() => h.cleanup());
const vmDir = join(h.home, 'vms', 'seq');
const layerDir = join(vmDir, 'snapshots');
const marker = join(h.home, 'held');

async function json(args: string[]): Promise<any> {
  return JSON.parse(await h.expectExit([...args, '--json']));
}

/** A daemon that holds at `point`; the VM is started under it (its worker inherits the hold). */
async function heldDaemon(point: string): Promise<void> {
  await h.expectExit(['daemon', 'stop']); // (the VM, if running, stops with it)
  const r = await h.run(['daemon', 'start'], { env: { VMCTL_TEST_HOLD: `${point}:${marker}` } });
  expect(r.code, r.stderr).toBe(0);
}

/** Runs `args` (which must reach the hold), SIGKILLs the daemon there; the command's result. */
async function killDuring(args: string[]): Promise<{ code: number | null; files: string[] }> {
  const pending = h.run(args, { timeoutMs: 120_000 });
  await until(() => existsSync(marker), 60_000, `the daemon holding during ${args.join(' ')}`);
  const files = [...readdirSync(vmDir).map((n) => join(vmDir, n)), ...(existsSync(layerDir) ? readdirSync(layerDir).map((n) => join(layerDir, n)) : [])];
  const pid = Number(readFileSync(join(h.home, 'vmd.pid'), 'utf8').trim());
  process.kill(pid, 'SIGKILL');
  await until(() => { try { process.kill(pid, 0); return false; } catch { return true; } }, 30_000, 'the daemon gone');
  const r = await pending;
  unlinkSync(marker); // so that the next hold is seen afresh
  return { code: r.code, files };
}

const temps = (dir: string) => (existsSync(dir) ? readdirSync(dir).filter((n) => n.endsWith('.tmp')) : []);

function hashes(dir: string): Record<string, string> {
  const m: Record<string, string> = {};
  for (const n of readdirSync(dir)) {
    const p = join(dir, n);
    if (statSync(p).isFile() && !n.endsWith('.lock')) m[n] = createHash('sha256').update(readFileSync(p)).digest('hex');
  }
  return m;
}

function expectImagesSound(): void {
  for (const n of readdirSync(layerDir).filter((x) => x.endsWith('.qcow2'))) {
    const c = qemuCheck(join(layerDir, n));
    expect(c.errors, `${n}: ${c.text}`).toBe(0);
  }
}

describe('SIGKILL of the daemon during save and snapshot take', () => {
  it('during save, with the state file half written: the VM is not saved, the partial file is gone, it boots afresh', async () => {
    writeFileSync(join(h.home, 'seq.yaml'), `name: seq\nmemory: 16MiB\nboot:\n  kernel: ${join(ROOT, 'fixtures/disk/blk-seq.elf')}\n` +
      'disks:\n  - path: ./root.img\n    size: 512MiB\n');
    await h.expectExit(['create', '-f', join(h.home, 'seq.yaml')]);
    await heldDaemon('state-partly-written');
    await h.expectExit(['start', 'seq', '--wait-for', 'seq 500\\b', '--timeout', '90s']);
    const r = await killDuring(['save', 'seq']);
    expect(r.code).not.toBe(0);
    // It was killed with a partial state in a temporary file, never under the real name.
    const tmp = r.files.filter((f) => /\/\.saved\.vmstate\..*\.tmp$/.test(f));
    expect(tmp).toHaveLength(1);
    expect(existsSync(join(vmDir, 'saved.vmstate'))).toBe(false);

    const i = await json(['info', 'seq']); // a new daemon
    expect(i.state).toBe('aborted');
    expect(i.savedState).toBeNull();
    expect(temps(vmDir)).toEqual([]);
    expect(existsSync(join(vmDir, 'saved.vmstate'))).toBe(false);
    const boot = i.bootId as number;
    await h.expectExit(['start', 'seq', '--wait-for', 'seq 100\\b', '--timeout', '90s']);
    expect((await json(['info', 'seq'])).bootId).toBe(boot + 1); // booted afresh, not resumed
  }, 300_000);

  it('during save, the state complete but not yet recorded: not taken for the VM\'s state either', async () => {
    await heldDaemon('save-before-record');
    await h.expectExit(['start', 'seq', '--wait-for', 'seq 100\\b', '--timeout', '90s']);
    const r = await killDuring(['save', 'seq']);
    expect(r.code).not.toBe(0);
    expect(r.files).toContain(join(vmDir, 'saved.vmstate'));
    const i = await json(['info', 'seq']);
    expect(i.state).toBe('aborted');
    expect(i.savedState).toBeNull();
    expect(existsSync(join(vmDir, 'saved.vmstate'))).toBe(false);
    expect(temps(vmDir)).toEqual([]);
  }, 300_000);

  let s1Files: Record<string, string> = {};
  let tree: any;
  it('a snapshot to keep: s1 of the running VM (a normal daemon)', async () => {
    await h.expectExit(['start', 'seq', '--wait-for', 'seq 300\\b', '--timeout', '90s']);
    await h.expectExit(['snapshot', 'take', 'seq', 's1']);
    tree = await json(['snapshot', 'list', 'seq']);
    expect(tree.snapshots).toMatchObject([{ name: 's1', withState: true }]);
    await h.expectExit(['stop', 'seq', '--force']);
    s1Files = hashes(layerDir);
  }, 300_000);

  for (const point of ['take-before-switch', 'state-partly-written'] as const) {
    it(`during snapshot take (${point}): s1 and its files are intact, no partial state is taken, the VM runs on and restores s1`, async () => {
      await heldDaemon(point);
      const top = (await json(['info', 'seq'])).disks[0].path;
      const layers = readdirSync(layerDir).filter((n) => n.endsWith('.qcow2')).sort();
      await h.expectExit(['start', 'seq', '--wait-for', 'seq 200\\b', '--timeout', '90s']);
      const r = await killDuring(['snapshot', 'take', 'seq', `s-${point}`]);
      expect(r.code).not.toBe(0);
      if (point === 'state-partly-written') expect(r.files.filter((f) => f.startsWith(layerDir) && f.endsWith('.tmp'))).toHaveLength(1);

      const l = await json(['snapshot', 'list', 'seq']); // a new daemon: the operation finished or undone
      const s1 = l.snapshots.find((s: any) => s.name === 's1');
      expect(s1).toEqual({ ...tree.snapshots[0], current: s1.current, children: s1.children });
      // s1's layer and state are byte for byte what they were.
      const now = hashes(layerDir);
      for (const [n, sum] of Object.entries(s1Files)) if (n.endsWith('.vmstate') || tree.snapshots[0].disks.some((d: any) => d.layer.endsWith(n))) expect(now[n], n).toBe(sum);
      expect(temps(layerDir)).toEqual([]);
      const taken = l.snapshots.find((s: any) => s.name === `s-${point}`);
      if (point === 'take-before-switch') {
        // Nothing was written on the new overlays: the take is undone, the VM back on its old top.
        expect(taken).toBeUndefined();
        expect(l.snapshots).toHaveLength(1);
        expect((await json(['info', 'seq'])).disks[0].path).toBe(top);
        expect(readdirSync(layerDir).filter((n) => n.endsWith('.qcow2')).sort()).toEqual(layers);
      } else {
        // The guest ran on on its new overlays while the state was being written: the snapshot
        // stands with its disks only (undoing it would lose those writes).
        expect(taken).toMatchObject({ withState: false, parent: 's1' });
      }
      expect(l.pending ?? null).toBeNull();
      expectImagesSound();

      await h.expectExit(['start', 'seq', '--wait-for', 'seq 100\\b', '--timeout', '90s']);
      await h.expectExit(['snapshot', 'restore', 'seq', 's1', '--force']);
      expect((await json(['info', 'seq'])).state).toBe('running');
    }, 300_000);
  }
});
