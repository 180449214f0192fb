// The memory balloon with a 2-hart Linux guest (hart 1 on a thread of its own): RAM chunks are
// made as the guest touches them (resident memory after boot is what it touched, not its whole
// RAM), and chunks the guest gives up go back to the host from every thread (docs/guest-ram.md
// (b)): freed tmpfs pages (free page reporting) and an inflated balloon make the VM's resident
// memory and the daemon's RSS fall; memory given back is usable again, from both harts; a save
// and start keep the guest whole. Skipped when the Linux guest has not been built on this machine.

import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LINUX, until, VmctlHome } from './harness.js';

const MiB = 1024 * 1024;
const h = new VmctlHome();
afterAll(() => h.cleanup());

interface Memory { residentBytes: number | null; targetBytes: number | null; actualBytes: number | null; balloonBytes: number | null; reportedFreeBytes: number | null }

async function memory(): Promise<Memory> {
  const r = await h.run(['stats', 'bal2', '--json']);
  expect(r.code, r.stderr).toBe(0);
  return (JSON.parse(r.stdout) as { memory: Memory }).memory;
}

async function exec(cmd: string): Promise<string> {
  const r = await h.run(['exec', 'bal2', '--', cmd], { timeoutMs: 180_000 });
  expect(r.code, `${cmd}: ${r.stdout}${r.stderr}`).toBe(0);
  return r.stdout;
}

const RAM = 512 * MiB;

/** Guest memory free in blocks of 4 MiB or more (orders >= 10 of /proc/buddyinfo, 4 KiB pages):
 *  what Linux's free page reporting can report on this kernel. */
async function reportableFree(): Promise<number> {
  let bytes = 0;
  for (const line of (await exec('cat /proc/buddyinfo')).split('\n')) {
    const m = /zone\s+\S+\s+(.*)$/.exec(line);
    if (m) m[1].trim().split(/\s+/).forEach((n, order) => { if (order >= 10) bytes += Number(n) * 4096 * 2 ** order; });
  }
  return bytes;
}

describe.skipIf(!LINUX)('the memory balloon with a 2-hart Linux guest (memory: 512MiB)', () => {
  beforeAll(async () => {
    const f = join(h.home, 'bal2.yaml');
    writeFileSync(f, [
      'name: bal2', 'cpus: 2', 'memory: {size: 512MiB, min: 64MiB}', 'boot:', '  firmware: builtin',
      `  kernel: ${join(LINUX!, 'Image')}`, `  initrd: ${join(LINUX!, 'initramfs.cpio.gz')}`, '  cmdline: "console=ttyS0 vmctl=shell"',
      'balloon:', '  statsInterval: 1s', '  freePageReporting: true',
      'shutdown:', '  console: "poweroff -f\\n"', '',
    ].join('\n'));
    expect((await h.run(['create', '-f', f])).code).toBe(0);
    const start = await h.run(['start', 'bal2', '--wait-for', "shell on console; 'poweroff -f' ends the VM", '--timeout', '5m'], { timeoutMs: 330_000 });
    expect(start.code, start.stderr).toBe(0);
    await exec('dmesg -n 1; mount -t tmpfs none /mnt');
    expect(await exec('grep -c ^processor /proc/cpuinfo')).toBe('2\n');
  }, 400_000);

  it('after boot the VM holds only the chunks its guest touched', async () => {
    const m = await until(async () => { const x = await memory(); return x.residentBytes !== null ? x : null; }, 30_000, 'figures') as Memory;
    expect(m.residentBytes).toBeLessThan(200 * MiB);
  });

  it('memory filled from both harts and freed goes back to the host: every free block the guest can report is released, resident and daemon RSS fall', async () => {
    const before = h.daemonRss();
    // Linux reports free blocks of 4 MiB only (page_reporting_order: MAX_ORDER - 1 on this kernel,
    // which has no hugetlbfs). How much of the freed memory merges back into such blocks is the
    // guest's business: the two writers' pages come interleaved with slab and page tables the
    // kernel keeps, and in 3 of 8 fill/free rounds on a loaded host 60-110 MiB, once nearly all
    // of it, stayed in smaller free blocks, reported by nobody (QEMU would not release them
    // either). What the device owes: every 4 MiB block free in the guest is out of the VM's
    // resident memory (the 2 MiB chunks it covers are dropped), i.e. resident <= RAM - (free
    // memory in blocks of order >= 10), once the guest's reporting (in batches every 2 s, on its
    // clock: slow on a loaded host) has caught up. That is checked in every round; a round in
    // which the guest could report less than 200 of the 300 MiB it freed is tried again (4 at
    // most; the next test's balloon bound needs a guest whose memory is not left spread over
    // the chunks: once in CI, after a round that gave back 110 MiB, resident stayed above the
    // target + 32 MiB there), and the test wants more than 64 MiB back in one round.
    let last: Memory | null = null;
    let reportable = 0, fell = 0, high = 0;
    let after: Memory | null = null;
    for (let round = 1; round <= 4 && fell <= 200 * MiB; round++) {
      // Two writers at once (the scheduler puts them on both harts), 150 MiB each.
      await exec('(dd if=/dev/zero of=/mnt/a bs=1M count=150 2>/dev/null & dd if=/dev/zero of=/mnt/b bs=1M count=150 2>/dev/null; wait); sync');
      const full = await until(async () => { const x = await memory(); return (x.residentBytes ?? 0) > 300 * MiB ? x : null; }, 30_000, 'resident memory to pass 300MiB') as Memory;
      expect(h.daemonRss()).toBeGreaterThan(before + 250 * MiB);
      high = h.daemonRss();
      await exec('rm /mnt/a /mnt/b');
      const t0 = Date.now();
      after = await until(async () => {
        reportable = await reportableFree();
        last = await memory();
        if (last.residentBytes! > RAM - reportable + 16 * MiB) return null;
        return full.residentBytes! - last.residentBytes! > 200 * MiB || Date.now() - t0 > 20_000 ? last : null;
      }, 120_000, `round ${round}: resident memory to fall to the RAM less the guest's free 4 MiB blocks (+16MiB)`)
        .catch((e: Error) => { throw new Error(`${e.message}; free in 4 MiB blocks: ${(reportable / MiB).toFixed(0)} MiB; the last figures: ${JSON.stringify(last)}`); }) as Memory;
      fell = full.residentBytes! - after.residentBytes!;
      console.log(`round ${round}: resident ${(full.residentBytes! / MiB).toFixed(0)} -> ${(after.residentBytes! / MiB).toFixed(0)} MiB, guest free in 4 MiB blocks ${(reportable / MiB).toFixed(0)} MiB`);
    }
    expect(fell, `resident fell by ${(fell / MiB).toFixed(0)} MiB`).toBeGreaterThan(64 * MiB);
    expect(after!.reportedFreeBytes).toBeGreaterThan(fell);
    // Every thread let the chunks go (the hart thread's copies too): the process's RSS falls with
    // the resident memory. The wait is generous, and a timeout says where things stood.
    let rss = 0;
    await until(async () => { rss = h.daemonRss(); last = await memory(); return rss < high - fell + 48 * MiB; }, 90_000, 'the daemon\'s RSS to fall')
      .catch((e: Error) => { throw new Error(`${e.message}: ${(rss / MiB).toFixed(0)} MiB, from ${(high / MiB).toFixed(0)} MiB full, resident fell by ${(fell / MiB).toFixed(0)} MiB; the VM's last figures: ${JSON.stringify(last)}`); });
  }, 600_000);

  it('set --memory-target 128MiB: resident falls to at most the target + 32MiB; raised again, the guest fills 300MiB without errors', async () => {
    await exec('dd if=/dev/zero of=/mnt/g bs=1M count=200 2>/dev/null'); // the guest holds memory again first
    await until(async () => ((await memory()).residentBytes ?? 0) > 200 * MiB, 30_000, 'resident memory to pass 200MiB');
    await exec('rm /mnt/g');
    expect((await h.run(['set', 'bal2', '--memory-target', '128MiB'])).code).toBe(0);
    const m = await until(async () => { const x = await memory(); return x.balloonBytes === 384 * MiB ? x : null; }, 120_000, 'the balloon to reach 384MiB') as Memory;
    expect(m.actualBytes).toBe(128 * MiB);
    let seen: Memory | null = null;
    await until(async () => { seen = await memory(); return (seen.residentBytes ?? Infinity) <= 160 * MiB; }, 30_000, 'resident memory to fall to the target + 32MiB')
      .catch(async (e: Error) => { throw new Error(`${e.message}; the last figures: ${JSON.stringify(seen)}; the guest's /proc/buddyinfo: ${await exec('cat /proc/buddyinfo')}`); });
    expect((await h.run(['set', 'bal2', '--memory-target', '512MiB'])).code).toBe(0);
    await until(async () => (await memory()).balloonBytes === 0, 120_000, 'the balloon to empty');
    expect(await exec('(dd if=/dev/zero of=/mnt/a bs=1M count=150 2>&1 | tail -1 & dd if=/dev/zero of=/mnt/b bs=1M count=150 2>&1 | tail -1; wait); rm /mnt/a /mnt/b'))
      .toMatch(/150\+0 records out[^]*150\+0 records out/);
  }, 300_000);

  it('a save and start keep the guest whole, and the balloon goes on working', async () => {
    await exec('head -c 2000000 /dev/urandom > /mnt/keep; sha256sum /mnt/keep > /mnt/keep.sum');
    expect((await h.run(['set', 'bal2', '--memory-target', '256MiB'])).code).toBe(0);
    await until(async () => (await memory()).balloonBytes === 256 * MiB, 120_000, 'the balloon to reach 256MiB');
    // Resident memory stays near the target (the guest holds the pages), then the saved state
    // has only the chunks the guest did not give up.
    const save = await h.run(['save', 'bal2'], { timeoutMs: 120_000 });
    expect(save.code, save.stderr).toBe(0);
    const start = await h.run(['start', 'bal2'], { timeoutMs: 120_000 });
    expect(start.code, start.stderr).toBe(0);
    expect(await exec('sha256sum -c /mnt/keep.sum')).toContain('/mnt/keep: OK');
    expect((await h.run(['set', 'bal2', '--memory-target', '512MiB'])).code).toBe(0);
    await until(async () => (await memory()).balloonBytes === 0, 120_000, 'the balloon to empty');
    expect(await exec('dd if=/dev/zero of=/mnt/h bs=1M count=50 2>&1 | tail -1; rm /mnt/h; echo healthy')).toMatch(/50\+0 records out[^]*healthy/);
    expect((await h.run(['stop', 'bal2'], { timeoutMs: 120_000 })).code).toBe(0);
    expect(readFileSync(join(h.home, 'vmd.log'), 'utf8')).not.toMatch(/virtio-balloon.*(needs reset|not in the balloon)|hart \d thread/);
  }, 400_000);
});
