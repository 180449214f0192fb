// The Linux guest (fixtures/linux/build.sh, cached in ~/.cache/vmctl/linux/out) with ext2 on
// /dev/vda: files written in one boot are there in the next, the image passes e2fsck -n, debugfs
// shows the files on the host, and the same image boots on QEMU with the files in it.

import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { imageInfo } from '../../src/disk/image.js';
import { createRawImage, resizeRawImage } from '../../src/disk/raw-image.js';
import { LINUX, linuxConfig, qemuLinuxSession, session } from '../helpers/linux-guest.js';

const dir = mkdtempSync(join(tmpdir(), 'vmctl-linux-disk-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe.skipIf(LINUX === undefined)('Linux with ext2 on /dev/vda', () => {
  const img = join(dir, 'ext2.img');
  let allocatedBefore = 0;

  it('files written in one boot are there in the next; e2fsck -n passes; debugfs shows them', async () => {
    copyFileSync(join(LINUX!, 'disk.img'), img);
    const first = await session(linuxConfig(img), [
      'cat /sys/block/vda/serial 2>/dev/null; mount -t ext2 /dev/vda /mnt',
      'echo "written by the guest on vmctl" > /mnt/h5.txt && dd if=/dev/urandom of=/mnt/rand.bin bs=1024 count=768 2>/dev/null && md5sum /mnt/rand.bin',
      'sync && umount /mnt',
    ], 240_000);
    const md5 = /([0-9a-f]{32})\s+\/mnt\/rand\.bin/.exec(first)?.[1];
    expect(md5, first.slice(-2000)).toBeDefined();

    // Host side: the file system is clean and holds the files.
    const fsck = spawnSync('e2fsck', ['-fn', img], { encoding: 'utf8' });
    expect(fsck.status, fsck.stdout + fsck.stderr).toBe(0);
    const cat = spawnSync('debugfs', ['-R', 'cat h5.txt', img], { encoding: 'utf8' });
    expect(cat.stdout).toBe('written by the guest on vmctl\n');
    const dumped = join(dir, 'rand.bin');
    spawnSync('debugfs', ['-R', `dump rand.bin ${dumped}`, img]);
    const hostMd5 = spawnSync('md5sum', [dumped], { encoding: 'utf8' }).stdout.split(' ')[0];
    expect(hostMd5).toBe(md5);

    // Second boot: the guest sees the same files.
    const second = await session(linuxConfig(img), [
      'mount -t ext2 /dev/vda /mnt && cat /mnt/h5.txt && md5sum /mnt/rand.bin',
      'umount /mnt',
    ], 240_000);
    expect(second).toContain('written by the guest on vmctl');
    expect(second).toContain(`${md5}  /mnt/rand.bin`);
  }, 600_000);

  it('the image written by vmctl boots on QEMU (format=raw) with the files in it; QEMU writes one too', async () => {
    if (!existsSync(img)) throw new Error('needs the image of the previous test');
    const text = await qemuLinuxSession([`file=${img},format=raw`],
      'mount -t ext2 /dev/vda /mnt && cat /mnt/h5.txt && echo "written by the guest on QEMU" > /mnt/qemu.txt; sync; umount /mnt; poweroff -f\n', 120_000);
    expect(text).toContain('written by the guest on vmctl');
    expect(spawnSync('e2fsck', ['-fn', img]).status).toBe(0);
  }, 180_000);

  it('what the guest wrote on QEMU is there on vmctl (the other way round)', async () => {
    if (!existsSync(img)) throw new Error('needs the image of the previous tests');
    const t = await session(linuxConfig(img), ['mount -t ext2 -o ro /dev/vda /mnt && cat /mnt/qemu.txt && umount /mnt'], 240_000);
    expect(t).toContain('written by the guest on QEMU\r\n');
    expect(spawnSync('e2fsck', ['-fn', img]).status).toBe(0);
  }, 300_000);

  it('growing a running VM\'s disk reaches the guest (config change); blkdiscard gives space back', async () => {
    const data = join(dir, 'data.img');
    createRawImage(data, 64 * 1024 * 1024);
    const t = await session(linuxConfig(img, { disks: [{ path: img, readonly: false, name: 'disk0' }, { path: data, readonly: false, name: 'scratch' }] }), [
      // Find the scratch disk by its virtio-blk ID (Linux names slots in device-tree order, which
      // lists the highest slot first, as QEMU's does).
      'for b in /sys/block/vd*; do [ "$(cat $b/serial)" = scratch ] && D=${b##*/}; done; echo "scratch is $D: $(cat /sys/block/$D/size) sectors"',
      'dd if=/dev/urandom of=/dev/$D bs=1M count=16 conv=fsync 2>/dev/null; echo written',
      // Host: grow the image while the VM runs; the device looks at its size every second.
      { host: () => resizeRawImage(data, 128 * 1024 * 1024), cmd: 'sleep 3; echo "scratch now $(cat /sys/block/$D/size) sectors"' },
      { host: () => { allocatedBefore = imageInfo(data).allocatedBytes; }, cmd: 'blkdiscard -o 0 -l 8388608 /dev/$D && echo discarded' },
    ], 240_000);
    expect(t).toMatch(/scratch is vd[ab]: 131072 sectors/);
    expect(t).toMatch(/scratch now 262144 sectors/);
    expect(t).toMatch(/detected capacity change from 131072 to 262144/);
    expect(t).toContain('discarded');
    expect(allocatedBefore).toBeGreaterThanOrEqual(16 * 1024 * 1024);
    expect(imageInfo(data).allocatedBytes).toBeLessThanOrEqual(allocatedBefore - 8 * 1024 * 1024);
  }, 300_000);
});
