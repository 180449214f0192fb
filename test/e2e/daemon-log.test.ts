// The daemon's own log, VMCTL_HOME/vmd.log: written by the daemon (not inherited as stderr),
// rotated to vmd.log.1 at config.yaml's daemonLogMaxSize (as each VM's serial.log is at serialLogMaxSize), without
// losing or splitting a line and without restarting the daemon; and what a detached daemon
// prints outside its log (a crash before the log is open) lands in vmd.stderr.log, is quoted
// by the command that tried to start it, and is folded into vmd.log by the next daemon.
import { afterAll, describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, readFileSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ProtocolClient } from '../../src/protocol/client.js';
import { clientSocketPath, homePaths } from '../../src/daemon/paths.js';
import { alive, DEMO, VmctlHome } from './harness.js';

const homes: VmctlHome[] = [];
function newHome(): VmctlHome {
  const h = new VmctlHome();
  homes.push(h);
  return h;
}
afterAll(async () => {
  for (const h of homes) await h.cleanup();
});

const LIMIT = 4096;
/** A log line: ISO time, [pid], message; or a continuation line of a multi-line record. */
const LINE = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z \[\d+\] .+|  \| .*)$/;

function logLines(home: string): string[] {
  const text = ['vmd.log.1', 'vmd.log'].map((f) => join(home, f)).filter(existsSync).map((f) => readFileSync(f, 'utf8')).join('');
  expect(text.endsWith('\n')).toBe(true);
  return text.slice(0, -1).split('\n');
}

describe('vmd.log', () => {
  it('is rotated at daemonLogMaxSize while the daemon runs, losing and splitting no line', async () => {
    const h = newHome();
    mkdirSync(h.home, { recursive: true });
    writeFileSync(join(h.home, 'config.yaml'), 'daemonLogMaxSize: 4KiB\n');
    expect((await h.run(['daemon', 'start'])).code).toBe(0);
    const pid = h.pid()!;
    const logPath = join(h.home, 'vmd.log');

    // Each created VM logs a line naming it; create until vmd.log has been rotated twice.
    const c = await ProtocolClient.connect(clientSocketPath(homePaths(h.home)));
    const file = join(h.home, 'loop.yaml');
    const text = `memory: 16MiB\nboot:\n  kernel: ${join(DEMO, 'loop.elf')}\n`;
    writeFileSync(file, text);
    const names: string[] = [];
    let rotations = 0;
    let ino = statSync(logPath).ino;
    for (let i = 0; ; i++) {
      const name = `rot-${String(i).padStart(3, '0')}`;
      await c.request('vm.create', { file, text, name });
      names.push(name);
      const now = statSync(logPath).ino;
      if (now !== ino) { rotations++; ino = now; }
      if (rotations === 2) break;
      expect(i).toBeLessThan(500);
    }
    // A few more lines into the new file.
    for (let i = 0; i < 3; i++) {
      const name = `rot-after-${i}`;
      await c.request('vm.create', { file, text, name });
      names.push(name);
    }
    c.close();

    expect(statSync(logPath).size).toBeLessThanOrEqual(LIMIT);
    expect(statSync(`${logPath}.1`).size).toBeLessThanOrEqual(LIMIT);
    expect(statSync(`${logPath}.1`).size).toBeGreaterThan(LIMIT / 2);
    const lines = logLines(h.home);
    for (const l of lines) expect(l).toMatch(LINE);
    // The kept lines are the newest ones: an unbroken run of the created names up to the last.
    const created = lines.map((l) => / vm (rot-[\w-]+): created from /.exec(l)?.[1]).filter((n): n is string => n !== undefined);
    expect(created.length).toBeGreaterThan(10);
    expect(created).toEqual(names.slice(names.length - created.length));
    // Same daemon all along, still answering, still writing to the new file.
    expect(h.pid()).toBe(pid);
    expect(alive(pid)).toBe(true);
    expect((await h.run(['daemon', 'stop'])).code).toBe(0);
    expect(readFileSync(logPath, 'utf8')).toMatch(/\[\d+\] stopped\n$/);
    expect(statSync(logPath).size).toBeLessThanOrEqual(LIMIT);
  });

  it('is started again when removed by hand while the daemon runs', async () => {
    const h = newHome();
    expect((await h.run(['daemon', 'start'])).code).toBe(0);
    const logPath = join(h.home, 'vmd.log');
    expect(readFileSync(logPath, 'utf8')).toContain('listening on');
    unlinkSync(logPath);
    writeFileSync(join(h.home, 'x.yaml'), `memory: 16MiB\nboot:\n  kernel: ${join(DEMO, 'loop.elf')}\n`);
    expect((await h.run(['create', '-f', join(h.home, 'x.yaml'), '--name', 'after-rm'])).code).toBe(0);
    expect(readFileSync(logPath, 'utf8')).toMatch(/vm after-rm: created from/);
  });

  it('a detached daemon that dies before its log is open: its output is quoted and kept', async () => {
    const h = newHome();
    mkdirSync(h.home, { recursive: true });
    // Loaded by every node process started with this NODE_OPTIONS, but throws only in the
    // detached daemon, before any vmctl code runs.
    const crash = join(h.home, 'crash.mjs');
    writeFileSync(crash, "if (process.env.VMCTL_DAEMON_DETACHED === '1') throw new Error('early-daemon-crash-marker');\n");
    const env = { NODE_OPTIONS: `--import=${pathToFileURL(crash).href}` };
    const r = await h.run(['list'], { env, timeoutMs: 30_000 });
    expect(r.code).toBe(3);
    expect(r.stderr).toContain('did not come up');
    expect(r.stderr).toContain(join(h.home, 'vmd.stderr.log'));
    expect(r.stderr).toContain('early-daemon-crash-marker');
    expect(h.pid()).toBeNull();

    // The next daemon that starts copies it into vmd.log (rotated) and empties vmd.stderr.log.
    expect((await h.run(['daemon', 'start'])).code).toBe(0);
    const log = readFileSync(join(h.home, 'vmd.log'), 'utf8');
    expect(log).toMatch(/output of an earlier daemon process on stderr .*\n(  \| .*\n)*  \| .*early-daemon-crash-marker/);
    expect(statSync(join(h.home, 'vmd.stderr.log')).size).toBe(0);
  });
});
