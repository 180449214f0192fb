// Crash safety of qcow2 writes: the process "dies" after its Nth write to the image (the host
// file refuses everything after it, as a SIGKILL leaves the page cache: each pwrite done or not).
// For every sampled N, `qemu-img check` must find no errors (leaks, bounded by the clusters of the
// request in flight, are allowed: the death fell between a refcount and its L2 entry), and every guest
// write that completed before the death must read back; the one in flight reads as before or after.

import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { SECTOR_SIZE } from '../../src/disk/block-backend.js';
import { openDiskImage, readQcow2Header } from '../../src/disk/image.js';
import { HostFile } from '../../src/disk/host-file.js';
import { Qcow2Image } from '../../src/disk/qcow2/image.js';
import { qemuCheck, qemuImg } from '../helpers/qemu-img.js';

const dir = mkdtempSync(join(tmpdir(), 'vmctl-qcow2-crash-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const KiB = 1024;

class Killed extends Error {}

/** A HostFile whose process dies after `limit` writes (writes and fsyncs counted, fsyncs after
 *  the death refused too); `limit` Infinity counts. `syncAt` records when fsyncs happened. */
class DyingFile extends HostFile {
  writes = 0;
  readonly syncAt: number[] = [];
  constructor(path: string, private readonly limit: number) { super(path, true); }
  private step(): void {
    if (this.writes >= this.limit) throw new Killed('killed');
    this.writes++;
  }
  override write(buf: Uint8Array, pos: number): void { this.step(); super.write(buf, pos); }
  override writev(bufs: readonly Uint8Array[], pos: number): void { this.step(); super.writev(bufs, pos); }
  override sync(): void {
    if (this.writes >= this.limit) throw new Killed('killed');
    this.syncAt.push(this.writes);
  }
  /** Death: the descriptor goes away without another write or fsync. */
  override close(): void {
    try { super.close(); } catch { /* fine */ }
  }
}

type Op = { kind: 'write'; sector: number; data: Uint8Array } | { kind: 'zero'; sector: number; count: number; unmap: boolean } | { kind: 'discard'; sector: number; count: number };

/** Guest-like requests that allocate L2 tables and refcount blocks, copy from the backing file,
 *  overwrite in place, zero and discard; enough data to make the refcount table grow. */
function operations(sectors: number): Op[] {
  let x = 99;
  const r = () => { x = (x * 1103515245 + 12345) >>> 0; return x / 0x1_0000_0000; };
  const ops: Op[] = [];
  let fill = 1;
  const write = (sector: number, n: number): void => {
    ops.push({ kind: 'write', sector, data: new Uint8Array(n * SECTOR_SIZE).fill(fill++ % 250 + 1) });
  };
  for (let s = 0; s + 96 <= sectors; s += 96) write(s, 96 - (s % 5)); // sequential, not cluster aligned
  for (let i = 0; i < 40; i++) {
    const n = 1 + Math.floor(r() * 24);
    const s = Math.floor(r() * (sectors - n));
    const k = r();
    if (k < 0.6) write(s, n);
    else if (k < 0.8) ops.push({ kind: 'zero', sector: s, count: n, unmap: k < 0.7 });
    else ops.push({ kind: 'discard', sector: s, count: n });
  }
  return ops;
}

function apply(img: Qcow2Image, op: Op): void {
  if (op.kind === 'write') img.write(op.sector, [op.data]);
  else if (op.kind === 'zero') img.writeZeroes(op.sector, op.count, op.unmap);
  else img.discard(op.sector, op.count);
}

function applyMirror(m: Uint8Array, op: Op): [number, number] {
  const a = op.sector * SECTOR_SIZE;
  if (op.kind === 'write') { m.set(op.data, a); return [a, a + op.data.length]; }
  // With 512-byte clusters a discard always covers whole clusters, which then read as zeros
  // (over a backing file they become zero clusters).
  const b = a + op.count * SECTOR_SIZE;
  m.fill(0, a, b);
  return [a, b];
}

describe('qcow2 crash safety (a death after each write to the image)', () => {
  it('no qemu-img check errors at any sampled crash point; completed writes are there', () => {
    // 512-byte clusters and 64-bit refcounts: a refcount block counts 64 clusters and the first
    // table only 2 MiB, so the workload allocates tables, blocks, and grows the table.
    const base = join(dir, 'base.raw');
    const baseData = new Uint8Array(3 * 1024 * KiB);
    for (let i = 0; i < baseData.length; i += 512) baseData.fill((i / 512) % 200 + 40, i, i + 512);
    writeFileSync(base, baseData);
    const pristine = join(dir, 'pristine.qcow2');
    qemuImg(['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=512,refcount_bits=64', '-b', base, '-F', 'raw', pristine]);
    const ops = operations(baseData.length / SECTOR_SIZE);

    // A dry run counts the writes and finds the fsyncs (refcount table growth).
    const img = join(dir, 'img.qcow2');
    copyFileSync(pristine, img);
    const counter = new DyingFile(img, Infinity);
    const full = new Qcow2Image({ file: counter, header: readQcow2Header(counter), backing: openDiskImage(base, true), readonly: false });
    for (const op of ops) apply(full, op);
    full.close();
    const total = counter.writes;
    expect(counter.syncAt.length, 'the workload should grow the refcount table').toBeGreaterThan(0);
    expect(qemuCheck(img)).toMatchObject({ errors: 0, leaks: 0 });

    const points = new Set<number>();
    const stride = Math.max(1, Math.ceil(total / 120));
    for (let n = 0; n <= total; n += stride) points.add(n);
    for (const s of counter.syncAt) for (let n = Math.max(0, s - 12); n <= Math.min(total, s + 12); n++) points.add(n);
    let leaks = 0;
    let worst = 0;
    for (const limit of [...points].sort((a, b) => a - b)) {
      copyFileSync(pristine, img);
      const file = new DyingFile(img, limit);
      const q = new Qcow2Image({ file, header: readQcow2Header(file), backing: openDiskImage(base, true), readonly: false });
      const before = baseData.slice();
      let k = 0;
      try {
        for (; k < ops.length; k++) {
          apply(q, ops[k]);
          applyMirror(before, ops[k]);
        }
      } catch (e) {
        if (!(e instanceof Killed)) throw e;
      }
      q.close();
      const c = qemuCheck(img);
      expect(c.errors, `crash after write ${limit} of ${total} (op ${k}):\n${c.text}`).toBe(0);
      leaks += c.leaks;
      worst = Math.max(worst, c.leaks);
      // What completed is there; the request in flight reads as before, after, or (zeroing) zero.
      const after = before.slice();
      const [a, b] = k < ops.length ? applyMirror(after, ops[k]) : [0, 0];
      const r = openDiskImage(img, true);
      const got = new Uint8Array(baseData.length);
      r.read(0, [got]);
      r.close();
      for (let i = 0; i < got.length; i++) {
        if (got[i] === before[i]) continue;
        const inFlight = i >= a && i < b && (got[i] === after[i] || (ops[k].kind !== 'write' && got[i] === 0));
        if (!inFlight) throw new Error(`crash after write ${limit} (op ${k}): byte ${i} reads ${got[i]}, expected ${before[i]}`);
      }
    }
    // A leak needs the death between refcounts raised and the L2 entries that use them (or inside
    // the refcount table switch): at most the clusters of the one request in flight, plus a table.
    const perRequest = Math.max(...ops.map((o) => (o.kind === 'write' ? o.data.length : o.count * SECTOR_SIZE) / 512)) + 8;
    console.log(`qcow2 crash test: ${points.size} crash points of ${total} writes; leaked clusters: ${leaks} in total, at most ${worst} per crash (bound ${perRequest})`);
    expect(worst).toBeLessThanOrEqual(perRequest);
  }, 300_000);
});
