// The memory balloon with a real guest: Linux's stock virtio_balloon driver binds to vmctl's
// device; memory the guest frees goes back to the host (free page reporting) and the daemon's RSS
// really falls; `vmctl set --memory-target` inflates the balloon (the guest's free memory falls,
// MemTotal stays with deflateOnOom, the VM's resident memory falls to the target) and gives the
// memory back. Skipped when the Linux guest has not been built on this machine.

import { copyFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LINUX, until, VmctlHome } from './harness.js';

const MiB = 1024 * 1024;
const h = new VmctlHome();
afterAll(() => h.cleanup());

interface Memory {
  configuredBytes: number; minBytes: number; residentBytes: number | null; targetBytes: number | null; actualBytes: number | null;
  balloonBytes: number | null; guestTotalBytes: number | null; guestFreeBytes: number | null; guestAvailableBytes: number | null;
  reportedFreeBytes: number | null;
}

async function memory(name = 'bal'): Promise<Memory> {
  const r = await h.run(['info', name, '--json']);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout).memory as Memory;
}

async function exec(cmd: string): Promise<string> {
  const r = await h.run(['exec', 'bal', '--', cmd], { timeoutMs: 180_000 });
  expect(r.code, `${cmd}: ${r.stdout}${r.stderr}`).toBe(0);
  return r.stdout;
}

/** `free -m`'s Mem: line as numbers: total, used, free, shared, buff/cache, available. */
async function free(): Promise<number[]> {
  const line = (await exec('free -m')).split('\n').find((l) => l.startsWith('Mem:'))!;
  return line.split(/\s+/).slice(1).map(Number);
}

describe.skipIf(!LINUX)('the memory balloon with a Linux guest (memory: 1GiB)', () => {
  beforeAll(async () => {
    const f = join(h.home, 'bal.yaml');
    if (existsSync(join(LINUX!, 'disk.img'))) copyFileSync(join(LINUX!, 'disk.img'), join(h.home, 'disk.img'));
    writeFileSync(f, [
      'name: bal', 'cpus: 1', 'memory: {size: 1GiB, min: 96MiB}', 'boot:', '  firmware: builtin',
      `  kernel: ${join(LINUX!, 'Image')}`, `  initrd: ${join(LINUX!, 'initramfs.cpio.gz')}`, '  cmdline: "console=ttyS0 vmctl=shell"',
      'balloon:', '  statsInterval: 1s',
      ...(existsSync(join(h.home, 'disk.img')) ? ['disks:', '  - path: disk.img'] : []),
      'shutdown:', '  console: "poweroff -f\\n"', '',
    ].join('\n'));
    expect((await h.run(['create', '-f', f])).code).toBe(0);
    const start = await h.run(['start', 'bal', '--wait-for', "shell on console; 'poweroff -f' ends the VM", '--timeout', '5m'], { timeoutMs: 330_000 });
    expect(start.code, start.stderr).toBe(0);
    await exec('dmesg -n 1; mount -t tmpfs none /mnt');
  }, 400_000);

  it('the guest\'s virtio_balloon driver binds, and its statistics arrive', async () => {
    expect(await exec('ls /sys/bus/virtio/drivers/virtio_balloon/ | grep -c virtio')).toBe('1\n');
    const m = await until(async () => { const x = await memory(); return x.guestTotalBytes !== null ? x : null; }, 30_000, 'guest statistics') as Memory;
    expect(m.guestTotalBytes).toBeGreaterThan(900 * MiB);
    expect(m.guestFreeBytes).toBeGreaterThan(800 * MiB);
    expect(m.targetBytes).toBe(1024 * MiB);
    expect(m.residentBytes).toBeLessThan(128 * MiB);
  });

  it.skipIf(!existsSync(join(LINUX ?? '', 'disk.img')))('vmctl stats: memory columns, and the requests the guest completed on its disk', async () => {
    await exec('dd if=/dev/vda of=/dev/null bs=64k count=16 2>/dev/null');
    type Stat = { name: string; memory: Memory; disks: { name: string; reads: number | null; readBytes: number | null; writes: number | null; flushes: number | null }[] };
    const s = await until(async () => {
      const all = (await h.run(['stats', '--json'])).stdout.trim().split('\n').map((l) => JSON.parse(l) as Stat);
      return all[0].disks[0].readBytes !== null && all[0].disks[0].readBytes >= MiB ? all[0] : null;
    }, 30_000, 'a MiB read from the disk in vmctl stats') as Stat;
    expect(s.name).toBe('bal');
    expect(s.memory.guestFreeBytes).toBeGreaterThan(0);
    expect(s.disks[0].reads).toBeGreaterThan(0);
    expect([typeof s.disks[0].writes, typeof s.disks[0].flushes]).toEqual(['number', 'number']);
    const table = (await h.run(['stats', 'bal'])).stdout;
    expect(table).toMatch(/^bal\s+running\s+(\S+\s+){3}100\s+100%\s+\S+\s+\S+\s+1GiB\s+\S+\s+1GiB\s+1GiB\s+\d+\S*\s+\d+\S*\s+\S+\s+\S+\s*$/m);
    expect(table).toMatch(/^bal\s+disk0\s+8MiB\s+\S+\s+rw\s+\d+ \(\S+\)\s+\d+ \(\S+\)\s+\d+\s*$/m);
  });

  it('memory the guest fills and frees goes back to the host: resident and daemon RSS fall (free page reporting)', async () => {
    const before = h.daemonRss();
    await exec('dd if=/dev/zero of=/mnt/f bs=1M count=400 2>/dev/null; sync');
    // The worker sends its figures every second: wait for the one taken after the write.
    await until(async () => ((await memory()).residentBytes ?? 0) > 400 * MiB, 30_000, 'resident memory to pass 400MiB');
    expect(h.daemonRss()).toBeGreaterThan(before + 350 * MiB);
    const high = h.daemonRss();
    await exec('rm /mnt/f');
    const after = await until(async () => { const x = await memory(); return x.residentBytes! < 150 * MiB ? x : null; }, 30_000, 'resident memory to fall') as Memory;
    expect(after.reportedFreeBytes).toBeGreaterThan(400 * MiB);
    await until(() => h.daemonRss() < high - 300 * MiB, 30_000, 'the daemon\'s RSS to fall');
  }, 240_000);

  it('set --memory-target inflates the balloon: the guest\'s free memory falls, MemTotal stays, resident falls to the target', async () => {
    await exec('dd if=/dev/zero of=/mnt/g bs=1M count=300 2>/dev/null; rm /mnt/g'); // touch memory again first
    const r = await h.run(['set', 'bal', '--memory-target', '128MiB']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('memory target 128MiB');
    const m = await until(async () => { const x = await memory(); return x.balloonBytes === 896 * MiB ? x : null; }, 120_000, 'the balloon to reach 896MiB') as Memory;
    expect(m.actualBytes).toBe(128 * MiB);
    expect(m.targetBytes).toBe(128 * MiB);
    expect(m.residentBytes).toBeLessThanOrEqual(160 * MiB);
    const [total, , freeMiB, , , available] = await free();
    expect(total).toBeGreaterThan(900); // deflateOnOom: Linux leaves MemTotal as it is
    expect(freeMiB).toBeLessThan(128);
    expect(available).toBeLessThan(128);
  }, 240_000);

  it('refuses a target below memory.min or above memory.size (exit 2) and a malformed size', async () => {
    const low = await h.run(['set', 'bal', '--memory-target', '64MiB']);
    expect(low.code).toBe(2);
    expect(low.stderr).toContain('memory target 64MiB for VM bal is outside 96MiB (memory.min) .. 1GiB (memory.size)');
    expect((await h.run(['set', 'bal', '--memory-target', '2GiB'])).code).toBe(2);
    const bad = await h.run(['set', 'bal', '--memory-target', 'lots']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--memory-target: "lots" is not a size');
    expect((await h.run(['set', 'nosuch', '--memory-target', '1GiB'])).code).toBe(4);
  });

  it('raising the target gives the memory back: the guest fills 600MiB again without errors', async () => {
    expect((await h.run(['set', 'bal', '--memory-target', '1GiB'])).code).toBe(0);
    await until(async () => (await memory()).balloonBytes === 0, 120_000, 'the balloon to empty');
    expect(await exec('dd if=/dev/zero of=/mnt/h bs=1M count=600 2>&1 | tail -1; rm /mnt/h')).toContain('600+0 records out');
  }, 240_000);

  it('a saved VM keeps its balloon: after save and start the target and the pages in it are there, and deflating works', async () => {
    expect((await h.run(['set', 'bal', '--memory-target', '256MiB'])).code).toBe(0);
    await until(async () => (await memory()).balloonBytes === 768 * MiB, 120_000, 'the balloon to reach 768MiB');
    const save = await h.run(['save', 'bal'], { timeoutMs: 120_000 });
    expect(save.code, save.stderr).toBe(0);
    const start = await h.run(['start', 'bal'], { timeoutMs: 120_000 });
    expect(start.code, start.stderr).toBe(0);
    const m = await until(async () => { const x = await memory(); return x.balloonBytes !== null ? x : null; }, 30_000, 'the balloon\'s figures') as Memory;
    expect([m.targetBytes, m.balloonBytes, m.actualBytes]).toEqual([256 * MiB, 768 * MiB, 256 * MiB]);
    expect(m.residentBytes).toBeLessThanOrEqual(300 * MiB);
    // The driver deflates the pages it put in before the save: the device knows them.
    expect((await h.run(['set', 'bal', '--memory-target', '1GiB'])).code).toBe(0);
    await until(async () => (await memory()).balloonBytes === 0, 120_000, 'the balloon to empty');
    expect(await exec('dd if=/dev/zero of=/mnt/h bs=1M count=600 2>&1 | tail -1; rm /mnt/h')).toContain('600+0 records out');
    expect(readFileSync(join(h.home, 'vmd.log'), 'utf8')).not.toMatch(/virtio-balloon.*(needs reset|not in the balloon)/);
  }, 400_000);

  it('a stopped VM has no memory target to move (exit 5)', async () => {
    expect((await h.run(['stop', 'bal'], { timeoutMs: 120_000 })).code).toBe(0);
    const r = await h.run(['set', 'bal', '--memory-target', '512MiB']);
    expect(r.code).toBe(5);
    expect(r.stderr).toContain('VM bal is stopped');
    const m = await memory();
    expect([m.residentBytes, m.balloonBytes, m.configuredBytes]).toEqual([null, null, 1024 * MiB]);
  }, 180_000);
});
