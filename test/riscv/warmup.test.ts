// The interpreter's warm-up programs (src/riscv/warmup.ts), run here on harts of their own: they
// must reach their end (WFI) having taken the paths they are written for, or V8's first
// optimization of Hart.execBlock lacks feedback for those paths and a guest deoptimizes it.
import { describe, expect, test } from 'vitest';
import { Hart } from '../../src/riscv/hart.js';
import { HOT_THRESHOLD } from '../../src/riscv/jit.js';
import { jitWarmUpProgram, JIT_PAGE2, warmUpProgram, WARMUP_HANDLER } from '../../src/riscv/warmup.js';
import { CHUNK_SIZE, GuestRam } from '../../src/memory/ram.js';
import { PhysicalMemoryMap } from '../../src/memory/bus.js';
import { setFlagsFromString } from 'node:v8';

const BASE = 0x80000000;

/** A hart on one chunk of RAM at BASE, with a device at `device` that counts the stores to it. */
function scratch(device: number): { ram: GuestRam; h: Hart; stores: () => number } {
  const ram = new GuestRam(BASE, CHUNK_SIZE);
  const mem = new PhysicalMemoryMap(ram);
  let n = 0;
  mem.addDevice(device, 0x1000, 'test', { read: () => 0, write: () => { n++; } });
  return { ram, h: new Hart(0, mem, { mtime: () => 0 }), stores: () => n };
}

function runToWfi(h: Hart, budget: number): void {
  for (let k = 0; k < 10_000 && !h.waiting; k++) h.run(budget);
}

describe('warm-up programs', () => {
  test.each([
    ['the WebAssembly tier', true],
    ["jit.ts's first tier, promoted to full regions", false],
  ])('jitWarmUpProgram with %s: every function called, every tail entry made, translated, ends on WFI', (_name, wasm) => {
    const loops = HOT_THRESHOLD + 64;
    const { ram, h, stores } = scratch(0x2001000);
    h.wasmTier = wasm;
    if (wasm) h.wasmHot = HOT_THRESHOLD; else h.regionHot = 1;
    const words = jitWarmUpProgram(loops);
    expect(words.length).toBe(JIT_PAGE2 + 3);
    words.forEach((w, i) => ram.writeU32(BASE + 4 * i, w));
    h.setPc(BASE);
    runToWfi(h, 1000);
    expect(h.waiting).toBe(true);
    expect(h.getX(28)).toBe(BigInt(loops));                 // H, once per round
    expect(h.getX(31)).toBe(BigInt(loops));                 // P, once per round (by JALR)
    expect(stores()).toBe(2 * loops + 1);                      // G and K per round, K once more from the tail
    expect(h.getX(18)).toBe(0n);
    // the last tail entry returned through the pad on the second page to its continuation
    expect(Number(h.getX(19)) - BASE).toBe(4 * (words.indexOf(0x10500073)));
    if (wasm) { expect(h.jitStats.wasmRegions).toBeGreaterThan(0); expect(h.jitStats.wasmInsns).toBeGreaterThan(loops); }
    else { expect(h.jitStats.loops).toBeGreaterThan(0); expect(h.jitStats.regions).toBeGreaterThan(0); } // regionHot = 1: promoted
  });

  test('warmUpProgram: the loop and the compressed tail run to WFI, each trap skipped by the handler', () => {
    const { ram, h, stores } = scratch(0x2000000);
    h.jitEnabled = false;
    const { words, halves } = warmUpProgram(3);
    WARMUP_HANDLER.forEach((w, i) => ram.writeU32(BASE + 4 * i, w));
    const start = BASE + 0x1000;
    h.writeCsr(0x300, BigInt(0x2000));
    words.forEach((w, i) => ram.writeU32(start + 4 * i, w));
    const tail = start + 4 * words.length;
    halves.forEach((hw, i) => ram.writeU16(tail + 2 * i, hw));
    ram.writeU32(tail + 2 * halves.length, 0x10500073);
    h.writeCsr(0x305, BigInt(BASE));
    h.setX(8, BASE + 0x10000);
    h.setX(9, BASE + 0x11000 - 3 - 8);
    h.setPc(start);
    runToWfi(h, 10_000);
    expect(h.waiting).toBe(true);
    expect(h.getX(18)).toBe(0n);
    expect(stores()).toBe(2 * 3);                              // two stores to the device per round
    expect(h.getX(16)).toBe(0x8000000000000000n);           // a6 = INT64_MIN, a7 = INT64_MAX
    expect(h.getX(17)).toBe(0x7fffffffffffffffn);
  });
});

describe('counters past the small-integer range', () => {
  test('instret and the translator figures beyond 2^31 keep the Hart and JitStats maps (the warm-up took such values first)', () => {
    // V8 keeps a field that has only held small integers as one; the first larger value changes
    // the object's map, which deoptimizes every optimized function that uses a hart (execBlock)
    // when a guest's instret first passes 2^31. %HaveSameMap tells whether that happened.
    setFlagsFromString('--allow-natives-syntax');
    const sameMap = new Function('a', 'b', 'return %HaveSameMap(a, b)') as (a: unknown, b: unknown) => boolean;
    const a = scratch(0x2001000).h, b = scratch(0x2001000).h;
    expect(sameMap(a, b)).toBe(true);
    b.instret = 2 ** 33 + 1;
    b.run(50); // run() moves instret and the end of the hot window on from there
    expect(b.instret).toBeGreaterThan(2 ** 33);
    expect(sameMap(a, b)).toBe(true);
    b.jitStats.translatedInsns = 2 ** 33;
    b.jitStats.wasmInsns = 2 ** 33;
    b.jitStats.wasmChains = 2 ** 33;
    expect(sameMap(a.jitStats, b.jitStats)).toBe(true);
  });
});
