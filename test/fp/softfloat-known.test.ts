// Known answers for the FP library: boundary values worked out by hand from IEEE 754-2008 and the
// RISC-V F/D chapters, and cross-checks against the host where the host is exact (binary64
// round-to-nearest-even arithmetic; Math.fround of a binary64 result for binary32 +,-,*,/,sqrt, which
// is a correct single rounding because 53 >= 2*24+2).
import { describe, it, expect } from 'vitest';
import * as S from '../../src/riscv/fp/softfloat.js';
import { fx, NX, UF, OF, DZ, NV, RNE, RTZ, RDN, RUP, RMM } from '../../src/riscv/fp/flags.js';
import { Lcg, randF32, randF64, lo, hi, big } from './gen.js';

const f2b = (x: number): number => S.numToF32(Math.fround(x)) >>> 0;
const d2b = (x: number): bigint => { const a = new Float64Array([x]); return new BigUint64Array(a.buffer)[0]; };
const b2d = (b: bigint): number => new Float64Array(new BigUint64Array([b]).buffer)[0];
function f32op(fn: () => number): [string, number] {
  fx.flags = 0;
  const r = fn() >>> 0;
  return ['0x' + r.toString(16).padStart(8, '0'), fx.flags];
}
function f64op(fn: () => void): [string, number] {
  fx.flags = 0;
  fn();
  return ['0x' + big(S.out[0], S.out[1]).toString(16).padStart(16, '0'), fx.flags];
}
const d = (x: number): [number, number] => { const b = d2b(x); return [lo(b), hi(b)]; };

describe('binary32 known answers', () => {
  it('exceptions of the basic operations', () => {
    expect(f32op(() => S.f32_div(f2b(1), f2b(3), RNE))).toEqual(['0x3eaaaaab', NX]);
    expect(f32op(() => S.f32_div(f2b(1), f2b(3), RTZ))).toEqual(['0x3eaaaaaa', NX]);
    expect(f32op(() => S.f32_div(f2b(-1), f2b(3), RDN))).toEqual(['0xbeaaaaab', NX]);
    expect(f32op(() => S.f32_div(f2b(1), f2b(0), RNE))).toEqual(['0x7f800000', DZ]);
    expect(f32op(() => S.f32_div(f2b(-1), 0, RNE))).toEqual(['0xff800000', DZ]);
    expect(f32op(() => S.f32_div(0, 0, RNE))).toEqual(['0x7fc00000', NV]);
    expect(f32op(() => S.f32_sqrt(f2b(-1), RNE))).toEqual(['0x7fc00000', NV]);
    expect(f32op(() => S.f32_sqrt(0x80000000 | 0, RNE))).toEqual(['0x80000000', 0]);
    expect(f32op(() => S.f32_sub(0x7f800000, 0x7f800000, RNE))).toEqual(['0x7fc00000', NV]);
    expect(f32op(() => S.f32_mul(0x7f800000, 0, RNE))).toEqual(['0x7fc00000', NV]);
    // Overflow: the result depends on the mode (IEEE 754 §7.4).
    expect(f32op(() => S.f32_mul(0x7f7fffff, f2b(2), RNE))).toEqual(['0x7f800000', OF | NX]);
    expect(f32op(() => S.f32_mul(0x7f7fffff, f2b(2), RTZ))).toEqual(['0x7f7fffff', OF | NX]);
    expect(f32op(() => S.f32_mul(0x7f7fffff, f2b(-2), RUP))).toEqual(['0xff7fffff', OF | NX]);
    expect(f32op(() => S.f32_mul(0x7f7fffff, f2b(-2), RDN))).toEqual(['0xff800000', OF | NX]);
    // Underflow: minimum subnormal halved is a tie -> 0 in RNE, min subnormal in RMM/RUP.
    expect(f32op(() => S.f32_mul(1, f2b(0.5), RNE))).toEqual(['0x00000000', UF | NX]);
    expect(f32op(() => S.f32_mul(1, f2b(0.5), RMM))).toEqual(['0x00000001', UF | NX]);
    expect(f32op(() => S.f32_mul(1, f2b(0.5), RUP))).toEqual(['0x00000001', UF | NX]);
    expect(f32op(() => S.f32_mul(1, f2b(-0.5), RDN))).toEqual(['0x80000001', UF | NX]);
    // Exact subnormal results raise nothing.
    expect(f32op(() => S.f32_mul(2, f2b(0.5), RNE))).toEqual(['0x00000001', 0]);
    // x - x = +0, but -0 when rounding down (IEEE 754 §6.3).
    expect(f32op(() => S.f32_sub(f2b(1.5), f2b(1.5), RNE))).toEqual(['0x00000000', 0]);
    expect(f32op(() => S.f32_sub(f2b(1.5), f2b(1.5), RDN))).toEqual(['0x80000000', 0]);
  });
  it('tininess is detected after rounding', () => {
    // (1 - 2^-25) * 2^-126 rounds (24 bits, unbounded exponent) to 2^-126: not tiny -> NX only.
    const x = (1 - 2 ** -25) * 2 ** -126;
    expect(f32op(() => S.f64_to_f32(...d(x), RNE))).toEqual(['0x00800000', NX]);
    // (1 - 2^-24) * 2^-126 + a little: unbounded rounding stays below 2^-126: tiny, and it rounds up
    // to 2^-126 in the subnormal format: UF|NX with a normal result.
    const y = (1 - 2 ** -24 + 2 ** -30) * 2 ** -126;
    expect(f32op(() => S.f64_to_f32(...d(y), RNE))).toEqual(['0x00800000', UF | NX]);
    // In RTZ the first value is tiny (truncation stays below 2^-126).
    expect(f32op(() => S.f64_to_f32(...d(x), RTZ))).toEqual(['0x007fffff', UF | NX]);
  });
  it('halfway cases in every mode', () => {
    // 1 + 2^-24 is halfway between 1 and 1 + 2^-23.
    const h = d(1 + 2 ** -24);
    expect(f32op(() => S.f64_to_f32(...h, RNE))).toEqual(['0x3f800000', NX]);
    expect(f32op(() => S.f64_to_f32(...h, RMM))).toEqual(['0x3f800001', NX]);
    expect(f32op(() => S.f64_to_f32(...h, RUP))).toEqual(['0x3f800001', NX]);
    expect(f32op(() => S.f64_to_f32(...h, RDN))).toEqual(['0x3f800000', NX]);
    expect(f32op(() => S.f64_to_f32(...h, RTZ))).toEqual(['0x3f800000', NX]);
    // 1 + 3*2^-24 is halfway between two values, the upper even.
    const h3 = d(-(1 + 3 * 2 ** -24));
    expect(f32op(() => S.f64_to_f32(...h3, RNE))).toEqual(['0xbf800002', NX]);
    expect(f32op(() => S.f64_to_f32(...h3, RMM))).toEqual(['0xbf800002', NX]);
    expect(f32op(() => S.f64_to_f32(...h3, RTZ))).toEqual(['0xbf800001', NX]);
    expect(f32op(() => S.f64_to_f32(...h3, RUP))).toEqual(['0xbf800001', NX]);
    expect(f32op(() => S.f64_to_f32(...h3, RDN))).toEqual(['0xbf800002', NX]);
  });
  it('fused multiply-add rounds once', () => {
    // a = 1 + 2^-12: a*a = 1 + 2^-11 + 2^-24; minus (1 + 2^-11) leaves 2^-24 exactly.
    const a = f2b(1 + 2 ** -12);
    const c = f2b(1 + 2 ** -11);
    expect(f32op(() => S.f32_fma(a, a, c, RNE, false, true))).toEqual(['0x33800000', 0]);
    // inf * 0 + qNaN raises invalid (RISC-V F chapter).
    expect(f32op(() => S.f32_fma(0x7f800000, 0, 0x7fc00000, RNE, false, false))).toEqual(['0x7fc00000', NV]);
    expect(f32op(() => S.f32_fma(f2b(1), f2b(1), 0x7fc00001, RNE, false, false))).toEqual(['0x7fc00000', 0]);
    expect(f32op(() => S.f32_fma(f2b(1), f2b(1), 0x7f800001, RNE, false, false))).toEqual(['0x7fc00000', NV]);
  });
  it('min/max, comparisons and fclass', () => {
    expect(f32op(() => S.f32_minmax(0x80000000 | 0, 0, false))).toEqual(['0x80000000', 0]);
    expect(f32op(() => S.f32_minmax(0x80000000 | 0, 0, true))).toEqual(['0x00000000', 0]);
    expect(f32op(() => S.f32_minmax(0x7fc00001, f2b(2), true))).toEqual(['0x40000000', 0]);
    expect(f32op(() => S.f32_minmax(0x7f800001, f2b(2), false))).toEqual(['0x40000000', NV]);
    expect(f32op(() => S.f32_minmax(0x7f800001, 0x7fc12345, false))).toEqual(['0x7fc00000', NV]);
    expect(f32op(() => S.f32_eq(0x7fc00000, 0x7fc00000))).toEqual(['0x00000000', 0]);
    expect(f32op(() => S.f32_eq(0x7f800001, 0))).toEqual(['0x00000000', NV]);
    expect(f32op(() => S.f32_lt(0x7fc00000, 0))).toEqual(['0x00000000', NV]);
    expect(f32op(() => S.f32_le(0x80000000 | 0, 0))).toEqual(['0x00000001', 0]);
    expect(f32op(() => S.f32_lt(0x80000000 | 0, 0))).toEqual(['0x00000000', 0]);
    const cls = [0xff800000, 0xbf800000, 0x80000001, 0x80000000, 0, 1, 0x3f800000, 0x7f800000, 0x7f800001, 0x7fc00000];
    cls.forEach((b, i) => expect(S.f32_class(b | 0)).toBe(1 << i));
  });
  it('float -> int saturation (F chapter table)', () => {
    expect(f32op(() => S.f32_to_i32(0x7fc00000, RNE))).toEqual(['0x7fffffff', NV]);
    expect(f32op(() => S.f32_to_i32(0xff800000 | 0, RNE))).toEqual(['0x80000000', NV]);
    expect(f32op(() => S.f32_to_u32(0x7fc00000, RNE))).toEqual(['0xffffffff', NV]);
    expect(f32op(() => S.f32_to_u32(f2b(-1), RNE))).toEqual(['0x00000000', NV]);
    expect(f32op(() => S.f32_to_u32(f2b(-0.25), RNE))).toEqual(['0x00000000', NX]);
    expect(f32op(() => S.f32_to_i32(f2b(2.5), RNE))).toEqual(['0x00000002', NX]);
    expect(f32op(() => S.f32_to_i32(f2b(2.5), RMM))).toEqual(['0x00000003', NX]);
    expect(f32op(() => S.f32_to_i32(f2b(-2.5), RMM))).toEqual(['0xfffffffd', NX]);
    expect(f32op(() => S.f32_to_i32(f2b(-2.5), RDN))).toEqual(['0xfffffffd', NX]);
    expect(f32op(() => S.f32_to_i32(f2b(-2.5), RUP))).toEqual(['0xfffffffe', NX]);
    expect(f32op(() => S.f32_to_i32(f2b(2 ** 31), RNE))).toEqual(['0x7fffffff', NV]);
    expect(f32op(() => S.f32_to_i32(f2b(-(2 ** 31)), RNE))).toEqual(['0x80000000', 0]);
    expect(f64op(() => S.f64_to_i64(...d(2 ** 63), RNE))).toEqual(['0x7fffffffffffffff', NV]);
    expect(f64op(() => S.f64_to_i64(...d(-(2 ** 63)), RNE))).toEqual(['0x8000000000000000', 0]);
    expect(f64op(() => S.f64_to_u64(...d(2 ** 64 - 2048), RNE))).toEqual(['0xfffffffffffff800', 0]);
    expect(f64op(() => S.f64_to_u64(...d(2 ** 64), RNE))).toEqual(['0xffffffffffffffff', NV]);
    expect(f64op(() => S.f64_to_u64(0, 0x7ff80000, RNE))).toEqual(['0xffffffffffffffff', NV]);
  });
});

describe('binary64 known answers', () => {
  it('exceptions and modes', () => {
    expect(f64op(() => S.f64_div(...d(1), ...d(3), RNE))).toEqual(['0x3fd5555555555555', NX]);
    expect(f64op(() => S.f64_div(...d(1), ...d(3), RUP))).toEqual(['0x3fd5555555555556', NX]);
    expect(f64op(() => S.f64_mul(...d(Number.MAX_VALUE), ...d(2), RTZ))).toEqual(['0x7fefffffffffffff', OF | NX]);
    expect(f64op(() => S.f64_mul(...d(Number.MAX_VALUE), ...d(2), RNE))).toEqual(['0x7ff0000000000000', OF | NX]);
    // Sum just above MAX but below MAX + half an ulp: RNE gives MAX, RUP overflows.
    expect(f64op(() => S.f64_add(...d(Number.MAX_VALUE), ...d(2 ** 960), RNE, false))).toEqual(['0x7fefffffffffffff', NX]);
    expect(f64op(() => S.f64_add(...d(Number.MAX_VALUE), ...d(2 ** 960), RUP, false))).toEqual(['0x7ff0000000000000', OF | NX]);
    // MAX + half an ulp and more: RNE overflows, RTZ stays at MAX without OF (rounded < 2^1024).
    expect(f64op(() => S.f64_add(...d(Number.MAX_VALUE), ...d(2 ** 970), RTZ, false))).toEqual(['0x7fefffffffffffff', NX]);
    expect(f64op(() => S.f64_add(...d(Number.MAX_VALUE), ...d(Number.MAX_VALUE), RTZ, false))).toEqual(['0x7fefffffffffffff', OF | NX]);
    expect(f64op(() => S.f64_mul(...d(5e-324), ...d(0.5), RNE))).toEqual(['0x0000000000000000', UF | NX]);
    expect(f64op(() => S.f64_mul(...d(5e-324), ...d(0.75), RNE))).toEqual(['0x0000000000000001', UF | NX]);
    expect(f64op(() => S.f64_sqrt(...d(2), RNE))).toEqual(['0x3ff6a09e667f3bcd', NX]);
    // sqrt(2) = 1.41421356237309504880..., below the RNE result 0x3ff6a09e667f3bcd.
    expect(f64op(() => S.f64_sqrt(...d(2), RUP))).toEqual(['0x3ff6a09e667f3bcd', NX]);
    expect(f64op(() => S.f64_sqrt(...d(2), RDN))).toEqual(['0x3ff6a09e667f3bcc', NX]);
    expect(f64op(() => S.f64_sqrt(...d(-0), RNE))).toEqual(['0x8000000000000000', 0]);
    expect(f64op(() => S.f64_sqrt(...d(-1e-300), RNE))).toEqual(['0x7ff8000000000000', NV]);
    // fma: 0.1*10 - 1 in one rounding is the rounding error of 0.1*10, 2^-54.
    expect(f64op(() => S.f64_fma(...d(0.1), ...d(10), ...d(1), RNE, false, true))).toEqual(['0x3c90000000000000', 0]);
    expect(f64op(() => S.f64_fma(...d(1), ...d(1), ...d(-1), RDN, false, false))).toEqual(['0x8000000000000000', 0]);
    expect(f64op(() => S.f64_fma(...d(Infinity), 0, 0, 0, 0x7ff80000, RNE, false, false))).toEqual(['0x7ff8000000000000', NV]);
    // min/max with signed zeros and NaN payloads; sNaN raises NV.
    expect(f64op(() => S.f64_minmax(0, 0x80000000 | 0, 0, 0, false))).toEqual(['0x8000000000000000', 0]);
    expect(f64op(() => S.f64_minmax(5, 0x7ff00000, ...d(-3), true))).toEqual(['0xc008000000000000', NV]);
    expect(S.f64_class(1, 0x7ff00000)).toBe(1 << 8);
    expect(S.f64_class(0, 0x7ff80000)).toBe(1 << 9);
    expect(S.f64_class(1, 0x80000000 | 0)).toBe(1 << 2);
  });
  it('int64 conversions round in every mode', () => {
    // 2^53 + 1 is halfway between 2^53 and 2^53 + 2.
    const v = 2n ** 53n + 1n;
    const args = [lo(v), hi(v)] as const;
    expect(f64op(() => S.i64_to_f64(...args, RNE))).toEqual(['0x4340000000000000', NX]);
    expect(f64op(() => S.i64_to_f64(...args, RMM))).toEqual(['0x4340000000000001', NX]);
    expect(f64op(() => S.i64_to_f64(...args, RUP))).toEqual(['0x4340000000000001', NX]);
    expect(f64op(() => S.u64_to_f64(-1, -1, RNE))).toEqual(['0x43f0000000000000', NX]);
    expect(f64op(() => S.u64_to_f64(-1, -1, RTZ))).toEqual(['0x43efffffffffffff', NX]);
    expect(f32op(() => S.i64_to_f32(-1, -1, RNE))).toEqual(['0xbf800000', 0]);
    expect(f32op(() => S.u32_to_f32(-1, RTZ))).toEqual(['0x4f7fffff', NX]);
  });
});

describe('host cross-check (round to nearest even)', () => {
  it('binary64 +,-,*,/,sqrt equal the host results', () => {
    const g = new Lcg(99);
    for (let i = 0; i < 20000; i++) {
      const a = randF64(g), b = randF64(g);
      const x = b2d(a), y = b2d(b);
      const checks: [() => void, number][] = [
        [() => S.f64_add(lo(a), hi(a), lo(b), hi(b), RNE, false), x + y],
        [() => S.f64_add(lo(a), hi(a), lo(b), hi(b), RNE, true), x - y],
        [() => S.f64_mul(lo(a), hi(a), lo(b), hi(b), RNE), x * y],
        [() => S.f64_div(lo(a), hi(a), lo(b), hi(b), RNE), x / y],
        [() => S.f64_sqrt(lo(a), hi(a), RNE), Math.sqrt(x)],
      ];
      for (const [fn, want] of checks) {
        fn();
        const got = b2d(big(S.out[0], S.out[1]));
        if (want !== want) expect(big(S.out[0], S.out[1])).toBe(0x7ff8000000000000n);
        else expect(d2b(got)).toBe(d2b(want));
      }
    }
  });
  it('binary32 +,-,*,/,sqrt equal Math.fround of the host binary64 results', () => {
    const g = new Lcg(98);
    for (let i = 0; i < 20000; i++) {
      const a = randF32(g), b = randF32(g);
      const x = S.f32ToNum(a), y = S.f32ToNum(b);
      const checks: [number, number][] = [
        [S.f32_add(a, b, RNE), x + y], [S.f32_sub(a, b, RNE), x - y], [S.f32_mul(a, b, RNE), x * y],
        [S.f32_div(a, b, RNE), x / y], [S.f32_sqrt(a, RNE), Math.sqrt(x)],
      ];
      for (const [got, want] of checks) {
        if (want !== want) expect(got >>> 0).toBe(0x7fc00000);
        else expect(got >>> 0).toBe(S.numToF32(Math.fround(want)) >>> 0);
      }
    }
  });
});
