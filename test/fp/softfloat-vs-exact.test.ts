// Cross-checks the fast binary32/binary64 paths (host doubles + error-free transformations) against
// the exact BigInt implementation, on biased random operands in every rounding mode, result bits and
// flags both. Two independent implementations have to agree; QEMU is the third (fixtures/fp).
import { describe, it, expect } from 'vitest';
import * as S from '../../src/riscv/fp/softfloat.js';
import * as X from '../../src/riscv/fp/exact.js';
import { fx } from '../../src/riscv/fp/flags.js';
import { Lcg, randF32, randF64, lo, hi, big, b32 } from './gen.js';

const N = 6000;
const hex = (v: bigint | number): string => (typeof v === 'number' ? (v >>> 0).toString(16) : v.toString(16));

function run<T>(f: () => T): [T, number] {
  fx.flags = 0;
  const r = f();
  return [r, fx.flags];
}

// Second operand: often near the first (cancellation, ties, equal exponents).
function near32(g: Lcg, a: number): number {
  switch (g.below(4)) {
    case 0: return (a ^ (g.below(2) << 31) ^ g.below(8)) | 0;
    case 1: return ((a & 0xff800000) | (g.next32() & 0x7fffff)) ^ ((g.below(2) << 31));
    default: return randF32(g);
  }
}
function near64(g: Lcg, a: bigint): bigint {
  switch (g.below(4)) {
    case 0: return a ^ (BigInt(g.below(2)) << 63n) ^ BigInt(g.below(8));
    case 1: return (a & 0xfff0000000000000n) ^ (BigInt(g.next32()) & 0xfffffn) << 32n ^ BigInt(g.next32()) ^ (BigInt(g.below(2)) << 63n);
    default: return randF64(g);
  }
}

describe('binary32 fast path == exact', () => {
  const ops: [string, (a: number, b: number, c: number, rm: number) => number, (a: bigint, b: bigint, c: bigint, rm: number) => bigint][] = [
    ['add', (a, b, _c, rm) => S.f32_add(a, b, rm), (a, b, _c, rm) => X.add(a, b, X.F32, rm)],
    ['sub', (a, b, _c, rm) => S.f32_sub(a, b, rm), (a, b, _c, rm) => X.add(a, b, X.F32, rm, true)],
    ['mul', (a, b, _c, rm) => S.f32_mul(a, b, rm), (a, b, _c, rm) => X.mul(a, b, X.F32, rm)],
    ['div', (a, b, _c, rm) => S.f32_div(a, b, rm), (a, b, _c, rm) => X.div(a, b, X.F32, rm)],
    ['sqrt', (a, _b, _c, rm) => S.f32_sqrt(a, rm), (a, _b, _c, rm) => X.sqrt(a, X.F32, rm)],
    ['fmadd', (a, b, c, rm) => S.f32_fma(a, b, c, rm, false, false), (a, b, c, rm) => X.fma(a, b, c, X.F32, rm, false, false)],
    ['fnmsub', (a, b, c, rm) => S.f32_fma(a, b, c, rm, true, false), (a, b, c, rm) => X.fma(a, b, c, X.F32, rm, true, false)],
    ['fnmadd', (a, b, c, rm) => S.f32_fma(a, b, c, rm, true, true), (a, b, c, rm) => X.fma(a, b, c, X.F32, rm, true, true)],
    ['cvt.s.d', (a, b, _c, rm) => S.f64_to_f32(b, a, rm), (a, b, _c, rm) => X.convert(((a & 0xffffffffn) << 32n) | (b & 0xffffffffn), X.F64, X.F32, rm)],
  ];
  for (const [name, fast, ref] of ops) {
    it(name, () => {
      const g = new Lcg(name.length * 7919 + 1);
      for (let i = 0; i < N; i++) {
        const a = randF32(g);
        const b = name === 'cvt.s.d' ? g.next32() | 0 : near32(g, a);
        let c = randF32(g);
        if (name.startsWith('fn') || name === 'fmadd') {
          // Make the addend cancel the product now and then.
          const p = Math.fround(S.f32ToNum(a) * S.f32ToNum(b));
          if (g.below(3) === 0 && p === p) c = S.numToF32(-p) ^ g.below(4);
        }
        for (let rm = 0; rm < 5; rm++) {
          const [r1, f1] = run(() => fast(a, b, c, rm) >>> 0);
          const [r2, f2] = run(() => Number(ref(b32(a), b32(b), b32(c), rm)));
          if (r1 !== r2 || f1 !== f2) {
            expect.fail(`${name} rm=${rm} a=${hex(a)} b=${hex(b)} c=${hex(c)}: fast ${hex(r1)}/${f1} exact ${hex(r2)}/${f2}`);
          }
        }
      }
    });
  }
});

describe('binary64 fast path == exact', () => {
  const ops: [string, (a: bigint, b: bigint, rm: number) => bigint, (a: bigint, b: bigint, rm: number) => bigint][] = [
    ['add', (a, b, rm) => (S.f64_add(lo(a), hi(a), lo(b), hi(b), rm, false), big(S.out[0], S.out[1])), (a, b, rm) => X.add(a, b, X.F64, rm)],
    ['sub', (a, b, rm) => (S.f64_add(lo(a), hi(a), lo(b), hi(b), rm, true), big(S.out[0], S.out[1])), (a, b, rm) => X.add(a, b, X.F64, rm, true)],
    ['mul', (a, b, rm) => (S.f64_mul(lo(a), hi(a), lo(b), hi(b), rm), big(S.out[0], S.out[1])), (a, b, rm) => X.mul(a, b, X.F64, rm)],
    ['div', (a, b, rm) => (S.f64_div(lo(a), hi(a), lo(b), hi(b), rm), big(S.out[0], S.out[1])), (a, b, rm) => X.div(a, b, X.F64, rm)],
    ['sqrt', (a, _b, rm) => (S.f64_sqrt(lo(a), hi(a), rm), big(S.out[0], S.out[1])), (a, _b, rm) => X.sqrt(a, X.F64, rm)],
    ['cvt.d.s', (a, _b, rm) => (S.f32_to_f64(lo(a)), big(S.out[0], S.out[1])), (a, _b, rm) => X.convert(a & 0xffffffffn, X.F32, X.F64, rm)],
  ];
  for (const [name, fast, ref] of ops) {
    it(name, () => {
      const g = new Lcg(name.length * 104729 + 3);
      for (let i = 0; i < N; i++) {
        const a = name === 'cvt.d.s' ? b32(randF32(g)) : randF64(g);
        const b = near64(g, a);
        for (let rm = 0; rm < 5; rm++) {
          const [r1, f1] = run(() => fast(a, b, rm));
          const [r2, f2] = run(() => ref(a, b, rm));
          if (r1 !== r2 || f1 !== f2) {
            expect.fail(`${name} rm=${rm} a=${hex(a)} b=${hex(b)}: fast ${hex(r1)}/${f1} exact ${hex(r2)}/${f2}`);
          }
        }
      }
    });
  }
});

describe('conversions fast path == exact', () => {
  it('float -> int, all widths and signs', () => {
    const g = new Lcg(42);
    for (let i = 0; i < N; i++) {
      const a32 = randF32(g);
      let a64 = randF64(g);
      // Bias towards the integer range where rounding matters.
      if (g.below(2) === 0) a64 = (a64 & 0x800fffffffffffffn) | (BigInt(1000 + g.below(70)) << 52n);
      const a32b = g.below(2) === 0 ? ((a32 & 0x807fffff) | ((110 + g.below(50)) << 23)) | 0 : a32;
      for (let rm = 0; rm < 5; rm++) {
        for (const signed of [true, false]) {
          const m32 = (v: bigint): number => Number(BigInt.asIntN(32, v));
          let [r1, f1] = run(() => (signed ? S.f32_to_i32(a32b, rm) : S.f32_to_u32(a32b, rm)));
          let [r2, f2] = run(() => m32(X.toInt(b32(a32b), X.F32, rm, 32, signed)));
          expect([hex(r1), f1], `f32->${signed ? 'i' : 'u'}32 ${hex(a32b)} rm=${rm}`).toEqual([hex(r2), f2]);
          [r1, f1] = run(() => (signed ? S.f64_to_i32(lo(a64), hi(a64), rm) : S.f64_to_u32(lo(a64), hi(a64), rm)));
          [r2, f2] = run(() => m32(X.toInt(a64, X.F64, rm, 32, signed)));
          expect([hex(r1), f1], `f64->${signed ? 'i' : 'u'}32 ${hex(a64)} rm=${rm}`).toEqual([hex(r2), f2]);
          let [q1, g1] = run(() => ((signed ? S.f32_to_i64(a32b, rm) : S.f32_to_u64(a32b, rm)), big(S.out[0], S.out[1])));
          let [q2, g2] = run(() => X.toInt(b32(a32b), X.F32, rm, 64, signed));
          expect([hex(q1), g1], `f32->${signed ? 'i' : 'u'}64 ${hex(a32b)} rm=${rm}`).toEqual([hex(q2), g2]);
          [q1, g1] = run(() => ((signed ? S.f64_to_i64(lo(a64), hi(a64), rm) : S.f64_to_u64(lo(a64), hi(a64), rm)), big(S.out[0], S.out[1])));
          [q2, g2] = run(() => X.toInt(a64, X.F64, rm, 64, signed));
          expect([hex(q1), g1], `f64->${signed ? 'i' : 'u'}64 ${hex(a64)} rm=${rm}`).toEqual([hex(q2), g2]);
        }
      }
    }
  });
  it('int -> float, all widths and signs', () => {
    const g = new Lcg(7);
    for (let i = 0; i < N; i++) {
      const sh = BigInt(g.below(64));
      let v = ((BigInt(g.next32()) << 32n) | BigInt(g.next32())) >> sh;
      if (g.below(4) === 0) v = (1n << BigInt(g.below(64))) + BigInt(g.below(5)) - 2n;
      v &= 0xffffffffffffffffn;
      const l = lo(v), h = hi(v);
      for (let rm = 0; rm < 5; rm++) {
        const cases: [string, () => bigint, () => bigint][] = [
          ['i32->f32', () => b32(S.i32_to_f32(l, rm)), () => X.fromInt(BigInt.asIntN(32, v), X.F32, rm)],
          ['u32->f32', () => b32(S.u32_to_f32(l, rm)), () => X.fromInt(BigInt.asUintN(32, v), X.F32, rm)],
          ['i64->f32', () => b32(S.i64_to_f32(l, h, rm)), () => X.fromInt(BigInt.asIntN(64, v), X.F32, rm)],
          ['u64->f32', () => b32(S.u64_to_f32(l, h, rm)), () => X.fromInt(v, X.F32, rm)],
          ['i32->f64', () => (S.i32_to_f64(l), big(S.out[0], S.out[1])), () => X.fromInt(BigInt.asIntN(32, v), X.F64, rm)],
          ['u32->f64', () => (S.u32_to_f64(l), big(S.out[0], S.out[1])), () => X.fromInt(BigInt.asUintN(32, v), X.F64, rm)],
          ['i64->f64', () => (S.i64_to_f64(l, h, rm), big(S.out[0], S.out[1])), () => X.fromInt(BigInt.asIntN(64, v), X.F64, rm)],
          ['u64->f64', () => (S.u64_to_f64(l, h, rm), big(S.out[0], S.out[1])), () => X.fromInt(v, X.F64, rm)],
        ];
        for (const [name, fa, fb] of cases) {
          const [r1, f1] = run(fa);
          const [r2, f2] = run(fb);
          expect([hex(r1), f1], `${name} ${hex(v)} rm=${rm}`).toEqual([hex(r2), f2]);
        }
      }
    }
  });
});

describe('binary64 FMA fast path == exact', () => {
  const variants: [string, boolean, boolean][] = [['fmadd', false, false], ['fmsub', false, true], ['fnmsub', true, false], ['fnmadd', true, true]];
  for (const [name, np, nc] of variants) {
    it(name, () => {
      const g = new Lcg(name.length * 31337 + (np ? 1 : 0) + (nc ? 2 : 0));
      for (let i = 0; i < N; i++) {
        const a = randF64(g);
        // Mostly moderate magnitudes (the fast path's domain), sometimes anything.
        const b = g.below(4) === 0 ? randF64(g) : near64(g, 0x3ff0000000000000n ^ (BigInt(g.below(2)) << 63n));
        let c = randF64(g);
        if (g.below(2) === 0) {
          // An addend that cancels most of the product, perturbed in its low bits.
          fx.flags = 0;
          S.f64_mul(lo(a), hi(a), lo(b), hi(b), 0);
          c = big(S.out[0], S.out[1]) ^ (np === nc ? 1n << 63n : 0n) ^ BigInt(g.below(1 << 12));
        }
        for (let rm = 0; rm < 5; rm++) {
          const [r1, f1] = run(() => (S.f64_fma(lo(a), hi(a), lo(b), hi(b), lo(c), hi(c), rm, np, nc), big(S.out[0], S.out[1])));
          const [r2, f2] = run(() => X.fma(a, b, c, X.F64, rm, np, nc));
          if (r1 !== r2 || f1 !== f2) {
            expect.fail(`${name} rm=${rm} a=${hex(a)} b=${hex(b)} c=${hex(c)}: fast ${hex(r1)}/${f1} exact ${hex(r2)}/${f2}`);
          }
        }
      }
    });
  }
});
