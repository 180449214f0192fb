// Scripting the console and reading logs by boot, with the fast echo guest (fixtures/demo/echo):
// when a piped console ends and with which code, exec refusing a console without a shell, and
// logs --boot/--tail/--since over serial.log rotation. (A shell that answers late: linux-shell.test.ts.)

import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO, VmctlHome } from './harness.js';

const h = new VmctlHome();
afterAll(() => h.cleanup());

async function ok(args: string[], input?: string): Promise<string> {
  const r = await h.run(args, { input });
  if (r.code !== 0) throw new Error(`vmctl ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}

beforeAll(async () => {
  // Small logs, so that rotation happens within a few reboots.
  await ok(['daemon', 'start']);
  await ok(['daemon', 'stop']);
  writeFileSync(join(h.home, 'config.yaml'), 'serialLogMaxSize: 4KiB\n');
  await ok(['create', '-f', join(DEMO, 'echo.yaml')]);
  await ok(['start', 'echo', '--wait-for', 'ready', '--timeout', '60s']);
});

describe('piped console', () => {
  it('--until: ends as soon as output after stdin ended matches', async () => {
    const r = await h.run(['console', 'echo', '--until', 'echo: two', '--timeout', '60s'], { input: 'one\ntwo\nthree\n' });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('echo: two');
  });

  it('--until that never matches: exit 1 when the guest goes quiet (only with --quiet-for given), 124 at --timeout', async () => {
    const q = await h.run(['console', 'echo', '--until', 'never printed', '--quiet-for', '1s'], { input: 'hello\n' });
    expect(q.code).toBe(1);
    expect(q.stdout).toContain('echo: hello');
    expect(q.stderr).toContain('the guest was quiet for 1s before output after stdin ended matched --until /never printed/');
    // Without --quiet-for, --until alone waits: here until --timeout.
    const t = await h.run(['console', 'echo', '--until', 'never printed', '--timeout', '2s'], { input: 'again\n' });
    expect(t.code).toBe(124);
    expect(t.stdout).toContain('echo: again');
    expect(t.stderr).toContain('timed out after 2s');
  });

  it('without options: ends after the default 3 s of quiet, exit 0', async () => {
    const r = await h.run(['console', 'echo'], { input: 'quiet please\n' });
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('echo: quiet please\n');
  });

  it('--timeout ends a console whose stdin never ends, with 124', async () => {
    const child = h.spawn(['console', 'echo', '--timeout', '1500ms']);
    child.stdin!.write('still typing\n');
    const out: Buffer[] = [];
    child.stdout!.on('data', (b: Buffer) => out.push(b));
    const code = await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
    child.stdin!.destroy();
    expect(code).toBe(124);
    expect(Buffer.concat(out).toString()).toContain('echo: still typing');
  });

  it('stays attached across a guest reboot (the new boot answers --until)', async () => {
    const r = await h.run(['console', 'echo', '--until', 'echo guest ready'], { input: 'reboot\n' });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/echo: reboot\n[^]*echo guest ready/);
  });

  it('ends with the VM: exit 0, or 1 when --until had not matched', async () => {
    const r = await h.run(['console', 'echo', '--until', 'not this'], { input: 'poweroff\n' });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/VM echo is stopped before output after stdin ended matched --until \/not this\//);
    expect((await h.run(['start', 'echo', '--wait-for', 'ready', '--timeout', '60s'])).code).toBe(0);
  });

  it('bad options are usage errors', async () => {
    expect((await h.run(['console', 'echo', '--quiet-for', 'soon'])).code).toBe(2);
    expect((await h.run(['console', 'echo', '--until', '('])).code).toBe(2);
  });
});

describe('exec', () => {
  it('refuses a console without a shell: exit 255 naming what the console showed', async () => {
    const r = await h.run(['exec', 'echo', '--shell-timeout', '2s', '--', 'uname', '-a']);
    expect(r.code).toBe(255);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain("no shell answered on VM echo's console within 2s");
    expect(r.stderr).toContain("the console's last line: \"echo:");
  });

  it('a stopped or missing VM, an empty or overlong command', async () => {
    await ok(['create', '-f', join(DEMO, 'loop.yaml')]);
    const stopped = await h.run(['exec', 'loop', '--', 'true']);
    expect(stopped.code).toBe(5);
    expect(stopped.stderr).toContain('VM loop is stopped; exec needs a running VM with a shell on its console');
    await ok(['delete', 'loop']);
    expect((await h.run(['exec', 'ghost', '--', 'true'])).code).toBe(4);
    expect((await h.run(['exec', 'echo', '--', ''])).code).toBe(2);
    const long = await h.run(['exec', 'echo', '--', 'echo', 'x'.repeat(2000)]);
    expect(long.code).toBe(2);
    expect(long.stderr).toContain('too long to type on a console');
  });
});

describe('logs by boot', () => {
  it('--boot N and -1, --tail, --since, across serial.log rotation; piped output is the files\' bytes', async () => {
    // Three boots, each with 4.4 KB of lines that name it, then a reboot (the guest reads its
    // input in order, and a piped console ends when the VM stops). Files rotate at exactly 4 KiB,
    // so of the 13 KB the last 5 KB or so are kept (from 8 KiB on): the first boot is rotated
    // away, the third kept whole.
    const first = JSON.parse(await ok(['info', 'echo', '--json'])).bootId as number;
    const marks = [first, first + 1, first + 2];
    for (const boot of marks) {
      const lines = Array.from({ length: 80 }, (_, j) => `boot${boot}-line${String(j).padStart(2, '0')}-${'x'.repeat(30)}\n`).join('');
      await ok(['console', 'echo', '--timeout', '60s'], `${lines}reboot\n`);
      // A rebooting VM is already in its next boot when the console ends: wait counts from it.
      expect((await h.run(['wait', 'echo', '--for-console', 'ready', '--timeout', '60s'])).code).toBe(0);
    }
    expect(JSON.parse(await ok(['info', 'echo', '--json'])).bootId).toBe(first + 3);
    const dir = join(h.home, 'vms', 'echo');
    const all = await ok(['logs', 'echo']);
    expect(all).toBe(readFileSync(join(dir, 'serial.log.1'), 'latin1') + readFileSync(join(dir, 'serial.log'), 'latin1'));

    const last = marks[marks.length - 1];
    const one = await ok(['logs', 'echo', '--boot', String(last)]);
    expect(one.startsWith('echo guest ready\n')).toBe(true);
    expect(one).toContain(`echo: boot${last}-line79-${'x'.repeat(30)}\n`);
    expect(one).not.toContain(`boot${last - 1}-`);
    expect(one).toMatch(/echo: reboot\nrebooting\n$/);
    const newest = await ok(['logs', 'echo', '--boot', '-1']);
    expect(newest).toBe('echo guest ready\n');
    expect(await ok(['logs', 'echo', '--boot', '-2'])).toBe(one);
    expect(await ok(['logs', 'echo', '--boot', String(last), '--tail', '2'])).toBe('echo: reboot\nrebooting\n');
    expect(await ok(['logs', 'echo', '--since', '1h'])).toBe(all);
    expect(await ok(['logs', 'echo', '--since', '2099-01-01'])).toBe('');

    // The first boot's output was rotated away: say which boots are there.
    const gone = await h.run(['logs', 'echo', '--boot', '1']);
    expect(gone.code).toBe(1);
    expect(gone.stderr).toMatch(/VM echo: no boot 1 in the serial log; it holds boots \d+ to \d+ \(older output was rotated away\)/);
    const over = await h.run(['logs', 'echo', '--boot', String(last), '-f']);
    expect(over.code).toBe(2);
    expect(over.stderr).toContain(`VM echo: boot ${last} is over (boot ${last + 1} is the newest); only the newest boot can be followed`);
    expect((await h.run(['logs', 'echo', '--boot', '0'])).code).toBe(2);
    expect((await h.run(['logs', 'echo', '--boot', 'last'])).code).toBe(2);
    expect((await h.run(['logs', 'echo', '--tail', '-3'])).code).toBe(2);
    const since = await h.run(['logs', 'echo', '--since', 'yesterday']);
    expect(since.code).toBe(2);
    expect(since.stderr).toContain('--since: "yesterday" is neither a duration (like 10m or 2h) nor a time');
  });
});
