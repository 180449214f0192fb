// 64-bit integer helpers for the hart, on int32 hi/lo halves (RV64 registers are kept as two
// Int32Arrays; see hart.ts). Results are written into `res` ([0] = low word, [1] = high word) so
// that nothing is allocated per instruction. Only division falls back to BigInt, and only when an
// operand does not fit in 52 bits (rare in practice).

export const res = new Int32Array(2);

const TWO32 = 4294967296;

/** High 32 bits of the unsigned 64-bit product of two uint32 values (16-bit limbs, exact). */
export function mulhu32(a: number, b: number): number {
  const a0 = a & 0xffff, a1 = a >>> 16, b0 = b & 0xffff, b1 = b >>> 16;
  const p00 = a0 * b0, p01 = a0 * b1, p10 = a1 * b0, p11 = a1 * b1;
  const mid = (p00 >>> 16) + (p01 & 0xffff) + (p10 & 0xffff);
  return (p11 + (p01 >>> 16) + (p10 >>> 16) + (mid >>> 16)) | 0;
}

/** MUL: low 64 bits of the product. */
export function mul64(al: number, ah: number, bl: number, bh: number): void {
  res[0] = Math.imul(al, bl);
  res[1] = (mulhu32(al, bl) + Math.imul(al, bh) + Math.imul(ah, bl)) | 0;
}

/** MULHU: high 64 bits of the unsigned 128-bit product (32-bit limbs, sums exact in doubles). */
export function mulhu64(al: number, ah: number, bl: number, bh: number): void {
  const a0 = al >>> 0, a1 = ah >>> 0, b0 = bl >>> 0, b1 = bh >>> 0;
  const p00h = mulhu32(a0, b0) >>> 0;
  const p01l = Math.imul(a0, b1) >>> 0, p01h = mulhu32(a0, b1) >>> 0;
  const p10l = Math.imul(a1, b0) >>> 0, p10h = mulhu32(a1, b0) >>> 0;
  const p11l = Math.imul(a1, b1) >>> 0, p11h = mulhu32(a1, b1) >>> 0;
  const w1 = p00h + p01l + p10l;
  const c1 = Math.floor(w1 / TWO32);
  const w2 = p11l + p01h + p10h + c1;
  const c2 = Math.floor(w2 / TWO32);
  res[0] = w2 | 0;
  res[1] = (p11h + c2) | 0;
}

function sub64InPlace(bl: number, bh: number): void {
  const l = res[0], h = res[1];
  const nl = (l - bl) | 0;
  res[0] = nl;
  res[1] = (h - bh - ((l >>> 0) < (bl >>> 0) ? 1 : 0)) | 0;
}

/** MULH: signed x signed, high 64 bits. mulhu - (a<0 ? b : 0) - (b<0 ? a : 0) (mod 2^64). */
export function mulh64(al: number, ah: number, bl: number, bh: number): void {
  mulhu64(al, ah, bl, bh);
  if (ah < 0) sub64InPlace(bl, bh);
  if (bh < 0) sub64InPlace(al, ah);
}

/** MULHSU: signed a x unsigned b, high 64 bits. */
export function mulhsu64(al: number, ah: number, bl: number, bh: number): void {
  mulhu64(al, ah, bl, bh);
  if (ah < 0) sub64InPlace(bl, bh);
}

function toBig(l: number, h: number): bigint {
  return (BigInt(h) << 32n) | BigInt(l >>> 0);
}
function fromBig(v: bigint): void {
  res[0] = Number(BigInt.asIntN(32, v));
  res[1] = Number(BigInt.asIntN(32, v >> 32n));
}
function fromNum(v: number): void {
  res[0] = v | 0;
  res[1] = Math.floor(v / TWO32) | 0;
}

// |x| < 2^52 when the high word lies in [-2^20, 2^20): then a/b rounded to a double cannot cross
// an integer boundary (rounding error < 1/|b|), so Math.trunc(a / b) is the exact quotient.
function small(h: number): boolean { return ((h + 0x100000) >>> 0) < 0x200000; }
function usmall(h: number): boolean { return (h >>> 0) < 0x100000; }

/** Unsigned 64-bit (ah:al) / 32-bit b (0 < b < 2^32) by long division in exact doubles:
 *  32-bit digits when b < 2^21 (r * 2^32 + digit < 2^53), 16-bit digits otherwise. */
function udiv64by32(al: number, ah: number, b: number, rem: boolean): void {
  const ahu = ah >>> 0, alu = al >>> 0;
  if (b < 0x200000) {
    const qh = Math.floor(ahu / b);
    const cur = (ahu - qh * b) * TWO32 + alu;
    const ql = Math.floor(cur / b);
    if (rem) { res[0] = (cur - ql * b) | 0; res[1] = 0; } else { res[0] = ql | 0; res[1] = qh | 0; }
    return;
  }
  let cur = ahu >>> 16;
  const q3 = Math.floor(cur / b);
  cur = (cur - q3 * b) * 65536 + (ahu & 0xffff);
  const q2 = Math.floor(cur / b);
  cur = (cur - q2 * b) * 65536 + (alu >>> 16);
  const q1 = Math.floor(cur / b);
  cur = (cur - q1 * b) * 65536 + (alu & 0xffff);
  const q0 = Math.floor(cur / b);
  if (rem) { res[0] = (cur - q0 * b) | 0; res[1] = 0; } else { res[0] = (q1 << 16) | q0; res[1] = (q3 << 16) | q2; }
}

function negRes(): void {
  const l = res[0], h = res[1];
  res[0] = (-l) | 0;
  res[1] = (~h + (l === 0 ? 1 : 0)) | 0;
}

/** DIV / REM (signed). Division by zero and overflow as in the ISA spec (M extension, 13.2). */
export function div64(al: number, ah: number, bl: number, bh: number, rem: boolean): void {
  if (bl === 0 && bh === 0) {
    if (rem) { res[0] = al; res[1] = ah; } else { res[0] = -1; res[1] = -1; }
    return;
  }
  if (small(ah) && small(bh)) {
    const a = ah * TWO32 + (al >>> 0), b = bh * TWO32 + (bl >>> 0);
    const q = Math.trunc(a / b);
    fromNum(rem ? a - q * b : q);
    return;
  }
  // |b| < 2^32: divide the magnitudes, then fix the signs (the overflow case -2^63 / -1 wraps to
  // -2^63 with remainder 0, exactly what the spec asks).
  if (bh === 0 || (bh === -1 && bl !== 0)) {
    const aneg = ah < 0, bneg = bh < 0;
    const ml = aneg ? (-al) | 0 : al, mh = aneg ? (~ah + (al === 0 ? 1 : 0)) | 0 : ah;
    const mb = bneg ? (-bl) >>> 0 : bl >>> 0;
    udiv64by32(ml, mh, mb, rem);
    if (rem ? aneg : aneg !== bneg) negRes();
    return;
  }
  const a = toBig(al, ah), b = toBig(bl, bh);
  if (b === -1n && a === -(1n << 63n)) {
    if (rem) { res[0] = 0; res[1] = 0; } else { res[0] = al; res[1] = ah; }
    return;
  }
  fromBig(rem ? a % b : a / b);
}

/** DIVU / REMU. */
export function divu64(al: number, ah: number, bl: number, bh: number, rem: boolean): void {
  if (bl === 0 && bh === 0) {
    if (rem) { res[0] = al; res[1] = ah; } else { res[0] = -1; res[1] = -1; }
    return;
  }
  if (usmall(ah) && usmall(bh)) {
    const a = ah * TWO32 + (al >>> 0), b = bh * TWO32 + (bl >>> 0);
    const q = Math.floor(a / b);
    fromNum(rem ? a - q * b : q);
    return;
  }
  if (bh === 0) { udiv64by32(al, ah, bl >>> 0, rem); return; }
  const a = BigInt.asUintN(64, toBig(al, ah)), b = BigInt.asUintN(64, toBig(bl, bh));
  fromBig(rem ? a % b : a / b);
}

/** DIVW/REMW/DIVUW/REMUW on 32-bit operands; returns the 32-bit result (caller sign-extends). */
export function div32(a: number, b: number, rem: boolean, unsigned: boolean): number {
  if (b === 0) return rem ? a : -1;
  if (unsigned) {
    const ua = a >>> 0, ub = b >>> 0;
    return (rem ? ua % ub : Math.floor(ua / ub)) | 0;
  }
  if (a === -0x80000000 && b === -1) return rem ? 0 : a;
  return (rem ? a % b : a / b) | 0;
}
