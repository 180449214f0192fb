// The F and D extensions on the hart (unprivileged spec chapters "F" and "D", RV64 forms).
//
// The hart (src/riscv/hart.ts) calls execFp for the opcodes LOAD-FP 0x07, STORE-FP 0x27,
// FMADD/FMSUB/FNMSUB/FNMADD 0x43/0x47/0x4b/0x4f and OP-FP 0x53; compressed C.FLD/C.FSD/C.FLDSP/
// C.FSDSP arrive already expanded to FLD/FSD. execFp returns true when the instruction retired (the
// hart then advances pc); otherwise it has raised a trap through the hart (illegalInstruction(), or
// a failed loadMem/storeMem which trapped itself) and returns false.
//
// State lives in the hart: fregs (Int32Array, register i = [2i] low word, [2i+1] high word, raw
// bits), fflags, frm, and mstatus.FS. The arithmetic is in softfloat.ts (bit-exact, flags in fx).
//
// Spec points handled here:
//  * mstatus.FS = Off makes every FP instruction illegal (priv spec 3.1.6.6); an instruction that
//    writes an f register or accrues flags makes FS Dirty (SD is derived from FS by the hart).
//    fflags is FP state, so an instruction that only raises flags (feq/flt/fle, fcvt to integer)
//    also makes FS Dirty; QEMU 7.2 leaves FS unchanged in that case (observed with FS = Clean).
//    The spec is followed here; being Dirty more often is always safe for lazy context switching.
//  * Rounding mode: the rm field, or frm when rm = 7 (DYN); rm 5/6, or DYN with frm >= 5, is
//    illegal (F chapter, "Floating-Point Control and Status Register"). Every instruction that has
//    an rm field checks it, including the exact conversions (fcvt.d.s, fcvt.d.w[u]), as QEMU does.
//  * NaN boxing (F/D chapter "NaN Boxing of Narrower Values"): single-precision operands whose upper
//    32 bits are not all ones read as the canonical NaN; single results are written with the upper
//    half all ones. FLW boxes; FSW and FMV.X.W take the low 32 bits as they are.
import type { Hart } from '../hart.js';
import { fx, F32_CANON_NAN, F64_CANON_NAN_HI } from './flags.js';
import * as S from './softfloat.js';

/** F and D are implemented: the hart reports them in misa and exposes fflags/frm/fcsr. */
export const FP_PRESENT = true;

const out = S.out;

function illegal(hart: Hart): boolean {
  hart.illegalInstruction();
  return false;
}

/** Effective rounding mode, or -1 if reserved. */
function roundingMode(hart: Hart, insn: number): number {
  let rm = (insn >>> 12) & 7;
  if (rm === 7) rm = hart.frm;
  return rm <= 4 ? rm : -1;
}

/** A single-precision operand: the low word if properly NaN-boxed, else the canonical NaN. */
function unbox(f: Int32Array, r: number): number {
  return f[2 * r + 1] === -1 ? f[2 * r]! : F32_CANON_NAN;
}

function setS(hart: Hart, rd: number, v: number): void {
  const f = hart.fregs;
  f[2 * rd] = v;
  f[2 * rd + 1] = -1;
}

function setD(hart: Hart, rd: number): void {
  const f = hart.fregs;
  f[2 * rd] = out[0]!;
  f[2 * rd + 1] = out[1]!;
}

/** Writes the binary64 result of a d_* operation (S.dops[3]); NaN means the canonical NaN, whose
 *  bits are written through the integer view, never through a host NaN. */
function writeD(hart: Hart, rd: number): void {
  const r = S.dops[3]!;
  if (r === r) hart.fregsF64[rd] = r;
  else {
    const f = hart.fregs;
    f[2 * rd] = 0;
    f[2 * rd + 1] = F64_CANON_NAN_HI;
  }
}

function setX(hart: Hart, rd: number, lo: number, hi: number): void {
  if (rd === 0) return;
  hart.xlo[rd] = lo;
  hart.xhi[rd] = hi;
}

/** Merges the operation's exception flags into fflags (accrued: only ever set here). */
function accrue(hart: Hart): void {
  const fl = fx.flags;
  if (fl !== 0) {
    hart.fflags |= fl;
    hart.markFpDirty();
  }
}

export function execFp(hart: Hart, insn: number): boolean {
  if (!hart.fpEnabled()) return illegal(hart);
  const opcode = insn & 0x7f;
  const rd = (insn >>> 7) & 31;
  const rs1 = (insn >>> 15) & 31;
  const rs2 = (insn >>> 20) & 31;
  switch (opcode) {
    case 0x07: return loadFp(hart, insn, rd, rs1);
    case 0x27: return storeFp(hart, insn, rs1, rs2);
    case 0x53: return opFp(hart, insn, rd, rs1, rs2);
    default: return fma(hart, insn, rd, rs1, rs2);
  }
}

// 64-bit effective address x[rs1] + sign-extended imm, into addrLo/addrHi.
let addrLo = 0;
let addrHi = 0;
function effAddr(hart: Hart, rs1: number, imm: number): void {
  const bl = hart.xlo[rs1]!;
  const lo = (bl + imm) | 0;
  addrLo = lo;
  addrHi = (hart.xhi[rs1]! + (imm >> 31) + ((lo >>> 0) < (bl >>> 0) ? 1 : 0)) | 0;
}

function loadFp(hart: Hart, insn: number, rd: number, rs1: number): boolean {
  const w = (insn >>> 12) & 7;
  if (w !== 2 && w !== 3) return illegal(hart); // only FLW and FLD (no Zfh/Q)
  effAddr(hart, rs1, insn >> 20);
  if (!hart.loadMem(addrLo, addrHi, w)) return false;
  const f = hart.fregs;
  f[2 * rd] = hart.memLo;
  f[2 * rd + 1] = w === 2 ? -1 : hart.memHi;
  hart.markFpDirty();
  return true;
}

function storeFp(hart: Hart, insn: number, rs1: number, rs2: number): boolean {
  const w = (insn >>> 12) & 7;
  if (w !== 2 && w !== 3) return illegal(hart);
  effAddr(hart, rs1, ((insn >> 25) << 5) | ((insn >>> 7) & 31));
  const f = hart.fregs;
  return hart.storeMem(addrLo, addrHi, w, f[2 * rs2]!, w === 2 ? 0 : f[2 * rs2 + 1]!);
}

// FMADD 0x43, FMSUB 0x47, FNMSUB 0x4b, FNMADD 0x4f: (±rs1·rs2) ± rs3 with one rounding.
function fma(hart: Hart, insn: number, rd: number, rs1: number, rs2: number): boolean {
  const fmt = (insn >>> 25) & 3;
  const rm = roundingMode(hart, insn);
  if (fmt > 1 || rm < 0) return illegal(hart);
  const rs3 = insn >>> 27;
  const op = (insn >>> 2) & 3; // 0 fmadd, 1 fmsub, 2 fnmsub, 3 fnmadd
  const negProd = op >= 2;
  const negC = op === 1 || op === 3;
  const f = hart.fregs;
  fx.flags = 0;
  if (fmt === 0) {
    const so = S.sops;
    so[0] = unbox(f, rs1); so[1] = unbox(f, rs2); so[2] = unbox(f, rs3);
    S.s_fma(rm, negProd, negC);
    f[2 * rd] = so[3]!;
    f[2 * rd + 1] = -1;
  } else {
    const F = hart.fregsF64;
    const x = F[rs1]!, y = F[rs2]!, z = F[rs3]!;
    if (x === x && y === y && z === z) {
      const d = S.dops;
      d[0] = x; d[1] = y; d[2] = z;
      S.d_fma(rm, negProd, negC);
      writeD(hart, rd);
    } else {
      S.f64_fma(f[2 * rs1]!, f[2 * rs1 + 1]!, f[2 * rs2]!, f[2 * rs2 + 1]!, f[2 * rs3]!, f[2 * rs3 + 1]!, rm, negProd, negC);
      setD(hart, rd);
    }
  }
  hart.markFpDirty();
  accrue(hart);
  return true;
}

function opFp(hart: Hart, insn: number, rd: number, rs1: number, rs2: number): boolean {
  const fmt = (insn >>> 25) & 3;
  if (fmt > 1) return illegal(hart); // H and Q formats are not implemented
  const dbl = fmt === 1;
  const funct5 = insn >>> 27;
  const f3 = (insn >>> 12) & 7;
  const f = hart.fregs;
  const al = f[2 * rs1]!, ah = f[2 * rs1 + 1]!;
  const bl = f[2 * rs2]!, bh = f[2 * rs2 + 1]!;
  fx.flags = 0;
  switch (funct5) {
    case 0x00: case 0x01: case 0x02: case 0x03: { // FADD FSUB FMUL FDIV
      const rm = roundingMode(hart, insn);
      if (rm < 0) return illegal(hart);
      if (!dbl) {
        const so = S.sops;
        so[0] = unbox(f, rs1); so[1] = unbox(f, rs2);
        switch (funct5) {
          case 0x00: S.s_add(rm); break;
          case 0x01: S.s_sub(rm); break;
          case 0x02: S.s_mul(rm); break;
          default: S.s_div(rm); break;
        }
        f[2 * rd] = so[3]!;
        f[2 * rd + 1] = -1;
      } else {
        const F = hart.fregsF64;
        const x = F[rs1]!, y = F[rs2]!;
        if (x === x && y === y) {
          // Fast form on host doubles (NaN operands take the raw-bit form below for sNaN/NV).
          const d = S.dops;
          d[0] = x; d[1] = y;
          switch (funct5) {
            case 0x00: S.d_add(rm); break;
            case 0x01: S.d_sub(rm); break;
            case 0x02: S.d_mul(rm); break;
            default: S.d_div(rm); break;
          }
          writeD(hart, rd);
        } else {
          switch (funct5) {
            case 0x00: S.f64_add(al, ah, bl, bh, rm, false); break;
            case 0x01: S.f64_add(al, ah, bl, bh, rm, true); break;
            case 0x02: S.f64_mul(al, ah, bl, bh, rm); break;
            default: S.f64_div(al, ah, bl, bh, rm); break;
          }
          setD(hart, rd);
        }
      }
      break;
    }
    case 0x0b: { // FSQRT
      const rm = roundingMode(hart, insn);
      if (rs2 !== 0 || rm < 0) return illegal(hart);
      if (!dbl) {
        S.sops[0] = unbox(f, rs1);
        S.s_sqrt(rm);
        f[2 * rd] = S.sops[3]!;
        f[2 * rd + 1] = -1;
      }
      else {
        const x = hart.fregsF64[rs1]!;
        if (x === x) { S.dops[0] = x; S.d_sqrt(rm); writeD(hart, rd); }
        else { S.f64_sqrt(al, ah, rm); setD(hart, rd); }
      }
      break;
    }
    case 0x04: { // FSGNJ / FSGNJN / FSGNJX: bit operations, no flags, no NaN canonicalisation
      if (f3 > 2) return illegal(hart);
      if (!dbl) {
        const a = unbox(f, rs1), b = unbox(f, rs2);
        const s = f3 === 0 ? b : f3 === 1 ? ~b : a ^ b;
        setS(hart, rd, (a & 0x7fffffff) | (s & 0x80000000));
      } else {
        const s = f3 === 0 ? bh : f3 === 1 ? ~bh : ah ^ bh;
        f[2 * rd] = al;
        f[2 * rd + 1] = (ah & 0x7fffffff) | (s & 0x80000000);
      }
      break;
    }
    case 0x05: { // FMIN / FMAX
      if (f3 > 1) return illegal(hart);
      if (!dbl) setS(hart, rd, S.f32_minmax(unbox(f, rs1), unbox(f, rs2), f3 === 1));
      else { S.f64_minmax(al, ah, bl, bh, f3 === 1); setD(hart, rd); }
      break;
    }
    case 0x08: { // FCVT.S.D (fmt S, rs2 = 1) / FCVT.D.S (fmt D, rs2 = 0)
      const rm = roundingMode(hart, insn);
      if (rm < 0 || rs2 !== (dbl ? 0 : 1)) return illegal(hart);
      if (!dbl) setS(hart, rd, S.f64_to_f32(al, ah, rm));
      else { S.f32_to_f64(unbox(f, rs1)); setD(hart, rd); }
      break;
    }
    case 0x14: { // FLE (0) / FLT (1) / FEQ (2): integer result
      if (f3 > 2) return illegal(hart);
      let r: number;
      if (!dbl) {
        const a = unbox(f, rs1), b = unbox(f, rs2);
        r = f3 === 2 ? S.f32_eq(a, b) : f3 === 1 ? S.f32_lt(a, b) : S.f32_le(a, b);
      } else {
        r = f3 === 2 ? S.f64_eq(al, ah, bl, bh) : f3 === 1 ? S.f64_lt(al, ah, bl, bh) : S.f64_le(al, ah, bl, bh);
      }
      setX(hart, rd, r, 0);
      accrue(hart);
      return true;
    }
    case 0x18: { // FCVT.W/WU/L/LU.{S,D}: float -> integer register
      const rm = roundingMode(hart, insn);
      if (rm < 0 || rs2 > 3) return illegal(hart);
      if (rs2 < 2) {
        let r: number;
        if (!dbl) r = rs2 === 0 ? S.f32_to_i32(unbox(f, rs1), rm) : S.f32_to_u32(unbox(f, rs1), rm);
        else r = rs2 === 0 ? S.f64_to_i32(al, ah, rm) : S.f64_to_u32(al, ah, rm);
        setX(hart, rd, r, r >> 31); // RV64: the 32-bit result is sign-extended, also for WU
      } else {
        if (!dbl) { if (rs2 === 2) S.f32_to_i64(unbox(f, rs1), rm); else S.f32_to_u64(unbox(f, rs1), rm); }
        else if (rs2 === 2) S.f64_to_i64(al, ah, rm);
        else S.f64_to_u64(al, ah, rm);
        setX(hart, rd, out[0]!, out[1]!);
      }
      accrue(hart);
      return true;
    }
    case 0x1a: { // FCVT.{S,D}.W/WU/L/LU: integer register -> float
      const rm = roundingMode(hart, insn);
      if (rm < 0 || rs2 > 3) return illegal(hart);
      const xl = hart.xlo[rs1]!, xh = hart.xhi[rs1]!;
      if (!dbl) {
        let r: number;
        switch (rs2) {
          case 0: r = S.i32_to_f32(xl, rm); break;
          case 1: r = S.u32_to_f32(xl, rm); break;
          case 2: r = S.i64_to_f32(xl, xh, rm); break;
          default: r = S.u64_to_f32(xl, xh, rm); break;
        }
        setS(hart, rd, r);
      } else {
        switch (rs2) {
          case 0: S.i32_to_f64(xl); break;
          case 1: S.u32_to_f64(xl); break;
          case 2: S.i64_to_f64(xl, xh, rm); break;
          default: S.u64_to_f64(xl, xh, rm); break;
        }
        setD(hart, rd);
      }
      break;
    }
    case 0x1c: { // FMV.X.W / FMV.X.D (f3 0), FCLASS (f3 1): integer result, no flags
      if (rs2 !== 0 || f3 > 1) return illegal(hart);
      if (f3 === 0) {
        if (!dbl) setX(hart, rd, al, al >> 31); // raw low word, sign-extended (no unboxing)
        else setX(hart, rd, al, ah);
      } else {
        setX(hart, rd, dbl ? S.f64_class(al, ah) : S.f32_class(unbox(f, rs1)), 0);
      }
      return true;
    }
    case 0x1e: { // FMV.W.X / FMV.D.X
      if (rs2 !== 0 || f3 !== 0) return illegal(hart);
      if (!dbl) setS(hart, rd, hart.xlo[rs1]!);
      else { f[2 * rd] = hart.xlo[rs1]!; f[2 * rd + 1] = hart.xhi[rs1]!; }
      break;
    }
    default:
      return illegal(hart);
  }
  // Every case that falls through to here wrote f[rd].
  hart.markFpDirty();
  accrue(hart);
  return true;
}
