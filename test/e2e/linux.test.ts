// The whole product on a real OS: Linux (fixtures/linux/build.sh output) under `firmware: builtin`,
// driven through create / start --wait-for / wait / (console / stop via shutdown.console) / delete.
// Skipped when the Linux guest has not been built on this machine.

import { spawn } from 'node:child_process';
import { copyFileSync, existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { collect, haveScript, LINUX, onTty, ROOT, VmctlHome } from './harness.js';

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

describe.skipIf(!LINUX)('npm run demo:linux (scripts/demo-linux.sh; npm adds a build before it)', () => {
  const demo = join(ROOT, 'scripts', 'demo-linux.sh');
  const env = { VMCTL_LINUX_DIR: LINUX! };

  it('without a terminal: boots a throw-away VM to the shell prompt and exits 0', async () => {
    const child = spawn('sh', [demo], { env: h.env(env), stdio: ['pipe', 'pipe', 'pipe'] });
    const r = await collect(child, '', 300_000);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain(`demo:linux: using the Linux guest in ${LINUX}`);
    expect(r.stdout).toContain('vmctl-linux: shell on console');
    expect(r.stdout).toMatch(/vmctl-guest:\/# /);
    expect(JSON.parse((await h.run(['list', '--json'])).stdout).map((v: { name: string }) => v.name)).not.toContain('linux-demo');
  }, 330_000);

  it.skipIf(!haveScript)('on a terminal: a shell on the console that runs what is typed; poweroff -f ends the VM', async () => {
    const prompt = /vmctl-guest:\/# /;
    const r = await onTty(h, [], [
      { waitFor: prompt, send: 'echo hi-$((6*7))\r', timeoutMs: 300_000 },
      { waitFor: /hi-42/, send: 'poweroff -f\r' },
    ], { ...env, NO_COLOR: '1' }, undefined, ['sh', demo]);
    expect(r.code, r.out).toBe(0);
    expect(r.out).toContain('hi-42');
    expect(r.out).toContain('VM linux-demo is stopped.');
    expect(JSON.parse((await h.run(['info', 'linux-demo', '--json'])).stdout).state).toBe('stopped');
    expect((await h.run(['delete', 'linux-demo'])).code).toBe(0);
  }, 330_000);
});
