// The loop translator (jit.ts): translated loops must behave exactly like the interpreter —
// same results, same instret, exact trap state in the middle of a loop, exact run() budgets, and
// no stale code after stores into the loop or FENCE.I.
import { describe, expect, test } from 'vitest';
import { runAsm, makeMachine, loadElf, buildAsm, type Mini } from './harness.js';
import { program, DATA, LOG } from './prelude.js';
import { HOT_THRESHOLD } from '../../src/riscv/jit.js';

function u64(m: Mini, addr: number): bigint {
  const b = new Uint8Array(8);
  m.mem.ram.read(addr, b);
  return new DataView(b.buffer).getBigUint64(0, true);
}

const ITER = HOT_THRESHOLD * 8;

const checksum = `
      li s0, ${DATA}
      li t0, ${ITER}
      li t1, 0
      li t2, 0x9e3779b97f4a7c15
1:    mul t3, t0, t2
      xor t1, t1, t3
      srli t4, t1, 7
      add t1, t1, t4
      sd t1, 0(s0)
      ld t5, 0(s0)
      addiw t6, t5, 3
      sw t6, 8(s0)
      addi t0, t0, -1
      bnez t0, 1b
      sd t1, 16(s0)
      rdinstret t0
      sd t0, 24(s0)
`;

describe('loop translation', () => {
  test('a hot loop gives the same registers, memory and instret with and without translation', () => {
    const run = (jit: boolean) => runAsm(program(checksum), { setup: (m) => { m.harts[0].jitEnabled = jit; } });
    const a = run(true), b = run(false);
    expect(a.exit).toEqual({ code: 0 });
    expect(b.exit).toEqual({ code: 0 });
    expect(u64(a, DATA + 16)).toBe(u64(b, DATA + 16));
    expect(u64(a, DATA + 8)).toBe(u64(b, DATA + 8));
    expect(u64(a, DATA + 24)).toBe(u64(b, DATA + 24));
    expect(a.harts[0].instret).toBe(b.harts[0].instret);
  });

  test('run(n) never retires more than n instructions, in and out of translated loops', () => {
    const m = makeMachine();
    const h = m.harts[0];
    h.setPc(loadElf(m.mem, buildAsm(program(checksum))));
    let total = 0;
    for (let k = 0; k < 100000 && m.exit === null; k++) {
      const budget = 1 + (k % 37);
      const r = h.run(budget);
      expect(r).toBeLessThanOrEqual(budget);
      total += r;
    }
    expect(m.exit).toEqual({ code: 0 });
    expect(total).toBe(h.instret);
    // (instret differs from other runs only by how long the hart spins after the finisher store)
    const ref = runAsm(program(checksum), { setup: (mm) => { mm.harts[0].jitEnabled = false; } });
    expect(u64(m, DATA + 16)).toBe(u64(ref, DATA + 16));
    expect(u64(m, DATA + 24)).toBe(u64(ref, DATA + 24)); // rdinstret inside the program
  });

  test('a page fault in the middle of a translated loop has the exact mepc, mtval and instret', () => {
    // The loop walks a pointer upwards through RAM until it runs off the end (access fault).
    const src = (jit: boolean) => runAsm(program(`
      li s0, ${DATA}
      li t1, 0
1:    ld t0, 0(s0)
      add t1, t1, t0
      addi s0, s0, 64
      j 2f
2:    bnez t1, 1b            # never taken (t1 stays 0): so use a plain loop below
      li s0, 0x80ff0000       # 64 KiB below the end of the 16 MiB RAM
3:    ld t0, 0(s0)
      addi s0, s0, 8
      addi t1, t1, 1
      bne t1, zero, 3b
    `), { max: 2_000_000, setup: (m) => { m.harts[0].jitEnabled = jit; } });
    const a = src(true), b = src(false);
    const rec = (m: Mini) => [u64(m, LOG), u64(m, LOG + 8), u64(m, LOG + 16)];
    expect(rec(a)[0]).toBe(5n);
    expect(rec(a)[1]).toBe(0x81000000n);
    expect(rec(a)).toEqual(rec(b));
    expect(a.harts[0].instret).toBe(b.harts[0].instret);
  });

  test('storing into a translated loop, or FENCE.I after other writes, never runs stale code', () => {
    // The loop adds an immediate; after it has been translated, the program patches the addi's
    // immediate (same page: the hart's own store drops the translation) and runs it again.
    const m = runAsm(program(`
      .option norvc
      li s0, ${DATA}
      li a1, 0
      li a2, 0
      la s1, body
again:
      li t0, ${ITER}
body: addi a1, a1, 1           # patched to addi a1, a1, 2
      addi t0, t0, -1
      bnez t0, body
      bnez a2, done
      li a2, 1
      lw t1, 0(s1)
      li t2, 0x00100000        # imm 1 -> 2: add 1 << 20
      add t1, t1, t2
      sw t1, 0(s1)
      fence.i
      j again
done: sd a1, 0(s0)
      .option rvc
    `, ''), { setup: (mm) => { mm.harts[0].jitEnabled = true; } });
    expect(m.exit).toEqual({ code: 0 });
    expect(u64(m, DATA)).toBe(BigInt(ITER * 3));
  });

  test('code written by another agent (a loader, DMA) runs after flushCode()', () => {
    const m = makeMachine();
    const h = m.harts[0];
    const mk = (inc: number) => buildAsm(program(`
      li s0, ${DATA}
      li a1, 0
      li t0, ${ITER}
1:    addi a1, a1, ${inc}
      addi t0, t0, -1
      bnez t0, 1b
      sd a1, 0(s0)
    `));
    const entry = loadElf(m.mem, mk(1));
    h.setPc(entry);
    while (m.exit === null) h.run(10000);
    expect(u64(m, DATA)).toBe(BigInt(ITER));
    loadElf(m.mem, mk(3));
    h.flushCode();
    m.exit = null;
    h.setPc(entry);
    while (m.exit === null) h.run(10000);
    expect(u64(m, DATA)).toBe(BigInt(ITER * 3));
  });
});
