// Operand generators for the FP unit tests: random encodings biased towards the values where
// floating-point implementations go wrong (zeros, subnormals, extremes, infinities, NaNs with
// payloads, values next to powers of two, halfway-producing fractions).
export class Lcg {
  private s: bigint;
  constructor(seed: number) { this.s = BigInt(seed) & 0xffffffffffffffffn; }
  next32(): number {
    // Knuth MMIX LCG; the top half has the better bits.
    this.s = (this.s * 6364136223846793005n + 1442695040888963407n) & 0xffffffffffffffffn;
    return Number(this.s >> 32n) >>> 0;
  }
  below(n: number): number { return this.next32() % n; }
}

export function randF32(g: Lcg): number {
  const sign = g.below(2) << 31;
  let e: number;
  switch (g.below(8)) {
    case 0: e = 0; break; // zero / subnormal
    case 1: e = 255; break; // inf / NaN
    case 2: e = 1 + g.below(3); break;
    case 3: e = 252 + g.below(3); break;
    case 4: e = 120 + g.below(16); break;
    default: e = g.below(256); break;
  }
  let f: number;
  switch (g.below(6)) {
    case 0: f = 0; break;
    case 1: f = 0x7fffff; break;
    case 2: f = 1 << g.below(23); break;
    case 3: f = 0x7fffff ^ (1 << g.below(23)); break;
    default: f = g.next32() & 0x7fffff; break;
  }
  if (e === 255 && g.below(3) !== 0) f = 0; // favour infinities over NaNs
  return (sign | (e << 23) | f) | 0;
}

export function randF64(g: Lcg): bigint {
  const sign = BigInt(g.below(2)) << 63n;
  let e: number;
  switch (g.below(8)) {
    case 0: e = 0; break;
    case 1: e = 2047; break;
    case 2: e = 1 + g.below(60); break;
    case 3: e = 1990 + g.below(57); break;
    case 4: e = 1010 + g.below(30); break;
    default: e = g.below(2048); break;
  }
  const mask = (1n << 52n) - 1n;
  let f: bigint;
  switch (g.below(6)) {
    case 0: f = 0n; break;
    case 1: f = mask; break;
    case 2: f = 1n << BigInt(g.below(52)); break;
    case 3: f = mask ^ (1n << BigInt(g.below(52))); break;
    default: f = ((BigInt(g.next32()) << 32n) | BigInt(g.next32())) & mask; break;
  }
  if (e === 2047 && g.below(3) !== 0) f = 0n;
  return sign | (BigInt(e) << 52n) | f;
}

export const lo = (v: bigint): number => Number(v & 0xffffffffn) | 0;
export const hi = (v: bigint): number => Number((v >> 32n) & 0xffffffffn) | 0;
export const big = (l: number, h: number): bigint => (BigInt(h >>> 0) << 32n) | BigInt(l >>> 0);
export const b32 = (x: number): bigint => BigInt(x >>> 0);
