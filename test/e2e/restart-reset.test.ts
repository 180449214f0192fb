// `vmctl restart` (stop as `vmctl stop` does, then start; consoles stay attached) and `vmctl reset`
// (a hard reset, as the guest's own reset through the test finisher: a new boot at once).

import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { captureOutput, DEMO, sleep, until, VmctlHome } from './harness.js';

const h = new VmctlHome();
afterAll(() => h.cleanup());

describe('restart', () => {
  it('stops the guest with its shutdown command and boots it again; an attached console stays attached', async () => {
    await h.ok(['create', '-f', join(DEMO, 'echo.yaml')]);
    await h.ok(['start', 'echo', '--wait-for', 'guest ready', '--timeout', '60s']);
    const con = h.spawn(['console', 'echo']);
    const seen = captureOutput(con);
    let closed = false;
    con.on('close', () => { closed = true; });
    con.stdin!.write('before\n');
    await seen.waitFor(/echo: before/, 30_000);

    const r = await h.run(['restart', 'echo']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('Typed the shutdown command; VM echo powered off by itself; started it again (boot 2), state running\n');
    const i = await h.info('echo');
    expect(i).toMatchObject({ state: 'running', bootId: 2, lastPower: { kind: 'poweroff', code: 0 } });

    // The same console process sees the new boot and still types into it.
    await seen.waitFor(/echo: before\n[^]*powering off\n[^]*guest ready/, 30_000);
    con.stdin!.write('after\n');
    await seen.waitFor(/echo: after/, 30_000);
    expect(closed).toBe(false);

    // --force powers off instead of asking the guest.
    const f = await h.run(['restart', 'echo', '--force', '--json']);
    expect(f.code, f.stderr).toBe(0);
    expect(JSON.parse(f.stdout)).toMatchObject({ path: 'poweroff', state: 'running', bootId: 3 });
    expect(closed).toBe(false);

    // A plain stop ends the console (the VM is gone, no new boot follows).
    const exited = new Promise<number | null>((resolve) => con.on('close', (code) => resolve(code)));
    await h.ok(['stop', 'echo']);
    expect(await exited).toBe(0);
    con.stdin!.destroy();
  });

  it('of a stopped VM starts it', async () => {
    const r = await h.run(['restart', 'echo']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('VM echo was not running; started it (boot 4), state running\n');
    await h.ok(['stop', 'echo', '--force']);
  });

  it('keeps wait --for-console and wait --state stopped waiting across the restart', async () => {
    await h.ok(['start', 'echo', '--wait-for', 'guest ready', '--timeout', '60s']);
    const waiter = h.run(['wait', 'echo', '--for-console', 'echo: second boot', '--timeout', '60s']);
    let stoppedWaiterDone = false;
    const stoppedWaiter = h.run(['wait', 'echo', '--state', 'stopped', '--timeout', '0'], { timeoutMs: 120_000 }).finally(() => { stoppedWaiterDone = true; });
    await sleep(1500); // let them subscribe (were they late, the test would pass without proving much, never fail)
    await h.ok(['restart', 'echo', '--force']);
    await h.ok(['wait', 'echo', '--for-console', 'guest ready', '--timeout', '60s']);
    await h.ok(['console', 'echo'], 'second boot\n');
    const w = await waiter;
    expect(w.code, w.stderr).toBe(0);
    expect(stoppedWaiterDone).toBe(false); // the stopped between the two boots is not where it rests
    await h.ok(['stop', 'echo', '--force']);
    expect((await stoppedWaiter).code).toBe(0);
  });
});

describe('reset', () => {
  it('ends the boot at once, as the guest reset does, and boots again; the console stays attached', async () => {
    await h.ok(['create', '-f', join(DEMO, 'loop.yaml')]);
    await h.ok(['start', 'loop', '--wait-for', 'tick 2', '--timeout', '60s']);
    const before = (await h.info('loop')).bootId;
    const con = h.spawn(['console', 'loop']);
    const seen = captureOutput(con);
    let closed = false;
    con.on('close', () => { closed = true; });
    await seen.waitFor(/tick \d+/, 30_000);

    const r = await h.run(['reset', 'loop']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe(`Reset VM loop: boot ${before + 1}, state running\n`);
    expect(await h.info('loop')).toMatchObject({ state: 'running', bootId: before + 1, lastPower: { kind: 'reset', source: 'vmctl' } });
    // The new boot starts from its first line again, on the same console.
    await seen.waitFor(/tick \d+\n[^]*loop guest: ticking forever/, 30_000);
    expect(closed).toBe(false);
    con.kill();

    // A paused VM can be reset too; the new boot runs.
    await h.ok(['pause', 'loop']);
    expect(await h.ok(['reset', 'loop'])).toBe(`Reset VM loop: boot ${before + 2}, state running\n`);
    await h.ok(['stop', 'loop']);
  });

  it('of a stopped VM is refused (exit 5): it would be a first boot, not a reset', async () => {
    const r = await h.run(['reset', 'loop']);
    expect(r.code).toBe(5);
    expect(r.stderr).toContain('VM loop is stopped; only a running or paused VM can be reset (start it instead)');
  });

  it('of a vmctl run VM ends the run, as a guest reset does', async () => {
    const run = h.run(['run', '-f', join(DEMO, 'loop.yaml'), '--timeout', '2m'], { timeoutMs: 150_000 });
    const name = await until(async () => (await h.ok(['list', '-q'])).split('\n').find((n) => n.startsWith('loop-run-')) ?? '', 30_000, 'the run VM');
    await h.ok(['wait', name, '--for-console', 'tick 1', '--timeout', '60s']);
    await h.ok(['reset', name]);
    const r = await run;
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain('guest reset (a reboot ends the run)');
  });
});
