// What vmctl says when things go wrong: values cut to a sensible length, commands that end because
// their VM was deleted saying so, and device errors rate-limited with a count (no doubled prefix).

import { spawnSync } from 'node:child_process';
import { readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, collect, DEMO, ROOT, sleep, VmctlHome, waitForOutput } from './harness.js';

const h = new VmctlHome();
afterAll(() => h.cleanup());

async function ok(args: string[]): Promise<string> {
  const r = await h.run(args);
  if (r.code !== 0) throw new Error(`vmctl ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}
function loopVm(name: string): string {
  const f = join(h.home, `${name}.yaml`);
  writeFileSync(f, `name: ${name}\nmemory: 16MiB\nboot:\n  kernel: ${join(DEMO, 'loop.elf')}\n`);
  return f;
}

beforeAll(async () => {
  await ok(['daemon', 'start']);
});

describe('messages', () => {
  it('never echo an unbounded value: long names are cut, with their length', async () => {
    const name = 'n'.repeat(100_000);
    const r = await h.run(['info', name]);
    expect(r.code).toBe(4);
    expect(r.stderr).toContain(`no VM named "${'n'.repeat(80)}"… (100000 bytes)`);
    expect(r.stderr.length).toBeLessThan(300);

    const f = join(h.home, 'longname.yaml');
    writeFileSync(f, `name: ${'m'.repeat(50_000)}\nmemory: 16MiB\nboot:\n  kernel: ${join(DEMO, 'hello.elf')}\n`);
    const v = await h.run(['validate', '-f', f]);
    expect(v.code).toBe(2);
    expect(v.stderr).toContain('… (50000 bytes)');
    expect(v.stderr.length).toBeLessThan(600);
  });

  it('a VM file with hundreds of problems lists the first ones and counts the rest', async () => {
    const f = join(h.home, 'many.yaml');
    writeFileSync(f, `name: many\nboot:\n  kernel: ${join(DEMO, 'hello.elf')}\n${Array.from({ length: 500 }, (_, i) => `k${i}: 1`).join('\n')}\n`);
    const v = await h.run(['validate', '-f', f]);
    expect(v.code).toBe(2);
    const lines = v.stderr.trim().split('\n');
    expect(lines.length).toBe(101);
    expect(lines[100]).toBe('… and 400 more problems (500 in all)');
  });

  it('start --wait-for, wait, logs -f and console whose VM is deleted meanwhile say so (exit 4)', async () => {
    await ok(['create', '-f', loopVm('doomed')]);
    const starter = collect(h.spawn(['start', 'doomed', '--wait-for', 'never printed', '--timeout', '120s']), '', 120_000);
    await sleep(1500);
    const waiter = collect(h.spawn(['wait', 'doomed', '--for-console', 'never printed', '--timeout', '120s']), '', 120_000);
    const follower = h.spawn(['logs', 'doomed', '-f']);
    const followed = collect(follower, '', 120_000);
    const consoleChild = h.spawn(['console', 'doomed']);
    consoleChild.stdin!.write(''); // stdin stays open: the console ends only because of the VM
    const consoled = new Promise<{ code: number | null; stderr: string }>((resolve) => {
      let stderr = '';
      consoleChild.stderr!.on('data', (b: Buffer) => { stderr += b.toString(); });
      consoleChild.on('close', (code) => resolve({ code, stderr }));
    });
    await waitForOutput(follower, /tick 2\n/, 60_000);
    await waitForOutput(consoleChild, /tick \d+\n/, 60_000);
    await ok(['delete', '--force', 'doomed']);

    const s = await starter;
    expect(s.code, s.stderr).toBe(4);
    expect(s.stderr).toContain('VM doomed was deleted before its console matched /never printed/');
    expect(s.stderr).not.toContain('stopped');
    const w = await waiter;
    expect(w.code, w.stderr).toBe(4);
    expect(w.stderr).toContain('VM doomed was deleted');
    const l = await followed;
    expect(l.code, l.stderr).toBe(4);
    expect(l.stderr).toContain('VM doomed was deleted');
    const c = await consoled;
    consoleChild.stdin!.destroy();
    expect(c.code, c.stderr).toBe(4);
    expect(c.stderr).toContain('VM doomed was deleted');
  });
});

describe('device errors', () => {
  const d = new VmctlHome();
  afterAll(() => d.cleanup());

  it('are rate-limited with a count of what was suppressed, each line with the device prefix once', async () => {
    // The daemon runs with a file size limit of 4 MiB (its own files stay far below it); the guest
    // writes the last sector of a 16 MiB image 200 times: the host refuses each write (EFBIG).
    const start = spawnSync('bash', ['-c', `ulimit -f 4096 && exec "${process.execPath}" "${BIN}" daemon start`], { env: d.env(), encoding: 'utf8' });
    expect(start.status, start.stderr).toBe(0);
    const img = join(d.home, 'big.img');
    writeFileSync(img, '');
    truncateSync(img, 16 * 1024 * 1024);
    const f = join(d.home, 'errors.yaml');
    writeFileSync(f, `name: errors\nmemory: 16MiB\nboot:\n  kernel: ${join(ROOT, 'fixtures', 'disk', 'blk-errors.elf')}\ndisks:\n  - path: big.img\n`);
    const r = await d.run(['run', '-f', f, '--timeout', '120s'], { timeoutMs: 150_000 });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('errors: 200 of 200 writes failed');

    const log = readFileSync(join(d.home, 'vmd.log'), 'utf8').split('\n');
    // `run` names its VM errors-run-XXXX.
    const prefix = ': virtio-blk disk0 @0x10001000: ';
    const failed = log.filter((l) => l.includes(`${prefix}request type 1 at sector 32767 failed: `));
    const summaries = log.filter((l) => l.includes(prefix) && / more messages? suppressed in \d+ s \(the last: request type 1 at sector 32767 failed: .*EFBIG/.test(l));
    const suppressed = summaries.map((l) => Number(/: (\d+) more message/.exec(l)![1])).reduce((a, b) => a + b, 0);
    expect(failed.length).toBeLessThanOrEqual(20); // 10 per 10 s window
    expect(summaries.length).toBeGreaterThan(0);
    expect(failed.length + suppressed).toBe(200); // every failure logged or counted
    expect(log.filter((l) => l.includes('virtio-blk disk0 @0x10001000: virtio-blk disk0'))).toEqual([]);
  });
});
