// The Linux guest (fixtures/linux/build.sh, cached in ~/.cache/vmctl/linux/out) with ext2 on
// /dev/vda: files written in one boot are there in the next, the image passes e2fsck -n, debugfs
// shows the files on the host, and the same image boots on QEMU with the files in it.

import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { VirtMachine } from '../../src/board/virt.js';
import type { MachineConfig } from '../../src/board/machine-types.js';
import { imageInfo } from '../../src/disk/image.js';
import { createRawImage, resizeRawImage } from '../../src/disk/raw-image.js';

const LINUX = [process.env.VMCTL_LINUX_DIR, join(homedir(), '.cache/vmctl/linux/out'), '/tmp/linux-guest/out']
  .find((d): d is string => d !== undefined && existsSync(join(d, 'Image')) && existsSync(join(d, 'disk.img')));
const OPENSBI = '/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_dynamic.bin';
const dir = mkdtempSync(join(tmpdir(), 'vmctl-linux-disk-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Boots the machine, types each command once the previous one printed its end marker, and stops
 *  (closing the machine: disks flushed) after the last marker. Returns the console output. */
async function session(cfg: MachineConfig, commands: (string | { host: () => void; cmd: string })[], timeoutMs: number): Promise<string> {
  let text = '';
  const vm = VirtMachine.create(cfg, {
    consoleOutput: (b) => { text += Buffer.from(b).toString('latin1'); },
    powerEvent: () => {},
    log: (m) => { text += `\n[vm log] ${m}\n`; },
  });
  const deadline = performance.now() + timeoutMs;
  let step = -1;
  try {
    for (;;) {
      // Step 0 waits for the shell; step k waits for the marker of command k-1.
      const waitFor = step < 0 ? 'shell on console' : `END-${step}-${step * 7 + 1}`;
      if (text.includes(waitFor)) {
        step++;
        if (step === commands.length) break;
        // The marker is computed by the shell, so the echoed command line never matches it.
        const c = commands[step];
        if (typeof c !== 'string') c.host();
        vm.consoleInput(new TextEncoder().encode(`${typeof c === 'string' ? c : c.cmd}; echo END-${step}-$((${step}*7+1))\n`));
      }
      if (performance.now() > deadline) throw new Error(`timed out at step ${step}; console:\n${text.slice(-3000)}`);
      const s = vm.run(50);
      if (s === 'halted') throw new Error(`guest stopped at step ${step}; console:\n${text.slice(-3000)}`);
      if (s === 'idle') await new Promise((r) => setTimeout(r, Math.min(vm.idleTimeoutMs(), 20)));
      else await new Promise((r) => setImmediate(r));
    }
  } finally {
    vm.close();
  }
  return text;
}

function linuxConfig(disk: string, extra: Partial<MachineConfig> = {}): MachineConfig {
  return {
    memoryBytes: 128 * 1024 * 1024, cpus: 1,
    firmware: { kind: 'file', path: OPENSBI },
    kernelPath: join(LINUX!, 'Image'), initrdPath: join(LINUX!, 'initramfs.cpio.gz'),
    cmdline: 'console=ttyS0 vmctl=shell',
    disks: [{ path: disk, readonly: false, name: 'disk0' }],
    ...extra,
  };
}

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
    const text = await new Promise<string>((resolve, reject) => {
      const q = spawn('qemu-system-riscv64', [
        '-machine', 'virt', '-cpu', 'rv64,h=false,zba=false,zbb=false,zbc=false,zbs=false', '-m', '128M', '-nographic',
        '-kernel', join(LINUX!, 'Image'), '-initrd', join(LINUX!, 'initramfs.cpio.gz'), '-append', 'console=ttyS0 vmctl=shell',
        '-global', 'virtio-mmio.force-legacy=false',
        '-drive', `file=${img},if=none,format=raw,id=d0`, '-device', 'virtio-blk-device,drive=d0', '-no-reboot',
      ], { stdio: ['pipe', 'pipe', 'pipe'] });
      let out = '';
      let sent = false;
      const timer = setTimeout(() => { q.kill('SIGKILL'); reject(new Error(`QEMU timed out:\n${out.slice(-2000)}`)); }, 120_000);
      q.stdout.on('data', (b: Buffer) => {
        out += b.toString('latin1');
        if (!sent && out.includes('shell on console')) {
          sent = true;
          q.stdin.write('mount -t ext2 /dev/vda /mnt && cat /mnt/h5.txt && echo "written by the guest on QEMU" > /mnt/qemu.txt; sync; umount /mnt; poweroff -f\n');
        }
      });
      q.on('exit', () => { clearTimeout(timer); resolve(out); });
    });
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
