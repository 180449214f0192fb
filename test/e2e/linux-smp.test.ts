// The Linux test guest with 4 harts in parallel (issue 12): it sees 4 CPUs, 4 CPU-bound processes
// (sha256sum) all hash correctly, every CPU of the guest does part of the work (/proc/stat), and
// on the host every hart's thread runs (`stats --json`'s per-hart CPU while they hash). How much
// sooner 4 harts finish than 1 is printed, not asserted: on a shared 2-core host it moved between
// 0.75x and 1.5x once the wasm tier made 1 hart faster (docs/harts.md has figures measured alone).
// Timed inside the guest (/proc/uptime), so boot and console do not count. Skipped without the
// Linux test guest.
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { writeFileSync } from 'node:fs';
import { LINUX, VmctlHome } from './harness.js';

const h = new VmctlHome();
afterAll(() => h.cleanup());

/** SHA-256 of 4 MiB of zeros. */
const ZEROS_4M = 'bb9f8df61474d25e71fa00722318cd387396ca1736605e1248821cc0de3d3af8';

interface Run { seconds: number; cpuTicks: number[]; hartCpuMax: number[] }

/** Boots the guest with `cpus` harts, runs 4 sha256sum of 4 MiB at once; how long they took
 *  (guest s), each guest CPU's user+system ticks over them, and each hart thread's highest host CPU
 *  % `stats` showed meanwhile. */
async function fourHashes(cpus: number): Promise<Run> {
  const name = `smp${cpus}`;
  const f = join(h.home, `${name}.yaml`);
  writeFileSync(f, [`name: ${name}`, `cpus: ${cpus}`, 'memory: 256MiB', 'boot:', '  firmware: builtin',
    `  kernel: ${join(LINUX!, 'Image')}`, `  initrd: ${join(LINUX!, 'initramfs.cpio.gz')}`, '  cmdline: "console=ttyS0 vmctl=shell"', ''].join('\n'));
  expect((await h.run(['create', '-f', f])).code).toBe(0);
  const start = await h.run(['start', name, '--wait-for', 'vmctl-guest:/# ', '--timeout', '5m'], { timeoutMs: 330_000 });
  expect(start.code, start.stderr).toBe(0);
  const n = await h.run(['exec', name, '--', 'grep -c ^processor /proc/cpuinfo'], { timeoutMs: 120_000 });
  expect(n.stdout.trim()).toBe(String(cpus));
  // Per CPU, user + nice + system ticks before and after; each hash's sum is printed.
  const ticks = 'grep "^cpu[0-9]" /proc/stat | while read c u n s rest; do echo "$c $((u+n+s))"; done';
  const script = `head -c 4194304 /dev/zero > /tmp/z; ${ticks} | sed s/^/before\\ /; t0=$(cut -d" " -f1 /proc/uptime); `
    + 'for i in 1 2 3 4; do sha256sum /tmp/z & done; wait; t1=$(cut -d" " -f1 /proc/uptime); '
    + `${ticks} | sed s/^/after\\ /; echo "took $t0 $t1"`;
  const hartCpuMax = new Array<number>(cpus).fill(0);
  let hashing = true;
  const sampling = (async () => {
    while (hashing) {
      const s = await h.run(['stats', name, '--json'], { timeoutMs: 30_000 });
      if (s.code === 0) {
        const v = JSON.parse(s.stdout) as { hartCpuPercent: number[] | null }; // one NDJSON line: the VM's
        v.hartCpuPercent?.forEach((p, i) => { hartCpuMax[i] = Math.max(hartCpuMax[i], p); });
      }
      await new Promise((r) => setTimeout(r, 500));
    }
  })();
  const r = await h.run(['exec', name, '--timeout', '10m', '--', script], { timeoutMs: 660_000 });
  hashing = false;
  await sampling;
  expect(r.code, r.stdout + r.stderr).toBe(0);
  expect(r.stdout.match(new RegExp(`^${ZEROS_4M}  /tmp/z$`, 'gm'))?.length, r.stdout).toBe(4);
  const m = /took ([\d.]+) ([\d.]+)/.exec(r.stdout);
  expect(m, r.stdout).not.toBeNull();
  const at = (when: string): Map<string, number> => new Map([...r.stdout.matchAll(new RegExp(`^${when} (cpu\\d+) (\\d+)$`, 'gm'))].map((x) => [x[1], Number(x[2])]));
  const before = at('before'), after = at('after');
  expect(before.size, r.stdout).toBe(cpus);
  const cpuTicks = [...before].map(([c, t]) => (after.get(c) ?? t) - t);
  expect((await h.run(['stop', name, '--force'])).code).toBe(0);
  return { seconds: Number(m![2]) - Number(m![1]), cpuTicks, hartCpuMax };
}

describe.skipIf(!LINUX)('Linux with harts in parallel', () => {
  it('4 harts share 4 CPU-bound processes: every guest CPU and every hart thread works', async () => {
    const four = await fourHashes(4);
    const one = await fourHashes(1);
    process.stderr.write(`4 x sha256sum of 4 MiB: 1 hart ${one.seconds.toFixed(2)} s, 4 harts ${four.seconds.toFixed(2)} s `
      + `(${(one.seconds / four.seconds).toFixed(2)}x); guest CPU ticks per CPU ${four.cpuTicks.join(' ')}; `
      + `hart threads' highest CPU % ${four.hartCpuMax.join(' ')}\n`);
    // The kernel spread the work: each CPU ran for at least a tenth of the busiest one's time.
    const busiest = Math.max(...four.cpuTicks);
    expect(busiest).toBeGreaterThan(0);
    for (const t of four.cpuTicks) expect(t, `ticks per CPU: ${four.cpuTicks.join(' ')}`).toBeGreaterThanOrEqual(busiest / 10);
    // And on the host each hart ran on a thread that used CPU while they hashed.
    for (const p of four.hartCpuMax) expect(p, `per-hart CPU %: ${four.hartCpuMax.join(' ')}`).toBeGreaterThan(5);
  }, 1_500_000);
});
