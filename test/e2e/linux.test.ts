// The whole product on a real OS: Linux (fixtures/linux/build.sh output) under `firmware: builtin`,
// driven through create / start --wait-for / wait / (console / stop via shutdown.console) / delete.
// Skipped when the Linux guest has not been built on this machine.

import { copyFileSync, existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { LINUX, VmctlHome } from './harness.js';

const h = new VmctlHome();
afterAll(() => h.cleanup());

describe.skipIf(!LINUX)('Linux guest', () => {
  it('boots; its init powers off, or its shell runs a typed command and shuts down through shutdown.console', async () => {
    const disk = join(h.home, 'disk.img');
    if (existsSync(join(LINUX!, 'disk.img'))) copyFileSync(join(LINUX!, 'disk.img'), disk);
    const f = join(h.home, 'linux.yaml');
    writeFileSync(f, [
      'name: linux', 'cpus: 1', 'memory: 128MiB', 'boot:', '  firmware: builtin',
      `  kernel: ${join(LINUX!, 'Image')}`, `  initrd: ${join(LINUX!, 'initramfs.cpio.gz')}`, '  cmdline: "console=ttyS0"',
      ...(existsSync(disk) ? ['disks:', '  - path: disk.img'] : []),
      'shutdown:', '  console: "poweroff -f\\n"', '  timeout: 60s', '',
    ].join('\n'));
    expect((await h.run(['create', '-f', f])).code).toBe(0);
    const start = await h.run(['start', 'linux', '--wait-for', 'Run /init as init process', '--timeout', '5m'], { timeoutMs: 330_000 });
    expect(start.code, start.stderr).toBe(0);
    // fixtures/linux builds either a self-test init that powers off, or a shell: handle both.
    const selfTest = await h.run(['wait', 'linux', '--state', 'stopped', '--timeout', '60s'], { timeoutMs: 90_000 });
    if (selfTest.code === 0) {
      const info = JSON.parse((await h.run(['info', 'linux', '--json'])).stdout);
      expect(info.lastPower).toMatchObject({ kind: 'poweroff', code: 0, source: 'sbi' });
    } else {
      expect(selfTest.code).toBe(124);
      // Shell arithmetic: the answer can only come from the guest.
      const c = await h.run(['console', 'linux', '--until', 'hello-from-42', '--timeout', '60s'], { input: 'echo hello-from-$((6*7))\n' });
      expect(c.stdout).toContain('hello-from-42');
      const stop = await h.run(['stop', 'linux', '--json'], { timeoutMs: 120_000 });
      expect(stop.code).toBe(0);
      expect(JSON.parse(stop.stdout)).toMatchObject({ path: 'guest-poweroff', state: 'stopped', lastPower: { kind: 'poweroff', code: 0, source: 'sbi' } });
    }
    expect((await h.run(['logs', 'linux'])).stdout).toContain('Run /init as init process');
    expect((await h.run(['delete', 'linux'])).code).toBe(0);
    if (existsSync(join(LINUX!, 'disk.img'))) expect(existsSync(disk)).toBe(true); // a pre-existing image stays
  }, 400_000);
});
