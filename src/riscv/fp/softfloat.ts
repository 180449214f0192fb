// Bit-exact binary32/binary64 operations for the RISC-V F and D extensions, on raw encodings.
//
// Interface: binary32 values are int32 bit patterns (arguments and return value); binary64 values are
// (lo, hi) int32 halves and results are written to `out` ([0] = lo, [1] = hi). Exception flags are
// ORed into fx.flags (flags.ts). The hart uses slot-based variants of the arithmetic (sops, dops:
// operands and results in typed arrays, see below) so that no value is boxed per instruction.
//
// How exactness is obtained without a multi-word integer library on the common path:
//  * binary32 operands are exactly representable as host doubles. The operation is done in binary64
//    and its exact error is recovered with an error-free transformation (TwoSum, Dekker's TwoProduct,
//    the exact remainder of a division or square root). In round-to-nearest-even, rounding the
//    binary64 result once more to binary32 is correct for +,-,*,/,sqrt (53 >= 2*24+2: Figueroa,
//    "When is double rounding innocuous?", 1995), and the error gives NX. Otherwise (directed modes,
//    FMA, results that may be tiny) the binary64 result is turned into its round-to-odd value:
//    rounding that (>= p+2 bits) to p bits in any mode gives the correctly rounded result of the
//    exact value (Boldo & Melquiond, "Emulation of FMA and correctly rounded sums: proved algorithms
//    using rounding to odd", IEEE TC 2008), and roundF32() rounds 53 -> 24 bits once, with flags.
//  * binary64 operations use the host's correctly rounded round-to-nearest-even result, the same
//    error-free transformations for the flags (inexact = error != 0) and to step to the neighbour for
//    the directed modes; FMA in round-to-nearest uses Boldo & Melquiond's emulation. Where those
//    transformations are not proven exact (results near the subnormal range or near overflow,
//    extreme operands) and for FMA in directed modes, the exact BigInt code in exact.ts is used.
//  * NaN results are always the canonical NaN (RISC-V F chapter, "NaN Generation and Propagation");
//    signalling NaN inputs raise NV. NaN bit patterns never pass through a host double.
import { NX, UF, OF, DZ, NV, RNE, RTZ, RDN, RUP, RMM, fx, F32_CANON_NAN, F64_CANON_NAN_HI } from './flags.js';
import * as X from './exact.js';

export const out = new Int32Array(2);

const s64 = new Float64Array(1);
const s32 = new Int32Array(s64.buffer);
const sf32 = new Float32Array(1);
const si32 = new Int32Array(sf32.buffer);

const TWO32 = 4294967296;
const TWO63 = 9223372036854775808;
const TWO64 = 18446744073709551616;
const TWO128 = 3.402823669209385e38; // 2^128
const F32_MIN_NORMAL = 1.1754943508222875e-38; // 2^-126
const F32_MAX_BITS = 0x7f7fffff;
const F32_INF_BITS = 0x7f800000;
const P2_100 = 1.2676506002282294e30; // 2^100
const P2_M26 = 1.4901161193847656e-8; // 2^-26 = 2^-126 * 2^100
const P2_995 = 2 ** 995;
const P2_M960 = 2 ** -960;
const P2_M968 = 2 ** -968;
const P2_M1000 = 2 ** -1000;
const P2_1000 = 2 ** 1000;
const SPLITTER = 134217729; // 2^27 + 1, Dekker/Veltkamp split for binary64

// ---- raw-bit helpers -----------------------------------------------------------------------------

export function f32IsNaN(a: number): boolean {
  return (a & 0x7fffffff) > F32_INF_BITS;
}
export function f32IsSNaN(a: number): boolean {
  return f32IsNaN(a) && (a & 0x00400000) === 0;
}
export function f64IsNaN(lo: number, hi: number): boolean {
  const h = hi & 0x7fffffff;
  return h > 0x7ff00000 || (h === 0x7ff00000 && lo !== 0);
}
export function f64IsSNaN(lo: number, hi: number): boolean {
  return f64IsNaN(lo, hi) && (hi & 0x00080000) === 0;
}
export function f32ToNum(a: number): number {
  si32[0] = a;
  return sf32[0];
}
export function numToF32(x: number): number {
  sf32[0] = x; // x is already a binary32 value (or ±0/±inf): exact
  return si32[0];
}
export function f64ToNum(lo: number, hi: number): number {
  s32[0] = lo;
  s32[1] = hi;
  return s64[0];
}
function setOut(x: number): void {
  s64[0] = x;
  out[0] = s32[0];
  out[1] = s32[1];
}
function setCanon64(): void {
  out[0] = 0;
  out[1] = F64_CANON_NAN_HI;
}
function toBig64(lo: number, hi: number): bigint {
  return (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);
}
function fromBig64(v: bigint): void {
  out[0] = Number(v & 0xffffffffn) | 0;
  out[1] = Number(v >> 32n) | 0;
}

// One binary64 step away from zero / towards zero (x finite; x = 0 handled by callers).
function nextAway(x: number): number {
  s64[0] = x;
  const lo = s32[0];
  if (lo === -1) { s32[0] = 0; s32[1] = s32[1] + 1; } else s32[0] = lo + 1;
  return s64[0];
}
function nextToward0(x: number): number {
  s64[0] = x;
  const lo = s32[0];
  if (lo === 0) { s32[0] = -1; s32[1] = s32[1] - 1; } else s32[0] = lo - 1;
  return s64[0];
}

// Error-free transformations (exact under the range conditions checked by callers).
// Fast2Sum (Dekker): with |a| >= |b| the error of s = RN(a+b) is b - (s - a), exactly, and unlike
// Knuth's branch-free TwoSum no intermediate can overflow when s is finite.
function twoSumErr(a: number, b: number, s: number): number {
  return Math.abs(a) >= Math.abs(b) ? b - (s - a) : a - (s - b);
}
function twoProdErr(a: number, b: number, p: number): number {
  let t = SPLITTER * a;
  const ah = t - (t - a);
  const al = a - ah;
  t = SPLITTER * b;
  const bh = t - (t - b);
  const bl = b - bh;
  return ((ah * bh - p) + ah * bl + al * bh) + al * bl;
}

// Round-to-odd of the exact value x = r + (something with sign es), r being round-to-nearest(x).
function toOdd(r: number, es: number): number {
  if (es === 0) return r;
  s64[0] = r;
  const lo = s32[0];
  if ((lo & 1) !== 0) return r;
  if ((es > 0) === (r > 0)) { s32[0] = lo | 1; return s64[0]; }
  return nextToward0(r);
}

// Correct a binary64 round-to-nearest-even result r of the exact value x (x - r has sign es != 0,
// and equals e exactly when e is not NaN) to rounding mode rm. r is finite and nonzero.
function adjust64(r: number, es: number, e: number, rm: number): number {
  const away = (es > 0) === (r > 0);
  switch (rm) {
    case RTZ: return away ? r : nextToward0(r);
    case RDN: return es < 0 ? (r > 0 ? nextToward0(r) : nextAway(r)) : r;
    case RUP: return es > 0 ? (r > 0 ? nextAway(r) : nextToward0(r)) : r;
    case RMM: {
      if (!away) return r;
      const nb = nextAway(r);
      return Math.abs(nb - r) === 2 * Math.abs(e) ? nb : r; // an exact tie: RMM goes away from zero
    }
    default: return r;
  }
}

// ---- binary32 rounding ---------------------------------------------------------------------------

function roundF32Core(x: number, rm: number): number {
  const t = Math.fround(x);
  if (t === x) return numToF32(t);
  const ax = Math.abs(x);
  if (ax >= TWO128) {
    const toInf = rm === RNE || rm === RMM || (rm === RUP && x > 0) || (rm === RDN && x < 0);
    return (x < 0 ? 0x80000000 : 0) | (toInf ? F32_INF_BITS : F32_MAX_BITS);
  }
  const tb = numToF32(t);
  if (rm === RNE) return tb;
  const tAbove = Math.abs(t) > ax;
  const ob = tAbove ? tb - 1 : tb + 1; // the other neighbour (same sign; magnitude step)
  const small = tAbove ? ob : tb;
  const big = tAbove ? tb : ob;
  switch (rm) {
    case RTZ: return small;
    case RDN: return x > 0 ? small : big;
    case RUP: return x > 0 ? big : small;
    default: { // RMM: differs from RNE only on an exact tie
      const sv = Math.abs(f32ToNum(small));
      const bv = (big & 0x7fffffff) === F32_INF_BITS ? TWO128 : Math.abs(f32ToNum(big));
      return ax === (sv + bv) / 2 ? big : tb;
    }
  }
}

// Rounds x to binary32 in mode rm with IEEE flags. x must be exact or the round-to-odd binary64 value
// of the exact result (never NaN).
export function roundF32(x: number, rm: number): number {
  const b = roundF32Core(x, rm);
  if (Math.fround(x) === x) return b; // exact (covers zeros and infinities)
  let fl = NX;
  if ((b & 0x7fffffff) === F32_INF_BITS) fl |= OF;
  else if (Math.abs(x) >= TWO128) fl |= OF;
  else if (Math.abs(x) < F32_MIN_NORMAL) {
    // Tininess after rounding: round with an unbounded exponent (scale into the normal range; the
    // scaling by 2^100 is exact) and see whether the result stays below 2^-126.
    const u = f32ToNum(roundF32Core(x * P2_100, rm));
    if (Math.abs(u) < P2_M26) fl |= UF;
  }
  fx.flags |= fl;
  return b;
}

// ---- binary32 arithmetic -------------------------------------------------------------------------

function nan32(a: number, b: number): number {
  if (f32IsSNaN(a) || f32IsSNaN(b)) fx.flags |= NV;
  return F32_CANON_NAN;
}

function isNegZeroOrNeg(x: number): boolean {
  return x < 0 || (x === 0 && 1 / x < 0);
}

// IEEE 754 §6.3: exact zero sum is +0 except in roundTowardNegative, unless both addends are -0.
function zeroSumRDN(x: number, y: number): number {
  return x === 0 && y === 0 && !isNegZeroOrNeg(x) && !isNegZeroOrNeg(y) ? 0 : -0;
}

export function f32_add(a: number, b: number, rm: number): number {
  if (f32IsNaN(a) || f32IsNaN(b)) return nan32(a, b);
  const x = f32ToNum(a);
  const y = f32ToNum(b);
  return addCore32(x, y, rm);
}
export function f32_sub(a: number, b: number, rm: number): number {
  if (f32IsNaN(a) || f32IsNaN(b)) return nan32(a, b);
  return addCore32(f32ToNum(a), -f32ToNum(b), rm);
}
function addCore32(x: number, y: number, rm: number): number {
  const r = x + y; // |x|,|y| < 2^128: never overflows binary64
  if (r !== r) { fx.flags |= NV; return F32_CANON_NAN; }
  if (r === 0) return numToF32(rm === RDN ? zeroSumRDN(x, y) : r);
  if (r - r !== 0) return numToF32(r); // infinite operand
  const e = twoSumErr(x, y, r);
  if (rm === RNE) {
    // Round-to-nearest fast path: rounding the binary64 RNE result again to binary32 is correct for
    // +,-,*,/,sqrt since 53 >= 2*24 + 2 (Figueroa, "When is double rounding innocuous?", 1995).
    // A sum in the subnormal range is exact, so there is no underflow case.
    const t = Math.fround(r);
    if (e !== 0 || t !== r) fx.flags |= t - t !== 0 ? OF | NX : NX;
    return numToF32(t);
  }
  return roundF32(toOdd(r, Math.sign(e)), rm);
}

export function f32_mul(a: number, b: number, rm: number): number {
  if (f32IsNaN(a) || f32IsNaN(b)) return nan32(a, b);
  const r = f32ToNum(a) * f32ToNum(b); // 24x24-bit product: exact in binary64
  if (r !== r) { fx.flags |= NV; return F32_CANON_NAN; }
  if (rm === RNE) {
    const t = Math.fround(r);
    if (t === r) return numToF32(t); // exact (also zeros and infinities)
    // Not tiny when the rounded result is above 2^-126 (tininess after rounding); else slow path.
    if (Math.abs(t) > F32_MIN_NORMAL) {
      fx.flags |= t - t !== 0 ? OF | NX : NX;
      return numToF32(t);
    }
  }
  return roundF32(r, rm);
}

export function f32_div(a: number, b: number, rm: number): number {
  if (f32IsNaN(a) || f32IsNaN(b)) return nan32(a, b);
  const x = f32ToNum(a);
  const y = f32ToNum(b);
  const r = x / y;
  if (r !== r) { fx.flags |= NV; return F32_CANON_NAN; }
  if (y === 0) { if (x - x === 0) fx.flags |= DZ; return numToF32(r); }
  if (r === 0 || r - r !== 0) return numToF32(r); // 0/y, x/inf, inf/y: exact
  // Exact remainder x - r*y (Sterbenz for x - p, and the remainder is representable).
  const p = r * y;
  const rem = (x - p) - twoProdErr(r, y, p);
  if (rm === RNE) {
    const t = Math.fround(r);
    if (rem === 0 && t === r) return numToF32(t);
    if (Math.abs(t) > F32_MIN_NORMAL) {
      fx.flags |= t - t !== 0 ? OF | NX : NX;
      return numToF32(t);
    }
  }
  return roundF32(toOdd(r, Math.sign(rem) * Math.sign(y)), rm);
}

export function f32_sqrt(a: number, rm: number): number {
  if (f32IsNaN(a)) return nan32(a, a);
  const x = f32ToNum(a);
  if (x === 0) return a; // sqrt(±0) = ±0
  if (x < 0) { fx.flags |= NV; return F32_CANON_NAN; }
  if (x === Infinity) return a;
  const r = Math.sqrt(x);
  const p = r * r;
  const rem = (x - p) - twoProdErr(r, r, p);
  if (rm === RNE) {
    // sqrt of a binary32 value is never tiny nor overflows: only NX to decide.
    const t = Math.fround(r);
    if (rem !== 0 || t !== r) fx.flags |= NX;
    return numToF32(t);
  }
  return roundF32(toOdd(r, Math.sign(rem)), rm);
}

// (±a·b) + (±c), one rounding. negProd/negC select fmsub (c negated), fnmsub (product negated),
// fnmadd (both).
export function f32_fma(a: number, b: number, c: number, rm: number, negProd: boolean, negC: boolean): number {
  if (f32IsNaN(a) || f32IsNaN(b) || f32IsNaN(c)) {
    if (fmaInfZero(f32ToNumNN(a), f32ToNumNN(b))) fx.flags |= NV;
    if (f32IsSNaN(c)) fx.flags |= NV;
    return nan32(a, b);
  }
  let x = f32ToNum(a);
  const y = f32ToNum(b);
  let z = f32ToNum(c);
  if (negProd) x = -x;
  if (negC) z = -z;
  const p = x * y; // exact
  if (p !== p) { fx.flags |= NV; return F32_CANON_NAN; } // inf * 0
  const r = p + z;
  if (r !== r) { fx.flags |= NV; return F32_CANON_NAN; } // inf - inf
  if (r === 0) return numToF32(rm === RDN ? zeroSumRDN(p, z) : r);
  if (r - r !== 0) return numToF32(r);
  return roundF32(toOdd(r, Math.sign(twoSumErr(p, z, r))), rm);
}
function f32ToNumNN(a: number): number {
  return f32IsNaN(a) ? 1 : f32ToNum(a); // NaN operand: neither inf nor zero
}
function fmaInfZero(x: number, y: number): boolean {
  return (x === 0 && (y === Infinity || y === -Infinity)) || (y === 0 && (x === Infinity || x === -Infinity));
}

// Slot-based entry points for the hart (see dops below for why: no boxing of int32 bit patterns
// outside V8's small-integer range at a call boundary): operands in sops[0..2], result in sops[3].
export const sops = new Int32Array(4);
export function s_add(rm: number): void { sops[3] = f32_add(sops[0]!, sops[1]!, rm); }
export function s_sub(rm: number): void { sops[3] = f32_sub(sops[0]!, sops[1]!, rm); }
export function s_mul(rm: number): void { sops[3] = f32_mul(sops[0]!, sops[1]!, rm); }
export function s_div(rm: number): void { sops[3] = f32_div(sops[0]!, sops[1]!, rm); }
export function s_sqrt(rm: number): void { sops[3] = f32_sqrt(sops[0]!, rm); }
export function s_fma(rm: number, negProd: boolean, negC: boolean): void {
  sops[3] = f32_fma(sops[0]!, sops[1]!, sops[2]!, rm, negProd, negC);
}

// ---- binary64 arithmetic -------------------------------------------------------------------------

function nan64(alo: number, ahi: number, blo: number, bhi: number): void {
  if (f64IsSNaN(alo, ahi) || f64IsSNaN(blo, bhi)) fx.flags |= NV;
  setCanon64();
}

// The binary64 operations come in two forms:
//  * d_add/d_mul/d_div/d_sqrt/d_fma take host doubles that are NOT NaN in dops[0..2] and leave the
//    result in dops[3], where NaN stands for "the canonical NaN" (the caller writes its bits).
//    execute.ts feeds them straight from the Float64Array view of the register file after an
//    `x === x` check. Operands and results go through a typed array rather than arguments and
//    return values because V8 boxes a double passed to or returned from a call that is not inlined:
//    that would be a heap allocation per instruction;
//  * f64_* take raw (lo, hi) halves, handle NaN operands bit-exactly (sNaN -> NV) and write `out`.
// Non-NaN doubles pass through JS values and typed arrays unchanged, so both forms are exact.

/** Operand and result slots of the d_* operations: [0] x, [1] y, [2] z in, [3] result out. */
export const dops = new Float64Array(4);

function finishD(r: number, es: number, e: number, rm: number): number {
  if (es === 0) return r;
  fx.flags |= NX;
  if (rm !== RNE) r = adjust64(r, es, e, rm);
  if (r - r !== 0) fx.flags |= OF;
  return r;
}
function numToBig(x: number): bigint {
  s64[0] = x;
  return toBig64(s32[0]!, s32[1]!);
}
function bigToNum(v: bigint): number {
  s32[0] = Number(v & 0xffffffffn) | 0;
  s32[1] = Number(v >> 32n) | 0;
  return s64[0]!;
}
function setOutD(r: number): void {
  if (r === r) setOut(r); else setCanon64();
}

function addD(rm: number): void {
  const x = dops[0]!, y = dops[1]!;
  const r = x + y;
  if (r !== r) { fx.flags |= NV; dops[3] = NaN; return; } // inf - inf
  if (r === 0) { dops[3] = rm === RDN ? zeroSumRDN(x, y) : r; return; }
  if (r - r !== 0) {
    if (x - x !== 0 || y - y !== 0) { dops[3] = r; return; } // infinite operand
    // Overflow: the directed-mode threshold is not visible from the RNE result; exact path.
    dops[3] = bigToNum(X.add(numToBig(x), numToBig(y), X.F64, rm)); return;
  }
  // Sums whose exact value is in the subnormal range are exact, so no underflow case here.
  const e = twoSumErr(x, y, r);
  dops[3] = finishD(r, Math.sign(e), e, rm);
}

function mulD(rm: number): void {
  const x = dops[0]!, y = dops[1]!;
  const r = x * y;
  if (r !== r) { fx.flags |= NV; dops[3] = NaN; return; } // inf * 0
  if (x === 0 || y === 0 || x - x !== 0 || y - y !== 0) { dops[3] = r; return; } // exact
  const ar = Math.abs(r);
  if (ar >= P2_M960 && ar < P2_1000 && Math.abs(x) < P2_995 && Math.abs(y) < P2_995) {
    const e = twoProdErr(x, y, r);
    dops[3] = finishD(r, Math.sign(e), e, rm); return;
  }
  dops[3] = bigToNum(X.mul(numToBig(x), numToBig(y), X.F64, rm));
}

function divD(rm: number): void {
  const x = dops[0]!, y = dops[1]!;
  const r = x / y;
  if (r !== r) { fx.flags |= NV; dops[3] = NaN; return; } // 0/0, inf/inf
  if (y === 0) { if (x - x === 0) fx.flags |= DZ; dops[3] = r; return; }
  if (x === 0 || x - x !== 0 || y - y !== 0) { dops[3] = r; return; } // exact
  const ar = Math.abs(r);
  const ax = Math.abs(x); // r*y must not overflow either
  if (ax >= P2_M968 && ax < P2_1000 && Math.abs(y) < P2_995 && ar < P2_995 && ar >= P2_M1000) {
    const p = r * y;
    const rem = (x - p) - twoProdErr(r, y, p);
    // A binary64 quotient is never an exact midpoint outside the subnormal range: no RMM tie.
    dops[3] = finishD(r, Math.sign(rem) * Math.sign(y), NaN, rm); return;
  }
  dops[3] = bigToNum(X.div(numToBig(x), numToBig(y), X.F64, rm));
}

function sqrtD(rm: number): void {
  const x = dops[0]!;
  if (x === 0 || x === Infinity) { dops[3] = x; return; } // sqrt(±0) = ±0
  if (x < 0) { fx.flags |= NV; dops[3] = NaN; return; }
  if (x >= P2_M968 && x < P2_1000) {
    const r = Math.sqrt(x);
    const p = r * r;
    const rem = (x - p) - twoProdErr(r, r, p);
    dops[3] = finishD(r, Math.sign(rem), NaN, rm); return; // square roots are never midpoints either
  }
  dops[3] = bigToNum(X.sqrt(numToBig(x), X.F64, rm));
}

// (±x·y) + (±z) with one rounding; x, y, z not NaN.
function fmaD(rm: number, negProd: boolean, negC: boolean): void {
  let x = dops[0]!;
  const y = dops[1]!;
  let z = dops[2]!;
  if (negProd) x = -x;
  if (negC) z = -z;
  const ph = x * y;
  if (ph !== ph) { fx.flags |= NV; dops[3] = NaN; return; } // inf * 0
  if (rm === RNE) {
    const aph = Math.abs(ph);
    // Boldo & Melquiond (IEEE TC 2008, "Emulation of FMA and correctly rounded sums", Alg. 5.4):
    //   ph + pl = x*y exactly; th + tl = z + ph exactly; v = RO(tl + pl); result = RN(th + v).
    // Valid without underflow/overflow: the range checks keep every error term representable.
    if (aph >= P2_M960 && aph < P2_1000 && Math.abs(x) < P2_995 && Math.abs(y) < P2_995 && Math.abs(z) < P2_1000) {
      const pl = twoProdErr(x, y, ph);
      const th = z + ph;
      const tl = twoSumErr(z, ph, th);
      const s = tl + pl;
      const es = twoSumErr(tl, pl, s);
      const v = toOdd(s, Math.sign(es));
      const r = th + v;
      const ar = Math.abs(r);
      if (ar >= P2_M960 && ar < P2_1000) {
        // Inexact iff exact - r = (th + v - r) + (s - v) + es != 0. If es != 0, tl + pl is not
        // representable, and then neither is the exact result: either |tl + pl| <= 1.5 ulp(th) and
        // x·y + z would be within a factor 2 of th (Sterbenz: th - result representable), or
        // |pl| > ulp(th), i.e. z and -ph cancel within a factor 2, so tl = 0 and tl + pl = pl.
        const e2 = twoSumErr(th, v, r);
        if (e2 !== 0 || es !== 0) fx.flags |= NX;
        dops[3] = r; return;
      }
    }
  }
  // Other modes, special operands and extreme ranges: a 106-bit product plus an addend, exactly.
  const r = bigToNum(X.fma(numToBig(x), numToBig(y), numToBig(z), X.F64, rm, false, false));
  dops[3] = r;
}

export const d_add = addD;
export function d_sub(rm: number): void { dops[1] = -dops[1]!; addD(rm); }
export const d_mul = mulD;
export const d_div = divD;
export const d_sqrt = sqrtD;
export const d_fma = fmaD;

export function f64_add(alo: number, ahi: number, blo: number, bhi: number, rm: number, negB: boolean): void {
  if (f64IsNaN(alo, ahi) || f64IsNaN(blo, bhi)) { nan64(alo, ahi, blo, bhi); return; }
  dops[0] = f64ToNum(alo, ahi);
  dops[1] = negB ? -f64ToNum(blo, bhi) : f64ToNum(blo, bhi);
  addD(rm);
  setOutD(dops[3]!);
}
export function f64_mul(alo: number, ahi: number, blo: number, bhi: number, rm: number): void {
  if (f64IsNaN(alo, ahi) || f64IsNaN(blo, bhi)) { nan64(alo, ahi, blo, bhi); return; }
  dops[0] = f64ToNum(alo, ahi);
  dops[1] = f64ToNum(blo, bhi);
  mulD(rm);
  setOutD(dops[3]!);
}
export function f64_div(alo: number, ahi: number, blo: number, bhi: number, rm: number): void {
  if (f64IsNaN(alo, ahi) || f64IsNaN(blo, bhi)) { nan64(alo, ahi, blo, bhi); return; }
  dops[0] = f64ToNum(alo, ahi);
  dops[1] = f64ToNum(blo, bhi);
  divD(rm);
  setOutD(dops[3]!);
}
export function f64_sqrt(alo: number, ahi: number, rm: number): void {
  if (f64IsNaN(alo, ahi)) { nan64(alo, ahi, alo, ahi); return; }
  dops[0] = f64ToNum(alo, ahi);
  sqrtD(rm);
  setOutD(dops[3]!);
}
export function f64_fma(
  alo: number, ahi: number, blo: number, bhi: number, clo: number, chi: number,
  rm: number, negProd: boolean, negC: boolean,
): void {
  if (f64IsNaN(alo, ahi) || f64IsNaN(blo, bhi) || f64IsNaN(clo, chi)) {
    // RISC-V: inf·0 raises invalid even when the addend is a quiet NaN (F chapter, FMA).
    const x = f64IsNaN(alo, ahi) ? 1 : f64ToNum(alo, ahi);
    const y = f64IsNaN(blo, bhi) ? 1 : f64ToNum(blo, bhi);
    if (fmaInfZero(x, y) || f64IsSNaN(clo, chi)) fx.flags |= NV;
    nan64(alo, ahi, blo, bhi);
    return;
  }
  dops[0] = f64ToNum(alo, ahi);
  dops[1] = f64ToNum(blo, bhi);
  dops[2] = f64ToNum(clo, chi);
  fmaD(rm, negProd, negC);
  setOutD(dops[3]!);
}

// ---- conversions ---------------------------------------------------------------------------------

export function f32_to_f64(a: number): void {
  if (f32IsNaN(a)) { if (f32IsSNaN(a)) fx.flags |= NV; setCanon64(); return; }
  setOut(f32ToNum(a));
}

export function f64_to_f32(lo: number, hi: number, rm: number): number {
  if (f64IsNaN(lo, hi)) { if (f64IsSNaN(lo, hi)) fx.flags |= NV; return F32_CANON_NAN; }
  return roundF32(f64ToNum(lo, hi), rm);
}

// Rounds a finite double to an integer-valued double in mode rm; sets `inexactScratch`.
let lastInexact = false;
function roundToInt(v: number, rm: number): number {
  const t = Math.trunc(v);
  const frac = v - t; // exact
  lastInexact = frac !== 0;
  if (frac === 0) return t;
  switch (rm) {
    case RTZ: return t;
    case RDN: return Math.floor(v);
    case RUP: return Math.ceil(v);
    case RMM: return Math.abs(frac) >= 0.5 ? t + Math.sign(v) : t;
    default: { // RNE
      const af = Math.abs(frac);
      if (af > 0.5 || (af === 0.5 && t % 2 !== 0)) return t + Math.sign(v);
      return t;
    }
  }
}

// F chapter, float-to-integer table: NaN -> max; out of range -> the nearer bound; NV not NX.
function cvtToInt32(v: number, isNan: boolean, rm: number, signed: boolean): number {
  const max = signed ? 2147483647 : 4294967295;
  const min = signed ? -2147483648 : 0;
  if (isNan) { fx.flags |= NV; return max | 0; }
  const n = v - v === 0 ? roundToInt(v, rm) : v;
  if (n > max) { fx.flags |= NV; return max | 0; }
  if (n < min) { fx.flags |= NV; return min | 0; }
  if (v - v === 0 && lastInexact) fx.flags |= NX;
  return n | 0; // RV64 sign-extends the 32-bit result, also for the unsigned forms
}
// 64-bit result into out.
function cvtToInt64(v: number, isNan: boolean, rm: number, signed: boolean): void {
  if (isNan) { fx.flags |= NV; out[0] = -1; out[1] = signed ? 0x7fffffff : -1; return; }
  const n = v - v === 0 ? roundToInt(v, rm) : v;
  if (signed ? n >= TWO63 : n >= TWO64) { fx.flags |= NV; out[0] = -1; out[1] = signed ? 0x7fffffff : -1; return; }
  if (signed ? n < -TWO63 : n < 0) { fx.flags |= NV; out[0] = 0; out[1] = signed ? 0x80000000 | 0 : 0; return; }
  if (v - v === 0 && lastInexact) fx.flags |= NX;
  const hi = Math.floor(n / TWO32); // exact
  out[0] = (n - hi * TWO32) | 0;
  out[1] = hi | 0;
}

export function f32_to_i32(a: number, rm: number): number { return cvtToInt32(f32ToNumNN(a), f32IsNaN(a), rm, true); }
export function f32_to_u32(a: number, rm: number): number { return cvtToInt32(f32ToNumNN(a), f32IsNaN(a), rm, false); }
export function f64_to_i32(lo: number, hi: number, rm: number): number { return cvtToInt32(f64ToNum(lo, hi), f64IsNaN(lo, hi), rm, true); }
export function f64_to_u32(lo: number, hi: number, rm: number): number { return cvtToInt32(f64ToNum(lo, hi), f64IsNaN(lo, hi), rm, false); }
export function f32_to_i64(a: number, rm: number): void { cvtToInt64(f32ToNumNN(a), f32IsNaN(a), rm, true); }
export function f32_to_u64(a: number, rm: number): void { cvtToInt64(f32ToNumNN(a), f32IsNaN(a), rm, false); }
export function f64_to_i64(lo: number, hi: number, rm: number): void { cvtToInt64(f64ToNum(lo, hi), f64IsNaN(lo, hi), rm, true); }
export function f64_to_u64(lo: number, hi: number, rm: number): void { cvtToInt64(f64ToNum(lo, hi), f64IsNaN(lo, hi), rm, false); }

// Integer -> float. 32-bit integers are exact in binary64.
export function i32_to_f32(v: number, rm: number): number { return roundF32(v | 0, rm); }
export function u32_to_f32(v: number, rm: number): number { return roundF32(v >>> 0, rm); }
export function i32_to_f64(v: number): void { setOut(v | 0); }
export function u32_to_f64(v: number): void { setOut(v >>> 0); }

function int64ToF64(hiPart: number, lo: number, rm: number): void {
  const h = hiPart * TWO32; // exact
  const l = lo >>> 0;
  const r = h + l; // one correctly rounded addition
  const e = twoSumErr(h, l, r);
  setOut(finishD(r, Math.sign(e), e, rm));
}
export function i64_to_f64(lo: number, hi: number, rm: number): void { int64ToF64(hi | 0, lo, rm); }
export function u64_to_f64(lo: number, hi: number, rm: number): void { int64ToF64(hi >>> 0, lo, rm); }
function int64ToF32(hiPart: number, lo: number, rm: number): number {
  const h = hiPart * TWO32;
  const l = lo >>> 0;
  const r = h + l;
  return roundF32(toOdd(r, Math.sign(twoSumErr(h, l, r))), rm);
}
export function i64_to_f32(lo: number, hi: number, rm: number): number { return int64ToF32(hi | 0, lo, rm); }
export function u64_to_f32(lo: number, hi: number, rm: number): number { return int64ToF32(hi >>> 0, lo, rm); }

// ---- min/max, comparisons, classification (no rounding) ------------------------------------------

// F chapter (2.2 semantics): -0 < +0; a signalling NaN operand raises NV; one NaN -> the other
// operand; two NaNs -> canonical NaN.
export function f32_minmax(a: number, b: number, isMax: boolean): number {
  const an = f32IsNaN(a);
  const bn = f32IsNaN(b);
  if (an || bn) {
    if (f32IsSNaN(a) || f32IsSNaN(b)) fx.flags |= NV;
    if (an && bn) return F32_CANON_NAN;
    return an ? b : a;
  }
  const x = f32ToNum(a);
  const y = f32ToNum(b);
  if (x === y) return isMax ? a & b : a | b; // equal values differ only for ±0: sign bit decides
  return (x < y) !== isMax ? a : b;
}
export function f64_minmax(alo: number, ahi: number, blo: number, bhi: number, isMax: boolean): void {
  const an = f64IsNaN(alo, ahi);
  const bn = f64IsNaN(blo, bhi);
  if (an || bn) {
    if (f64IsSNaN(alo, ahi) || f64IsSNaN(blo, bhi)) fx.flags |= NV;
    if (an && bn) { setCanon64(); return; }
    if (an) { out[0] = blo; out[1] = bhi; } else { out[0] = alo; out[1] = ahi; }
    return;
  }
  const x = f64ToNum(alo, ahi);
  const y = f64ToNum(blo, bhi);
  if (x === y) {
    out[0] = alo;
    out[1] = isMax ? ahi & bhi : ahi | bhi;
    return;
  }
  if ((x < y) !== isMax) { out[0] = alo; out[1] = ahi; } else { out[0] = blo; out[1] = bhi; }
}

// feq is a quiet comparison (NV only for signalling NaNs); flt/fle are signalling (NV for any NaN).
export function f32_eq(a: number, b: number): number {
  if (f32IsNaN(a) || f32IsNaN(b)) { if (f32IsSNaN(a) || f32IsSNaN(b)) fx.flags |= NV; return 0; }
  return f32ToNum(a) === f32ToNum(b) ? 1 : 0;
}
export function f32_lt(a: number, b: number): number {
  if (f32IsNaN(a) || f32IsNaN(b)) { fx.flags |= NV; return 0; }
  return f32ToNum(a) < f32ToNum(b) ? 1 : 0;
}
export function f32_le(a: number, b: number): number {
  if (f32IsNaN(a) || f32IsNaN(b)) { fx.flags |= NV; return 0; }
  return f32ToNum(a) <= f32ToNum(b) ? 1 : 0;
}
export function f64_eq(alo: number, ahi: number, blo: number, bhi: number): number {
  if (f64IsNaN(alo, ahi) || f64IsNaN(blo, bhi)) { if (f64IsSNaN(alo, ahi) || f64IsSNaN(blo, bhi)) fx.flags |= NV; return 0; }
  return f64ToNum(alo, ahi) === f64ToNum(blo, bhi) ? 1 : 0;
}
export function f64_lt(alo: number, ahi: number, blo: number, bhi: number): number {
  if (f64IsNaN(alo, ahi) || f64IsNaN(blo, bhi)) { fx.flags |= NV; return 0; }
  return f64ToNum(alo, ahi) < f64ToNum(blo, bhi) ? 1 : 0;
}
export function f64_le(alo: number, ahi: number, blo: number, bhi: number): number {
  if (f64IsNaN(alo, ahi) || f64IsNaN(blo, bhi)) { fx.flags |= NV; return 0; }
  return f64ToNum(alo, ahi) <= f64ToNum(blo, bhi) ? 1 : 0;
}

// fclass result bits (F chapter, "Format of result of FCLASS instruction").
export function f32_class(a: number): number {
  const neg = a < 0;
  const e = (a >>> 23) & 0xff;
  const f = a & 0x7fffff;
  if (e === 0xff) {
    if (f === 0) return neg ? 1 << 0 : 1 << 7;
    return (f & 0x400000) !== 0 ? 1 << 9 : 1 << 8;
  }
  if (e === 0) {
    if (f === 0) return neg ? 1 << 3 : 1 << 4;
    return neg ? 1 << 2 : 1 << 5;
  }
  return neg ? 1 << 1 : 1 << 6;
}
export function f64_class(lo: number, hi: number): number {
  const neg = hi < 0;
  const e = (hi >>> 20) & 0x7ff;
  const fzero = (hi & 0xfffff) === 0 && lo === 0;
  if (e === 0x7ff) {
    if (fzero) return neg ? 1 << 0 : 1 << 7;
    return (hi & 0x80000) !== 0 ? 1 << 9 : 1 << 8;
  }
  if (e === 0) {
    if (fzero) return neg ? 1 << 3 : 1 << 4;
    return neg ? 1 << 2 : 1 << 5;
  }
  return neg ? 1 << 1 : 1 << 6;
}
