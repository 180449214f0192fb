// ChunkViews.load64/store64 (src/memory/ram.ts), the doubleword accesses of harts on several
// threads, keep every bit of every pattern once V8's optimizing tiers compile them: a NaN read
// through a Float64Array is the engine's to re-encode (Node 26's Maglev quiets signalling NaNs;
// reading 0x7ff0000000000001 that way gave 0x7ff8000000000001 after ~500 calls), so the loops
// below run long enough for Maglev and TurboFan to take over, and compare with the int32 halves.
import { describe, expect, test } from 'vitest';
import { ChunkViews, D32, newChunkMemory } from '../../src/memory/ram.js';

const PATTERNS: [number, number][] = [ // [lo, hi]
  [1, 0x7ff00000], [0, 0x7ff00001], [0x12345678, 0x7ff7ffff], [1, 0xfff00000 | 0], [-1, 0xfff7ffff | 0], // signalling NaNs
  [0, 0x7ff80000], [5, 0xfff80000 | 0], [-1, -1], [0x00001234, 0xffffffd8 | 0],                         // quiet NaNs
  [0, 0x7ff00000], [0, 0xfff00000 | 0], [0, 0], [0, 0x80000000 | 0], [0, 0x3ff00000], [0x9abcdef0 | 0, 0x12345678],
];
const ROUNDS = 20_000;

function loadAll(c: ChunkViews, out: Int32Array): void {
  for (let i = 0; i < PATTERNS.length; i++) { c.load64(i * 8); out[2 * i] = D32[0]; out[2 * i + 1] = D32[1]; }
}
function storeAll(c: ChunkViews, at: number): void {
  for (let i = 0; i < PATTERNS.length; i++) c.store64(at + i * 8, PATTERNS[i][0], PATTERNS[i][1]);
}

describe('doublewords through ChunkViews', () => {
  test('load64 returns the exact bits of every NaN and non-NaN pattern, in every tier', () => {
    const c = new ChunkViews(newChunkMemory());
    PATTERNS.forEach(([lo, hi], i) => { c.i32[2 * i] = lo; c.i32[2 * i + 1] = hi; });
    const want = Int32Array.from(PATTERNS.flat()), got = new Int32Array(want.length);
    let bad = 0;
    for (let r = 0; r < ROUNDS; r++) {
      loadAll(c, got);
      for (let k = 0; k < want.length; k++) if (got[k] !== want[k]) bad++;
    }
    expect(bad).toBe(0);
  });

  test('store64 writes the exact bits of every pattern, in every tier', () => {
    const c = new ChunkViews(newChunkMemory());
    const at = 4096, want = Int32Array.from(PATTERNS.flat());
    let bad = 0;
    for (let r = 0; r < ROUNDS; r++) {
      c.i32.fill(0x55555555, at >> 2, (at >> 2) + want.length);
      storeAll(c, at);
      for (let k = 0; k < want.length; k++) if (c.i32[(at >> 2) + k] !== want[k]) bad++;
    }
    expect(bad).toBe(0);
  });
});
