// `vmctl daemon stop` and SIGTERM stop running VMs as `vmctl stop` does (shutdown.console, then
// power-off after the timeout) and say which VM went which way; --force powers them off at once.

import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { alive, DEMO, until, VmctlHome } from './harness.js';

const homes: VmctlHome[] = [];
afterAll(async () => {
  for (const h of homes) await h.cleanup();
});

/** A home with three running VMs: `echo` obeys shutdown.console, `deaf` ignores it (1 s timeout),
 *  `plain` has none. */
async function threeRunning(): Promise<VmctlHome> {
  const h = new VmctlHome();
  homes.push(h);
  const deaf = join(h.home, 'deaf.yaml');
  writeFileSync(deaf, `name: deaf\nmemory: 16MiB\nboot:\n  kernel: ${join(DEMO, 'loop.elf')}\nshutdown:\n  console: "poweroff\\n"\n  timeout: 1s\n`);
  await h.ok(['create', '-f', join(DEMO, 'echo.yaml')]);
  await h.ok(['create', '-f', deaf]);
  await h.ok(['create', '-f', join(DEMO, 'loop.yaml'), '--name', 'plain']);
  await h.ok(['start', 'echo', '--wait-for', 'guest ready', '--timeout', '60s']);
  await h.ok(['start', 'deaf', '--wait-for', 'tick 1', '--timeout', '60s']);
  await h.ok(['start', 'plain']);
  return h;
}

async function states(h: VmctlHome): Promise<Record<string, string>> {
  return Object.fromEntries(JSON.parse(await h.ok(['list', '--json'])).map((v: { name: string; state: string }) => [v.name, v.state]));
}

describe('daemon stop', () => {
  it('types each guest its shutdown command, powers off the ones that do not obey, and says so', async () => {
    const h = await threeRunning();
    const pid = h.pid()!;
    const r = await h.run(['daemon', 'stop']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.split('\n').sort()).toEqual([
      '',
      `Stopped the daemon (pid ${pid})`,
      'Powered off VM plain',
      'Typed the shutdown command; VM echo powered off by itself',
      'VM deaf did not power off in time after the shutdown command; powered off',
    ].sort());
    expect(alive(pid)).toBe(false);
    // The echo guest read the command and powered off itself (its serial log and power event say so).
    expect(await h.ok(['logs', 'echo'])).toMatch(/echo: poweroff\npowering off\n$/);
    expect((await h.info('echo')).lastPower).toMatchObject({ kind: 'poweroff', code: 0, source: 'test-finisher' });
    expect(await states(h)).toEqual({ echo: 'stopped', deaf: 'stopped', plain: 'stopped' });
  });

  it('--force powers every VM off at once (the guests are not asked)', async () => {
    const h = await threeRunning();
    const r = await h.run(['daemon', 'stop', '--force', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.stopped.sort((a: { name: string }, b: { name: string }) => a.name.localeCompare(b.name)))
      .toEqual([{ name: 'deaf', path: 'poweroff' }, { name: 'echo', path: 'poweroff' }, { name: 'plain', path: 'poweroff' }]);
    expect(await h.ok(['logs', 'echo'])).not.toContain('powering off');
    expect(await states(h)).toEqual({ echo: 'stopped', deaf: 'stopped', plain: 'stopped' });
  });

  it('with no VM running says so', async () => {
    const h = new VmctlHome();
    homes.push(h);
    await h.ok(['daemon', 'start']);
    const r = await h.run(['daemon', 'stop']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^Stopped the daemon \(pid \d+, no VM was running\)\n$/);
  });
});

describe('SIGTERM to the daemon', () => {
  it('does what daemon stop does: the guests are shut down, the rest powered off, all stopped (not aborted)', async () => {
    const h = await threeRunning();
    const pid = h.pid()!;
    process.kill(pid, 'SIGTERM');
    await until(() => !alive(pid), 30_000, 'the daemon to exit');
    const log = readFileSync(join(h.home, 'vmd.log'), 'utf8');
    expect(log).toContain('shutting down (SIGTERM)');
    expect(log).toContain("vm echo: stopped for the daemon's shutdown (guest-poweroff)");
    expect(log).toContain("vm deaf: stopped for the daemon's shutdown (timeout-poweroff)");
    expect(log).toContain("vm plain: stopped for the daemon's shutdown (poweroff)");
    expect(await h.ok(['logs', 'echo'])).toMatch(/echo: poweroff\npowering off\n$/);
    expect(await states(h)).toEqual({ echo: 'stopped', deaf: 'stopped', plain: 'stopped' }); // a new daemon
  });
});
