// Disks through the real CLI and daemon: `vmctl disk ...`, one writing VM per disk or any number
// of VMs attaching it read-only, sparse allocation as the guest writes, and the kill test (SIGKILL the daemon while the guest writes:
// every sequence number the guest reported is in the image).

import { spawnSync } from 'node:child_process';
import { closeSync, copyFileSync, existsSync, openSync, readFileSync, readSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { alive, ROOT, sleep, until, VmctlHome } from '../e2e/harness.js';

const h = new VmctlHome();
afterAll(() => h.cleanup());
const SEQ_ELF = join(ROOT, 'fixtures/disk/blk-seq.elf');
const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

const vmctl = (args: string[], expectCode = 0): Promise<string> => h.expectExit(args, expectCode);

function vmFile(name: string, disk: string, size: string): string {
  copyFileSync(SEQ_ELF, join(h.home, 'blk-seq.elf'));
  const f = join(h.home, `${name}.yaml`);
  writeFileSync(f, `name: ${name}\nmemory: 16MiB\nboot:\n  kernel: ./blk-seq.elf\ndisks:\n  - path: ./${disk}\n    size: ${size}\n`);
  return f;
}

/** Every "seq N" line in `text` (complete lines only). */
function seqs(text: string): number[] {
  return [...text.matchAll(/^seq (\d+)\r?\n/gm)].map((m) => Number(m[1]));
}

function expectInImage(img: string, reported: number[]): void {
  const fd = openSync(img, 'r');
  const s = Buffer.alloc(16);
  const missing: number[] = [];
  try {
    for (const n of reported) {
      readSync(fd, s, 0, 16, n * 512);
      if (s.subarray(0, 4).toString() !== 'SEQ!' || s.readBigUInt64LE(8) !== BigInt(n)) missing.push(n);
    }
  } finally {
    closeSync(fd);
  }
  expect(missing.slice(0, 10), `${missing.length} of ${reported.length} reported sequence numbers are not in the image`).toEqual([]);
}

describe('vmctl disk', () => {
  it('create / info --json / resize: a sparse image with qemu-img-like figures', async () => {
    const img = join(h.home, 'ten.img');
    expect(await vmctl(['disk', 'create', img, '--size', '10GiB'])).toMatch(/10GiB virtual/);
    const info = JSON.parse(await vmctl(['disk', 'info', img, '--json']));
    expect(Object.keys(info).sort()).toEqual(['allocatedBytes', 'backingChain', 'backingFile', 'backingFormat', 'backingPath', 'format', 'path', 'qcow2', 'usedBy', 'virtualBytes']);
    expect(info).toMatchObject({ path: img, virtualBytes: 10 * GiB, format: 'raw', usedBy: [], backingFile: null, backingChain: [], qcow2: null });
    expect(info.allocatedBytes).toBeLessThan(MiB);
    const text = await vmctl(['disk', 'info', img]);
    expect(text).toMatch(/virtual size: 10GiB \(10737418240 bytes\)/);
    await vmctl(['disk', 'create', img, '--size', '1GiB'], 1); // never overwrites
    await vmctl(['disk', 'create', join(h.home, 'odd.img'), '--size', '1000'], 2);
    expect(await vmctl(['disk', 'create', join(h.home, 'odd.img'), '--size', '0'], 2)).toContain('--size: "0" is empty; expected e.g. 10GiB (at least 512 bytes)');
    expect(await vmctl(['disk', 'create', join(h.home, 'odd.img'), '--size', '99999999TiB'], 2)).toContain('--size: "99999999TiB" is too large; expected e.g. 10GiB (less than 8192TiB)');
    expect(await vmctl(['disk', 'resize', img, '--size', '5parsecs'], 2)).toContain('--size: "5parsecs" is not a size; expected e.g. 10GiB');
    expect(await vmctl(['disk', 'resize', img, '--size', '12GiB'])).toMatch(/10GiB -> 12GiB/);
    expect(await vmctl(['disk', 'resize', img, '--size', '1GiB'], 2)).toMatch(/--shrink/);
    expect(await vmctl(['disk', 'resize', img, '--size', '1GiB', '--shrink'])).toMatch(/12GiB -> 1GiB/);
    const q = JSON.parse(spawnSync('qemu-img', ['info', '--output=json', img], { encoding: 'utf8' }).stdout);
    expect(q['virtual-size']).toBe(GiB);
    await vmctl(['disk', 'info', join(h.home, 'nope.img')], 1);
  });

  it('a size the file system (or the file size limit) cannot hold: exit 2 naming the size, no stack trace, nothing left behind or changed', () => {
    // RLIMIT_FSIZE makes ftruncate fail with EFBIG on any file system, as a size past ext4's 16 TiB does.
    const limited = (args: string[]) => spawnSync('sh', ['-c', 'ulimit -f 1024; exec "$0" "$@"', process.execPath, join(ROOT, 'bin/vmctl'), ...args],
      { encoding: 'utf8', env: h.env() });
    const img = join(h.home, 'toobig.img');
    const c = limited(['disk', 'create', img, '--size', '4MiB']);
    expect(c.status, c.stderr).toBe(2);
    expect(c.stderr).toContain(`vmctl: ${img}: a file of 4MiB (4194304 bytes) does not fit on this file system or within the file size limit (EFBIG)`);
    expect(c.stderr).not.toMatch(/internal error|\n\s+at /);
    expect(existsSync(img)).toBe(false); // a retry with a smaller size works
    expect(limited(['disk', 'create', img, '--size', '512KiB']).status).toBe(0);
    const r = limited(['disk', 'resize', img, '--size', '8MiB']);
    expect(r.status, r.stderr).toBe(2);
    expect(r.stderr).toContain('a file of 8MiB (8388608 bytes) does not fit');
    expect(readFileSync(img).length).toBe(512 * 1024);
  });

  it('a fresh 10 GiB disk: ~0 allocated; after the guest wrote ~100 MiB, about that much', async () => {
    await vmctl(['create', '-f', vmFile('grow', 'grow.img', '10GiB')]);
    const img = join(h.home, 'grow.img');
    expect(JSON.parse(await vmctl(['disk', 'info', img, '--json'])).allocatedBytes).toBeLessThan(MiB);
    // seq n lands in sector n: 210000 sectors are ~102.5 MiB.
    await vmctl(['start', 'grow', '--wait-for', 'seq 21[0-9]{4}', '--timeout', '5m']);
    await vmctl(['stop', 'grow', '--force']);
    const last = seqs(await vmctl(['logs', 'grow'])).reduce((a, b) => Math.max(a, b), 0);
    const info = JSON.parse(await vmctl(['disk', 'info', img, '--json']));
    expect(info.virtualBytes).toBe(10 * GiB);
    expect(info.allocatedBytes).toBeGreaterThanOrEqual(100 * MiB);
    // What was written, give or take the host file system's block granularity and the few
    // requests that completed after the last line reached the log.
    expect(Math.abs(info.allocatedBytes - last * 512)).toBeLessThan(8 * MiB);
    expectInImage(img, [1, 1000, last]);
  }, 400_000);

  it('one running VM per disk: a second VM naming it is refused at start; shrink refused; list shows who uses it', async () => {
    await vmctl(['create', '-f', vmFile('one', 'shared.img', '4GiB')]);
    await vmctl(['create', '-f', vmFile('two', 'shared.img', '4GiB')]);
    const img = join(h.home, 'shared.img');
    await vmctl(['start', 'one', '--wait-for', 'seq 1000\\b', '--timeout', '2m']);
    const refused = await vmctl(['start', 'two'], 5);
    expect(refused).toMatch(/disk .*shared\.img is in use by VM one/);
    expect(JSON.parse(await vmctl(['info', 'two', '--json'])).state).toBe('stopped');
    expect(JSON.parse(await vmctl(['disk', 'info', img, '--json'])).usedBy).toMatchObject([{ vm: 'one', readonly: false }]);
    expect(await vmctl(['disk', 'resize', img, '--size', '1GiB', '--shrink'], 5)).toMatch(/in use by VM one/);
    const list = JSON.parse(await vmctl(['disk', 'list', '--json'])) as { vm: string; path: string; usedBy: { vm: string }[] }[];
    expect(list.filter((r) => r.path === img).map((r) => [r.vm, r.usedBy.map((u) => u.vm)])).toEqual([['one', ['one']], ['two', ['one']]]);
    await vmctl(['stop', 'one', '--force']);
    expect(JSON.parse(await vmctl(['disk', 'info', img, '--json'])).usedBy).toEqual([]);
    await vmctl(['start', 'two']);
    await vmctl(['stop', 'two', '--force']);
    // shared.img holds what one wrote: delete removes it only when told to (exit 5 otherwise).
    expect(await vmctl(['delete', 'one'], 5)).toMatch(/VM one has a disk image that vmctl created and that holds data: .*shared\.img/);
    await vmctl(['delete', 'one', '--delete-disks']);
    expect(existsSync(img)).toBe(false);
    await vmctl(['delete', 'two']);
  }, 300_000);

  it('a read-only image is shared by running VMs; a VM that writes it is refused (exit 5) until they stop, and keeps them out', async () => {
    const img = join(h.home, 'base.img');
    await vmctl(['disk', 'create', img, '--size', '64MiB']);
    // Guests that print ticks forever and leave the disk alone: what is tested is who may attach it.
    const file = (name: string, readonly: boolean) => {
      const f = join(h.home, `${name}.yaml`);
      writeFileSync(f, `name: ${name}\nmemory: 16MiB\nboot:\n  kernel: ${join(ROOT, 'fixtures/demo/loop.elf')}\n` +
        `disks:\n  - path: ./base.img\n    readonly: ${readonly}\n`);
      return f;
    };
    for (const [name, readonly] of [['ro-a', true], ['ro-b', true], ['rw-c', false]] as const) await vmctl(['create', '-f', file(name, readonly)]);
    await vmctl(['start', 'ro-a', '--wait-for', 'tick']);
    await vmctl(['start', 'ro-b', '--wait-for', 'tick']);
    const refused = await vmctl(['start', 'rw-c'], 5);
    expect(refused).toMatch(new RegExp(`VM rw-c cannot start: disk ${img.replace(/[.]/g, '\\.')} is in use read-only by VM ro-a \\(pid ${h.pid()}, daemon home ${h.home.replace(/[.]/g, '\\.')}\\) and VM ro-b \\(.*\\); a VM that writes it needs it alone`));
    expect(JSON.parse(await vmctl(['info', 'rw-c', '--json'])).state).toBe('stopped');
    for (const vm of ['ro-a', 'ro-b']) expect(JSON.parse(await vmctl(['info', vm, '--json'])).state).toBe('running');

    // disk info / list name every user
    const info = JSON.parse(await vmctl(['disk', 'info', img, '--json']));
    expect(info.usedBy).toMatchObject([{ vm: 'ro-a', readonly: true, pid: h.pid(), home: h.home }, { vm: 'ro-b', readonly: true }]);
    expect(await vmctl(['disk', 'info', img])).toMatch(/used by: +VM ro-a \(read-only, .*\n +VM ro-b \(read-only, /);
    const list = JSON.parse(await vmctl(['disk', 'list', '--json'])) as { vm: string; path: string; readonly: boolean; usedBy: { vm: string }[] }[];
    expect(list.filter((r) => r.path === img).map((r) => [r.vm, r.readonly, r.usedBy.map((u) => u.vm)])).toEqual([
      ['ro-a', true, ['ro-a', 'ro-b']], ['ro-b', true, ['ro-a', 'ro-b']], ['rw-c', false, ['ro-a', 'ro-b']]]);
    expect(await vmctl(['disk', 'list'])).toMatch(/ro-a +disk0 .*ro +this VM, VM ro-b/);

    // One reader left is enough to keep the writer out; with none, the writer runs and keeps readers out.
    await vmctl(['stop', 'ro-a', '--force']);
    expect(await vmctl(['start', 'rw-c'], 5)).toMatch(/in use read-only by VM ro-b \(/);
    await vmctl(['stop', 'ro-b', '--force']);
    await vmctl(['start', 'rw-c', '--wait-for', 'tick']);
    expect(await vmctl(['start', 'ro-a'], 5)).toMatch(/VM ro-a cannot start: disk .*base\.img is in use read-write by VM rw-c \(.*\); it can be shared only by VMs that all attach it read-only/);
    expect(JSON.parse(await vmctl(['disk', 'info', img, '--json'])).usedBy).toMatchObject([{ vm: 'rw-c', readonly: false }]);
    await vmctl(['stop', 'rw-c', '--force']);
    await vmctl(['start', 'ro-a', '--wait-for', 'tick']);
    await vmctl(['stop', 'ro-a', '--force']);
    for (const vm of ['ro-a', 'ro-b', 'rw-c']) await vmctl(['delete', vm]);
    expect(existsSync(img)).toBe(true); // it existed before: never deleted
  }, 120_000);

  it('kill test: SIGKILL the daemon while the guest writes; every reported sequence number is in the image', async () => {
    await vmctl(['create', '-f', vmFile('kill', 'kill.img', '4GiB')]);
    const img = join(h.home, 'kill.img');
    await vmctl(['start', 'kill', '--wait-for', 'seq 1\\b']);
    // What a user sees: the console stream, attached before the kill.
    const con = h.spawn(['console', 'kill']);
    let seen = '';
    con.stdout!.on('data', (b: Buffer) => { seen += b.toString('latin1'); });
    await until(() => seqs(seen).length > 100, 60_000, 'console output');
    await sleep(200 + Math.floor(Math.random() * 1500)); // a random moment
    const pid = h.pid()!;
    process.kill(pid, 'SIGKILL');
    await until(() => !alive(pid), 10_000, 'daemon death');
    await new Promise((r) => { if (con.exitCode !== null) r(null); else con.on('exit', r); });
    const reported = seqs(seen);
    const fromLog = seqs(readFileSync(join(h.home, 'vms', 'kill', 'serial.log'), 'latin1'));
    expect(reported.length).toBeGreaterThan(100);
    expectInImage(img, reported);
    expectInImage(img, fromLog);
    // The dead daemon's lock is stale: a new daemon starts the VM (now aborted) on the same disk.
    expect(existsSync(`${img}.lock`)).toBe(true);
    expect(JSON.parse(await vmctl(['info', 'kill', '--json'])).state).toBe('aborted');
    await vmctl(['start', 'kill', '--wait-for', 'seq 1\\b']);
    expect(JSON.parse(await vmctl(['disk', 'info', img, '--json'])).usedBy).toMatchObject([{ vm: 'kill', pid: h.pid() }]);
    await vmctl(['stop', 'kill', '--force']);
  }, 300_000);
});
