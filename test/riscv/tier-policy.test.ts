// Which translator takes which code (hart.ts, compileAt's callers in execBlock). With the
// WebAssembly tier on, warm code gets wasm regions, and a JavaScript region (jit.ts) is still
// made where the interpreter keeps running on a head's behalf (REGION_THRESHOLD): where the wasm
// tier made no region, and over a wasm region that leaves to the interpreter in the middle of a
// loop. That second case kept the bare-metal `bench` guest's multiply/divide loops fast while
// MULH was not in wasm (docs/guest-ram.md (e), "Tier policy"), and F/D arithmetic loops after.
// Since MULH*, F/D arithmetic (the fp import) and AMOs are in the wasm tier too, no instruction
// jit.ts translates is left out of wasm, so loops with them stay in their wasm region: what
// these tests pin. Each program is also run by the interpreter alone: the translated runs must
// leave the same registers, memory and instret.
import { describe, expect, test } from 'vitest';
import type { Hart } from '../../src/riscv/hart.js';
import { runAsm, type Mini } from './harness.js';
import { program, DATA } from './prelude.js';
import { HOT_THRESHOLD, REGION_THRESHOLD } from '../../src/riscv/jit.js';

function u64(m: Mini, addr: number): bigint {
  const b = new Uint8Array(8);
  m.mem.ram.read(addr, b);
  return new DataView(b.buffer).getBigUint64(0, true);
}

/** Iterations enough for a head to be credited with REGION_THRESHOLD interpreted instructions
 *  within one window even at 2 interpreted instructions per iteration. */
const ITER = REGION_THRESHOLD / 2 + 99;

/** A loop counting s1 down from ITER around `body` (which updates t1), then t1 and rdinstret
 *  go to DATA and DATA + 8. */
const loop = (body: string): string => `
      li t0, 0x2000
      csrs mstatus, t0          # FS = Initial
      li s0, ${DATA}
      li s1, ${ITER}
      li t1, 0
      li t2, 0x9e3779b97f4a7c15
1:    ${body}
      addi s1, s1, -1
      bnez s1, 1b
      sd t1, 0(s0)
      rdinstret t0
      sd t0, 8(s0)
      j pass`;

/** fadd.d f1, f1, f0 (the test assembler is rv64imac). */
const FADD = `.word ${((0x01 << 25) | (0 << 20) | (1 << 15) | (7 << 12) | (1 << 7) | 0x53) >>> 0}`;

/** A loop whose head the wasm tier translates (4 instructions: a region needs 3), with an F/D
 *  addition (which it leaves to the interpreter) in the middle: each iteration leaves the wasm
 *  region there and the interpreter runs the other 4, crediting the head with them. */
const fpInside = loop(`xor t1, t1, s1
      addi t1, t1, 5
      slli t4, t1, 3
      xor t1, t1, t4
      ${FADD}
      mulhu t3, t1, t2
      add t1, t1, t3`);

/** A loop that starts with the F/D addition: the wasm tier can make no region at its head. */
const fpFirst = loop(`${FADD}
      mulhu t3, t1, t2
      xor t1, t1, s1
      add t1, t1, t3`);

/** The same loop with MULHU alone (no F/D): the wasm tier translates all of it, MULHU included,
 *  so no JavaScript region is made. */
const mulhuOnly = loop(`xor t1, t1, s1
      addi t1, t1, 5
      slli t4, t1, 3
      xor t1, t1, t4
      mulhu t3, t1, t2
      add t1, t1, t3`);

/** Runs `src` with translation on (wasm tier on or off) and with the interpreter alone. */
function run(src: string, mode: 'wasm' | 'js' | 'interpreter'): Hart {
  const m = runAsm(program(src), {
    max: 20_000_000,
    setup: (x) => {
      const h = x.harts[0];
      h.jitEnabled = mode !== 'interpreter';
      h.wasmTier = mode === 'wasm';
      h.wasmHot = HOT_THRESHOLD;
    },
  });
  expect(m.exit).not.toBeNull();
  const ref = runAsm(program(src), { max: 20_000_000, setup: (x) => { x.harts[0].jitEnabled = false; } });
  expect(u64(m, DATA)).toBe(u64(ref, DATA));
  expect(u64(m, DATA + 8)).toBe(u64(ref, DATA + 8));
  for (let i = 0; i < 32; i++) expect(m.harts[0].getX(i)).toBe(ref.harts[0].getX(i));
  return m.harts[0];
}

describe('tier policy', () => {
  test('with the WebAssembly tier, a loop with F/D arithmetic and MULHU runs in its wasm region (the fp import): no JavaScript region', () => {
    for (const src of [fpInside, fpFirst]) {
      const h = run(src, 'wasm');
      expect(h.jitStats.wasmRegions).toBeGreaterThan(0);
      expect(h.regionsCompiled).toBe(0);
      expect(h.jitStats.wasmInsns).toBeGreaterThan(3 * ITER);
    }
  });

  test('with the WebAssembly tier, a loop with MULHU runs in its wasm region: no JavaScript region', () => {
    const h = run(mulhuOnly, 'wasm');
    expect(h.jitStats.wasmRegions).toBeGreaterThan(0);
    expect(h.regionsCompiled).toBe(0);
    expect(h.jitStats.wasmInsns).toBeGreaterThan(6 * ITER);
  });

  test('without the WebAssembly tier, jit.ts alone translates the same loops (single-block loops: its first tier)', () => {
    for (const src of [fpInside, fpFirst]) {
      const h = run(src, 'js');
      expect(h.jitStats.loops).toBeGreaterThan(0);
      expect(h.jitStats.translatedInsns).toBeGreaterThan(ITER);
      expect(h.jitStats.wasmRegions).toBe(0);
    }
  });
});
