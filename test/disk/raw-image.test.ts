// Sparse raw images, their locks and what create/delete do to a VM's disks, on real files.

import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { SECTOR_SIZE } from '../../src/disk/block-backend.js';
import { DiskError } from '../../src/disk/errors.js';
import { holePunchingAvailable } from '../../src/disk/hole-punch.js';
import { acquireDiskLocks, DiskLock, lockPathFor, readDiskLock } from '../../src/disk/lock.js';
import { deleteCreatedDisks, prepareDisks } from '../../src/disk/prepare.js';
import { createRawImage, imageInfo, RawFileBackend, resizeRawImage } from '../../src/disk/raw-image.js';

const dir = mkdtempSync(join(tmpdir(), 'vmctl-disk-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

function code(fn: () => unknown): string {
  try { fn(); } catch (e) { if (e instanceof DiskError) return e.code; throw e; }
  return 'no error';
}

describe('sparse raw images', () => {
  it('a fresh 10 GiB image is 10 GiB virtual and almost nothing allocated; 100 MiB written is ~100 MiB', () => {
    const path = join(dir, 'big.img');
    createRawImage(path, 10 * GiB);
    const fresh = imageInfo(path);
    expect(fresh).toMatchObject({ path, virtualBytes: 10 * GiB, format: 'raw', usedBy: null });
    expect(fresh.allocatedBytes).toBeLessThan(MiB);
    const be = new RawFileBackend(path, false);
    expect(be.sectorCount()).toBe(10 * GiB / SECTOR_SIZE);
    const chunk = new Uint8Array(MiB).fill(0x5a);
    // 100 MiB spread over the disk, as a guest would write it.
    for (let i = 0; i < 100; i++) be.write((i * 97 * MiB) / SECTOR_SIZE, [chunk]);
    be.flush();
    be.close();
    const after = imageInfo(path);
    expect(after.virtualBytes).toBe(10 * GiB);
    expect(after.allocatedBytes).toBeGreaterThanOrEqual(100 * MiB);
    expect(after.allocatedBytes).toBeLessThan(102 * MiB);
    rmSync(path);
  });

  it('matches qemu-img: same virtual size, and it reads as raw', () => {
    const path = join(dir, 'q.img');
    createRawImage(path, 64 * MiB);
    const r = spawnSync('qemu-img', ['info', '--output=json', path], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    const info = JSON.parse(r.stdout) as { 'virtual-size': number; format: string; 'actual-size': number };
    expect(info['virtual-size']).toBe(64 * MiB);
    expect(info.format).toBe('raw');
    expect(info['actual-size']).toBe(imageInfo(path).allocatedBytes);
  });

  it('never overwrites an existing file and rejects sizes that are not whole sectors', () => {
    const path = join(dir, 'exists.img');
    writeFileSync(path, 'precious');
    expect(code(() => createRawImage(path, MiB))).toBe('EXISTS');
    expect(readFileSync(path, 'utf8')).toBe('precious');
    expect(code(() => createRawImage(join(dir, 'odd.img'), 1000))).toBe('INVALID');
    expect(code(() => createRawImage(join(dir, 'zero.img'), 0))).toBe('INVALID');
    expect(code(() => imageInfo(join(dir, 'missing.img')))).toBe('NOT_FOUND');
  });

  it('grows freely, shrinks only with the flag and never while a VM holds the disk', () => {
    const path = join(dir, 'r.img');
    createRawImage(path, 4 * MiB);
    expect(resizeRawImage(path, 8 * MiB)).toEqual({ oldBytes: 4 * MiB, newBytes: 8 * MiB });
    expect(statSync(path).size).toBe(8 * MiB);
    expect(code(() => resizeRawImage(path, 2 * MiB))).toBe('SHRINK');
    const lock = DiskLock.acquire(path, 'vm1', '/home/x/.vmctl');
    expect(code(() => resizeRawImage(path, 2 * MiB, { shrink: true }))).toBe('IN_USE');
    // Growing a disk in use is allowed: the running guest is told by a config-change interrupt.
    expect(resizeRawImage(path, 16 * MiB).newBytes).toBe(16 * MiB);
    lock.release();
    expect(resizeRawImage(path, 2 * MiB, { shrink: true }).newBytes).toBe(2 * MiB);
    expect(statSync(path).size).toBe(2 * MiB);
  });

  it('write-zeroes with unmap punches a hole (the space is given back) and reads as zeros', () => {
    const path = join(dir, 'hole.img');
    createRawImage(path, 16 * MiB);
    const be = new RawFileBackend(path, false);
    be.write(0, [new Uint8Array(8 * MiB).fill(1)]);
    be.flush();
    const full = imageInfo(path).allocatedBytes;
    expect(full).toBeGreaterThanOrEqual(8 * MiB);
    be.writeZeroes(MiB / SECTOR_SIZE, 4 * MiB / SECTOR_SIZE, true);
    const back = new Uint8Array(6 * MiB);
    be.read(0, [back]);
    expect(back.subarray(0, MiB).every((b) => b === 1)).toBe(true);
    expect(back.subarray(MiB, 5 * MiB).every((b) => b === 0)).toBe(true);
    expect(back.subarray(5 * MiB).every((b) => b === 1)).toBe(true);
    if (holePunchingAvailable()) expect(imageInfo(path).allocatedBytes).toBeLessThanOrEqual(full - 4 * MiB);
    // discard gives space back too (contents afterwards are unspecified; ours are zeros or old data)
    be.discard(6 * MiB / SECTOR_SIZE, 2 * MiB / SECTOR_SIZE);
    if (holePunchingAvailable()) expect(imageInfo(path).allocatedBytes).toBeLessThanOrEqual(full - 6 * MiB);
    expect(statSync(path).size).toBe(16 * MiB);
    be.close();
  });

  it('reads and writes scattered buffer lists longer than IOV_MAX', () => {
    const path = join(dir, 'iov.img');
    createRawImage(path, 4 * MiB);
    const be = new RawFileBackend(path, false);
    const bufs = Array.from({ length: 1500 }, (_, i) => new Uint8Array(512).fill(i & 0xff));
    be.write(10, bufs);
    const back = Array.from({ length: 1500 }, () => new Uint8Array(512));
    be.read(10, back);
    expect(back.every((b, i) => b.every((x) => x === (i & 0xff)))).toBe(true);
    be.close();
  });

  it('reads past the end of a file shrunk under it as zeros, even across more than IOV_MAX buffers', () => {
    const path = join(dir, 'shrunk.img');
    writeFileSync(path, new Uint8Array(2048 * 512).fill(7));
    const be = new RawFileBackend(path, false);
    truncateSync(path, 1024); // another process shrank it (vmctl refuses, but the host can)
    const bufs = Array.from({ length: 1500 }, () => new Uint8Array(512).fill(0xff));
    be.read(0, bufs);
    expect(bufs[0].every((b) => b === 7) && bufs[1].every((b) => b === 7)).toBe(true);
    expect(bufs.slice(2).every((b) => b.every((x) => x === 0))).toBe(true);
    be.close();
  });
});

describe('disk locks', () => {
  it('one VM at a time: a second lock is refused, naming the holder; release frees it', () => {
    const path = join(dir, 'l.img');
    createRawImage(path, MiB);
    const a = DiskLock.acquire(path, 'alpha', '/homeA');
    expect(readDiskLock(path)).toMatchObject({ vm: 'alpha', pid: process.pid, host: hostname(), home: '/homeA' });
    expect(imageInfo(path).usedBy?.vm).toBe('alpha');
    let msg = '';
    try { DiskLock.acquire(path, 'beta', '/homeB'); } catch (e) { msg = (e as Error).message; expect((e as DiskError).code).toBe('IN_USE'); }
    expect(msg).toMatch(/in use by VM alpha/);
    a.release();
    a.release(); // idempotent
    expect(existsSync(lockPathFor(path))).toBe(false);
    const b = DiskLock.acquire(path, 'beta', '/homeB');
    expect(readDiskLock(path)?.vm).toBe('beta');
    b.release();
  });

  it('a lock left by a dead process on this host is stale and taken over', () => {
    const path = join(dir, 'stale.img');
    createRawImage(path, MiB);
    const child = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
    const deadPid = Number(child.stdout);
    writeFileSync(lockPathFor(path), JSON.stringify({ vm: 'ghost', pid: deadPid, host: hostname(), home: '/old', nonce: 'n1', procStart: null, since: '' }));
    expect(readDiskLock(path)).toBeNull();
    const l = DiskLock.acquire(path, 'alive', '/new');
    expect(readDiskLock(path)?.vm).toBe('alive');
    l.release();
  });

  it('a killed holder that nobody reaped yet (a zombie) does not hold the lock', async () => {
    const path = join(dir, 'zombie.img');
    createRawImage(path, MiB);
    // `sleep 30` becomes the child of a process (sh exec'd into sleep) that never waits for it.
    const parent = spawn('sh', ['-c', 'sleep 30 & echo $!; exec sleep 20'], { stdio: ['ignore', 'pipe', 'ignore'] });
    const pid = Number(await new Promise<string>((res) => parent.stdout.once('data', (b: Buffer) => res(b.toString()))));
    writeFileSync(lockPathFor(path), JSON.stringify({ vm: 'old', pid, host: hostname(), home: '/old', nonce: 'z', procStart: null, since: '' }));
    expect(readDiskLock(path)?.vm).toBe('old');
    process.kill(pid, 'SIGKILL');
    for (let i = 0; i < 100 && !readFileSync(`/proc/${pid}/stat`, 'utf8').includes(') Z '); i++) await new Promise((r) => setTimeout(r, 20));
    expect(() => process.kill(pid, 0)).not.toThrow(); // still "exists" for kill(2)
    expect(readDiskLock(path)).toBeNull();
    const l = DiskLock.acquire(path, 'new', '/new');
    l.release();
    parent.kill('SIGKILL');
  });

  it('a live pid that is a different process (pid reused) does not hold the lock', () => {
    const path = join(dir, 'reuse.img');
    createRawImage(path, MiB);
    writeFileSync(lockPathFor(path), JSON.stringify({ vm: 'old', pid: process.pid, host: hostname(), home: '/old', nonce: 'n2', procStart: '1', since: '' }));
    const l = DiskLock.acquire(path, 'new', '/new');
    expect(readDiskLock(path)?.vm).toBe('new');
    l.release();
  });

  it('a lock held from another host is respected and the error says how to clear it', () => {
    const path = join(dir, 'remote.img');
    createRawImage(path, MiB);
    writeFileSync(lockPathFor(path), JSON.stringify({ vm: 'far', pid: 1, host: 'some-other-host', home: '/h', nonce: 'n3', procStart: null, since: '' }));
    let msg = '';
    try { DiskLock.acquire(path, 'me', '/me'); } catch (e) { msg = (e as Error).message; }
    expect(msg).toMatch(/in use by VM far .*some-other-host.*remove .*remote\.img\.lock/);
    rmSync(lockPathFor(path));
  });

  it('holds across processes: a lock held by another live process refuses us; once it is SIGKILLed, it is stale', async () => {
    const path = join(dir, 'x.img');
    createRawImage(path, MiB);
    // Another "daemon": a separate Node process running the real lock code (bundled by esbuild).
    const bundle = join(dir, 'lock-child.mjs');
    const esbuild = await import('esbuild');
    esbuild.buildSync({ entryPoints: [join(process.cwd(), 'src/disk/lock.ts')], bundle: true, platform: 'node', format: 'esm', outfile: bundle, logLevel: 'silent' });
    const child = spawn(process.execPath, ['--input-type=module', '-e',
      `const m = await import(${JSON.stringify(bundle)}); m.DiskLock.acquire(${JSON.stringify(path)}, 'theirs', '/b'); console.log('LOCKED'); setInterval(() => {}, 1000);`],
    { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((res, rej) => {
      child.stdout.on('data', (b: Buffer) => { if (b.toString().includes('LOCKED')) res(); });
      child.on('exit', (c) => rej(new Error(`child exited ${c}`)));
    });
    expect(readDiskLock(path)).toMatchObject({ vm: 'theirs', pid: child.pid });
    expect(code(() => DiskLock.acquire(path, 'ours', '/a'))).toBe('IN_USE');
    child.kill('SIGKILL');
    await new Promise((res) => child.on('exit', res));
    const l = DiskLock.acquire(path, 'ours', '/a');
    expect(readDiskLock(path)?.vm).toBe('ours');
    l.release();
  });

  it('acquireDiskLocks is all or nothing', () => {
    const p1 = join(dir, 'm1.img');
    const p2 = join(dir, 'm2.img');
    createRawImage(p1, MiB);
    createRawImage(p2, MiB);
    const other = DiskLock.acquire(p2, 'other', '/o');
    expect(code(() => acquireDiskLocks([p1, p2], 'vm', '/h'))).toBe('IN_USE');
    expect(readDiskLock(p1)).toBeNull();
    other.release();
    const both = acquireDiskLocks([p1, p2], 'vm', '/h');
    expect(readDiskLock(p1)?.vm).toBe('vm');
    both.forEach((l) => l.release());
  });
});

describe('prepareDisks / deleteCreatedDisks', () => {
  it('creates missing disks sparse, keeps existing ones (size mismatch = warning), deletes only created ones', () => {
    const existing = join(dir, 'existing.img');
    writeFileSync(existing, new Uint8Array(2 * MiB));
    const fresh = join(dir, 'fresh.img');
    const r = prepareDisks([
      { path: existing, sizeBytes: 4 * MiB, readonly: false, name: 'disk0' },
      { path: fresh, sizeBytes: 32 * MiB, readonly: false, name: 'disk1' },
    ]);
    expect(r.created).toEqual([fresh]);
    expect(r.warnings).toHaveLength(1);
    expect(r.warnings[0]).toMatch(/disk0: .*existing\.img already exists with 2MiB, not the 4MiB/);
    expect(imageInfo(fresh).virtualBytes).toBe(32 * MiB);
    expect(imageInfo(fresh).allocatedBytes).toBeLessThan(MiB);
    expect(statSync(existing).size).toBe(2 * MiB);
    const l = DiskLock.acquire(fresh, 'running', '/h');
    expect(code(() => deleteCreatedDisks(r.created))).toBe('IN_USE');
    l.release();
    deleteCreatedDisks(r.created);
    expect(existsSync(fresh)).toBe(false);
    expect(existsSync(existing)).toBe(true);
  });

  it('undoes its own creations when a later disk fails', () => {
    const a = join(dir, 'undo-a.img');
    expect(code(() => prepareDisks([
      { path: a, sizeBytes: MiB, readonly: false, name: 'disk0' },
      { path: join(dir, 'nope.img'), readonly: false, name: 'disk1' },
    ]))).toBe('NOT_FOUND');
    expect(existsSync(a)).toBe(false);
  });
});
