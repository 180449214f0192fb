// Consistent answers: the README's exit-code table and idempotency rules applied to every verb,
// durations that need a unit, help texts that point to the right place.

import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DEMO, sleep, VmctlHome } from './harness.js';

const h = new VmctlHome();
afterAll(() => h.cleanup());

describe('asking for a state that already holds is 0, saying so; a second boot is 5', () => {
  it('applies to every verb', async () => {
    await h.ok(['create', '-f', join(DEMO, 'loop.yaml')]);
    const cases: [string[], number, RegExp][] = [
      [['stop', 'loop'], 0, /^VM loop was not running \(state stopped\)\n$/],
      [['pause', 'loop'], 5, /VM loop is stopped; only a running VM can be paused/],
      [['resume', 'loop'], 5, /VM loop is stopped; only a paused VM can be resumed/],
      [['reset', 'loop'], 5, /only a running or paused VM can be reset/],
      [['create', '-f', join(DEMO, 'loop.yaml')], 5, /a VM named "loop" already exists/],
      [['start', 'loop'], 0, /^Started VM loop, state running\n$/],
      [['start', 'loop'], 5, /VM loop is running; only a stopped, saved or aborted VM can be started/],
      [['resume', 'loop'], 0, /^VM loop is already running\n$/],
      [['pause', 'loop'], 0, /^Paused VM loop, state paused\n$/],
      [['pause', 'loop'], 0, /^VM loop is already paused\n$/],
      [['start', 'loop'], 5, /VM loop is paused; only a stopped, saved or aborted VM can be started/],
      [['resume', 'loop'], 0, /^Resumed VM loop, state running\n$/],
      [['daemon', 'start'], 0, /^The daemon is already running/],
      [['stop', 'loop'], 0, /^Powered off VM loop\n$/],
    ];
    for (const [args, code, re] of cases) {
      const r = await h.run(args);
      expect(r.code, `vmctl ${args.join(' ')}: ${r.stderr}`).toBe(code);
      expect(code === 0 ? r.stdout : r.stderr, `vmctl ${args.join(' ')}`).toMatch(re);
    }
    // JSON says whether anything changed.
    await h.ok(['start', 'loop']);
    expect(JSON.parse(await h.ok(['resume', 'loop', '--json']))).toMatchObject({ state: 'running', changed: false });
    expect(JSON.parse(await h.ok(['pause', 'loop', '--json']))).toMatchObject({ state: 'paused', changed: true });
    await h.ok(['stop', 'loop', '--force']);
  });
});

describe('durations need a unit', () => {
  it('--timeout 5 is a usage error naming 5s, for every command that takes one', async () => {
    for (const args of [['start', 'loop'], ['stop', 'loop'], ['restart', 'loop'], ['wait', 'loop', '--state', 'running'], ['run', '-f', join(DEMO, 'demo.yaml')], ['daemon', 'stop']]) {
      const r = await h.run([...args, '--timeout', '5']);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr).toContain('--timeout: "5" has no unit; did you mean 5s?');
      expect(r.stderr).toContain(`(run vmctl ${args[0] === 'daemon' ? 'daemon stop' : args[0]} --help for usage)`);
    }
    expect((await h.info('loop')).state).toBe('stopped'); // nothing was done
    const bad = await h.run(['wait', 'loop', '--state', 'running', '--timeout', 'soon']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--timeout: "soon" is not a duration; expected something like 30s, 500ms or 5m');
  });

  it('--timeout 0 means no limit (wait, run, start --wait-for)', async () => {
    await h.ok(['start', 'loop']);
    const waiter = h.run(['wait', 'loop', '--state', 'stopped', '--timeout', '0'], { timeoutMs: 60_000 });
    await sleep(1500);
    await h.ok(['stop', 'loop']);
    expect((await waiter).code).toBe(0);
    // The demo guest powers off by itself: run ends with its code, not a timeout.
    const run = await h.run(['run', '-f', join(DEMO, 'demo.yaml'), '--timeout', '0']);
    expect(run.code, run.stderr).toBe(0);
    const s = await h.run(['start', 'loop', '--wait-for', 'tick 2', '--timeout', '0']);
    expect(s.code, s.stderr).toBe(0);
    await h.ok(['stop', 'loop']);
  });

  it('start --timeout bounds the start itself, and with --wait-for the wait too', async () => {
    // 1 ms is less than any start takes (a worker thread, the boot images loaded).
    const r = await h.run(['start', 'loop', '--timeout', '1ms']);
    expect(r.code).toBe(124);
    expect(r.stderr).toContain('VM loop did not finish starting within 1ms (it goes on starting; see vmctl info loop)');
    await h.ok(['wait', 'loop', '--state', 'running', '--timeout', '60s']);
    await h.ok(['stop', 'loop']);
    // With --wait-for the same timeout covers the wait: 124 whether it ran out while the VM was
    // still starting (a loaded machine) or while its console said nothing that matched.
    const w = await h.run(['start', 'loop', '--wait-for', 'never printed', '--timeout', '2s']);
    expect(w.code).toBe(124);
    expect(w.stderr).toMatch(/timed out after 2s waiting for \/never printed\/ \(VM loop keeps running\)|VM loop did not finish starting within 2s/);
    await h.ok(['wait', 'loop', '--state', 'running', '--timeout', '60s']);
    await h.ok(['stop', 'loop']);
  });

  it('memory: 256 names 256MiB; shutdown.timeout: 30 names 30s', async () => {
    const f = join(h.home, 'units.yaml');
    writeFileSync(f, `name: units\nmemory: 256\nboot:\n  kernel: ${join(DEMO, 'hello.elf')}\nshutdown:\n  timeout: 30\n`);
    const r = await h.run(['validate', '-f', f]);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(
      `${f}:2:9: memory: 256 is out of range; expected from 1MiB to 16GiB (a number without a unit counts bytes: did you mean 256MiB?)\n` +
      `${f}:6:12: shutdown.timeout: 30 has no unit; did you mean 30s? (a duration is written with ms, s, m or h; 0 means no limit)\n`);
  });
});

// Every command's help text is checked in-process (test/cli/help.test.ts); these go through the binary.
describe('help texts', () => {
  it('wait --state offers the states a VM can reach', async () => {
    const r = await h.run(['wait', '--help']);
    expect(r.stdout.replace(/\s+/g, ' ')).toContain('(stopped, starting, running, paused, stopping, aborted, saved)');
    const bad = await h.run(['wait', 'loop', '--state', 'sleeping']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--state: "sleeping" is not a state a VM can reach; expected one of stopped, starting, running, paused, stopping, aborted, saved');
  });

  it('a usage error points to the command\'s own help; an invalid regular expression is named once', async () => {
    const missing = await h.run(['start']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('(run vmctl start --help for usage)');
    const unknown = await h.run(['disk', 'create', 'x.img', '--bogus']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('(run vmctl disk create --help for usage)');
    const re = await h.run(['wait', 'loop', '--for-console', '(']);
    expect(re.code).toBe(2);
    expect(re.stderr).toBe('vmctl: --for-console: invalid regular expression "(": unterminated group\n(run vmctl wait --help for usage)\n');
  });
});

describe('create and info', () => {
  it('say "2 cpus"', async () => {
    const f = join(h.home, 'two.yaml');
    writeFileSync(f, `name: two\ncpus: 2\nmemory: 32MiB\nboot:\n  kernel: ${join(DEMO, 'loop.elf')}\n`);
    expect(await h.ok(['validate', '-f', f])).toContain('(VM two: 2 cpus, 32MiB, 0 disks, 1 NIC)');
    expect(await h.ok(['create', '-f', f])).toBe('Created VM two (2 cpus, 32MiB), state stopped\n');
    expect(await h.ok(['info', 'two'])).toMatch(/\nCPUs: +2\n/);
  });
});
