// The A extension: every AMO (W and D) against a model, LR/SC success and failure, and an SC that
// fails because another hart stored to the reservation granule (shared ReservationSet).
import { describe, expect, test } from 'vitest';
import { runAsm, type Mini } from './harness.js';
import { program, DATA } from './prelude.js';

function u64(m: Mini, addr: number): bigint {
  const b = new Uint8Array(8);
  m.mem.ram.read(addr, b);
  return new DataView(b.buffer).getBigUint64(0, true);
}
const u = (v: bigint): bigint => BigInt.asUintN(64, v);
const s = (v: bigint): bigint => BigInt.asIntN(64, v);

const ops: Record<string, (a: bigint, b: bigint) => bigint> = {
  amoswap: (_a, b) => b,
  amoadd: (a, b) => u(a + b),
  amoxor: (a, b) => a ^ b,
  amoand: (a, b) => a & b,
  amoor: (a, b) => a | b,
  amomin: (a, b) => (s(a) < s(b) ? a : b),
  amomax: (a, b) => (s(a) > s(b) ? a : b),
  amominu: (a, b) => (a < b ? a : b),
  amomaxu: (a, b) => (a > b ? a : b),
};

describe('AMOs', () => {
  const vals = [0n, 1n, 0xffffffffffffffffn, 0x8000000000000000n, 0x7fffffff80000000n, 0x00000000ffffffffn, 0x123456789n];
  for (const width of ['w', 'd'] as const) {
    test(`all AMO*.${width} return the old value and store op(old, rs2)`, () => {
      const cases: [string, bigint, bigint][] = [];
      for (const op of Object.keys(ops)) for (const a of vals) for (const b of vals.slice(0, 5)) cases.push([op, a, b]);
      const body = cases.map(([op, a, b], i) => `
        li t0, ${a}
        sd t0, 0(s0)
        li t1, ${b}
        ${op}.${width}.aqrl t2, t1, (s0)
        sd t2, 0(s1)
        ld t3, 0(s0)
        sd t3, 8(s1)
        addi s1, s1, 16`).join('\n');
      const m = runAsm(program(`
        li s0, ${DATA}
        li s1, ${DATA + 0x1000}
        ${body}
      `), { max: 5_000_000 });
      expect(m.exit).toEqual({ code: 0 });
      const bad: string[] = [];
      cases.forEach(([op, a, b], i) => {
        let old: bigint, mem: bigint;
        if (width === 'd') { old = a; mem = ops[op](a, b); } else {
          const a32 = BigInt.asIntN(32, a), b32 = BigInt.asIntN(32, b);
          old = u(a32);
          const f = ops[op];
          // 32-bit AMOs operate on sign-extended words; min/max signedness as in the op
          const r = op.endsWith('u') ? f(a & 0xffffffffn, b & 0xffffffffn) : f(u(a32), u(b32));
          mem = (a & 0xffffffff00000000n) | (r & 0xffffffffn);
        }
        const gotOld = u64(m, DATA + 0x1000 + 16 * i), gotMem = u64(m, DATA + 0x1000 + 16 * i + 8);
        if (gotOld !== old || gotMem !== mem) bad.push(`${op}.${width} ${a} ${b}: old ${gotOld} (want ${old}) mem ${gotMem} (want ${mem})`);
      });
      expect(bad.slice(0, 5)).toEqual([]);
    });
  }
});

describe('LR/SC', () => {
  test('LR/SC succeeds; SC without a reservation, or to another address, fails; SC clears the reservation', () => {
    const m = runAsm(program(`
      li s0, ${DATA}
      li s1, ${DATA + 0x800}
      li t0, 41
      sd t0, 0(s0)
      lr.d t1, (s0)
      addi t1, t1, 1
      sc.d t2, t1, (s0)
      sd t2, 0(s1)             # 0 = success
      sc.d t2, t1, (s0)
      sd t2, 8(s1)             # 1: reservation consumed
      lr.w t1, (s0)
      addi t4, s0, 8
      sc.w t2, t1, (t4)
      sd t2, 16(s1)            # 1: other address
      lr.w t1, (s0)
      sw t1, 0(s0)             # own store: reservation kept (as QEMU)
      sc.w t2, t1, (s0)
      sd t2, 24(s1)
    `));
    expect(m.exit).toEqual({ code: 0 });
    expect(u64(m, DATA)).toBe(42n);
    expect([u64(m, DATA + 0x800), u64(m, DATA + 0x808), u64(m, DATA + 0x810), u64(m, DATA + 0x818)]).toEqual([0n, 1n, 1n, 0n]);
  });

  test("another hart's store to the granule breaks the reservation", () => {
    const src = program(`
      csrr t0, mhartid
      li s0, ${DATA}
      li s1, ${DATA + 0x100}
      bnez t0, hart1
      lr.d t1, (s0)
      li t2, 1
      sd t2, 0(s1)             # tell hart 1 to store
1:    ld t2, 8(s1)
      beqz t2, 1b              # wait until it has
      sc.d t3, t1, (s0)
      sd t3, 16(s1)
      lr.d t1, (s0)            # second round: hart 1 stores elsewhere
      li t2, 2
      sd t2, 0(s1)
1:    ld t2, 8(s1)
      li t4, 2
      bne t2, t4, 1b
      sc.d t3, t1, (s0)
      sd t3, 24(s1)
      j pass
hart1:
1:    ld t2, 0(s1)
      beqz t2, 1b
      li t3, 7
      sw t3, 4(s0)             # same doubleword granule
      li t2, 1
      sd t2, 8(s1)
1:    ld t2, 0(s1)
      li t4, 2
      bne t2, t4, 1b
      sd t3, 64(s0)            # another granule
      sd t2, 8(s1)
2:    j 2b
    `);
    const m = runAsm(src, { harts: 2, max: 2_000_000 });
    expect(m.exit).toEqual({ code: 0 });
    expect(u64(m, DATA + 0x110)).toBe(1n);
    expect(u64(m, DATA + 0x118)).toBe(0n);
  });
});
