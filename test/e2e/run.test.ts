// vmctl run: the CI entry point. Real guests from fixtures/demo on the real machine.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DEMO, sleep, VmctlHome } from './harness.js';

const h = new VmctlHome();
afterAll(() => h.cleanup());
const yaml = (name: string) => join(DEMO, `${name}.yaml`);

describe('vmctl run', () => {
  it('runs the demo, streams its console and exits 0', async () => {
    const r = await h.run(['run', '-f', yaml('demo'), '--json']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('Hello from a RISC-V guest running in vmctl');
    expect(r.stdout).toContain('Bye!');
    const summary = JSON.parse(r.stderr.trim().split('\n').pop()!);
    expect(summary).toMatchObject({ reason: 'poweroff', exitCode: 0, guestCode: 0, guestFailed: false, powerSource: 'test-finisher' });
    // The ephemeral VM is gone afterwards.
    expect(JSON.parse((await h.run(['list', '--json'])).stdout)).toEqual([]);
  });

  it("exits with the guest's failure code", async () => {
    const r = await h.run(['run', '-f', yaml('fail'), '--json']);
    expect(r.code).toBe(3);
    expect(r.stdout).toContain('FAIL: the answer was not 42');
    expect(JSON.parse(r.stderr.trim().split('\n').pop()!)).toMatchObject({ reason: 'poweroff', exitCode: 3, guestCode: 3, guestFailed: true });
  });

  it('feeds piped stdin to the guest (echo guest: "fail 7" exits 7)', async () => {
    const r = await h.run(['run', '-f', yaml('echo'), '--timeout', '30s'], { input: 'hello\nfail 7\n' });
    expect(r.stdout).toContain('echo: hello');
    expect(r.code).toBe(7);
  });

  it('a guest failure reported with code 0 exits 1', async () => {
    const r = await h.run(['run', '-f', yaml('echo'), '--timeout', '30s', '--json'], { input: 'fail 0\n' });
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stderr.trim().split('\n').pop()!)).toMatchObject({ reason: 'poweroff', exitCode: 1, guestCode: 0, guestFailed: true });
  });

  it('ends at the timeout with 124', async () => {
    const r = await h.run(['run', '-f', yaml('loop'), '--timeout', '3s', '--json']);
    expect(r.code).toBe(124);
    expect(r.stdout).toContain('tick 1');
    expect(JSON.parse(r.stderr.trim().split('\n').pop()!)).toMatchObject({ reason: 'timeout', exitCode: 124, guestCode: null });
    expect(JSON.parse((await h.run(['list', '--json'])).stdout)).toEqual([]);
  });

  it('--until ends with success once the console matches', async () => {
    const r = await h.run(['run', '-f', yaml('loop'), '--until', 'tick [3]\\b', '--timeout', '60s', '--json']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/tick 3\n/);
    expect(r.stdout).not.toContain('tick 5');
    expect(JSON.parse(r.stderr.trim().split('\n').pop()!)).toMatchObject({ reason: 'until', exitCode: 0 });
  });

  it('--fail-on ends with exit 1 once the console matches', async () => {
    const r = await h.run(['run', '-f', yaml('loop'), '--fail-on', 'tick 2\\b', '--timeout', '60s', '--json']);
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stderr.trim().split('\n').pop()!)).toMatchObject({ reason: 'fail-on', exitCode: 1 });
  });

  it('--expect: 0 when matched, 1 when the guest passes without printing it', async () => {
    const ok = await h.run(['run', '-f', yaml('demo'), '--expect', 'Hello from a RISC-V']);
    expect(ok.code).toBe(0);
    const miss = await h.run(['run', '-f', yaml('demo'), '--expect', 'kernel panic', '--json']);
    expect(miss.code).toBe(1);
    expect(miss.stderr).toContain('--expect /kernel panic/ never matched');
    expect(JSON.parse(miss.stderr.trim().split('\n').pop()!)).toMatchObject({ reason: 'poweroff', exitCode: 1, guestCode: 0, expectMatched: false });
  });

  it('a guest reboot ends the run', async () => {
    const r = await h.run(['run', '-f', yaml('echo'), '--timeout', '30s', '--json'], { input: 'reboot\n' });
    expect(r.stdout).toContain('rebooting');
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stderr.trim().split('\n').pop()!)).toMatchObject({ reason: 'reset', powerSource: 'test-finisher' });
  });

  it('--name names a file without name: (the run VM carries it)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vmctl-run-noname-'));
    const file = join(dir, 'ci.yaml');
    writeFileSync(file, `memory: 16MiB\nboot:\n  kernel: ${join(DEMO, 'hello.elf')}\n`);
    const without = await h.run(['run', '-f', file]);
    expect(without.code).toBe(2);
    expect(without.stderr).toMatch(/ci\.yaml:1:1: missing key "name"/);
    const r = await h.run(['run', '-f', file, '--name', 'ci-job', '--json']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('Bye!');
    expect(JSON.parse(r.stderr.trim().split('\n').pop()!).vm).toMatch(/^ci-job-run-/);
    rmSync(dir, { recursive: true, force: true });
  });

  it('rejects a bad file (2) and a bad pattern (2) before starting anything', async () => {
    expect((await h.run(['run', '-f', join(DEMO, 'missing.yaml')])).code).toBe(2);
    expect((await h.run(['run', '-f', yaml('demo'), '--until', '(unclosed'])).code).toBe(2);
    expect((await h.run(['run', '-f', yaml('demo'), '--timeout', 'later'])).code).toBe(2);
  });

  it('holds a flooding guest back while the reader of its output is slow, losing nothing', async () => {
    const child = h.spawn(['run', '-f', yaml('flood'), '--until', 'line 400000\\b', '--timeout', '5m', '--json']);
    let text = '';
    let stderr = '';
    child.stderr!.on('data', (b: Buffer) => { stderr += b.toString(); });
    const closed = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
    await new Promise<void>((resolve) => child.stdout!.once('data', (b: Buffer) => { text += b.toString(); resolve(); }));
    // Stop reading for a while: without flow control the daemon would pile up output (and drop us).
    child.stdout!.pause();
    await sleep(4000);
    child.stdout!.on('data', (b: Buffer) => { text += b.toString(); });
    child.stdout!.resume();
    expect(await closed, stderr).toBe(0);
    expect(JSON.parse(stderr.trim().split('\n').pop()!)).toMatchObject({ reason: 'until', exitCode: 0 });
    const nums = [...text.matchAll(/line (\d+)\n/g)].map((m) => Number(m[1]));
    expect(nums[0]).toBe(0);
    expect(nums).toContain(400000);
    for (let i = 1; i < nums.length; i++) if (nums[i] !== nums[i - 1] + 1) throw new Error(`line ${nums[i - 1]} followed by ${nums[i]}`);
  });

  it('removes the VM when the run client is killed', async () => {
    const child = h.spawn(['run', '-f', yaml('loop')]);
    await new Promise<void>((resolve) => child.stdout!.on('data', (b: Buffer) => { if (b.toString().includes('tick 2')) resolve(); }));
    expect(JSON.parse((await h.run(['list', '--json'])).stdout)).toHaveLength(1);
    child.kill('SIGKILL');
    const deadline = Date.now() + 10_000;
    let vms: unknown[] = [1];
    while (vms.length > 0 && Date.now() < deadline) {
      vms = JSON.parse((await h.run(['list', '--json'])).stdout);
    }
    expect(vms).toEqual([]);
  });
});
