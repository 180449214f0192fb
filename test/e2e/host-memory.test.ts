// Host memory through the real CLI and daemon: `start` is refused (exit 5, the figures) past
// host.memory × host.overcommit; a guest that touches more memory than the host has for VMs
// waits, is then paused with the reason `memory` (info shows it), cannot be resumed by hand, and
// still stops at once; the daemon lives on, also when the hart that waits runs on a hart thread.
// Guests: fixtures/demo loop.elf, touch.elf and touch-hart1.elf.

import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DEMO, until, VmctlHome } from './harness.js';

const homes: VmctlHome[] = [];
afterAll(async () => { for (const h of homes) await h.cleanup(); });

function home(config: string): VmctlHome {
  const h = new VmctlHome();
  homes.push(h);
  writeFileSync(join(h.home, 'config.yaml'), config);
  return h;
}

function vmFile(h: VmctlHome, name: string, memory: string, elf: string, cpus = 1): string {
  const f = join(h.home, `${name}.yaml`);
  writeFileSync(f, `name: ${name}\nmemory: ${memory}\ncpus: ${cpus}\nboot:\n  kernel: ${join(DEMO, elf)}\n`);
  return f;
}

describe('admission: host.memory × host.overcommit', () => {
  it('four 1GiB VMs start on host.memory 2GiB with overcommit 2; a fifth is refused with exit 5 and the figures', async () => {
    const h = home('host:\n  memory: 2GiB\n  overcommit: 2\n');
    for (const n of [1, 2, 3, 4, 5]) expect((await h.run(['create', '-f', vmFile(h, `v${n}`, '1GiB', 'loop.elf')])).code).toBe(0);
    for (const n of [1, 2, 3, 4]) {
      const r = await h.run(['start', `v${n}`]);
      expect(r.code, r.stderr).toBe(0);
    }
    const fifth = await h.run(['start', 'v5']);
    expect(fifth.code).toBe(5);
    expect(fifth.stderr).toContain('not enough host memory to start VM v5: it asks for 1GiB, the running VMs are configured with 4GiB (v1 1GiB, v2 1GiB, v3 1GiB, v4 1GiB), and the limit is 4GiB (host.memory 2GiB from host.memory in config.yaml × host.overcommit 2)');
    expect(fifth.stderr).toContain('stop a VM, give this one less memory, or raise host.overcommit or host.memory in config.yaml');
    expect(JSON.parse((await h.run(['info', 'v5', '--json'])).stdout).state).toBe('stopped');
    // The running VMs hold only what their guests touched, never more than they are configured with.
    const info = JSON.parse((await h.run(['info', 'v1', '--json'])).stdout);
    expect(info.memory.residentBytes).toBeLessThan(16 * 1024 * 1024);
    // stats: the same memory keys as info --json, for every VM; a stopped one has no host figures.
    const stats = await h.run(['stats', '--json']);
    expect(stats.code, stats.stderr).toBe(0);
    const all = stats.stdout.trim().split('\n').map((l) => JSON.parse(l) as { name: string; state: string; memory: Record<string, unknown>; disks: unknown[] });
    expect(all.map((v) => [v.name, v.state])).toEqual([['v1', 'running'], ['v2', 'running'], ['v3', 'running'], ['v4', 'running'], ['v5', 'stopped']]);
    expect(Object.keys(all[0].memory)).toEqual(Object.keys(info.memory));
    expect(all[0].memory.residentBytes).toEqual(expect.any(Number));
    expect([all[4].memory.configuredBytes, all[4].memory.residentBytes]).toEqual([1024 ** 3, null]);
    const table = await h.run(['stats', 'v1', 'v5']);
    expect(table.code, table.stderr).toBe(0);
    const lines = table.stdout.split('\n');
    expect(lines[0].split(/\s{2,}/)).toEqual(['NAME', 'STATE', 'CPU%', 'PER HART', 'MIPS', 'SHARES', 'CAP', 'HELD', 'UPTIME',
      'CONFIGURED', 'RESIDENT', 'TARGET', 'ACTUAL', 'GUEST FREE', 'AVAILABLE', 'FAULTS MAJ/MIN', 'SWAP IN/OUT']);
    // The CPU columns, then memory. No balloon driver in this guest: its own figures are "-".
    expect(lines[1]).toMatch(/^v1\s+running\s+(\S+\s+){3}100\s+100%\s+\S+\s+\S+\s+1GiB\s+\S+\s+1GiB\s+1GiB\s+-\s+-\s+-\s+-\s*$/);
    expect(lines[2]).toMatch(/^v5\s+stopped\s+-\s+-\s+-\s+100\s+100%\s+-\s+-\s+1GiB(\s+-){7}\s*$/);
    expect((await h.run(['stats', 'nosuch'])).code).toBe(4);
    // Once one stops, the fifth fits.
    expect((await h.run(['stop', 'v1'])).code).toBe(0);
    expect((await h.run(['start', 'v5'])).code).toBe(0);
  }, 120_000);
});

describe.each([1, 2])('a guest that needs more memory than the host has for VMs (cpus: %i)', (cpus) => {
  it('waits, is paused with the reason memory, cannot be resumed by hand, and stops at once', async () => {
    // 256MiB for the host: after the daemon's 96MiB and the VM thread's 64MiB, 96MiB for guest RAM
    // (with 2 harts, 32MiB more for hart 1's thread; the walk then runs on hart 1, which asks the
    // VM thread for each new chunk: that thread waits, and the hart waits on it).
    const h = home(`host:\n  memory: ${256 + (cpus - 1) * 32}MiB\n  overcommit: 4\n`);
    expect((await h.run(['create', '-f', vmFile(h, 'hungry', '512MiB', cpus === 1 ? 'touch.elf' : 'touch-hart1.elf', cpus)])).code).toBe(0);
    expect((await h.run(['start', 'hungry'])).code).toBe(0);
    const w = await h.run(['wait', 'hungry', '--state', 'paused', '--timeout', '90s'], { timeoutMs: 120_000 });
    expect(w.code, w.stderr).toBe(0);
    const info = JSON.parse((await h.run(['info', 'hungry', '--json'])).stdout);
    expect(info.state).toBe('paused');
    expect(info.pauseReason).toBe('memory');
    expect((await h.run(['info', 'hungry'])).stdout).toMatch(/State:\s+paused \(waiting for host memory\)/);
    const log = readFileSync(join(h.home, 'vmd.log'), 'utf8');
    expect(log).toMatch(/vm hungry: waits for host memory: its guest touched new memory while the VMs hold 96MiB of the 96MiB they may/);
    expect(log).toContain('vm hungry: still no host memory after 10 s; paused until there is');
    // The guest got as far as the memory there was, and no further.
    const out = (await h.run(['logs', 'hungry'])).stdout;
    expect(out).toContain('touched 80 MiB');
    expect(out).not.toContain('touched all');
    const resume = await h.run(['resume', 'hungry']);
    expect(resume.code).toBe(5);
    expect(resume.stderr).toContain('VM hungry is paused because host memory is short; it runs again by itself once memory is free');
    const t0 = Date.now();
    const stop = await h.run(['stop', 'hungry']);
    expect(stop.code, stop.stderr).toBe(0);
    expect(Date.now() - t0).toBeLessThan(30_000);
    expect(JSON.parse((await h.run(['info', 'hungry', '--json'])).stdout)).toMatchObject({ state: 'stopped', pauseReason: null });
    expect((await h.run(['daemon', 'status'])).code).toBe(0);
    await until(() => readFileSync(join(h.home, 'vmd.log'), 'utf8').includes('vm hungry: stopped while it waited for host memory'), 10_000, 'the log line');
  }, 180_000);
});
