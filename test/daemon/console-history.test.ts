// The console history a VM keeps in the daemon (src/daemon/console-history.ts): the newest bytes
// exactly, and a JavaScript heap that does not grow with the number of chunks the guest sends
// (issue 11: 18 ticker VMs grew the daemon's heap by 4 MB a minute).
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { ConsoleHistory } from '../../src/daemon/console-history.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

/** Heap bytes still used after `fill` returns what it built (kept alive until measured). */
function heapHeldBy(fill: () => unknown): number {
  gc();
  const before = process.memoryUsage().heapUsed;
  const kept = fill();
  gc();
  const after = process.memoryUsage().heapUsed;
  expect(kept).toBeDefined();
  return after - before;
}

/** "tick N\n" as a guest's console sends it every 50 ms: one small chunk each. */
const tick = (i: number): Buffer => Buffer.from(`tick ${i}\n`);

describe('ConsoleHistory', () => {
  it('holds the newest `limit` bytes of everything appended, oldest first', () => {
    let seed = 7;
    const rnd = (n: number): number => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    for (const limit of [4096, 5000, 65536]) {
      const h = new ConsoleHistory(limit);
      let all = Buffer.alloc(0);
      for (let i = 0; i < 400; i++) {
        // Mostly small chunks, sometimes one larger than the whole limit.
        const n = rnd(10) === 0 ? rnd(limit * 2) : rnd(300);
        const chunk = Buffer.alloc(n);
        for (let j = 0; j < n; j++) chunk[j] = rnd(256);
        h.append(chunk);
        all = Buffer.concat([all, chunk]);
        const want = all.subarray(Math.max(0, all.length - limit));
        expect(h.length).toBe(want.length);
        expect(h.contents().equals(want)).toBe(true);
        expect(h.capacity).toBeLessThanOrEqual(limit);
      }
    }
  });

  it('grows its buffer only as far as the output needs, and clear() gives it back', () => {
    const h = new ConsoleHistory(1024 * 1024);
    expect(h.contents().length).toBe(0);
    h.append(Buffer.from('OpenSBI v1.2\n'));
    expect(h.capacity).toBe(4096);
    expect(h.contents().toString()).toBe('OpenSBI v1.2\n');
    for (let i = 0; i < 1000; i++) h.append(tick(i));
    expect(h.capacity).toBe(16384);
    expect(h.contents().toString().endsWith('tick 998\ntick 999\n')).toBe(true);
    h.clear();
    expect(h.length).toBe(0);
    expect(h.capacity).toBe(0);
    expect(h.contents().length).toBe(0);
    h.append(Buffer.from('boot 2\n'));
    expect(h.contents().toString()).toBe('boot 2\n');
  });

  it('a copy is returned: later output does not change what was read', () => {
    const h = new ConsoleHistory(4096);
    h.append(Buffer.from('abc'));
    const c = h.contents();
    h.append(Buffer.from('def'));
    expect(c.toString()).toBe('abc');
  });

  it('refuses a limit that is not a positive number of bytes', () => {
    expect(() => new ConsoleHistory(0)).toThrow(/positive number of bytes, not 0/);
    expect(() => new ConsoleHistory(1.5)).toThrow(/not 1.5/);
  });

  it('200 000 small chunks in a 1 MiB history hold no more heap than a few chunks do', () => {
    const CHUNKS = 200_000;
    const LIMIT = 1024 * 1024;
    // The measurement itself: the chunks kept as they came (what the daemon did before) hold tens
    // of MB of heap for about 1.5 MB of output, so a history that kept them would fail below.
    const asChunks = heapHeldBy(() => {
      const kept: Buffer[] = [];
      for (let i = 0; i < CHUNKS; i++) kept.push(tick(i));
      return kept;
    });
    expect(asChunks).toBeGreaterThan(10 * 1024 * 1024);
    const ring = heapHeldBy(() => {
      const h = new ConsoleHistory(LIMIT);
      for (let i = 0; i < CHUNKS; i++) h.append(tick(i));
      expect(h.length).toBe(LIMIT);
      return h;
    });
    // One buffer of at most the limit (outside the heap), whatever the number of chunks.
    expect(ring).toBeLessThan(2 * 1024 * 1024);
  });
});
