// The WebAssembly tier's translation cache (wasm/region-cache.ts): a machine running code that a
// machine before it in the same thread made a wasm region of gets that region from the cache
// (instantiated, not translated) as soon as the code is reached Hart.wasmProbe times, long before
// wasmHot; code at the same address with other bytes is a miss. Every run is compared with the
// interpreter alone (the two words the program stores, one of them rdinstret, and the registers).
import { beforeEach, describe, expect, test } from 'vitest';
import type { Hart } from '../../src/riscv/hart.js';
import { MessageChannel } from 'node:worker_threads';
import { clearRegionCache, type CachedRegion, exportRegionCache, importRegionCache, regionCacheBytes, regionCacheStats } from '../../src/riscv/wasm/region-cache.js';
import { runAsm, type Mini } from './harness.js';
import { program, DATA } from './prelude.js';

function u64(m: Mini, addr: number): bigint {
  const b = new Uint8Array(8);
  m.mem.ram.read(addr, b);
  return new DataView(b.buffer).getBigUint64(0, true);
}

const ITER = 3000;
/** A loop whose head is reached ITER times, with `step` in its body (the bytes that differ). */
const loop = (step: number): string => program(`
      li s0, ${DATA}
      li s1, ${ITER}
      li t1, 0
1:    xor t1, t1, s1
      addi t1, t1, ${step}
      slli t4, t1, 3
      xor t1, t1, t4
      sd t1, 16(s0)
      ld t3, 16(s0)
      add t1, t1, t3
      addi s1, s1, -1
      bnez s1, 1b
      sd t1, 0(s0)
      rdinstret t0
      sd t0, 8(s0)
      j pass`);

/** Reaches that make a region (above ITER / 2: the first machine runs most of the loop
 *  interpreted) and at which the cache is asked. */
const HOT = 2000, PROBE = 16;

/** `src` with the WebAssembly tier (cache on or off), checked against the interpreter alone. */
function run(src: string, cache = true, smp = false): Hart {
  const m = runAsm(src, {
    max: 5_000_000,
    setup: (x) => {
      const h = x.harts[0];
      h.jitEnabled = true; h.wasmTier = true; h.wasmHot = HOT; h.wasmProbe = cache ? PROBE : -1; h.wasmCache = cache;
      h.smp = smp;
    },
  });
  expect(m.exit).not.toBeNull();
  const ref = runAsm(src, { max: 5_000_000, setup: (x) => { x.harts[0].jitEnabled = false; } });
  expect(u64(m, DATA)).toBe(u64(ref, DATA));
  expect(u64(m, DATA + 8)).toBe(u64(ref, DATA + 8));
  for (let i = 0; i < 32; i++) expect(m.harts[0].getX(i)).toBe(ref.harts[0].getX(i));
  expect(m.harts[0].instret).toBe(ref.harts[0].instret);
  return m.harts[0];
}

describe('the WebAssembly tier: the translation cache', () => {
  beforeEach(() => { clearRegionCache(); });

  test("a second machine running the same code gets the first one's region from the cache at wasmProbe reaches, with the interpreter's results", () => {
    const a = run(loop(5));
    expect(a.jitStats.wasmRegions).toBeGreaterThan(0);
    expect(a.jitStats.wasmCached).toBe(0);
    expect(regionCacheBytes()).toBeGreaterThan(0);
    const b = run(loop(5));
    expect(b.jitStats.wasmCached).toBeGreaterThan(0);
    expect(regionCacheStats.hits).toBeGreaterThan(0);
    // the region from the reach PROBE on: nearly all iterations in wasm, where the first machine
    // ran its first HOT interpreted
    expect(b.jitStats.wasmInsns).toBeGreaterThan(a.jitStats.wasmInsns + 9 * (HOT - 8 * PROBE));
    expect(b.jitStats.wasmInsns).toBeGreaterThan(9 * (ITER - 8 * PROBE));
  });

  test('the same address with other code is a miss: the region is made again at wasmHot, with the interpreter\'s results', () => {
    run(loop(5));
    const c = run(loop(7));
    expect(c.jitStats.wasmCached).toBe(0);
    expect(c.jitStats.wasmCacheMisses).toBeGreaterThan(0);
    expect(regionCacheStats.stale).toBeGreaterThan(0);
    expect(c.jitStats.wasmRegions).toBeGreaterThan(0);
    // and the cache now holds the new code's region
    const d = run(loop(7));
    expect(d.jitStats.wasmCached).toBeGreaterThan(0);
  });

  test('with the cache off, the second machine makes its region at wasmHot as the first did', () => {
    const a = run(loop(5), false);
    const b = run(loop(5), false);
    expect(b.jitStats.wasmCached).toBe(0);
    expect(b.jitStats.wasmInsns).toBe(a.jitStats.wasmInsns);
  });

  test('a hart of the other kind (smp: translate.ts bakes it in) does not use the module: its region is made at wasmHot, with the interpreter\'s results', () => {
    const a = run(loop(5));
    const b = run(loop(5), true, true);
    expect(b.jitStats.wasmCached).toBe(0);
    expect(b.jitStats.wasmInsns).toBe(a.jitStats.wasmInsns);
    // and its own region serves the next smp hart
    const c = run(loop(5), true, true);
    expect(c.jitStats.wasmCached).toBeGreaterThan(0);
  });

  test('the cache posted to another thread (a hart thread gets its VM thread\'s: hart-threads.ts) serves there', async () => {
    run(loop(5));
    const { port1, port2 } = new MessageChannel();
    const got = new Promise<CachedRegion[]>((resolve) => port2.once('message', resolve));
    port1.postMessage(exportRegionCache());
    const entries = await got;
    port1.close(); port2.close();
    expect(entries.length).toBeGreaterThan(0);
    clearRegionCache();
    importRegionCache(entries);
    const b = run(loop(5));
    expect(b.jitStats.wasmCached).toBeGreaterThan(0);
  });
});
