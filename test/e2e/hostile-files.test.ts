// Files that change under a VM: every file vmctl reads for a VM (boot images, disk images, lock
// files, state files, logs, YAML) replaced by a FIFO or by a symlink to /dev/zero. Each must be a
// clean failure naming the file and what it is, at once: never a `start` that does not return, a
// VM that cannot be stopped, a daemon that balloons or that half-stops.

import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { alive, DEMO, VmctlHome, type Result } from './harness.js';

const h = new VmctlHome();
afterAll(() => h.cleanup());

function mkfifo(path: string): void {
  rmSync(path, { force: true });
  execFileSync('mkfifo', [path]);
}
function toDevZero(path: string): void {
  rmSync(path, { force: true });
  symlinkSync('/dev/zero', path);
}
async function ok(args: string[]): Promise<string> {
  const r = await h.run(args);
  if (r.code !== 0) throw new Error(`vmctl ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}
async function info(name: string): Promise<Record<string, any>> {
  return JSON.parse(await ok(['info', name, '--json']));
}
/** A VM file in the test's home; `files` are copied there first (name -> source). */
function vmFile(name: string, body: string, files: Record<string, string> = {}): string {
  for (const [n, src] of Object.entries(files)) copyFileSync(src, join(h.home, n));
  const f = join(h.home, `${name}.yaml`);
  writeFileSync(f, `name: ${name}\n${body}`);
  return f;
}
/** A ticker VM with a 64 KiB disk image NAME.img, created; returns the image's path. */
async function createWithDisk(name: string): Promise<string> {
  const f = vmFile(name, `memory: 16MiB\nboot:\n  kernel: ${name}.elf\ndisks:\n  - path: ${name}.img\n`, { [`${name}.elf`]: join(DEMO, 'loop.elf') });
  const img = join(h.home, `${name}.img`);
  writeFileSync(img, Buffer.alloc(64 * 1024));
  await ok(['create', '-f', f]);
  return img;
}
/** `start` must fail with exit 1, naming the file and what it is; the VM stays stopped and usable. */
async function startFails(name: string, file: string, what: RegExp, code = 1): Promise<Result> {
  const r = await h.run(['start', name, '--timeout', '20s'], { timeoutMs: 30_000 });
  expect(r.code, r.stderr).toBe(code);
  expect(r.stderr).toContain(file);
  expect(r.stderr).toMatch(what);
  expect((await info(name)).state).toBe('stopped');
  // Nothing is left hanging: stop and delete answer at once.
  expect((await h.run(['stop', name, '--force'], { timeoutMs: 10_000 })).code).toBe(0);
  return r;
}

beforeAll(async () => {
  await ok(['daemon', 'start']);
});

describe('files replaced under a VM', () => {
  it('a kernel replaced by a FIFO: start fails at once, naming it (it used to hang start, stop --force and daemon stop)', async () => {
    const f = vmFile('fifok', 'memory: 16MiB\nboot:\n  kernel: fifok.elf\n', { 'fifok.elf': join(DEMO, 'loop.elf') });
    await ok(['create', '-f', f]);
    const k = join(h.home, 'fifok.elf');
    mkfifo(k);
    const r = await startFails('fifok', k, /the kernel is a FIFO \(named pipe\); expected a regular file/);
    expect(r.stderr).toContain('VM fifok failed to start');
    expect((await info('fifok')).lastError).toContain(`${k}: the kernel is a FIFO`);
    // Put back, it boots.
    rmSync(k);
    copyFileSync(join(DEMO, 'loop.elf'), k);
    await ok(['start', 'fifok', '--wait-for', 'tick 1', '--timeout', '60s']);
    await ok(['delete', '--force', 'fifok']);
  });

  it('a kernel replaced by a symlink to /dev/zero: refused before anything is read (it used to grow the daemon by GBs)', async () => {
    const f = vmFile('zerok', 'memory: 16MiB\nboot:\n  kernel: zerok.elf\n', { 'zerok.elf': join(DEMO, 'loop.elf') });
    await ok(['create', '-f', f]);
    const k = join(h.home, 'zerok.elf');
    toDevZero(k);
    await startFails('zerok', k, /the kernel is a character device \(a symlink to \/dev\/zero\); expected a regular file/);
    const status = JSON.parse(await ok(['daemon', 'status', '--json']));
    expect(status.memory.rss).toBeLessThan(1024 ** 3);
    await ok(['delete', 'zerok']);
  });

  it('firmware and initrd replaced by a FIFO or /dev/zero: the same', async () => {
    writeFileSync(join(h.home, 'rd.img'), Buffer.alloc(4096, 1));
    for (const [name, what, file, body] of [
      ['fifofw', 'firmware', 'fifofw.elf', 'memory: 16MiB\nboot:\n  firmware: fifofw.elf\n'],
      ['fiford', 'initrd', 'rd.img', 'memory: 64MiB\nboot:\n  firmware: builtin\n  kernel: fiford.elf\n  initrd: rd.img\n'],
    ]) {
      await ok(['create', '-f', vmFile(name, body, { [`${name}.elf`]: join(DEMO, 'loop.elf') })]);
      const path = join(h.home, file);
      mkfifo(path);
      await startFails(name, path, new RegExp(`the ${what} is a FIFO`));
      toDevZero(path);
      await startFails(name, path, new RegExp(`the ${what} is a character device`));
      await ok(['delete', name]);
    }
  });

  it('a disk image replaced by a FIFO: start fails naming it, and its lock is released', async () => {
    const img = await createWithDisk('fifod');
    mkfifo(img);
    await startFails('fifod', img, /disk image .*is a FIFO/);
    expect(existsSync(`${img}.lock`)).toBe(false);
    toDevZero(img);
    await startFails('fifod', img, /is a character device/);
    await ok(['delete', 'fifod']);
  });

  it("a disk's lock file replaced by a FIFO: refused at once as a lock that cannot be read (exit 5)", async () => {
    const lock = `${await createWithDisk('fifol')}.lock`;
    mkfifo(lock);
    const r = await startFails('fifol', lock, /cannot be read; remove it if no VM uses the disk/, 5);
    expect(r.stderr).toContain('VM fifol cannot start');
    rmSync(lock);
    await ok(['start', 'fifol']);
    await ok(['delete', '--force', 'fifol']);
  });

  it("a VM's serial.log replaced by a FIFO: start fails naming it", async () => {
    const f = vmFile('fifos', 'memory: 16MiB\nboot:\n  kernel: fifos.elf\n', { 'fifos.elf': join(DEMO, 'loop.elf') });
    await ok(['create', '-f', f]);
    const log = join(h.home, 'vms', 'fifos', 'serial.log');
    mkfifo(log);
    await startFails('fifos', log, /its serial log .*is a FIFO/);
    rmSync(log);
    await ok(['start', 'fifos', '--wait-for', 'tick 1', '--timeout', '60s']);
    await ok(['delete', '--force', 'fifos']);
  });

  it('a VM file that is a FIFO or /dev/zero: validate and create refuse it with exit 2', async () => {
    const fifo = join(h.home, 'fifo.yaml');
    mkfifo(fifo);
    for (const cmd of ['validate', 'create']) {
      const r = await h.run([cmd, '-f', fifo], { timeoutMs: 20_000 });
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toContain(`${fifo}:1:1: is a FIFO (named pipe); expected a YAML file`);
    }
    const zero = join(h.home, 'zero.yaml');
    toDevZero(zero);
    const z = await h.run(['validate', '-f', zero], { timeoutMs: 20_000 });
    expect(z.code).toBe(2);
    expect(z.stderr).toContain('is a character device (a symlink to /dev/zero); expected a YAML file');
  });

  it("stored files replaced by FIFOs (vm.yaml, state.json, config.yaml, vmd.pid): the daemon still starts, names them and serves", async () => {
    const f = vmFile('store1', 'memory: 16MiB\nboot:\n  kernel: store.elf\n', { 'store.elf': join(DEMO, 'loop.elf') });
    await ok(['create', '-f', f]);
    await ok(['create', '-f', f, '--name', 'store2']);
    await ok(['create', '-f', f, '--name', 'store3']);
    await ok(['daemon', 'stop']);
    mkfifo(join(h.home, 'vms', 'store1', 'vm.yaml'));
    mkfifo(join(h.home, 'vms', 'store2', 'state.json'));
    mkfifo(join(h.home, 'vmd.pid'));
    const list = await h.run(['list', '--json'], { timeoutMs: 30_000 });
    expect(list.code, list.stderr).toBe(0);
    expect(JSON.parse(list.stdout).map((v: any) => v.name)).toEqual(['store3']);
    const log = readFileSync(join(h.home, 'vmd.log'), 'utf8');
    expect(log).toContain(`${join(h.home, 'vms', 'store1', 'vm.yaml')}:1:1: is a FIFO (named pipe)`);
    expect(log).toContain(`${join(h.home, 'vms', 'store2', 'state.json')}: is a FIFO (named pipe)`);
    expect(h.pid()).toBeGreaterThan(0); // vmd.pid is a file with the daemon's pid again
    const c = await h.run(['create', '-f', f, '--name', 'store1']);
    expect(c.code).toBe(5); // AlreadyExists: exit 5 on main (src/cli/exit-codes.ts)
    expect(c.stderr).toContain('could not be loaded');

    await ok(['daemon', 'stop']);
    mkfifo(join(h.home, 'config.yaml'));
    const s = await h.run(['daemon', 'start'], { timeoutMs: 30_000 });
    expect(s.code).toBe(2);
    expect(s.stderr).toContain(`${join(h.home, 'config.yaml')}:1:1: is a FIFO (named pipe)`);
    rmSync(join(h.home, 'config.yaml'));
    await ok(['daemon', 'start']);
  });

  it('daemon stop after all of this: the daemon exits and vmd.pid goes with it', async () => {
    const pid = h.pid()!;
    await ok(['daemon', 'stop']);
    expect(alive(pid)).toBe(false);
    expect(existsSync(join(h.home, 'vmd.pid'))).toBe(false);
    await ok(['daemon', 'start']);
  });
});
