// The Linux test guest with 4 harts in parallel (issue 12): it sees 4 CPUs, and 4 CPU-bound
// processes (sha256sum) finish sooner than on the same guest with 1 hart: at least 1.4x (the
// host is shared and noisy; docs/harts.md has the measured figures). Timed inside the guest
// (/proc/uptime), so boot and console do not count. Skipped without the Linux test guest.
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { writeFileSync } from 'node:fs';
import { LINUX, VmctlHome } from './harness.js';

const h = new VmctlHome();
afterAll(() => h.cleanup());

/** Boots the guest with `cpus` harts and returns how long (s, guest time) 4 sha256sum of 4 MiB took
 *  (with 1 MiB each, starting the processes weighed as much as hashing: 1.06x measured). */
async function fourHashes(cpus: number): Promise<number> {
  const name = `smp${cpus}`;
  const f = join(h.home, `${name}.yaml`);
  writeFileSync(f, [`name: ${name}`, `cpus: ${cpus}`, 'memory: 256MiB', 'boot:', '  firmware: builtin',
    `  kernel: ${join(LINUX!, 'Image')}`, `  initrd: ${join(LINUX!, 'initramfs.cpio.gz')}`, '  cmdline: "console=ttyS0 vmctl=shell"', ''].join('\n'));
  expect((await h.run(['create', '-f', f])).code).toBe(0);
  const start = await h.run(['start', name, '--wait-for', 'vmctl-guest:/# ', '--timeout', '5m'], { timeoutMs: 330_000 });
  expect(start.code, start.stderr).toBe(0);
  const n = await h.run(['exec', name, '--', 'grep -c ^processor /proc/cpuinfo'], { timeoutMs: 120_000 });
  expect(n.stdout.trim()).toBe(String(cpus));
  const script = 'head -c 4194304 /dev/zero > /tmp/z; t0=$(cut -d" " -f1 /proc/uptime); '
    + 'for i in 1 2 3 4; do sha256sum /tmp/z > /dev/null & done; wait; t1=$(cut -d" " -f1 /proc/uptime); echo "took $t0 $t1"';
  const r = await h.run(['exec', name, '--timeout', '10m', '--', script], { timeoutMs: 660_000 });
  expect(r.code, r.stdout + r.stderr).toBe(0);
  const m = /took ([\d.]+) ([\d.]+)/.exec(r.stdout);
  expect(m, r.stdout).not.toBeNull();
  expect((await h.run(['stop', name, '--force'])).code).toBe(0);
  return Number(m![2]) - Number(m![1]);
}

describe.skipIf(!LINUX)('Linux with harts in parallel', () => {
  it('4 harts run 4 CPU-bound processes at least 1.4x faster than 1 hart', async () => {
    const four = await fourHashes(4);
    const one = await fourHashes(1);
    process.stderr.write(`4 x sha256sum of 4 MiB: 1 hart ${one.toFixed(2)} s, 4 harts ${four.toFixed(2)} s (${(one / four).toFixed(2)}x)\n`);
    expect(one / four).toBeGreaterThanOrEqual(1.4);
  }, 1_500_000);
});
