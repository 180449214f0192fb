// qcow2 through the real CLI and daemon: `disk create/info/convert/resize` with backing chains
// (qemu-img reads what vmctl writes and says the same), VMs on qcow2 overlays of one shared base,
// damaged images refused with a clear error, and the kill test (SIGKILL the daemon while the guest
// allocates clusters: qemu-img check finds no errors, every reported write is in the image).

import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openDiskImage } from '../../src/disk/image.js';
import { alive, BIN, ROOT, sleep, until, VmctlHome } from '../e2e/harness.js';
import { qemuCheck, qemuImg, qemuInfo, qemuSame } from '../helpers/qemu-img.js';

const h = new VmctlHome();
afterAll(() => h.cleanup());
const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

const vmctl = (args: string[], expectCode = 0): Promise<string> => h.expectExit(args, expectCode);

const p = (name: string) => join(h.home, name);

describe('vmctl disk with qcow2', () => {
  it('create: qcow2, an overlay taking its size from the base; info (text and --json) says what qemu-img says', async () => {
    writeFileSync(p('base.raw'), Buffer.alloc(0));
    spawnSync('truncate', ['-s', '64M', p('base.raw')]);
    expect(await vmctl(['disk', 'create', p('empty.qcow2'), '--format', 'qcow2', '--size', '10GiB'])).toMatch(/10GiB virtual, .* allocated \(qcow2\)/);
    expect(await vmctl(['disk', 'create', p('over.qcow2'), '--backing', p('base.raw')])).toMatch(/64MiB virtual, .*\(qcow2 on .*base\.raw \(raw\)\)/);
    // A relative --backing is relative to the current folder and recorded relative to the overlay.
    const r = spawnSync(process.execPath, [BIN, 'disk', 'create', 'top.qcow2', '--backing', 'over.qcow2', '--size', '128MiB'], { cwd: h.home, env: h.env(), encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);

    const q = qemuInfo(p('top.qcow2'), true) as Record<string, unknown>[];
    expect(q.map((l) => [l.filename, l.format, l['virtual-size'], l['backing-filename'] ?? null, l['backing-filename-format'] ?? null])).toEqual([
      [p('top.qcow2'), 'qcow2', 128 * MiB, 'over.qcow2', 'qcow2'],
      [p('over.qcow2'), 'qcow2', 64 * MiB, p('base.raw'), 'raw'],
      [p('base.raw'), 'raw', 64 * MiB, null, null],
    ]);
    for (const f of ['empty.qcow2', 'over.qcow2', 'top.qcow2']) expect(qemuCheck(p(f))).toMatchObject({ errors: 0, leaks: 0 });

    const info = JSON.parse(await vmctl(['disk', 'info', p('top.qcow2'), '--json']));
    expect(info).toMatchObject({
      path: p('top.qcow2'), format: 'qcow2', virtualBytes: 128 * MiB, backingFile: 'over.qcow2', backingPath: p('over.qcow2'), backingFormat: 'qcow2',
      qcow2: { version: 3, clusterBytes: 65536, refcountBits: 16, lazyRefcounts: false, dirty: false, corrupt: false, snapshots: 0 }, usedBy: [],
    });
    expect(info.backingChain.map((l: { path: string; format: string; virtualBytes: number }) => [l.path, l.format, l.virtualBytes]))
      .toEqual([[p('over.qcow2'), 'qcow2', 64 * MiB], [p('base.raw'), 'raw', 64 * MiB]]);
    const text = await vmctl(['disk', 'info', p('top.qcow2')]);
    expect(text).toMatch(new RegExp(`image: +${p('top.qcow2')}\\nfile format: +qcow2\\nvirtual size: 128MiB \\(134217728 bytes\\)`));
    expect(text).toContain(`backing file: over.qcow2 (actual path: ${p('over.qcow2')})\nbacking file format: qcow2\n`);
    expect(text).toMatch(/\n\nimage: +.*over\.qcow2\n[^]*\n\nimage: +.*base\.raw\nfile format: +raw\n/);

    // Mistakes: exit 2 for usage, 1 for a missing base, never an overwrite.
    expect(await vmctl(['disk', 'create', p('x.img'), '--backing', p('base.raw'), '--format', 'raw'], 2)).toContain('--backing needs --format qcow2');
    expect(await vmctl(['disk', 'create', p('x.img')], 2)).toContain('--size is needed (or --backing FILE');
    expect(await vmctl(['disk', 'create', p('x.img'), '--size', '1GiB', '--format', 'vmdk'], 2)).toContain('--format: "vmdk" is not an image format; expected raw or qcow2');
    expect(await vmctl(['disk', 'create', p('x.img'), '--size', '1GiB', '--format', 'qcow2', '--cluster-size', '3000'], 2)).toContain('--cluster-size');
    expect(await vmctl(['disk', 'create', p('x.qcow2'), '--backing', p('nope.raw')], 1)).toContain(`${p('nope.raw')}: no such disk image`);
    expect(await vmctl(['disk', 'create', p('over.qcow2'), '--backing', p('base.raw')], 1)).toContain('already exists; vmctl never overwrites');
    expect(existsSync(p('x.img')) || existsSync(p('x.qcow2'))).toBe(false);
  });

  it('convert: raw -> qcow2 -> raw round trip, a chain comes out flattened; qemu-img compare equal', async () => {
    // Some data in each layer.
    const put = (img: string, at: number, text: string) => {
      const be = openDiskImage(img, false);
      const b = new Uint8Array(512);
      b.set(Buffer.from(text));
      be.write(at / 512, [b]);
      be.close();
    };
    put(p('base.raw'), 0, 'base sector 0');
    put(p('base.raw'), 5 * MiB, 'base at 5MiB');
    put(p('over.qcow2'), 5 * MiB, 'over at 5MiB');
    put(p('top.qcow2'), 100 * MiB, 'top at 100MiB');
    await vmctl(['disk', 'convert', p('top.qcow2'), p('flat.qcow2'), '--format', 'qcow2']);
    await vmctl(['disk', 'convert', p('flat.qcow2'), p('flat.raw'), '--format', 'raw']);
    await vmctl(['disk', 'convert', p('flat.raw'), p('again.qcow2'), '--format', 'qcow2']);
    const flat = qemuInfo(p('flat.qcow2'));
    expect(flat['backing-filename']).toBeUndefined();
    expect(flat['virtual-size']).toBe(128 * MiB);
    for (const f of ['flat.qcow2', 'flat.raw', 'again.qcow2']) expect(qemuSame(p('top.qcow2'), p(f)).same).toBe(true);
    for (const f of ['flat.qcow2', 'again.qcow2']) expect(qemuCheck(p(f))).toMatchObject({ errors: 0, leaks: 0 });
    // Sparse: only the clusters holding data.
    expect(JSON.parse(await vmctl(['disk', 'info', p('flat.qcow2'), '--json'])).allocatedBytes).toBeLessThan(2 * MiB);
    expect(await vmctl(['disk', 'convert', p('top.qcow2'), p('flat.raw'), '--format', 'raw'], 1)).toContain('already exists');
    expect(await vmctl(['disk', 'convert', p('top.qcow2'), p('y.img')], 2)).toMatch(/required option '--format/);
  });

  it('resize grows a qcow2 image (also when its L1 table must move); shrinking is refused; qemu-img agrees', async () => {
    await vmctl(['disk', 'create', p('grow.qcow2'), '--format', 'qcow2', '--size', '1MiB', '--cluster-size', '512B']);
    const be = openDiskImage(p('grow.qcow2'), false);
    const b = new Uint8Array(512).fill(7);
    be.write(1000, [b]);
    be.close();
    // 512-byte clusters: one L1 cluster maps 2 MiB, so 1 GiB needs a new, larger L1 table.
    expect(await vmctl(['disk', 'resize', p('grow.qcow2'), '--size', '1GiB'])).toContain('Grew');
    expect(qemuInfo(p('grow.qcow2'))['virtual-size']).toBe(GiB);
    expect(qemuCheck(p('grow.qcow2'))).toMatchObject({ errors: 0, leaks: 0 });
    expect(await vmctl(['disk', 'resize', p('empty.qcow2'), '--size', '12GiB'])).toContain('10GiB -> 12GiB');
    expect(qemuInfo(p('empty.qcow2'))['virtual-size']).toBe(12 * GiB);
    expect(await vmctl(['disk', 'resize', p('empty.qcow2'), '--size', '1GiB'], 2)).toContain('does not shrink them');
    const r = openDiskImage(p('grow.qcow2'), true);
    const got = new Uint8Array(512);
    r.read(1000, [got]);
    r.close();
    expect(got).toEqual(b);
  });

  it('damaged or unsupported images: disk info exits 1 naming the problem; a VM file naming one is a config error at its path', async () => {
    copyFileSync(p('empty.qcow2'), p('bad.qcow2'));
    const img = readFileSync(p('bad.qcow2'));
    img.writeUInt32BE(0x40000001, 44); // l1_table_offset, not aligned
    writeFileSync(p('bad.qcow2'), img);
    expect(await vmctl(['disk', 'info', p('bad.qcow2')], 1)).toContain('damaged qcow2 header: the L1 table offset 0x40000001 is not aligned to a cluster (65536 bytes)');
    qemuImg(['create', '-q', '-f', 'qcow2', '-o', 'data_file=' + p('ext.data'), p('ext.qcow2'), '1M']);
    expect(await vmctl(['disk', 'info', p('ext.qcow2')], 1)).toContain('qcow2 feature not supported by vmctl: external data file');
    const f = p('bad.yaml');
    writeFileSync(f, `name: bad\nmemory: 16MiB\nboot:\n  kernel: ${join(ROOT, 'fixtures/demo/loop.elf')}\ndisks:\n  - path: ./bad.qcow2\n`);
    const out = await vmctl(['create', '-f', f], 2);
    expect(out).toContain(`${f}:6:11: disks[0].path: ${p('bad.qcow2')}: damaged qcow2 header`);
    expect(await vmctl(['validate', '-f', f], 2)).toContain('damaged qcow2 header');
  });

  it('two VMs run on overlays of one base; the base is shared read-only (a VM writing it is refused, exit 5)', async () => {
    await vmctl(['disk', 'create', p('a.qcow2'), '--backing', p('base.raw')]);
    await vmctl(['disk', 'create', p('b.qcow2'), '--backing', p('base.raw')]);
    const file = (name: string, disk: string) => {
      const f = p(`${name}.yaml`);
      writeFileSync(f, `name: ${name}\nmemory: 16MiB\nboot:\n  kernel: ${join(ROOT, 'fixtures/demo/loop.elf')}\ndisks:\n  - path: ./${disk}\n`);
      return f;
    };
    await vmctl(['create', '-f', file('ov-a', 'a.qcow2')]);
    await vmctl(['create', '-f', file('ov-b', 'b.qcow2')]);
    await vmctl(['create', '-f', file('base-w', 'base.raw')]);
    await vmctl(['start', 'ov-a', '--wait-for', 'tick']);
    await vmctl(['start', 'ov-b', '--wait-for', 'tick']);
    expect(await vmctl(['start', 'base-w'], 5)).toMatch(/VM base-w cannot start: disk .*base\.raw is in use read-only by VM ov-a \(.*\) and VM ov-b/);
    const base = JSON.parse(await vmctl(['disk', 'info', p('base.raw'), '--json']));
    expect(base.usedBy).toMatchObject([{ vm: 'ov-a', readonly: true }, { vm: 'ov-b', readonly: true }]);
    const top = JSON.parse(await vmctl(['disk', 'info', p('a.qcow2'), '--json']));
    expect(top.usedBy).toMatchObject([{ vm: 'ov-a', readonly: false }]);
    expect(top.backingChain[0].usedBy.map((u: { vm: string }) => u.vm)).toEqual(['ov-a', 'ov-b']);
    // Converting or resizing an image a VM writes: refused while it runs.
    expect(await vmctl(['disk', 'convert', p('a.qcow2'), p('a-copy.qcow2'), '--format', 'qcow2'], 5)).toContain('in use read-write by VM ov-a');
    expect(await vmctl(['disk', 'resize', p('a.qcow2'), '--size', '1GiB'], 5)).toContain('in use by VM ov-a');
    await vmctl(['stop', 'ov-a', '--force']);
    await vmctl(['stop', 'ov-b', '--force']);
    await vmctl(['start', 'base-w', '--wait-for', 'tick']);
    expect(await vmctl(['start', 'ov-a'], 5)).toMatch(/disk .*base\.raw is in use read-write by VM base-w/);
    await vmctl(['stop', 'base-w', '--force']);
    // A VM that would write a base its other disk reads through: a config error.
    const both = p('both.yaml');
    writeFileSync(both, `name: both\nmemory: 16MiB\nboot:\n  kernel: ${join(ROOT, 'fixtures/demo/loop.elf')}\ndisks:\n  - path: ./a.qcow2\n  - path: ./base.raw\n`);
    expect(await vmctl(['create', '-f', both], 2)).toContain(`disks[1].path: "${p('base.raw')}" is a backing file of disks[0], so the VM cannot also write it`);
    for (const vm of ['ov-a', 'ov-b', 'base-w']) await vmctl(['delete', vm]);
  }, 120_000);

  it('kill test: SIGKILL the daemon while the guest allocates clusters; qemu-img check finds no errors; every reported write is in the image', async () => {
    // 512-byte clusters: every one-sector write of the guest allocates a cluster (and often an
    // L2 table or a refcount block), so the kill lands in the middle of allocations.
    await vmctl(['disk', 'create', p('kill.qcow2'), '--format', 'qcow2', '--size', '4GiB', '--cluster-size', '512B']);
    copyFileSync(join(ROOT, 'fixtures/disk/blk-seq.elf'), p('blk-seq.elf'));
    writeFileSync(p('kill.yaml'), 'name: kill\nmemory: 16MiB\nboot:\n  kernel: ./blk-seq.elf\ndisks:\n  - path: ./kill.qcow2\n');
    await vmctl(['create', '-f', p('kill.yaml')]);
    await vmctl(['start', 'kill', '--wait-for', 'seq 1\\b']);
    const con = h.spawn(['console', 'kill']);
    let seen = '';
    con.stdout!.on('data', (b: Buffer) => { seen += b.toString('latin1'); });
    const seqs = (t: string) => [...t.matchAll(/^seq (\d+)\r?\n/gm)].map((m) => Number(m[1]));
    await until(() => seqs(seen).length > 2000, 60_000, 'console output');
    await sleep(100 + Math.floor(Math.random() * 1000));
    const pid = h.pid()!;
    process.kill(pid, 'SIGKILL');
    await until(() => !alive(pid), 10_000, 'daemon death');
    await new Promise((r) => { if (con.exitCode !== null) r(null); else con.on('exit', r); });
    const reported = seqs(seen);
    expect(reported.length).toBeGreaterThan(2000);
    const c = qemuCheck(p('kill.qcow2'));
    expect(c.errors, c.text).toBe(0);
    expect(c.leaks, c.text).toBeLessThanOrEqual(2); // a death between a refcount and its L2 entry
    const be = openDiskImage(p('kill.qcow2'), true);
    const s = new Uint8Array(512);
    const missing: number[] = [];
    for (const n of reported) {
      be.read(n, [s]);
      if (Buffer.from(s.subarray(0, 4)).toString() !== 'SEQ!' || Buffer.from(s).readBigUInt64LE(8) !== BigInt(n)) missing.push(n);
    }
    be.close();
    expect(missing.slice(0, 10), `${missing.length} of ${reported.length} reported writes are not in the image`).toEqual([]);
    // A new daemon starts the VM (now aborted) on the same image: the dead daemon's locks are stale.
    await vmctl(['start', 'kill', '--wait-for', 'seq 1\\b']);
    await vmctl(['stop', 'kill', '--force']);
    expect(qemuCheck(p('kill.qcow2')).errors).toBe(0);
  }, 180_000);
});
