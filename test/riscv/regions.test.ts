// Region translation (jit.ts, second tier): loops with internal branches, calls and returns inside
// the page, F/D instructions, translated into one function. Every test runs the same program
// with translation on and off and compares the architectural results (registers, memory, trap
// log, instret); the translated run must also have made a region, or the test proves nothing.
import { beforeAll, describe, expect, test } from 'vitest';
import type { Hart } from '../../src/riscv/hart.js';
import { CHUNK_SIZE } from '../../src/memory/ram.js';
import { runAsm, makeMachine, loadElf, buildAsm, RAM_BASE, type Mini } from './harness.js';
import { program, DATA, LOG } from './prelude.js';
import { HOT_THRESHOLD, REGION_THRESHOLD } from '../../src/riscv/jit.js';

function u64(m: Mini, addr: number): bigint {
  const b = new Uint8Array(8);
  m.mem.ram.read(addr, b);
  return new DataView(b.buffer).getBigUint64(0, true);
}
/** The trap log written by the prelude's handlers: [cause, tval, epc, mode] per trap. */
function traps(m: Mini): bigint[][] {
  const out: bigint[][] = [];
  for (let a = LOG; u64(m, a) !== 0n || u64(m, a + 16) !== 0n; a += 32) out.push([u64(m, a), u64(m, a + 8), u64(m, a + 16), u64(m, a + 24)]);
  return out;
}
function regs(m: Mini): bigint[] {
  const h = m.harts[0];
  return Array.from({ length: 32 }, (_, i) => h.getX(i));
}

/** Which translator the tests below exercise: jit.ts's JavaScript regions (the WebAssembly tier
 *  off), or the WebAssembly tier (wasm/translate.ts), which replaces jit.ts's first tier and runs
 *  warm code. */
let tier: 'js' | 'wasm' = 'js';
/** Translation on (in the tier under test) or off (the interpreter alone). */
function tierOn(h: Hart, jit: boolean): void {
  h.jitEnabled = jit;
  h.wasmTier = tier === 'wasm';
  // jit.ts's first-tier threshold: these programs are sized for it (the wasm tier's own, higher
  // threshold is measured for booting Linux, not for these loops)
  h.wasmHot = HOT_THRESHOLD;
}
/** Regions the tier under test made (for the wasm tier, only if wasm code ran at all). */
function made(h: Hart): number {
  return tier === 'js' ? h.regionsCompiled : h.jitStats.wasmInsns > 0 ? h.jitStats.wasmRegions : 0;
}

/** The program run with translation on (a) and off (b), each for at most `max` instructions. */
function runBoth(src: string, max: number): [Mini, Mini] {
  const run = (jit: boolean) => runAsm(src, { max, setup: (m) => { tierOn(m.harts[0], jit); } });
  return [run(true), run(false)];
}
/** The run with translation (a) left the same results as the interpreter's (b): the two words the
 *  program stores at DATA (the last one rdinstret, in most) and the registers. */
function expectSameResults(a: Mini, b: Mini): void {
  expect(u64(a, DATA)).toBe(u64(b, DATA));
  expect(u64(a, DATA + 8)).toBe(u64(b, DATA + 8));
  expect(regs(a)).toEqual(regs(b));
}

/** Runs `src` translated with run(n) for many different n: none retires more than n, they add up
 *  to instret, `probe` is above 0 at the end (the translation was in use), and the words at
 *  DATA + `offs` are the interpreter's. */
function expectBudgetsKept(src: string, offs: number[], probe: (h: Hart) => number): void {
  const m = makeMachine();
  const h = m.harts[0];
  tierOn(h, true);
  h.setPc(loadElf(m.mem, buildAsm(src)));
  let total = 0;
  for (let k = 0; k < 2_000_000 && m.exit === null; k++) {
    const budget = k % 5 === 0 ? 5000 + (k % 3001) : 1 + (k % 300);
    const r = h.run(budget);
    expect(r).toBeLessThanOrEqual(budget);
    total += r;
  }
  expect(m.exit).toEqual({ code: 0 });
  expect(probe(h)).toBeGreaterThan(0);
  expect(total).toBe(h.instret);
  const ref = runAsm(src, { max: 20_000_000, setup: (mm) => { mm.harts[0].jitEnabled = false; } });
  for (const off of offs) expect(u64(m, DATA + off)).toBe(u64(ref, DATA + off));
}

/** Runs `src` in slices of 1000 instructions, translated and not; before slice `at`, raises the
 *  machine timer interrupt for one instruction (taken at once, then one handler instruction).
 *  `probe` (translated run, at that point) must be above 0: the translation was in use. Both
 *  runs must log the one interrupt at the same mepc and end on the same results. */
function expectIrqAsInterpreter(src: string, at: number, probe: (h: Hart) => number): void {
  const run = (jit: boolean) => {
    const m = makeMachine();
    const h = m.harts[0];
    tierOn(h, jit);
    h.setPc(loadElf(m.mem, buildAsm(src)));
    let probed = -1;
    for (let k = 0; k < 100_000 && m.exit === null; k++) {
      if (k === at) {
        probed = probe(h);
        h.setInterruptLevel(7, true);
        h.run(1);                   // takes it (MTIP), then runs one handler instruction
        h.setInterruptLevel(7, false);
      }
      h.run(1000);
    }
    return { m, probed };
  };
  const a = run(true), b = run(false);
  expect(a.m.exit).toEqual({ code: 0 });
  expect(a.probed).toBeGreaterThan(0);
  const ta = traps(a.m);
  expect(ta.length).toBe(1);
  expect(ta[0][0]).toBe((1n << 63n) | 7n);      // machine timer interrupt
  expect(ta).toEqual(traps(b.m));               // same mepc
  expect(u64(a.m, DATA)).toBe(u64(b.m, DATA));
  expect(u64(a.m, DATA + 8)).toBe(u64(b.m, DATA + 8)); // rdinstret after the loop
}

// F/D encodings (the test assembler is rv64imac): fcvt.d.l, fadd.d, fsd.
const fcvtDL = (fd: number, rs1: number) => ((0x69 << 25) | (2 << 20) | (rs1 << 15) | (7 << 12) | (fd << 7) | 0x53) >>> 0;
const faddD = (fd: number, a: number, b: number) => ((0x01 << 25) | (b << 20) | (a << 15) | (7 << 12) | (fd << 7) | 0x53) >>> 0;
const fsd = (fs: number, imm: number, rs1: number) => (((imm >> 5) << 25) | (fs << 20) | (rs1 << 15) | (3 << 12) | ((imm & 31) << 7) | 0x27) >>> 0;
const fsw = (fs: number, imm: number, rs1: number) => (((imm >> 5) << 25) | (fs << 20) | (rs1 << 15) | (2 << 12) | ((imm & 31) << 7) | 0x27) >>> 0;
const fld = (fd: number, imm: number, rs1: number) => (((imm & 0xfff) << 20) | (rs1 << 15) | (3 << 12) | (fd << 7) | 0x07) >>> 0;
const flw = (fd: number, imm: number, rs1: number) => (((imm & 0xfff) << 20) | (rs1 << 15) | (2 << 12) | (fd << 7) | 0x07) >>> 0;
const fmvDX = (fd: number, rs1: number) => ((0x79 << 25) | (rs1 << 15) | (fd << 7) | 0x53) >>> 0;
const fmvXD = (rd: number, fs1: number) => ((0x71 << 25) | (fs1 << 15) | (rd << 7) | 0x53) >>> 0;
const fsgnjD = (fd: number, a: number, b: number, f3: number) => ((0x11 << 25) | (b << 20) | (a << 15) | (f3 << 12) | (fd << 7) | 0x53) >>> 0;

// A head is credited with the instructions interpreted on its behalf (jit.ts): these loops interpret at
// least 2 per iteration until translated, so ITER iterations make a region within one window.
const ITER = REGION_THRESHOLD / 2 + 77;
/** The end of a loop counting s1 down from ITER (its head labelled 1): then a0 and rdinstret go to
 *  DATA and DATA + 8. */
const LOOP_END = `
      addi s1, s1, -1
      bnez s1, 1b
      sd a0, 0(s0)
      rdinstret t0
      sd t0, 8(s0)`;

/** if/else inside the loop, a call to a function in the same page and its return, memory, F/D. */
const branchy = `
      li t0, 0x2000
      csrs mstatus, t0          # FS = Initial
      li s0, ${DATA}
      li s1, ${ITER}
      li a0, 1
      li a1, 0
loop: andi t0, s1, 3
      beqz t0, even
      addi a0, a0, 7
      xor a1, a1, a0
      j join
even: slli t1, a0, 3
      sub a0, t1, a0
      jal ra, helper
join: sd a0, 0(s0)
      lw t2, 4(s0)
      add a1, a1, t2
      .word ${fcvtDL(0, 11)}
      .word ${faddD(1, 1, 0)}
      addi s1, s1, -1
      bnez s1, loop
      sd a0, 8(s0)
      sd a1, 16(s0)
      .word ${fsd(1, 24, 8)}
      rdinstret t0
      sd t0, 32(s0)
      j pass
helper:
      addi a0, a0, 13
      srli t3, a0, 5
      xor a0, a0, t3
      ret
`;

/** A recursive function (calls and returns inside one region) and a loop with an exit in the
 *  middle of its body (a first-tier loop), called from an outer loop. */
const recursive = `
      li sp, ${DATA + 0x10000}
      li s0, ${DATA}
      li s1, 2500
      li s2, 0
outer:
      andi a0, s1, 7
      addi a0, a0, 3
      jal ra, fib
      add s2, s2, a0
      la t3, str
      li t4, 0
1:    lbu t5, 0(t3)
      beqz t5, 2f               # leaves the loop from the middle
      addi t4, t4, 1
      addi t3, t3, 1
      bnez t4, 1b
2:    add s2, s2, t4
      addi s1, s1, -1
      bnez s1, outer
      sd s2, 0(s0)
      rdinstret t0
      sd t0, 8(s0)
      j pass
fib:  li t0, 2
      blt a0, t0, 9f
      addi sp, sp, -16
      sd ra, 8(sp)
      sd a0, 0(sp)
      addi a0, a0, -1
      jal ra, fib
      ld t1, 0(sp)
      sd a0, 0(sp)
      addi a0, t1, -2
      jal ra, fib
      ld t1, 0(sp)
      add a0, a0, t1
      ld ra, 8(sp)
      addi sp, sp, 16
9:    ret
str:  .asciz "hello, translated regions"
      .align 2
`;

for (const t of ['js', 'wasm'] as const) describe(`region translation (${t === 'js' ? "jit.ts's regions" : 'the WebAssembly tier'})`, () => {
  beforeAll(() => { tier = t; });
  test('recursion inside a region and a loop left from the middle give the same state as the interpreter', () => {
    const run = (jit: boolean) => runAsm(program(recursive), { max: 50_000_000, setup: (m) => { tierOn(m.harts[0], jit); } });
    const a = run(true), b = run(false);
    expect(a.exit).toEqual({ code: 0 });
    expect(made(a.harts[0])).toBeGreaterThan(0);
    const fib = (n: number): number => (n < 2 ? n : fib(n - 1) + fib(n - 2));
    let sum = 0;
    for (let s1 = 2500; s1 > 0; s1--) sum += fib((s1 & 7) + 3) + 'hello, translated regions'.length;
    expect(u64(a, DATA)).toBe(BigInt(sum));
    expectSameResults(a, b);
  });

  test('a branchy loop with a call, a return and F/D gives the same state with and without translation', () => {
    const run = (jit: boolean) => runAsm(program(branchy), { max: 20_000_000, setup: (m) => { tierOn(m.harts[0], jit); } });
    const a = run(true), b = run(false);
    expect(a.exit).toEqual({ code: 0 });
    expect(b.exit).toEqual({ code: 0 });
    expect(made(a.harts[0])).toBeGreaterThan(0);
    expect(made(b.harts[0])).toBe(0);
    for (const off of [8, 16, 24, 32]) expect(u64(a, DATA + off)).toBe(u64(b, DATA + off));
    expect(regs(a)).toEqual(regs(b));
    expect(Array.from(a.harts[0].fregs)).toEqual(Array.from(b.harts[0].fregs));
  });

  test('run(n) never retires more than n instructions, and ends on the same state', () => {
    expectBudgetsKept(program(branchy), [8, 16, 24, 32], made);
  });

  test('a fault in a later block of a translated region has the exact mepc, mtval, registers and instret', () => {
    // The pointer walks up to the end of the 16 MiB RAM; the load sits behind an if/else, so the
    // fault happens in the middle of the region, twice (the handler skips the load).
    const end = 0x81000000;
    const src = program(`
      li s0, ${end - 64 * ITER}
      li s2, ${end + 128}
      li a0, 0
      li a1, 0
1:    andi t0, s0, 64
      bnez t0, 2f
      addi a0, a0, 1
      j 3f
2:    addi a1, a1, 3
3:    ld t1, 0(s0)
      add a0, a0, t1
      addi s0, s0, 64
      bltu s0, s2, 1b
      rdinstret t0
      li t2, ${DATA}
      sd t0, 0(t2)
    `);
    const [a, b] = runBoth(src, 20_000_000);
    expect(a.exit).toEqual({ code: 0 });
    expect(made(a.harts[0])).toBeGreaterThan(0);
    const ta = traps(a);
    expect(ta.length).toBe(2);
    expect(ta[0][0]).toBe(5n);                    // load access fault
    expect(ta[0][1]).toBe(BigInt(end));           // mtval = the address
    expect(ta).toEqual(traps(b));                 // same mepc (the ld), same order
    expect(regs(a)).toEqual(regs(b));
    expect(u64(a, DATA)).toBe(u64(b, DATA));      // rdinstret after the loop
  });

  test('a store into a running region (no FENCE.I) takes effect at the next instruction', () => {
    // When s1 = ITER/8 (long after the loop became a region), the loop patches `addi a0, a0, 1`
    // of its own body to `addi a0, a0, 2`; this hart's own stores are visible to its fetches at
    // once (as in the interpreter).
    const src = program(`
      .option norvc
      li s0, ${DATA}
      li s1, ${ITER}
      li s3, ${ITER >> 3}
      la s4, patchme
      li a0, 0
      li a1, 0
1:    bne s1, s3, 2f
      lw t1, 0(s4)
      li t2, 0x00100000         # imm 1 -> 2
      add t1, t1, t2
      sw t1, 0(s4)
2:    andi t0, s1, 1
      beqz t0, 3f
patchme:
      addi a0, a0, 1
3:    addi a1, a1, 1
      addi s1, s1, -1
      bnez s1, 1b
      sd a0, 0(s0)
      rdinstret t0
      sd t0, 8(s0)
      .option rvc
    `);
    const [a, b] = runBoth(src, 20_000_000);
    expect(a.exit).toEqual({ code: 0 });
    expect(made(a.harts[0])).toBeGreaterThan(0);
    const odd = (n: number) => Math.floor((n + 1) / 2); // odd s1 values in 1..n
    // iterations with s1 in (ITER/8, ITER] add 1 when s1 is odd, the others add 2
    const at = ITER >> 3;
    expect(u64(a, DATA)).toBe(BigInt((odd(ITER) - odd(at)) + 2 * odd(at)));
    expect(u64(a, DATA)).toBe(u64(b, DATA));
    expect(u64(a, DATA + 8)).toBe(u64(b, DATA + 8));
  });

  test('a device store in a translated region that raises an interrupt has it taken right after the store', () => {
    // Every 1024th iteration stores 1 to a software-interrupt device (MSIP); the handler lowers it
    // and logs mepc and minstret. The interrupt must come after the store, before the next addi.
    const src = program(`
      li s4, 0x2000000
      la t0, irq
      csrw mtvec, t0
      li t0, 8
      csrw mie, t0              # MSIE
      csrsi mstatus, 8          # MIE
      li s5, ${DATA + 64}
      li s1, ${ITER}
      li a0, 0
1:    andi t0, s1, 1023
      bnez t0, 2f
      li t1, 1
      sw t1, 0(s4)              # raises MSIP
after: addi a0, a0, 100
2:    addi a0, a0, 1
      addi s1, s1, -1
      bnez s1, 1b
      li t2, ${DATA}
      sd a0, 0(t2)
      sd s5, 8(t2)
      j pass
      .align 4
irq:  sw zero, 0(s4)
      csrr t6, mepc
      sd t6, 0(s5)
      csrr t6, minstret
      sd t6, 8(s5)
      addi s5, s5, 16
      mret
    `);
    const run = (jit: boolean) => runAsm(src, { max: 20_000_000, setup: (m) => {
      const h = m.harts[0];
      tierOn(h, jit);
      m.mem.addDevice(0x2000000, 0x1000, 'msip', { read: () => 0, write: (_o, _s, v) => h.setInterruptLevel(3, (v & 1) !== 0) });
    } });
    const a = run(true), b = run(false);
    expect(a.exit).toEqual({ code: 0 });
    expect(made(a.harts[0])).toBeGreaterThan(0);
    const n = Number(u64(a, DATA + 8) - BigInt(DATA + 64)) / 16;
    expect(n).toBe(Math.floor(ITER / 1024));
    const log = (m: Mini) => Array.from({ length: 2 * n }, (_, i) => u64(m, DATA + 64 + 8 * i));
    const la = log(a);
    expect(la).toEqual(log(b));                        // same mepc and minstret at every interrupt
    expect(new Set(la.filter((_, i) => i % 2 === 0)).size).toBe(1); // always the same place: after the store
    expect(u64(a, DATA)).toBe(u64(b, DATA));
  });

  test('an interrupt raised during a long translated loop is taken at the same instruction as in the interpreter', () => {
    const src = program(`
      li t0, 0x80
      csrw mie, t0              # MTIE
      csrsi mstatus, 8          # MIE
      li s1, ${ITER * 4}
      li a0, 0
1:    andi t0, s1, 7
      bnez t0, 2f
      addi a0, a0, 5
2:    addi a0, a0, 1
      addi s1, s1, -1
      bnez s1, 1b
      li t2, ${DATA}
      sd a0, 0(t2)
      rdinstret t0
      sd t0, 8(t2)
    `);
    // by k = 1000 (~1M instructions) the loop runs as a region in the translated run (first as a
    // first-tier loop, which leaves at the inner branch; the instructions interpreted around it
    // make the region at ~550k)
    expectIrqAsInterpreter(src, 1000, made);
  });
  /** A call from one page to a loop on the next page, 2000 times; a FENCE.I before every 256th
   *  (drops all translated code). t2: the result; the xor has no compressed form (t2 is x7). */
  const FAR_LOOP = program(`
      li s0, ${DATA}
      li s1, 2000
      li t2, 0
1:    andi t1, s1, 255
      bnez t1, 2f
      fence.i
2:    li t0, 40
      jal ra, far
      addi s1, s1, -1
      bnez s1, 1b
      sd t2, 0(s0)
      rdinstret t0
      sd t0, 8(s0)
      j pass
      .align 12
far:  add t2, t2, t0
      xor t2, t2, s1
      addi t0, t0, -1
      bnez t0, far
      ret
  `);
  test('a loop on another page than its caller runs translated on every call, also after each FENCE.I drops it', () => {
    // Each call and return changes the fetch page; the called page's translated code is found
    // through the fetch TLB, which must learn of code made after the page entered it (the first
    // translation, and each one after a FENCE.I dropped all of them).
    const [a, b] = runBoth(FAR_LOOP, 20_000_000);
    expect(a.exit).toEqual({ code: 0 });
    const h = a.harts[0];
    // One translation per FENCE.I epoch (8), not one every few calls.
    const translations = tier === 'js' ? h.jitStats.loops + h.jitStats.regions : made(h);
    expect(translations).toBeGreaterThan(0);
    expect(translations).toBeLessThanOrEqual(20);
    expect(h.jitStats.translatedInsns / h.instret).toBeGreaterThan(0.8);
    expectSameResults(a, b);
  });
  test('code rewritten behind the hart (not by its stores) runs from the next FENCE.I, on another page than its caller', () => {
    // The test writes RAM directly (as a device or another hart would) when the hart is at its
    // second FENCE.I: from then on the called loop subtracts instead of xor-ing. The translation
    // made from the old bytes must not be found again through the fetch TLB.
    const XOR = ((9 << 20) | (7 << 15) | (4 << 12) | (7 << 7) | 0x33) >>> 0; // xor t2, t2, s1
    const SUB = ((0x20 << 25) | (9 << 20) | (7 << 15) | (7 << 7) | 0x33) >>> 0; // sub t2, t2, s1
    const find = (m: Mini, from: number, word: number): number => {
      for (let a = from; a < from + 0x10000; a += 2) if (m.mem.ram.readU32(a) === word) return a;
      throw new Error(`no ${word.toString(16)} in the program`);
    };
    const run = (jit: boolean): Mini => {
      const m = makeMachine();
      const h = m.harts[0];
      const entry = loadElf(m.mem, buildAsm(FAR_LOOP));
      h.setPc(entry);
      tierOn(h, jit);
      const fence = find(m, entry, 0x0000100f), xor = find(m, fence, XOR);
      let fences = 0;
      for (let left = 20_000_000; m.exit === null && left > 0;) {
        // single steps from 12 calls before a FENCE.I (s1 = 12..0 mod 256; 1000 instructions
        // make at most 9 calls) to it (a budget of 1 enters no translated code)
        const near = (Number(h.getX(9)) & 255) <= 12;
        left -= h.run(near ? 1 : 1000) || 1;
        if (h.pc === fence && ++fences === 2) m.mem.ram.writeU32(xor, SUB);
      }
      expect(fences).toBe(7);
      return m;
    };
    const a = run(true), b = run(false);
    expect(a.exit).toEqual({ code: 0 });
    expect(a.harts[0].jitStats.translatedInsns / a.harts[0].instret).toBeGreaterThan(0.8);
    expectSameResults(a, b);
  });
  test('a path first taken long after its region was made gives the same state as the interpreter', () => {
    // The region is made (at REGION_THRESHOLD) from the code that has run: the else-block below
    // runs only in the last quarter of the iterations, so it is not part of the region; the region
    // leaves for the interpreter there.
    const src = program(`
      li s0, ${DATA}
      li s1, ${ITER}
      li s3, ${ITER >> 2}
      li a0, 0
1:    bltu s1, s3, 2f
      addi a0, a0, 1
      j 3f
2:    slli t0, a0, 2
      xor a0, a0, t0
      addi a0, a0, 9
3:    addi s1, s1, -1
      bnez s1, 1b
      sd a0, 0(s0)
      rdinstret t0
      sd t0, 8(s0)
    `);
    const [a, b] = runBoth(src, 20_000_000);
    expect(a.exit).toEqual({ code: 0 });
    expect(made(a.harts[0])).toBeGreaterThan(0);
    expectSameResults(a, b);
  });

  test('64-bit compares, variable shifts and zero-extended words in a region match the interpreter', () => {
    // Shift amounts 0..63 by register, signed and unsigned compares of values whose high words are
    // equal or not, a word zero-extended by srli 32 compared with a copy of itself.
    const src = program(`
      li s0, ${DATA}
      li s1, ${ITER}
      li s5, 0x9e3779b97f4a7c15
      li a0, 0
1:    andi t0, s1, 63
      mul t1, s1, s5
      sll t2, t1, t0
      srl t3, t1, t0
      sra t4, t1, t0
      add a0, a0, t2
      xor a0, a0, t3
      add a0, a0, t4
      slt t5, t1, a0
      sltu t6, t1, a0
      add a0, a0, t5
      slli t6, t6, 1
      add a0, a0, t6
      slti t5, t1, -5
      sltiu t6, t1, 2047
      add a0, a0, t5
      add a0, a0, t6
      andi t5, s1, 1
      xor t6, t1, t5
      blt t1, t6, 2f
      addi a0, a0, 3
2:    bgeu t1, t6, 3f
      addi a0, a0, 5
3:    bne t1, t6, 4f
      addi a0, a0, 7
4:    srli t5, t1, 32
      addi t6, t5, 0
      beq t5, t6, 5f
      addi a0, a0, 11
5:    bge t1, zero, 6f
      addi a0, a0, 13
6:    addi s1, s1, -1
      bnez s1, 1b
      sd a0, 0(s0)
      rdinstret t0
      sd t0, 8(s0)
    `);
    const [a, b] = runBoth(src, 50_000_000);
    expect(a.exit).toEqual({ code: 0 });
    expect(made(a.harts[0])).toBeGreaterThan(0);
    expectSameResults(a, b);
  });

  test('loads and stores that miss the soft TLB, are misaligned or cross a page, inside a region, match the interpreter', () => {
    // The pointer jumps around 2 MiB (512 pages: more than the soft TLB holds), at any byte offset:
    // translated code leaves before each access its fast path cannot do, the interpreter does it.
    const src = program(`
      li s0, ${DATA}
      li s2, ${DATA + 0x100000}
      li s1, ${ITER}
      li s5, 4099
      li a0, 0
1:    mul t0, s1, s5
      slli t1, t0, 20
      srli t1, t1, 43            # 0 .. 2 MiB - 1
      add t1, t1, s2
      sd s1, 0(t1)
      ld t2, 0(t1)
      lw t3, 5(t1)
      sh t0, 3(t1)
      lhu t4, 3(t1)
      add a0, a0, t2
      add a0, a0, t3
      add a0, a0, t4
${LOOP_END}
    `);
    const [a, b] = runBoth(src, 50_000_000);
    expect(a.exit).toEqual({ code: 0 });
    expect(made(a.harts[0]) + (tier === 'js' ? a.harts[0].jitStats.loops : 0)).toBeGreaterThan(0);
    expect(a.harts[0].jitStats.translatedInsns).toBeGreaterThan(0);
    expectSameResults(a, b);
    const mem = (m: Mini) => { const x = new Uint8Array(0x200010); m.mem.ram.read(DATA + 0x100000, x); return x; };
    expect(Buffer.compare(mem(a), mem(b))).toBe(0);
  });
});

describe('the WebAssembly tier and chunked RAM', () => {
  test('a RAM chunk dropped (balloon) while wasm regions use it reads as zeros from then on, as in the interpreter', () => {
    // A loop reads and writes doublewords of chunk 3; after DROP_AT instructions the chunk is
    // given up (GuestRam.release + Hart.dropRam, as VirtMachine.releaseChunks does): the wasm
    // regions, which reach RAM through the hart's access module, must not keep using the old
    // memory. Then it is touched again (a fresh, zeroed chunk gets a new slot).
    const CHUNK3 = RAM_BASE + 3 * CHUNK_SIZE;
    const src = program(`
      li s0, ${DATA}
      li s2, ${CHUNK3}
      li s1, ${ITER}
      li a0, 0
1:    andi t0, s1, 511
      slli t0, t0, 3
      add t1, s2, t0
      ld t2, 0(t1)
      add a0, a0, t2
      addi t2, s1, 7
      sd t2, 0(t1)
${LOOP_END}
    `);
    const DROP_AT = 300_000;
    const run = (jit: boolean): Mini => {
      const m = makeMachine();
      const h = m.harts[0];
      h.jitEnabled = jit;
      h.wasmTier = true;
      h.wasmHot = HOT_THRESHOLD;
      h.setPc(loadElf(m.mem, buildAsm(src)));
      while (h.instret < DROP_AT && m.exit === null) h.run(Math.min(1000, DROP_AT - h.instret));
      expect(h.instret).toBe(DROP_AT);
      if (jit) expect(h.jitStats.wasmInsns).toBeGreaterThan(0);
      if (jit) expect(h.wasmRamChunks()).toBeGreaterThan(0);
      m.mem.ram.release(3);
      h.dropRam(CHUNK3, CHUNK_SIZE);
      expect(h.wasmRamChunks()).toBe(0); // nothing of the hart holds the dropped memory
      for (let k = 0; k < 100_000 && m.exit === null; k++) h.run(1000);
      return m;
    };
    const a = run(true), b = run(false);
    expect(a.exit).toEqual({ code: 0 });
    expect(a.harts[0].jitStats.wasmInsns).toBeGreaterThan(DROP_AT);
    expectSameResults(a, b);
    const mem = (m: Mini) => { const x = new Uint8Array(4096); m.mem.ram.read(CHUNK3, x); return x; };
    expect(Buffer.compare(mem(a), mem(b))).toBe(0);
  });
});

/** Calls and returns across three pages, 3000 times: the loop (page 0) calls fa (page 1), which
 *  calls fb (page 2) and, every 4th time, hlp back on page 0. With `rewrite`, the loop stores a
 *  new instruction into fb (slli by 2 instead of 1, no FENCE.I) when s1 reaches 1500: from then on
 *  fb computes something else, in the interpreter at once. With `irq`, MTIE and MIE are on. */
const chainProgram = (rewrite: boolean, irq: boolean): string => program(`
      li s0, ${DATA}
      li sp, ${DATA + 0x10000}
      ${irq ? 'li t0, 0x80\n      csrw mie, t0\n      csrsi mstatus, 8' : ''}
      li s1, 3000
      li a0, 0
1:    mv a1, s1
      ${rewrite ? `li t1, 1500
      bne s1, t1, 3f
      la t3, fbop
      la t4, newop
      lw t4, 0(t4)
      sw t4, 0(t3)
3:` : ''}
      jal ra, fa
      addi s1, s1, -1
      bnez s1, 1b
      sd a0, 0(s0)
      rdinstret t0
      sd t0, 8(s0)
      j pass
hlp:  xor a0, a0, a1
      ret
      .option push
      .option norvc
newop: slli t2, a0, 2
      .option pop
      .align 12
fa:   addi sp, sp, -16
      sd ra, 0(sp)
      add a0, a0, a1
      jal ra, fb
      andi t1, a1, 3
      bnez t1, 1f
      jal ra, hlp
1:    ld ra, 0(sp)
      addi sp, sp, 16
      ret
      .align 12
fb:   li t0, 3
      .option push
      .option norvc
2:
fbop: slli t2, a0, 1
      .option pop
      add a0, a0, t2
      addi t0, t0, -1
      bnez t0, 2b
      ret
`);

describe('the WebAssembly tier: regions chained inside wasm', () => {
  beforeAll(() => { tier = 'wasm'; });

  test('calls and returns across pages chain from region to region and give the same state as the interpreter', () => {
    const [a, b] = runBoth(chainProgram(false, false), 20_000_000);
    expect(a.exit).toEqual({ code: 0 });
    const h = a.harts[0];
    expect(made(h)).toBeGreaterThan(0);
    expect(h.jitStats.wasmChains).toBeGreaterThan(3000);
    expectSameResults(a, b);
  });

  test('a region rewritten by a store while others chain to it is never entered again', () => {
    const [a, b] = runBoth(chainProgram(true, false), 20_000_000);
    expect(a.exit).toEqual({ code: 0 });
    const h = a.harts[0];
    expect(h.jitStats.wasmChains).toBeGreaterThan(3000);
    expectSameResults(a, b);
    // the rewrite changed the result (else the test could not tell a stale region from the new code)
    const [c] = runBoth(chainProgram(false, false), 20_000_000);
    expect(u64(a, DATA)).not.toBe(u64(c, DATA));
  });

  test('run(n) never retires more than n instructions along a chain, and ends on the same state', () => {
    expectBudgetsKept(chainProgram(true, false), [0, 8], (h) => h.jitStats.wasmChains);
  });

  test('an interrupt that becomes pending while regions chain is taken at the same instruction as in the interpreter', () => {
    expectIrqAsInterpreter(chainProgram(false, true), 40, (h) => h.jitStats.wasmChains);
  });
});

/** Registers that only some regions of a chain use: the loop (page 1) sets s2-s10 and t0-t4 and
 *  calls fa (page 2), which uses a0, a1, ra and sp only (and takes an access fault every 64th
 *  call, and runs an AMO through the hart), and calls fb (page 3), which reads them all and
 *  writes some back, then returns through fa. Regions chain through fa without it touching those
 *  registers, so their values cross it from region to region (as parameters of the region
 *  bodies: wasm/translate.ts), and a trap or an AMO in fa must see, and leave, all of them. */
const passThroughProgram = (): string => program(`
      li s0, ${DATA}
      li sp, ${DATA + 0x10000}
      li s1, 3000
      li a0, 0
1:    slli s2, s1, 1
      addi s3, s1, 7
      xori s4, s1, 0x55
      slli s5, s1, 33
      add s6, s5, s3
      addi s7, s2, -9
      srli s8, s5, 3
      or s9, s4, s7
      sub s10, zero, s1
      addi t0, s1, 100
      slli t1, s1, 40
      xor t2, t1, s2
      addi t3, s3, 5
      mul t4, s1, s1
      mv a1, s1
      jal ra, fa
      add a0, a0, s3
      xor a0, a0, t3
      add a0, a0, s10${LOOP_END}
      j pass
      .align 12
fa:   addi sp, sp, -16
      sd ra, 0(sp)
      andi a1, a1, 63
      bnez a1, 2f
      ld a1, 8(zero)               # an access fault every 64th call (the handler skips it)
2:    addi a1, s0, 256
      li ra, 3
      amoadd.d ra, ra, (a1)
      add a0, a0, ra
      jal ra, fb
      ld ra, 0(sp)
      addi sp, sp, 16
      ret
      .align 12
fb:   add a0, a0, s2
      xor a0, a0, s3
      add a0, a0, s4
      xor a0, a0, s5
      add a0, a0, s6
      xor a0, a0, s7
      add a0, a0, s8
      xor a0, a0, s9
      add a0, a0, s10
      xor a0, a0, t0
      add a0, a0, t1
      xor a0, a0, t2
      add a0, a0, t3
      xor a0, a0, t4
      slli a0, a0, 1
      addi s3, s3, 1
      xori t3, t3, 0x33
      ret
`);

describe('the WebAssembly tier: registers through a chain of regions', () => {
  beforeAll(() => { tier = 'wasm'; });

  test('registers a chained region does not use reach the next ones, and traps and AMOs there, as in the interpreter', () => {
    const [a, b] = runBoth(passThroughProgram(), 20_000_000);
    expect(a.exit).toEqual({ code: 0 });
    const h = a.harts[0];
    expect(made(h)).toBeGreaterThan(0);
    expect(h.jitStats.wasmChains).toBeGreaterThan(3000);
    expect(h.jitStats.wasmHartExec).toBeGreaterThan(2000);
    expect(h.jitStats.wasmExits[0]).toBeGreaterThan(0); // faults inside wasm code
    expectSameResults(a, b);
    const t = traps(a);
    expect(t.length).toBe(Math.floor(3000 / 64));
    expect(t[0][0]).toBe(5n); // load access fault
    expect(t).toEqual(traps(b));
    expect(u64(a, DATA + 256)).toBe(u64(b, DATA + 256));
  });

  test('run(n) never retires more than n instructions along it, and ends on the same state', () => {
    expectBudgetsKept(passThroughProgram(), [0, 8, 256], (h) => h.jitStats.wasmChains);
  });
});

/** A loop that calls a function of its own page through a pointer (JALR) 3000 times: the
 *  function and the return point after the JALR are reached only from translated code, never
 *  by a jump or branch the interpreter takes itself. */
const pointerCallProgram = (interpreted: boolean): string => program(`
      li s0, ${DATA}
      li s1, 3000
      li a0, 0
      la s2, fn
1:    ${interpreted ? 'csrr t6, mscratch         # the loop stays with the interpreter' : ''}
      mv a1, s1
      addi a2, a2, 3
      jalr ra, s2
      xor a0, a0, s1
      slli t1, a0, 3
      add a0, a0, t1${LOOP_END}
      j pass
fn:   add a0, a0, a1
      slli t2, a0, 7
      srli t3, a0, 5
      xor a0, a0, t2
      add a0, a0, t3
      addi t4, a1, 11
      mul t4, t4, a1
      add a0, a0, t4
      srai t2, a0, 9
      sub a0, a0, t2
      andi t3, a1, 63
      sll t3, a0, t3
      xor a0, a0, t3
      addi a0, a0, 1
      ret
`);

describe('the WebAssembly tier: code reached only from translated code', () => {
  beforeAll(() => { tier = 'wasm'; });

  test('a function called through a pointer and the return point after the call get wasm regions, with the same state as the interpreter', () => {
    const [a, b] = runBoth(pointerCallProgram(false), 20_000_000);
    expect(a.exit).toEqual({ code: 0 });
    const h = a.harts[0];
    expect(made(h)).toBeGreaterThanOrEqual(2); // the loop, the function (the return point: a region or the loop's)
    // the loop body is 7 instructions, the function 15: most of the run is in wasm
    expect(h.jitStats.wasmInsns / Number(u64(a, DATA + 8))).toBeGreaterThan(0.8);
    expectSameResults(a, b);
  });

  test('a function called through a pointer from interpreted code gets a wasm region, with the same state as the interpreter', () => {
    const [a, b] = runBoth(pointerCallProgram(true), 20_000_000);
    expect(a.exit).toEqual({ code: 0 });
    const h = a.harts[0];
    expect(made(h)).toBeGreaterThanOrEqual(2); // the function, the return point
    // the function is 15 of the 23 instructions of an iteration
    expect(h.jitStats.wasmInsns / Number(u64(a, DATA + 8))).toBeGreaterThan(0.5);
    expectSameResults(a, b);
  });

  for (const interpreted of [false, true]) {
    test(`run(n) never retires more than n instructions there${interpreted ? ' (called from interpreted code)' : ''}, and ends on the same state`, () => {
      expectBudgetsKept(pointerCallProgram(interpreted), [0, 8], (h) => h.jitStats.wasmInsns);
    });
  }
});

/** F/D loads, stores and moves in a loop (FLD, FSD, FSW, FLW with its NaN-boxing, a misaligned
 *  FLD, FMV.D.X, FMV.X.D (one to x0), FSGNJ.D, FSGNJN.D, FSGNJX.D on both signs),
 *  every 64th iteration FS read (a2 adds it up: Dirty after the loads) and set to Off, then to
 *  Initial again; with `offLater`, FS stays Off from s1 < FP_OFF on, where every F/D instruction
 *  traps (illegal instruction, logged and skipped by the prelude's handler). */
const FP_ITER = 4000; // few enough that no jit.ts region (REGION_THRESHOLD) takes the loop over
const FP_OFF = 500;   // s1 below which FS stays Off (offLater); the trap log must not reach DATA
const fpMemoryProgram = (offLater: boolean): string => program(`
      li t0, 0x2000
      csrs mstatus, t0          # FS = Initial
      li s0, ${DATA}
      li s1, ${FP_ITER}
      li a0, 5
      li a1, 0
      li a2, 0
loop: addi a0, a0, 3
      sd a0, 88(s0)
      .word ${fld(2, 88, 8)}
      .word ${fsd(2, 64, 8)}
      .word ${fsw(2, 72, 8)}
      .word ${flw(3, 72, 8)}
      .word ${fsd(3, 96, 8)}
      .word ${fld(4, 68, 8)}
      .word ${fsd(4, 80, 8)}
      ld t1, 80(s0)
      add a1, a1, t1
      ld t2, 96(s0)
      xor a1, a1, t2
      .word ${fmvDX(5, 10)}
      neg t5, a0
      .word ${fmvDX(6, 30)}
      .word ${fsgnjD(7, 5, 6, 0)}
      .word ${fsgnjD(8, 6, 5, 1)}
      .word ${fsgnjD(9, 6, 6, 2)}
      .word ${fsgnjD(10, 5, 6, 2)}
      .word ${fmvXD(31, 7)}
      add a1, a1, t6
      .word ${fmvXD(31, 8)}
      xor a1, a1, t6
      .word ${fmvXD(31, 9)}
      add a1, a1, t6
      .word ${fmvXD(0, 10)}
      .word ${fsd(10, 104, 8)}
      andi t3, s1, 63
      bnez t3, 2f
      csrr t4, mstatus
      srli t4, t4, 13
      andi t4, t4, 3
      add a2, a2, t4
      li t0, 0x6000
      csrc mstatus, t0          # FS = Off
      ${offLater ? `li t0, ${FP_OFF}
      blt s1, t0, 2f` : ''}
      li t0, 0x2000
      csrs mstatus, t0          # FS = Initial
2:    addi s1, s1, -1
      bnez s1, loop
      sd a1, 0(s0)
      sd a2, 16(s0)
      rdinstret t0
      sd t0, 8(s0)
      j pass
`);

describe('the WebAssembly tier: F/D loads and stores', () => {
  beforeAll(() => { tier = 'wasm'; });
  const mem = (m: Mini) => Array.from({ length: 15 }, (_, i) => u64(m, DATA + 8 * i));

  for (const offLater of [false, true]) {
    test(`FLD, FSD, FLW, FSW, FMV.D.X, FMV.X.D, FSGNJ*.D${offLater ? ' with the FP unit off half of the time (illegal instruction)' : ''} give the same state as the interpreter, FS = Dirty included`, () => {
      const [a, b] = runBoth(fpMemoryProgram(offLater), 20_000_000);
      expect(a.exit).toEqual({ code: 0 });
      const h = a.harts[0];
      expect(made(h)).toBeGreaterThan(0);
      expect(h.jitStats.wasmInsns).toBeGreaterThan(FP_ITER * (offLater ? 6 : 25));
      expectSameResults(a, b);
      expect(mem(a)).toEqual(mem(b));
      expect(Array.from(h.fregs)).toEqual(Array.from(b.harts[0].fregs));
      expect(h.mstatus).toBe(b.harts[0].mstatus);
      expect(traps(a)).toEqual(traps(b));
      // FS read as Dirty every time it was on; the NaN-boxed single in memory
      let on = 0, fs = true;
      for (let s1 = FP_ITER; s1 >= 1; s1--) if (s1 % 64 === 0) { if (fs) on++; if (offLater && s1 < FP_OFF) fs = false; }
      expect(u64(a, DATA + 16)).toBe(BigInt(3 * on));
      expect(u64(a, DATA + 96) >> 32n).toBe(0xffffffffn);
      if (offLater) {
        expect(traps(a).length).toBeGreaterThan(400 * 16);
        expect(h.jitStats.wasmExits[5]).toBeGreaterThan(0);
      } else expect(traps(a)).toEqual([]);
    });
  }

  test('run(n) never retires more than n instructions there, and ends on the same state', () => {
    expectBudgetsKept(fpMemoryProgram(true), [0, 8, 16, 64, 72, 80, 96, 104], (h) => h.jitStats.wasmInsns);
  });
});

// ---- F/D arithmetic in wasm regions (issue 16: sort's and awk's doubles) ----

/** Operands, binary64 (the first 32) and binary32 (the next 32): zeros, ±1, exact and inexact
 *  quotients, the largest finite numbers, the smallest normal numbers, subnormals, infinities,
 *  quiet NaNs (canonical and not) and signalling NaNs, integer-conversion edges (2^31, 2^63,
 *  -2^31 - 1), products that underflow; in the binary64 half, NaN-boxed singles (and so every
 *  other binary64 operand read as a single is the canonical NaN). */
const F64_OPERANDS = [
  0x0000000000000000n, 0x8000000000000000n, 0x3ff0000000000000n, 0xbff0000000000000n,
  0x3ff8000000000000n, 0x4008000000000000n, 0x3fd5555555555555n, 0x7fefffffffffffffn,
  0xffefffffffffffffn, 0x0010000000000000n, 0x000fffffffffffffn, 0x0000000000000001n,
  0x8000000000000003n, 0x7ff0000000000000n, 0xfff0000000000000n, 0x7ff8000000000000n,
  0x7ff0000000000001n, 0xfff8000000000123n, 0x41e0000000000000n, 0xc1e0000000200000n,
  0x43e0000000000000n, 0x4330000000000001n, 0x3fe0000000000001n, 0x4000000000000001n,
  0x7fe0000000000000n, 0x3ca0000000000000n, 0x0020000000000001n, 0xffffffff3f800000n,
  0xffffffff7f800001n, 0xffffffff00000001n, 0xffffffff7f7fffffn, 0xc0091eb851eb851fn,
];
const F32_OPERANDS = [
  0x00000000, 0x80000000, 0x3f800000, 0xbf800000, 0x3fc00000, 0x40400000, 0x3eaaaaab, 0x7f7fffff,
  0xff7fffff, 0x00800000, 0x007fffff, 0x00000001, 0x80000003, 0x7f800000, 0xff800000, 0x7fc00000,
  0x7f800001, 0xffc00123, 0x4f000000, 0xcf000001, 0x5f000000, 0x4b000001, 0x3f000001, 0x40000001,
  0x7f000000, 0x33800000, 0x01000001, 0x3f7fffff, 0x4effffff, 0x00400000, 0x7e800000, 0xc048f5c3,
];
const FA_ITER = 3000;   // iterations of the loop (s1 counts down)
const FA_OFF = 40;      // s1 below which FS stays Off (offLater): every F/D instruction traps
/** An OP-FP instruction with a reserved rounding mode (5, 6): fadd.d f10, f1, f2 / fmul.s f11, f4, f5. */
const faddDrm = (rm: number) => ((0x01 << 25) | (2 << 20) | (1 << 15) | (rm << 12) | (10 << 7) | 0x53) >>> 0;
/** fcvt.d.w (u = 0) / fcvt.d.wu (u = 1) fd, x[rs1] with rounding mode rm (the assembler takes none). */
const fcvtDW = (fd: number, rs1: number, rm: number, u: number) => ((0x69 << 25) | (u << 20) | (rs1 << 15) | (rm << 12) | (fd << 7) | 0x53) >>> 0;
const fmulSrm = (rm: number) => ((0x08 << 25) | (5 << 20) | (4 << 15) | (rm << 12) | (11 << 7) | 0x53) >>> 0;

/** A loop running every F/D arithmetic instruction (S and D) on operands picked from the tables
 *  by the iteration count, in every rounding mode (static, and DYN with frm changed every 128
 *  iterations to each of its values, the reserved 5, 6, 7 included: DYN instructions then trap),
 *  with reserved static rounding modes every 64th iteration (illegal instruction); the results'
 *  bits are folded into a1 (f results) and a2 (x results), fflags into a3 every 128 iterations
 *  (then cleared). With `offLater`, FS stays Off from s1 < FA_OFF on. The trap handler clobbers
 *  t5, t6 and a7: not used here. */
const fpArithProgram = (offLater: boolean): string => {
  const foldF = (f: string) => `fmv.x.d a4, ${f}\n slli a5, a1, 5\n sub a1, a5, a1\n add a1, a1, a4\n`;
  const foldX = (x: string) => `slli a5, a2, 5\n sub a2, a5, a2\n add a2, a2, ${x}\n`;
  const f = (insn: string, rd = 'f10') => `${insn}\n${foldF(rd)}`;
  const x = (insn: string) => `${insn}\n${foldX('a4')}`;
  const body = [
    // operands: f1, f2, f3 binary64 (t0, t1, t2 their indices), f4, f5, f6 binary32, f7 a binary64 read as a single
    'andi t0, s1, 31', 'li t3, 7', 'mul t1, s1, t3', 'andi t1, t1, 31', 'li t3, 13', 'mul t2, s1, t3', 'addi t2, t2, 5', 'andi t2, t2, 31',
    'slli t3, t0, 3', 'add t3, t3, s2', 'fld f1, 0(t3)', 'slli t3, t1, 3', 'add t3, t3, s2', 'fld f2, 0(t3)', 'slli t3, t2, 3', 'add t3, t3, s2', 'fld f3, 0(t3)',
    'slli t3, t1, 2', 'add t3, t3, s3', 'flw f4, 0(t3)', 'slli t3, t2, 2', 'add t3, t3, s3', 'flw f5, 0(t3)', 'slli t3, t0, 2', 'add t3, t3, s3', 'flw f6, 0(t3)',
    'slli t3, t2, 3', 'add t3, t3, s2', 'fld f7, 0(t3)',
    ...['rne', 'rtz', 'rdn', 'rup', 'rmm', 'dyn'].map((rm) => f(`fadd.d f10, f1, f2, ${rm}`)),
    f('fsub.d f10, f1, f3, rdn'), f('fsub.d f10, f2, f1, dyn'),
    ...['rne', 'rtz', 'rup', 'dyn'].map((rm) => f(`fmul.d f10, f1, f2, ${rm}`)),
    ...['rne', 'rdn', 'rmm', 'dyn'].map((rm) => f(`fdiv.d f10, f1, f2, ${rm}`)),
    ...['rne', 'rup', 'dyn'].map((rm) => f(`fsqrt.d f10, f1, ${rm}`)),
    f('fmin.d f10, f1, f2'), f('fmax.d f10, f2, f3'),
    ...['rne', 'rtz', 'dyn'].map((rm) => f(`fmadd.d f10, f1, f2, f3, ${rm}`)),
    f('fmsub.d f10, f1, f2, f3, rne'), f('fnmsub.d f10, f2, f3, f1, rdn'), f('fnmadd.d f10, f3, f1, f2, rup'),
    ...['rne', 'rtz', 'dyn'].map((rm) => f(`fcvt.s.d f10, f1, ${rm}`)), f('fcvt.d.s f10, f4'), f('fcvt.d.s f10, f7'),
    x('feq.d a4, f1, f2'), x('flt.d a4, f1, f3'), x('fle.d a4, f2, f1'), x('fclass.d a4, f1'),
    ...['rtz', 'rne', 'dyn'].map((rm) => x(`fcvt.w.d a4, f1, ${rm}`)),
    x('fcvt.wu.d a4, f2, rup'), x('fcvt.l.d a4, f1, rdn'), x('fcvt.lu.d a4, f3, rmm'), x('fcvt.l.d a4, f2, dyn'),
    'fmv.x.d a6, f2', f('fcvt.d.l f10, a6, rne'), f('fcvt.d.l f10, a6, dyn'), f('fcvt.d.lu f10, a6, rtz'), f('fcvt.d.w f10, a6'), f('fcvt.d.wu f10, a6'), f(`.word ${fcvtDW(10, 16, 7, 0)}`), f(`.word ${fcvtDW(10, 16, 1, 1)}`),
    f('fcvt.d.l f10, zero'), x('fcvt.l.d zero, f2, rne'),
    ...['rne', 'rtz', 'dyn'].map((rm) => f(`fadd.s f11, f4, f5, ${rm}`, 'f11')),
    f('fsub.s f11, f5, f6, rdn', 'f11'), f('fmul.s f11, f4, f5, rup', 'f11'), f('fmul.s f11, f4, f6, dyn', 'f11'),
    f('fdiv.s f11, f4, f5, rdn', 'f11'), f('fdiv.s f11, f5, f4, dyn', 'f11'), f('fsqrt.s f11, f4, rmm', 'f11'),
    f('fmin.s f11, f4, f5', 'f11'), f('fmax.s f11, f5, f6', 'f11'), f('fmin.s f11, f7, f4', 'f11'),
    f('fmadd.s f11, f4, f5, f6, rne', 'f11'), f('fmadd.s f11, f4, f5, f6, dyn', 'f11'), f('fnmadd.s f11, f6, f4, f5, rtz', 'f11'),
    f('fsgnj.s f11, f4, f5', 'f11'), f('fsgnjn.s f11, f7, f5', 'f11'), f('fsgnjx.s f11, f4, f6', 'f11'),
    f('fadd.s f11, f7, f4, rne', 'f11'),
    x('feq.s a4, f4, f5'), x('flt.s a4, f5, f6'), x('fle.s a4, f4, f7'), x('fclass.s a4, f4'), x('fclass.s a4, f7'), x('fmv.x.w a4, f4'),
    x('fcvt.w.s a4, f4, rtz'), x('fcvt.l.s a4, f5, dyn'), x('fcvt.wu.s a4, f6, rup'),
    f('fcvt.s.l f11, a6, rne', 'f11'), f('fcvt.s.w f11, a6, dyn', 'f11'), f('fcvt.s.wu f11, a6, rmm', 'f11'), f('fmv.w.x f11, a6', 'f11'),
  ].map((s, i) => (i % 8 === 7 ? `${s}\nj 1f\n1:` : s)).join('\n'); // jumps: where the interpreter enters wasm code again after a trap
  // Each operation's own flags (fflags read and cleared after it; the CSR access ends the wasm
  // region, which the jump after it enters again): those done inline in wasm when they can be
  // (FADD.D and FSUB.D in RNE, FEQ/FLT/FLE.D, FCVT.D.W[U]) and a few through the hart.
  // (the result folded first: a region needs 3 instructions before the CSR access)
  const probe = (insn: string, rd = 'f12') => `${insn}\n${rd.startsWith('f') ? foldF(rd) : foldX(rd)}csrrw a4, fflags, zero\n${foldX('a4')}j 1f\n1:`;
  const probes = [
    ...['rne', 'dyn'].map((rm) => probe(`fadd.d f12, f1, f2, ${rm}`)), probe('fadd.d f12, f1, f1, rne'), probe('fadd.d f12, f2, f3, dyn'),
    probe('fsub.d f12, f1, f2, rne'), probe('fsub.d f12, f1, f1, dyn'), probe('fsub.d f12, f3, f2, rne'),
    probe('feq.d a6, f1, f2', 'a6'), probe('flt.d a6, f2, f3', 'a6'), probe('fle.d a6, f1, f1', 'a6'), probe('feq.d a6, f3, f3', 'a6'),
    probe(`.word ${fcvtDW(12, 11, 7, 0)}`), probe(`.word ${fcvtDW(12, 12, 0, 1)}`),
    probe('fmul.d f12, f1, f2, rne'), probe('fdiv.d f12, f2, f1, dyn'), probe('fadd.s f12, f4, f5, rne'),
  ].join('\n');
  return program(`
      .option arch, +d
      li t0, 0x2000
      csrs mstatus, t0          # FS = Initial
      li s0, ${DATA}
      la s2, f64ops
      la s3, f32ops
      li s1, ${FA_ITER}
      li a1, 0
      li a2, 0
      li a3, 0
loop:
${body}
${probes}
      andi t0, s1, 63
      bnez t0, 2f
      .word ${faddDrm(5)}
      .word ${fmulSrm(6)}
      ${foldF('f10')}
2:    andi t0, s1, 127
      bnez t0, 3f
      csrr t3, fflags
      add a3, a3, t3
      csrw fflags, zero
      srli t3, s1, 7            # frm: (s1 >> 7) % 5 down to s1 = 1024, then 7, 6, ..., 0
      li t4, 8
      bltu t3, t4, 4f
      li t4, 5
      remu t3, t3, t4
4:    csrw frm, t3
3:    ${offLater ? `li t3, ${FA_OFF}
      bge s1, t3, 5f
      li t3, 0x6000
      csrc mstatus, t3          # FS = Off` : ''}
5:    addi s1, s1, -1
      bnez s1, loop
      sd a1, 0(s0)
      sd a2, 16(s0)
      sd a3, 24(s0)
      rdinstret t0
      sd t0, 8(s0)
      j pass
      .align 3
f64ops: ${F64_OPERANDS.map((v) => `.dword 0x${v.toString(16)}`).join('\n')}
f32ops: ${F32_OPERANDS.map((v) => `.word 0x${v.toString(16)}`).join('\n')}
`);
};

describe('the WebAssembly tier: F/D arithmetic', () => {
  beforeAll(() => { tier = 'wasm'; });
  const mem = (m: Mini) => Array.from({ length: 4 }, (_, i) => u64(m, DATA + 8 * i));

  for (const offLater of [false, true]) {
    test(`every F/D operation in every rounding mode, on NaNs, infinities, zeros, subnormals and overflowing operands, with reserved rounding modes${offLater ? ' and the FP unit off at the end' : ''}, gives the interpreter's registers, fflags, traps and instret`, () => {
      const [a, b] = runBoth(fpArithProgram(offLater), 50_000_000);
      expect(a.exit).toEqual({ code: 0 });
      expect(b.exit).toEqual({ code: 0 });
      const h = a.harts[0], hb = b.harts[0];
      expect(made(h)).toBeGreaterThan(0);
      // most of the F/D work ran in wasm regions, not in the interpreter
      expect(h.jitStats.wasmInsns).toBeGreaterThan(FA_ITER * 100);
      expect(h.jitStats.wasmFp).toBeGreaterThan(FA_ITER * 40);
      expectSameResults(a, b);
      expect(mem(a)).toEqual(mem(b));
      expect(Array.from(h.fregs)).toEqual(Array.from(hb.fregs));
      expect(h.fflags).toBe(hb.fflags);
      expect(h.frm).toBe(hb.frm);
      expect(h.mstatus).toBe(hb.mstatus);
      // instret: rdinstret before `pass`, at DATA + 8 (mem above); the hart's final instret also
      // counts the spin after the finisher's store, which depends on where each run stops
      const ta = traps(a);
      expect(ta).toEqual(traps(b));
      // illegal instructions: the reserved static modes, DYN with frm 5, 6, 7 (and FS off)
      expect(ta.length).toBeGreaterThan(2 * (FA_ITER / 64));
      expect(ta.every((t) => t[0] === 2n)).toBe(true);
    });
  }

  test('run(n) never retires more than n instructions there, and ends on the same state', () => {
    expectBudgetsKept(fpArithProgram(true), [0, 8, 16, 24], (h) => h.jitStats.wasmInsns);
  });
});

/** AMOs, LR and SC in a loop the WebAssembly tier translates (the hart runs them for the region:
 *  wasm/translate.ts hartExec): every AMO of .W and .D with changing operands, rd = x0 and rd =
 *  rs2, an LR/SC increment and an SC without a reservation; with `faults`, every 64th iteration
 *  also a misaligned AMO (store/AMO misaligned), an AMO on a device register (UART scratch) and
 *  one on an address nothing answers (store/AMO access fault), which the M handler logs and
 *  skips. */
const AMO_ITER = 3000;
const amoProgram = (faults: boolean): string => program(`
      li s0, ${DATA}
      li s1, ${AMO_ITER}
      li a0, 0x12345
      li a1, -3
      addi s2, s0, 64
      addi s3, s0, 128
      addi s7, s2, 8
      addi s8, s2, 16
      addi s9, s2, 24
      addi s10, s2, 32
      addi a3, s2, 40
      addi a4, s2, 48
      addi a5, s2, 56
      addi a6, s3, 8
      addi ra, s3, 16
      li s4, 0x10000004
      li s5, 0x20000000
      li s6, 0
1:    slli t0, s1, 29
      xor a0, a0, t0
      addi a0, a0, 0x5a5
      amoadd.d t1, a0, (s2)
      amoswap.w t2, a1, (s2)
      amoxor.d t3, a0, (s2)
      add s6, s6, t1
      xor s6, s6, t2
      add s6, s6, t3
      amoand.w t1, a0, (s7)
      amoor.d t2, a0, (s2)
      amomin.w t3, a0, (s8)
      add s6, s6, t1
      add s6, s6, t2
      xor s6, s6, t3
      amomax.d t1, a1, (s9)
      amominu.d t2, a0, (s10)
      amomaxu.w t3, a0, (a3)
      add s6, s6, t1
      add s6, s6, t2
      add s6, s6, t3
      amomin.d t1, a0, (a4)
      amomax.w t2, a0, (a5)
      amominu.w t3, a1, (s2)
      amomaxu.d t4, a1, (s7)
      amoxor.w t1, a1, (s8)
      amoand.d t2, a0, (s9)
      amoor.w t3, a1, (s10)
      amoswap.d t4, a0, (a3)
      add s6, s6, t1
      add s6, s6, t2
      add s6, s6, t3
      add s6, s6, t4
      amoadd.w x0, a0, (a4)
      mv a2, a0
      amoadd.d a2, a2, (a5)
      add s6, s6, a2
2:    lr.d t1, (s3)
      add t1, t1, s1
      sc.d t2, t1, (s3)
      bnez t2, 2b
      lr.w t3, (a6)
      addi t3, t3, 3
      sc.w t4, t3, (a6)
      sc.w t2, a0, (ra)
      add s6, s6, t4
      add s6, s6, t2
      addi a1, a1, -7
${faults ? `      andi t0, s1, 63
      bnez t0, 3f
      addi t1, s2, 2
      amoadd.w t2, a0, (t1)
      amoor.w t3, a0, (s4)
      amoswap.d t4, a0, (s5)
      add s6, s6, t3
3:` : ''}
      addi s1, s1, -1
      bnez s1, 1b
      sd s6, 0(s0)
      rdinstret t0
      sd t0, 8(s0)
      j pass
`);

describe('the WebAssembly tier: AMOs, LR and SC', () => {
  beforeAll(() => { tier = 'wasm'; });
  const mem = (m: Mini) => Array.from({ length: 20 }, (_, i) => u64(m, DATA + 64 + 8 * i));

  for (const faults of [false, true]) {
    test(`give the same registers, memory, traps and instret as the interpreter${faults ? ', with misaligned, device and access-fault AMOs' : ''}`, () => {
      const [a, b] = runBoth(amoProgram(faults), 20_000_000);
      expect(a.exit).toEqual({ code: 0 });
      const h = a.harts[0];
      expect(made(h)).toBeGreaterThan(0);
      // the loop's AMOs ran inside its region: 19 AMOs, 5 LR/SC per iteration
      expect(h.jitStats.wasmHartExec).toBeGreaterThan(AMO_ITER * 20);
      expect(h.jitStats.wasmInsns).toBeGreaterThan(AMO_ITER * 40);
      expectSameResults(a, b);
      expect(mem(a)).toEqual(mem(b));
      expect(traps(a)).toEqual(traps(b));
      if (faults) {
        const t = traps(a);
        expect(t.length).toBe(2 * Math.floor(AMO_ITER / 64));
        expect(t[0][0]).toBe(6n); // store/AMO address misaligned
        expect(t[1][0]).toBe(7n); // store/AMO access fault
      } else expect(traps(a)).toEqual([]);
    });
  }

  test('run(n) never retires more than n instructions there, and ends on the same state', () => {
    expectBudgetsKept(amoProgram(true), [0, 8, 64, 72, 80, 88, 96, 104, 112, 120, 128, 136], (h) => h.jitStats.wasmHartExec);
  });
});

/** MULH, MULHSU, MULHU (and MUL) on every pair of 16 corner values (0, ±1, INT64_MIN/MAX,
 *  32-bit boundaries, mixed halves), rd = rs1 and rd = x0 included, in a loop the WebAssembly
 *  tier translates: each result is folded into an accumulator. */
const MUL_ITER = 4096;
const mulhProgram = program(`
      li s0, ${DATA}
      li s1, ${MUL_ITER}
      la s2, 9f
      li s6, 0
      li s7, 0
      li s8, 0
1:    andi t0, s1, 15
      slli t0, t0, 3
      add t0, t0, s2
      ld a0, 0(t0)
      srli t1, s1, 4
      andi t1, t1, 15
      slli t1, t1, 3
      add t1, t1, s2
      ld a1, 0(t1)
      mulh t2, a0, a1
      mulhsu t3, a0, a1
      mulhu t4, a0, a1
      mul s9, a0, a1
      mulh x0, a0, a1
      slli t0, s6, 7
      srli s6, s6, 57
      or s6, s6, t0
      xor s6, s6, t2
      add s7, s7, t3
      slli t0, s7, 3
      xor s7, s7, t0
      xor s8, s8, t4
      add s8, s8, s9
      mv a2, a0
      mulhsu a2, a2, a1
      sub s8, s8, a2
      mulhu a1, a1, a1
      add s7, s7, a1
      addi s1, s1, -1
      bnez s1, 1b
      sd s6, 0(s0)
      sd s7, 16(s0)
      sd s8, 24(s0)
      rdinstret t0
      sd t0, 8(s0)
      j pass
      .align 3
9:    .dword 0, 1, -1, 0x8000000000000000, 0x7fffffffffffffff, 0xffffffff, 0x100000000, 0x80000000
      .dword 0xffffffff80000000, 0x9e3779b97f4a7c15, 0xfffffffe00000001, 0x00000001ffffffff, 3, -2, 0x123456789abcdef0, 0xfedcba9876543210
`);

describe('the WebAssembly tier: MULH, MULHSU, MULHU', () => {
  beforeAll(() => { tier = 'wasm'; });
  test('give the interpreter\'s results on corner values, inside the region', () => {
    const [a, b] = runBoth(mulhProgram, 20_000_000);
    expect(a.exit).toEqual({ code: 0 });
    const h = a.harts[0];
    expect(made(h)).toBeGreaterThan(0);
    expect(h.jitStats.wasmInsns).toBeGreaterThan(MUL_ITER * 25); // the loop ran in wasm, its multiplies too
    expect(h.regionsCompiled).toBe(0);
    expectSameResults(a, b);
    expect(u64(a, DATA + 16)).toBe(u64(b, DATA + 16));
    expect(u64(a, DATA + 24)).toBe(u64(b, DATA + 24));
  });
});

/** A loop with a CSR write in the middle (which no region takes in, and after which the
 *  interpreter ends its block): the code after it is a block start the hart counts, so it gets a
 *  wasm region of its own instead of being interpreted up to the loop's branch. */
const CSR_ITER = 4000;
const csrInsideProgram = program(`
      li s0, ${DATA}
      li s1, ${CSR_ITER}
      li a0, 1
1:    addi a0, a0, 3
      xor a1, a1, a0
      slli t0, a0, 2
      add a1, a1, t0
      csrw mscratch, a1
      srli t1, a1, 3
      xor a0, a0, t1
      addi a2, a2, 1
      add a3, a3, a0
      xor a3, a3, a2
      slli t2, a3, 1
      add a0, a0, t2
      addi s1, s1, -1
      bnez s1, 1b
      sd a0, 0(s0)
      rdinstret t0
      sd t0, 8(s0)
      j pass
`);

describe('the WebAssembly tier: code after a CSR access', () => {
  beforeAll(() => { tier = 'wasm'; });
  test('runs in a region of its own (a block start is counted as a reach), with the interpreter\'s results', () => {
    const [a, b] = runBoth(csrInsideProgram, 20_000_000);
    expect(a.exit).toEqual({ code: 0 });
    const h = a.harts[0];
    expect(made(h)).toBeGreaterThan(0);
    // 14 of the loop's 15 instructions: the 10 after the CSR write too
    expect(h.jitStats.wasmInsns).toBeGreaterThan(CSR_ITER * 12);
    expectSameResults(a, b);
  });
});
