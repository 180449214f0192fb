// Exact IEEE 754-2008 binary32/binary64 arithmetic on BigInt.
//
// This is the slow path and the reference: every operation first computes the exact result as an
// integer significand times a power of two (plus a "sticky" bit meaning "and a little more, less than
// one unit of the last kept bit"), then rounds once with roundPack. It is simple enough to be checked
// by reading, and it is used by softfloat.ts wherever the host-double fast path cannot prove itself
// exact (extreme values, subnormal results, binary64 FMA in directed modes) and by the unit tests
// to cross-check that fast path on random operands.
//
// RISC-V specifics (unprivileged spec, F and D chapters): every NaN result is the canonical NaN; no
// payload propagation. Underflow uses IEEE 754-2008's "tininess after rounding" option (§7.5), the
// one RISC-V implementations use (Berkeley SoftFloat's RISC-V specialisation, QEMU); the
// fpdirected guest's boundary vectors check the distinction against QEMU.
import { NX, UF, OF, DZ, NV, RNE, RTZ, RDN, RUP, RMM, fx } from './flags.js';

export interface Fmt {
  readonly fracBits: number; // stored fraction bits (23 / 52)
  readonly expBits: number;
  readonly bias: number;
  readonly width: number; // 32 / 64
}
export const F32: Fmt = { fracBits: 23, expBits: 8, bias: 127, width: 32 };
export const F64: Fmt = { fracBits: 52, expBits: 11, bias: 1023, width: 64 };

const signBit = (f: Fmt): bigint => 1n << BigInt(f.width - 1);
const infBits = (f: Fmt): bigint => ((1n << BigInt(f.expBits)) - 1n) << BigInt(f.fracBits);
const maxBits = (f: Fmt): bigint => infBits(f) - 1n;
export const canonNaN = (f: Fmt): bigint => infBits(f) | (1n << BigInt(f.fracBits - 1));

export function bitLen(x: bigint): number {
  // x > 0. toString(2) is fine for a slow path and is exact.
  return x === 0n ? 0 : x.toString(2).length;
}

// Classification of an encoding.
export const K_ZERO = 0;
export const K_FINITE = 1;
export const K_INF = 2;
export const K_QNAN = 3;
export const K_SNAN = 4;

export interface Unpacked {
  kind: number;
  sign: boolean;
  sig: bigint; // value = sig * 2^exp for K_FINITE
  exp: number;
}

export function unpack(bits: bigint, f: Fmt): Unpacked {
  const fb = BigInt(f.fracBits);
  const sign = (bits & signBit(f)) !== 0n;
  const e = Number((bits >> fb) & ((1n << BigInt(f.expBits)) - 1n));
  const frac = bits & ((1n << fb) - 1n);
  const emax = (1 << f.expBits) - 1;
  const qmin = 1 - f.bias - f.fracBits;
  if (e === emax) {
    if (frac === 0n) return { kind: K_INF, sign, sig: 0n, exp: 0 };
    return { kind: (frac >> (fb - 1n)) !== 0n ? K_QNAN : K_SNAN, sign, sig: frac, exp: 0 };
  }
  if (e === 0) {
    if (frac === 0n) return { kind: K_ZERO, sign, sig: 0n, exp: 0 };
    return { kind: K_FINITE, sign, sig: frac, exp: qmin };
  }
  return { kind: K_FINITE, sign, sig: frac | (1n << fb), exp: e - f.bias - f.fracBits };
}

const isNaNKind = (k: number): boolean => k >= K_QNAN;

function shouldIncrement(rm: number, sign: boolean, odd: boolean, cmpHalf: number, inexact: boolean): boolean {
  if (!inexact) return false;
  switch (rm) {
    case RNE: return cmpHalf > 0 || (cmpHalf === 0 && odd);
    case RTZ: return false;
    case RDN: return sign;
    case RUP: return !sign;
    case RMM: return cmpHalf >= 0;
    default: throw new Error(`bad rounding mode ${rm}`);
  }
}

// Rounds (sig + sticky·ε)·2^exp to an integer multiple of 2^q. Callers guarantee that when sticky is
// set, sig carries at least two bits below 2^q (so "sticky" is strictly below half an ulp).
function roundAt(sig: bigint, exp: number, sticky: boolean, q: number, sign: boolean, rm: number): [bigint, boolean] {
  const shift = q - exp;
  if (shift <= 0) {
    const kept = sig << BigInt(-shift);
    const inc = shouldIncrement(rm, sign, (kept & 1n) !== 0n, -1, sticky);
    return [inc ? kept + 1n : kept, sticky];
  }
  const s = BigInt(shift);
  const kept = sig >> s;
  const rem = sig - (kept << s);
  const half = 1n << (s - 1n);
  const cmp = rem > half ? 1 : rem < half ? -1 : sticky ? 1 : 0;
  const inexact = rem !== 0n || sticky;
  const inc = shouldIncrement(rm, sign, (kept & 1n) !== 0n, cmp, inexact);
  return [inc ? kept + 1n : kept, inexact];
}

// IEEE 754-2008 §4.3 rounding, §7.4 overflow, §7.5 underflow (tininess after rounding).
export function roundPack(sign: boolean, sig: bigint, exp: number, sticky: boolean, f: Fmt, rm: number): bigint {
  const sb = sign ? signBit(f) : 0n;
  if (sig === 0n && !sticky) return sb;
  if (sig === 0n) throw new Error('roundPack: sticky without significand');
  const n = bitLen(sig);
  const E = exp + n - 1; // exponent of the leading one
  const emin = 1 - f.bias;
  const qmin = emin - f.fracBits;
  const q = Math.max(E - f.fracBits, qmin);
  const [kept, inexact] = roundAt(sig, exp, sticky, q, sign, rm);
  let flags = 0;
  if (inexact) {
    flags |= NX;
    if (E < emin) {
      // Tiny unless rounding to full precision with an unbounded exponent reaches 2^emin.
      const [k2] = roundAt(sig, exp, sticky, E - f.fracBits, sign, rm);
      const reachesMinNormal = E + 1 === emin && k2 === 1n << BigInt(f.fracBits + 1);
      if (!reachesMinNormal) flags |= UF;
    }
  }
  // Encoding: ((q - qmin) << fracBits) + kept works for subnormals, normals and the carry case.
  const bits = (BigInt(q - qmin) << BigInt(f.fracBits)) + kept;
  if (bits >= infBits(f)) {
    fx.flags |= flags | OF | NX;
    const toInf = rm === RNE || rm === RMM || (rm === RUP && !sign) || (rm === RDN && sign);
    return sb | (toInf ? infBits(f) : maxBits(f));
  }
  fx.flags |= flags;
  return sb | bits;
}

// ---- arithmetic ----------------------------------------------------------------------------------

function nanResult(f: Fmt, ...ks: number[]): bigint {
  if (ks.some((k) => k === K_SNAN)) fx.flags |= NV;
  return canonNaN(f);
}

// Exact sum of two finite signed values (sign, sig, exp); returns [sign, |sum|, exp].
function exactSum(sa: boolean, ma: bigint, ea: number, sb: boolean, mb: bigint, eb: number): [boolean, bigint, number] {
  const e = Math.min(ea, eb);
  const A = ma << BigInt(ea - e);
  const B = mb << BigInt(eb - e);
  const s = (sa ? -A : A) + (sb ? -B : B);
  return [s < 0n, s < 0n ? -s : s, e];
}

// Exact-zero sign rule, IEEE 754-2008 §6.3: x + (-x) = +0 except -0 in roundTowardNegative; the sum
// of two zeros of the same sign keeps that sign.
function zeroSum(sa: boolean, sb: boolean, f: Fmt, rm: number): bigint {
  const neg = sa === sb ? sa : rm === RDN;
  return neg ? signBit(f) : 0n;
}

export function add(a: bigint, b: bigint, f: Fmt, rm: number, negB = false): bigint {
  const A = unpack(a, f);
  const B = unpack(b, f);
  if (negB) B.sign = !B.sign;
  if (isNaNKind(A.kind) || isNaNKind(B.kind)) return nanResult(f, A.kind, B.kind);
  if (A.kind === K_INF || B.kind === K_INF) {
    if (A.kind === K_INF && B.kind === K_INF && A.sign !== B.sign) { fx.flags |= NV; return canonNaN(f); }
    const s = A.kind === K_INF ? A.sign : B.sign;
    return (s ? signBit(f) : 0n) | infBits(f);
  }
  if (A.kind === K_ZERO && B.kind === K_ZERO) return zeroSum(A.sign, B.sign, f, rm);
  if (A.kind === K_ZERO) return roundPack(B.sign, B.sig, B.exp, false, f, rm);
  if (B.kind === K_ZERO) return roundPack(A.sign, A.sig, A.exp, false, f, rm);
  const [s, m, e] = exactSum(A.sign, A.sig, A.exp, B.sign, B.sig, B.exp);
  if (m === 0n) return zeroSum(A.sign, B.sign, f, rm);
  return roundPack(s, m, e, false, f, rm);
}

export function mul(a: bigint, b: bigint, f: Fmt, rm: number): bigint {
  const A = unpack(a, f);
  const B = unpack(b, f);
  if (isNaNKind(A.kind) || isNaNKind(B.kind)) return nanResult(f, A.kind, B.kind);
  const sign = A.sign !== B.sign;
  if (A.kind === K_INF || B.kind === K_INF) {
    if (A.kind === K_ZERO || B.kind === K_ZERO) { fx.flags |= NV; return canonNaN(f); }
    return (sign ? signBit(f) : 0n) | infBits(f);
  }
  if (A.kind === K_ZERO || B.kind === K_ZERO) return sign ? signBit(f) : 0n;
  return roundPack(sign, A.sig * B.sig, A.exp + B.exp, false, f, rm);
}

export function div(a: bigint, b: bigint, f: Fmt, rm: number): bigint {
  const A = unpack(a, f);
  const B = unpack(b, f);
  if (isNaNKind(A.kind) || isNaNKind(B.kind)) return nanResult(f, A.kind, B.kind);
  const sign = A.sign !== B.sign;
  const sb = sign ? signBit(f) : 0n;
  if (A.kind === K_INF) {
    if (B.kind === K_INF) { fx.flags |= NV; return canonNaN(f); }
    return sb | infBits(f);
  }
  if (B.kind === K_INF) return sb;
  if (B.kind === K_ZERO) {
    if (A.kind === K_ZERO) { fx.flags |= NV; return canonNaN(f); }
    fx.flags |= DZ;
    return sb | infBits(f);
  }
  if (A.kind === K_ZERO) return sb;
  // Quotient with at least fracBits+3 significant bits; the remainder becomes the sticky bit.
  const k = Math.max(0, f.fracBits + 4 + bitLen(B.sig) - bitLen(A.sig));
  const num = A.sig << BigInt(k);
  const qt = num / B.sig;
  const sticky = qt * B.sig !== num;
  return roundPack(sign, qt, A.exp - B.exp - k, sticky, f, rm);
}

export function isqrt(n: bigint): bigint {
  if (n < 2n) return n;
  // Newton iteration from an over-estimate; converges monotonically downwards.
  let x = 1n << BigInt(Math.ceil(bitLen(n) / 2));
  for (;;) {
    const y = (x + n / x) >> 1n;
    if (y >= x) return x;
    x = y;
  }
}

export function sqrt(a: bigint, f: Fmt, rm: number): bigint {
  const A = unpack(a, f);
  if (isNaNKind(A.kind)) return nanResult(f, A.kind);
  if (A.kind === K_ZERO) return A.sign ? signBit(f) : 0n; // sqrt(-0) = -0 (IEEE 754 §5.4.1)
  if (A.sign) { fx.flags |= NV; return canonNaN(f); }
  if (A.kind === K_INF) return infBits(f);
  let sig = A.sig;
  let exp = A.exp;
  // Make the exponent even and give the root at least fracBits+4 bits.
  const want = 2 * (f.fracBits + 4);
  let sh = Math.max(0, want - bitLen(sig));
  if ((exp - sh) % 2 !== 0) sh += 1;
  sig <<= BigInt(sh);
  exp -= sh;
  const r = isqrt(sig);
  return roundPack(false, r, exp / 2, r * r !== sig, f, rm);
}

// Fused multiply-add: (±a·b) + (±c) with a single rounding (IEEE 754-2008 §5.4.1 fusedMultiplyAdd).
export function fma(a: bigint, b: bigint, c: bigint, f: Fmt, rm: number, negProd: boolean, negC: boolean): bigint {
  const A = unpack(a, f);
  const B = unpack(b, f);
  const C = unpack(c, f);
  // RISC-V: inf·0 raises invalid even when the addend is a quiet NaN (F chapter, FMA description).
  const infTimesZero = (A.kind === K_INF && B.kind === K_ZERO) || (A.kind === K_ZERO && B.kind === K_INF);
  if (isNaNKind(A.kind) || isNaNKind(B.kind) || isNaNKind(C.kind)) {
    if (infTimesZero) fx.flags |= NV;
    return nanResult(f, A.kind, B.kind, C.kind);
  }
  if (infTimesZero) { fx.flags |= NV; return canonNaN(f); }
  const ps = (A.sign !== B.sign) !== negProd;
  const cs = C.sign !== negC;
  if (A.kind === K_INF || B.kind === K_INF) {
    if (C.kind === K_INF && cs !== ps) { fx.flags |= NV; return canonNaN(f); }
    return (ps ? signBit(f) : 0n) | infBits(f);
  }
  if (C.kind === K_INF) return (cs ? signBit(f) : 0n) | infBits(f);
  const prodZero = A.kind === K_ZERO || B.kind === K_ZERO;
  if (prodZero && C.kind === K_ZERO) return zeroSum(ps, cs, f, rm);
  if (prodZero) return roundPack(cs, C.sig, C.exp, false, f, rm);
  const pm = A.sig * B.sig;
  const pe = A.exp + B.exp;
  if (C.kind === K_ZERO) return roundPack(ps, pm, pe, false, f, rm);
  const [s, m, e] = exactSum(ps, pm, pe, cs, C.sig, C.exp);
  if (m === 0n) return zeroSum(ps, cs, f, rm);
  return roundPack(s, m, e, false, f, rm);
}

// Format conversion (fcvt.s.d / fcvt.d.s).
export function convert(a: bigint, from: Fmt, to: Fmt, rm: number): bigint {
  const A = unpack(a, from);
  if (isNaNKind(A.kind)) return nanResult(to, A.kind);
  const sb = A.sign ? signBit(to) : 0n;
  if (A.kind === K_INF) return sb | infBits(to);
  if (A.kind === K_ZERO) return sb;
  return roundPack(A.sign, A.sig, A.exp, false, to, rm);
}

// Integer (mathematical value) to float.
export function fromInt(v: bigint, f: Fmt, rm: number): bigint {
  if (v === 0n) return 0n;
  return roundPack(v < 0n, v < 0n ? -v : v, 0, false, f, rm);
}

// Float to integer of `width` bits, signed or not, with RISC-V's saturation (F chapter, table
// "Domains of float-to-integer conversions": NaN and +out-of-range give the largest value, -out-of-
// range the smallest; NV instead of NX when out of range). Returns the two's complement bit pattern.
export function toInt(a: bigint, f: Fmt, rm: number, width: number, signed: boolean): bigint {
  const A = unpack(a, f);
  const W = BigInt(width);
  const max = signed ? (1n << (W - 1n)) - 1n : (1n << W) - 1n;
  const min = signed ? -(1n << (W - 1n)) : 0n;
  const mask = (1n << W) - 1n;
  if (isNaNKind(A.kind)) { fx.flags |= NV; return max & mask; }
  if (A.kind === K_INF) { fx.flags |= NV; return (A.sign ? min : max) & mask; }
  if (A.kind === K_ZERO) return 0n;
  let v: bigint;
  let inexact: boolean;
  if (A.exp >= 0) {
    v = A.sig << BigInt(A.exp);
    inexact = false;
  } else {
    // Round the magnitude to an integer. Give roundAt two extra bits so sticky semantics hold.
    const [k, ix] = roundAt(A.sig << 2n, A.exp - 2, false, 0, A.sign, rm);
    v = k;
    inexact = ix;
  }
  const sv = A.sign ? -v : v;
  if (sv > max || sv < min) { fx.flags |= NV; return (A.sign ? min : max) & mask; }
  if (inexact) fx.flags |= NX;
  return sv & mask;
}
