// Sparse raw images, their locks and what create/delete do to a VM's disks, on real files.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { SECTOR_SIZE } from '../../src/disk/block-backend.js';
import { DiskError } from '../../src/disk/errors.js';
import { holePunchingAvailable } from '../../src/disk/hole-punch.js';
import { acquireDiskLocks, DiskLock, lockPathFor, readDiskLocks } from '../../src/disk/lock.js';
import { deleteCreatedDisks, prepareDisks } from '../../src/disk/prepare.js';
import { imageInfo } from '../../src/disk/image.js';
import { createRawImage, RawFileBackend, resizeRawImage } from '../../src/disk/raw-image.js';

const dir = mkdtempSync(join(tmpdir(), 'vmctl-disk-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

/** The first live holder (the writer, or the oldest reader), or null. */
const readDiskLock = (p: string) => readDiskLocks(p)[0] ?? null;

function code(fn: () => unknown): string {
  try { fn(); } catch (e) { if (e instanceof DiskError) return e.code; throw e; }
  return 'no error';
}

/** Another "daemon": a separate Node process holding the image's lock with the real lock code
 *  (bundled by esbuild), until it is killed. */
async function lockInChild(path: string, vm: string, readonly: boolean): Promise<ChildProcess> {
  const bundle = join(dir, 'lock-child.mjs');
  if (!existsSync(bundle)) {
    const esbuild = await import('esbuild');
    esbuild.buildSync({ entryPoints: [join(process.cwd(), 'src/disk/lock.ts')], bundle: true, platform: 'node', format: 'esm', outfile: bundle, logLevel: 'silent' });
  }
  const child = spawn(process.execPath, ['--input-type=module', '-e',
    `const m = await import(${JSON.stringify(bundle)}); m.DiskLock.acquire(${JSON.stringify(path)}, ${JSON.stringify(vm)}, '/b', ${readonly}); console.log('LOCKED'); setInterval(() => {}, 1000);`],
  { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((res, rej) => {
    child.stdout!.on('data', (b: Buffer) => { if (b.toString().includes('LOCKED')) res(); });
    child.on('exit', (c) => rej(new Error(`child exited ${c}`)));
  });
  return child;
}

describe('sparse raw images', () => {
  it('a fresh 10 GiB image is 10 GiB virtual and almost nothing allocated; 100 MiB written is ~100 MiB', () => {
    const path = join(dir, 'big.img');
    createRawImage(path, 10 * GiB);
    const fresh = imageInfo(path);
    expect(fresh).toMatchObject({ path, virtualBytes: 10 * GiB, format: 'raw', usedBy: [] });
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
    expect(readDiskLocks(path)).toMatchObject([{ vm: 'alpha', pid: process.pid, host: hostname(), home: '/homeA', readonly: false }]);
    expect(imageInfo(path).usedBy.map((u) => u.vm)).toEqual(['alpha']);
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

  it('an image reached through a symlink, or through a symlinked folder, has the same lock', () => {
    const path = join(dir, 'real.img');
    createRawImage(path, MiB);
    symlinkSync('real.img', join(dir, 'link.img'));
    mkdirSync(join(dir, 'sub'));
    symlinkSync(dir, join(dir, 'sub', 'up'));
    const a = DiskLock.acquire(path, 'alpha', '/homeA');
    for (const other of [join(dir, 'link.img'), join(dir, 'sub', 'up', 'real.img'), join(dir, 'sub', '..', 'link.img')]) {
      expect(() => DiskLock.acquire(other, 'beta', '/homeB')).toThrow(/in use by VM alpha/);
      expect(() => DiskLock.acquire(other, 'beta', '/homeB', true)).toThrow(/in use read-write by VM alpha/);
      expect(readDiskLocks(other).map((h) => h.vm)).toEqual(['alpha']);
      expect(imageInfo(other).usedBy.map((u) => u.vm)).toEqual(['alpha']);
    }
    a.release();
    const r = DiskLock.acquire(join(dir, 'link.img'), 'reader', '/homeB', true);
    expect(() => DiskLock.acquire(path, 'writer', '/homeA')).toThrow(/in use read-only by VM reader/);
    r.release();
    expect(readdirSync(dir).filter((n) => n.startsWith('link.img.lock'))).toEqual([]);
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
    // Kill only once sh has exec'd into `sleep 20`: sh itself reaps a finished background job
    // between commands, and then there is no zombie (the test failed with ENOENT on /proc/PID/stat).
    for (let i = 0; i < 250 && readFileSync(`/proc/${parent.pid}/cmdline`, 'utf8') !== 'sleep\x0020\x00'; i++) await new Promise((r) => setTimeout(r, 20));
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
    const child = await lockInChild(path, 'theirs', false);
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
    const rw = (path: string) => ({ path, readonly: false });
    expect(code(() => acquireDiskLocks([rw(p1), rw(p2)], 'vm', '/h'))).toBe('IN_USE');
    expect(readDiskLock(p1)).toBeNull();
    other.release();
    const both = acquireDiskLocks([rw(p1), rw(p2)], 'vm', '/h');
    expect(readDiskLock(p1)?.vm).toBe('vm');
    both.forEach((l) => l.release());
  });
});

describe('read-only disks: shared locks', () => {
  const ro = (path: string) => ({ path, readonly: true });
  const rw = (path: string) => ({ path, readonly: false });
  const message = (fn: () => unknown): string => {
    try { fn(); } catch (e) { expect((e as DiskError).code).toBe('IN_USE'); return (e as Error).message; }
    return 'no error';
  };
  /** Lock files next to the image (the writer's and the readers'). */
  const lockFiles = (path: string) => readdirSync(dir).filter((n) => n.startsWith(`${path.slice(dir.length + 1)}.lock`)).sort();

  it('readers share an image; a writer is refused naming every reader, and gets it once they are gone', () => {
    const path = join(dir, 'ro.img');
    createRawImage(path, MiB);
    const a = DiskLock.acquire(path, 'reader-a', '/h', true);
    const b = DiskLock.acquire(path, 'reader-b', '/h', true);
    expect(readDiskLocks(path).map((h) => [h.vm, h.readonly])).toEqual([['reader-a', true], ['reader-b', true]]);
    expect(imageInfo(path).usedBy.map((u) => u.vm)).toEqual(['reader-a', 'reader-b']);
    expect(lockFiles(path)).toHaveLength(2);
    expect(message(() => DiskLock.acquire(path, 'writer', '/h'))).toMatch(
      new RegExp(`disk ${path.replace(/[.]/g, '\\.')} is in use read-only by VM reader-a \\(pid ${process.pid}, daemon home /h\\) and VM reader-b .*a VM that writes it needs it alone`));
    expect(lockFiles(path)).toHaveLength(2); // the refused writer left nothing behind
    a.release();
    expect(code(() => DiskLock.acquire(path, 'writer', '/h'))).toBe('IN_USE');
    b.release();
    b.release(); // idempotent
    expect(lockFiles(path)).toEqual([]);
    const w = DiskLock.acquire(path, 'writer', '/h');
    expect(readDiskLocks(path)).toMatchObject([{ vm: 'writer', readonly: false }]);
    w.release();
  });

  it('a reader is refused while a writer runs, naming it; a dead writer does not keep readers or writers out', () => {
    const path = join(dir, 'rw.img');
    createRawImage(path, MiB);
    const w = DiskLock.acquire(path, 'writer', '/h');
    expect(message(() => DiskLock.acquire(path, 'reader', '/h', true))).toMatch(/in use read-write by VM writer .*only by VMs that all attach it read-only/);
    expect(lockFiles(path)).toEqual(['rw.img.lock']);
    w.release();
    const deadPid = Number(spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' }).stdout);
    writeFileSync(lockPathFor(path), JSON.stringify({ vm: 'ghost', pid: deadPid, host: hostname(), home: '/old', nonce: 'n9', procStart: null, since: '' }));
    const r = DiskLock.acquire(path, 'reader', '/h', true);
    expect(readDiskLocks(path).map((h) => h.vm)).toEqual(['reader']);
    r.release();
    DiskLock.acquire(path, 'writer', '/h').release(); // the next writer breaks the stale lock
  });

  it('a dead reader (or a zombie) does not keep a writer out, and its file is removed', async () => {
    const path = join(dir, 'deadreader.img');
    createRawImage(path, MiB);
    const deadPid = Number(spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' }).stdout);
    writeFileSync(`${lockPathFor(path)}.shared.dead`, JSON.stringify({ vm: 'ghost', pid: deadPid, host: hostname(), home: '/old', nonce: 'dead', procStart: null, since: '', readonly: true }));
    const parent = spawn('sh', ['-c', 'sleep 30 & echo $!; exec sleep 20'], { stdio: ['ignore', 'pipe', 'ignore'] });
    const zpid = Number(await new Promise<string>((res) => parent.stdout.once('data', (b: Buffer) => res(b.toString()))));
    writeFileSync(`${lockPathFor(path)}.shared.zombie`, JSON.stringify({ vm: 'undead', pid: zpid, host: hostname(), home: '/old', nonce: 'zombie', procStart: null, since: '', readonly: true }));
    expect(readDiskLocks(path).map((h) => h.vm)).toEqual(['undead']);
    expect(code(() => DiskLock.acquire(path, 'writer', '/h'))).toBe('IN_USE');
    process.kill(zpid, 'SIGKILL');
    for (let i = 0; i < 100 && !readFileSync(`/proc/${zpid}/stat`, 'utf8').includes(') Z '); i++) await new Promise((r) => setTimeout(r, 20));
    expect(readDiskLocks(path)).toEqual([]);
    const w = DiskLock.acquire(path, 'writer', '/h');
    expect(lockFiles(path)).toEqual(['deadreader.img.lock']);
    w.release();
    parent.kill('SIGKILL');
  });

  it('a reader on another host is respected, and the error says how to clear it', () => {
    const path = join(dir, 'remote-ro.img');
    createRawImage(path, MiB);
    const far = `${lockPathFor(path)}.shared.far`;
    writeFileSync(far, JSON.stringify({ vm: 'far', pid: 1, host: 'some-other-host', home: '/h', nonce: 'far', procStart: null, since: '', readonly: true }));
    expect(message(() => DiskLock.acquire(path, 'me', '/me'))).toMatch(/in use read-only by VM far \(pid 1 on host some-other-host.*remove .*remote-ro\.img\.lock\.shared\.far/);
    const r = DiskLock.acquire(path, 'me', '/me', true); // another reader is fine
    r.release();
    rmSync(far);
  });

  it('holds across processes: readers in two processes share; a writer is refused until both are gone', async () => {
    const path = join(dir, 'xro.img');
    createRawImage(path, MiB);
    const child = await lockInChild(path, 'theirs', true);
    const ours = DiskLock.acquire(path, 'ours', '/a', true);
    expect(readDiskLocks(path).map((h) => [h.vm, h.pid])).toEqual([['theirs', child.pid], ['ours', process.pid]]);
    expect(message(() => DiskLock.acquire(path, 'writer', '/a'))).toMatch(/read-only by VM theirs .* and VM ours /);
    ours.release();
    expect(message(() => DiskLock.acquire(path, 'writer', '/a'))).toMatch(/read-only by VM theirs /);
    child.kill('SIGKILL'); // its worker "crashed": the lock goes with it
    await new Promise((res) => child.on('exit', res));
    const w = DiskLock.acquire(path, 'writer', '/a');
    w.release();
    // ... and the other way round: their writer keeps our reader out
    const writer = await lockInChild(path, 'theirs-rw', false);
    expect(message(() => DiskLock.acquire(path, 'ours', '/a', true))).toMatch(/in use read-write by VM theirs-rw/);
    writer.kill('SIGKILL');
    await new Promise((res) => writer.on('exit', res));
    DiskLock.acquire(path, 'ours', '/a', true).release();
  });

  it('under contention from four processes, a writer never overlaps a reader or another writer', async () => {
    const path = join(dir, 'race.img');
    createRawImage(path, MiB);
    await lockInChild(path, 'warm-up', true).then((c) => { c.kill('SIGKILL'); return new Promise((r) => c.on('exit', r)); });
    const bundle = join(dir, 'lock-child.mjs');
    const journal = join(dir, 'race.journal');
    // Each process takes the lock again and again (a writer one time in three), and while it holds
    // it appends "enter" and then "exit" lines to one journal (O_APPEND: one ordered stream).
    const script = `const m = await import(${JSON.stringify(bundle)}); const fs = await import('node:fs');
      const end = Date.now() + 1500; const nap = new Int32Array(new SharedArrayBuffer(4));
      while (Date.now() < end) {
        const ro = Math.random() < 2 / 3; let l;
        try { l = m.DiskLock.acquire(${JSON.stringify(path)}, 'p' + process.pid, '/h', ro); } catch (e) { if (e.code !== 'IN_USE') throw e; continue; }
        fs.appendFileSync(${JSON.stringify(journal)}, (ro ? 'R' : 'W') + ' enter\\n');
        Atomics.wait(nap, 0, 0, 1 + Math.random() * 2);
        fs.appendFileSync(${JSON.stringify(journal)}, (ro ? 'R' : 'W') + ' exit\\n');
        l.release();
      }`;
    const kids = Array.from({ length: 4 }, () => spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'ignore', 'inherit'] }));
    const codes = await Promise.all(kids.map((k) => new Promise<number | null>((r) => k.on('exit', r))));
    expect(codes).toEqual([0, 0, 0, 0]);
    let readers = 0, writers = 0, maxReaders = 0, writes = 0;
    for (const line of readFileSync(journal, 'utf8').trim().split('\n')) {
      const [mode, what] = line.split(' ');
      if (what === 'enter') {
        expect(writers, 'someone entered while a writer held the disk').toBe(0);
        if (mode === 'W') { expect(readers, 'a writer entered while readers held the disk').toBe(0); writers++; writes++; }
        else maxReaders = Math.max(maxReaders, ++readers);
      } else if (mode === 'W') writers--; else readers--;
    }
    expect(writes).toBeGreaterThan(0);
    expect(maxReaders).toBeGreaterThan(1); // readers really shared it
    expect(readDiskLocks(path)).toEqual([]);
  }, 30_000);

  it('acquireDiskLocks takes read-only disks shared and the others exclusive, all or nothing', () => {
    const base = join(dir, 'base.img');
    const scratch = join(dir, 'scratch.img');
    createRawImage(base, MiB);
    createRawImage(scratch, MiB);
    const one = acquireDiskLocks([ro(base), rw(scratch)], 'one', '/h');
    expect(code(() => acquireDiskLocks([ro(base), rw(scratch)], 'two', '/h'))).toBe('IN_USE');
    expect(readDiskLocks(base).map((h) => h.vm)).toEqual(['one']); // two's reader lock was undone
    const scratch2 = join(dir, 'scratch2.img');
    createRawImage(scratch2, MiB);
    const two = acquireDiskLocks([ro(base), rw(scratch2)], 'two', '/h');
    expect(readDiskLocks(base).map((h) => h.vm)).toEqual(['one', 'two']);
    expect(code(() => deleteCreatedDisks([base]))).toBe('IN_USE');
    [...one, ...two].forEach((l) => l.release());
    expect(readDiskLocks(base)).toEqual([]);
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
