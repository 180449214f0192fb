// The Linux guest on qcow2 disks, with QEMU as the other side: ext2 written through a vmctl
// overlay passes qemu-img check and e2fsck, QEMU boots from that overlay and sees the files (and
// writes two that vmctl then reads), and vmctl boots with qcow2 images qemu-img made (an overlay with
// -b BASE -F raw, a compressed image from convert -c) and writes them, keeping them clean.

import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createImage } from '../../src/disk/image.js';
import { qemuCheck, qemuImg, qemuInfo } from '../helpers/qemu-img.js';
import { LINUX, linuxConfig, qemuLinuxSession, session } from '../helpers/linux-guest.js';

const dir = mkdtempSync(join(tmpdir(), 'vmctl-qcow2-linux-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const sha = (f: string) => createHash('sha256').update(readFileSync(f)).digest('hex');

/** The file system inside a (qcow2) image, checked on the host: e2fsck -fn on a raw copy. */
function hostView(img: string): { fsck: number; cat: (f: string) => string; md5: (f: string) => string } {
  const raw = join(dir, `view-${Math.random().toString(36).slice(2)}.raw`);
  qemuImg(['convert', '-O', 'raw', img, raw]);
  const fsck = spawnSync('e2fsck', ['-fn', raw], { encoding: 'utf8' }).status ?? -1;
  return {
    fsck,
    cat: (f) => spawnSync('debugfs', ['-R', `cat ${f}`, raw], { encoding: 'utf8' }).stdout,
    md5: (f) => {
      const out = join(dir, `dump-${Math.random().toString(36).slice(2)}`);
      spawnSync('debugfs', ['-R', `dump ${f} ${out}`, raw]);
      return createHash('md5').update(readFileSync(out)).digest('hex');
    },
  };
}

describe.skipIf(LINUX === undefined)('Linux on qcow2', () => {
  const base = join(dir, 'base.raw');
  const overlay = join(dir, 'overlay.qcow2');
  /** md5 of /mnt/qemu.bin, which the guest on QEMU wrote into the overlay (test 1). */
  let qemuMd5: string | undefined;

  it('ext2 through a vmctl overlay: qemu-img check clean, info agrees, e2fsck passes, the base is untouched; QEMU boots from the overlay', async () => {
    copyFileSync(join(LINUX!, 'disk.img'), base);
    const baseSha = sha(base);
    createImage(overlay, { format: 'qcow2', backing: base });
    const t = await session(linuxConfig(overlay), [
      'mount -t ext2 /dev/vda /mnt && cat /mnt/README.txt',
      'echo "written through a qcow2 overlay on vmctl" > /mnt/ov.txt && dd if=/dev/urandom of=/mnt/rand.bin bs=1024 count=768 2>/dev/null && md5sum /mnt/rand.bin',
      'sync && umount /mnt',
    ], 240_000);
    expect(t).toContain('vmctl test disk (ext2, built by build.sh)');
    const md5 = /([0-9a-f]{32})\s+\/mnt\/rand\.bin/.exec(t)?.[1];
    expect(md5, t.slice(-2000)).toBeDefined();

    const c = qemuCheck(overlay);
    expect(c.errors, c.text).toBe(0);
    expect(c.leaks, c.text).toBe(0);
    expect(qemuInfo(overlay)).toMatchObject({ format: 'qcow2', 'virtual-size': 8 * 1024 * 1024, 'backing-filename': base, 'backing-filename-format': 'raw' });
    expect(sha(base)).toBe(baseSha);
    const v = hostView(overlay);
    expect(v.fsck).toBe(0);
    expect(v.cat('ov.txt')).toBe('written through a qcow2 overlay on vmctl\n');
    expect(v.md5('rand.bin')).toBe(md5);

    // QEMU writes a small file and 1 MiB more than the clusters vmctl allocated can hold, so
    // QEMU must allocate clusters and map them in the overlay's L2 table. `poweroff -f` ends QEMU
    // 7.2 through the test finisher, which calls exit(): QEMU's qcow2 metadata cache is not
    // written back then, and ext2's sync and umount send the disk no flush. Without the
    // `sync /dev/vda` (an fsync of the disk: a virtio-blk flush) the data was in the file but
    // its L2 entries and refcounts were lost, so the files read as the base image's zeros.
    const q = await qemuLinuxSession([`file=${overlay},format=qcow2`],
      'mount -t ext2 /dev/vda /mnt && cat /mnt/ov.txt && md5sum /mnt/rand.bin && echo "written by the guest on QEMU" > /mnt/qemu.txt && dd if=/dev/urandom of=/mnt/qemu.bin bs=1024 count=1024 2>/dev/null && md5sum /mnt/qemu.bin && sync && umount /mnt && sync /dev/vda && echo "QEMU: written $((6*7))"; poweroff -f\n', 120_000);
    expect(q).toContain('written through a qcow2 overlay on vmctl');
    expect(q).toContain(`${md5}  /mnt/rand.bin`);
    expect(q, q.slice(-2000)).toContain("QEMU: written 42");
    qemuMd5 = /([0-9a-f]{32})\s+\/mnt\/qemu\.bin/.exec(q)?.[1];
    expect(qemuMd5, q.slice(-2000)).toBeDefined();
    expect(qemuCheck(overlay)).toMatchObject({ errors: 0, leaks: 0 });
    expect(sha(base)).toBe(baseSha);
    const after = hostView(overlay);
    expect(after.fsck).toBe(0);
    expect(after.cat('qemu.txt')).toBe('written by the guest on QEMU\n');
    expect(after.md5('qemu.bin')).toBe(qemuMd5);
  }, 400_000);

  it('vmctl boots with images qemu-img made (an overlay -b BASE -F raw, a compressed image) and the one QEMU wrote; writes stay clean', async () => {
    const qbase = join(dir, 'qbase.raw');
    copyFileSync(join(LINUX!, 'disk.img'), qbase);
    const qover = join(dir, 'qover.qcow2');
    qemuImg(['create', '-q', '-f', 'qcow2', '-b', qbase, '-F', 'raw', qover]);
    const comp = join(dir, 'comp.qcow2');
    qemuImg(['convert', '-q', '-c', '-O', 'qcow2', join(LINUX!, 'disk.img'), comp]);
    expect(qemuCheck(comp).text).toMatch(/[1-9][0-9.]*% compressed clusters/);
    const disks = [{ path: overlay, name: 'mine' }, { path: qover, name: 'qover' }, { path: comp, name: 'comp' }].map((d) => ({ ...d, readonly: false }));
    const t = await session(linuxConfig(disks), [
      'for b in /sys/block/vd*; do eval "D_$(cat $b/serial)=${b##*/}"; done; mkdir -p /m1 /m2 /m3',
      'mount -t ext2 /dev/$D_mine /m1 && mount -t ext2 /dev/$D_qover /m2 && mount -t ext2 /dev/$D_comp /m3 && cat /m1/qemu.txt /m2/README.txt /m3/README.txt && md5sum /m1/qemu.bin',
      'for m in /m2 /m3; do dd if=/dev/urandom of=$m/rand.bin bs=1024 count=512 2>/dev/null; md5sum $m/rand.bin; done',
      'sync && umount /m1 /m2 /m3',
    ], 300_000);
    expect(t).toContain('written by the guest on QEMU');
    expect(qemuMd5).toBeDefined();
    expect(t).toContain(`${qemuMd5}  /m1/qemu.bin`);
    expect(t.match(/vmctl test disk \(ext2, built by build\.sh\)/g)?.length).toBeGreaterThanOrEqual(2);
    const md5s = Object.fromEntries([...t.matchAll(/([0-9a-f]{32})\s+\/(m[23])\/rand\.bin/g)].map((m) => [m[2], m[1]]));
    expect(Object.keys(md5s).sort(), t.slice(-2000)).toEqual(['m2', 'm3']);
    for (const [img, m] of [[qover, 'm2'], [comp, 'm3']] as const) {
      const c = qemuCheck(img);
      expect(c.errors, `${img}:\n${c.text}`).toBe(0);
      expect(c.leaks, `${img}:\n${c.text}`).toBe(0);
      const v = hostView(img);
      expect(v.fsck).toBe(0);
      expect(v.md5('rand.bin')).toBe(md5s[m]);
    }
    expect(qemuCheck(overlay)).toMatchObject({ errors: 0, leaks: 0 });
  }, 400_000);
});
