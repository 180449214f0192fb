// vmctl's model of fixtures/fp/src/fprand.c: the same operand stream (a line-by-line port of the
// guest's generator) run through src/riscv/fp/softfloat.ts with the RISC-V register semantics
// (NaN-boxing, sign extension), producing the same "<index> <name> <rm> <checksum>" lines.
import * as S from '../../src/riscv/fp/softfloat.js';
import { fx } from '../../src/riscv/fp/flags.js';

const M64 = 0xffffffffffffffffn;
let lcg = 0n;
function rnd(): number {
  lcg = (lcg * 6364136223846793005n + 1442695040888963407n) & M64;
  return Number(lcg >> 32n);
}
function rnd64(): bigint {
  const hi = BigInt(rnd());
  return (hi << 32n) | BigInt(rnd());
}

const spec32 = [
  0x00000000, 0x80000000, 0x7f800000, 0xff800000, 0x7fc00000, 0xffc00000, 0x7f800001, 0x7fa00000,
  0x7fffffff, 0x3f800000, 0xbf800000, 0x00000001, 0x807fffff, 0x00800000, 0x7f7fffff, 0xff7fffff,
  0x3f000000, 0x4f000000, 0xcf000000, 0x4f800000, 0x5f000000, 0xdf000000, 0x5f800000, 0x3fc00000,
  0x40200000, 0xbfc00000, 0x4effffff, 0x3effffff, 0xcf000001, 0x5effffff, 0x00400000, 0x80800000,
];
const spec64 = [
  0x0000000000000000n, 0x8000000000000000n, 0x7ff0000000000000n, 0xfff0000000000000n,
  0x7ff8000000000000n, 0xfff8000000000000n, 0x7ff0000000000001n, 0x7ff4000000000000n,
  0x7fffffffffffffffn, 0x3ff0000000000000n, 0xbff0000000000000n, 0x0000000000000001n,
  0x800fffffffffffffn, 0x0010000000000000n, 0x7fefffffffffffffn, 0xffefffffffffffffn,
  0x3fe0000000000000n, 0x41e0000000000000n, 0xc1e0000000000000n, 0x41f0000000000000n,
  0x43e0000000000000n, 0xc3e0000000000000n, 0x43f0000000000000n, 0x3ff8000000000000n,
  0x4004000000000000n, 0xbff8000000000000n, 0x41dfffffffffffffn, 0x3fdfffffffffffffn,
  0xc1e0000000200000n, 0x43efffffffffffffn, 0x0008000000000000n, 0x36a0000000000000n,
];
const specx = [
  0n, 1n, M64, 0x7fffffffn, 0x80000000n, 0xffffffffn, 0xffffffff80000000n, 0x20000000000001n,
  0x7fffffffffffffffn, 0x8000000000000000n, 0x1000001n, 0x1000003n, 0xfffffffffeffffffn,
  0x7fffff8000000000n, 0xffffffffffffff7fn, 0x100000000n,
];

function gen32(): number {
  const r = rnd(), m = rnd();
  const sign = ((r >>> 4) & 1) << 31;
  let e: number;
  let f = m & 0x7fffff;
  switch (r & 15) {
    case 0: case 1: case 2: return spec32[m % 32]! >>> 0;
    case 3: e = 0; break;
    case 4: e = 1 + ((m >>> 28) % 4); break;
    case 5: e = 251 + ((m >>> 28) % 4); break;
    case 6: e = 125 + ((m >>> 28) % 6); break;
    case 7: e = 150 + ((m >>> 26) % 40); break;
    case 8: e = 100 + ((m >>> 26) % 60); f &= 0x7ff000; break;
    case 9: e = 255; break;
    default: return rnd();
  }
  return (sign | (e << 23) | f) >>> 0;
}
function box32(v: number): bigint {
  const r = rnd();
  if ((r & 15) === 0) return (BigInt(rnd()) << 32n) | BigInt(v >>> 0);
  return 0xffffffff00000000n | BigInt(v >>> 0);
}
function gen64(): bigint {
  const r = rnd(), m = rnd();
  const sign = BigInt((r >>> 4) & 1) << 63n;
  let e: bigint;
  let f = ((BigInt(rnd()) << 32n) | BigInt(m)) & 0xfffffffffffffn;
  switch (r & 15) {
    case 0: case 1: case 2: return spec64[m % 32]!;
    case 3: e = 0n; break;
    case 4: e = BigInt(1 + ((m >>> 28) % 4)); break;
    case 5: e = BigInt(2043 + ((m >>> 28) % 4)); break;
    case 6: e = BigInt(1021 + ((m >>> 28) % 6)); break;
    case 7: e = BigInt(1075 + ((m >>> 26) % 40)); break;
    case 8: e = BigInt(900 + ((m >>> 24) % 250)); f &= 0xffffffc000000n; break;
    case 9: e = 2047n; break;
    default: return rnd64();
  }
  return sign | (e << 52n) | f;
}
function genx(): bigint {
  const r = rnd(), m = rnd();
  let v: bigint;
  switch (r & 7) {
    case 0: v = BigInt(m & 0xff); break;
    case 1: return specx[m % 16]!;
    case 2: v = ((1n << BigInt(m % 64)) + BigInt((m >>> 8) % 5) - 2n) & M64; break;
    default: v = ((BigInt(rnd()) << 32n) | BigInt(m)) >> BigInt((r >>> 8) % 64); break;
  }
  return (r >>> 3) & 1 ? -v & M64 : v;
}
function near32(a: number): number {
  const r = rnd();
  switch (r & 3) {
    case 0: return (a ^ ((r >>> 31) << 31) ^ ((r >>> 8) % 8)) >>> 0;
    case 1: return (((a & 0xff800000) | (rnd() & 0x7fffff)) ^ ((r >>> 31) << 31)) >>> 0;
    default: return gen32();
  }
}
function near64(a: bigint): bigint {
  const r = rnd();
  switch (r & 3) {
    case 0: return a ^ (BigInt(r >>> 31) << 63n) ^ BigInt((r >>> 8) % 8);
    case 1: return ((a & 0xfff0000000000000n) | (rnd64() & 0xfffffffffffffn)) ^ (BigInt(r >>> 31) << 63n);
    default: return gen64();
  }
}

// ---- RISC-V register semantics over softfloat ----
const lo = (v: bigint): number => Number(v & 0xffffffffn) | 0;
const hi = (v: bigint): number => Number((v >> 32n) & 0xffffffffn) | 0;
const out64 = (): bigint => (BigInt(S.out[1]! >>> 0) << 32n) | BigInt(S.out[0]! >>> 0);
// F chapter, NaN boxing: an improperly boxed operand reads as the canonical NaN.
const unbox = (v: bigint): number => ((v >> 32n) === 0xffffffffn ? lo(v) : 0x7fc00000);
const box = (b: number): bigint => 0xffffffff00000000n | BigInt(b >>> 0);
const sx32 = (b: number): bigint => BigInt(b | 0) & M64;
const x64 = (): bigint => out64();

type Sem = (a: bigint, b: bigint, c: bigint, rm: number) => bigint;
const s2 = (f: (a: number, b: number, rm: number) => number): Sem => (a, b, _c, rm) => box(f(unbox(a), unbox(b), rm));
const d2 = (f: (al: number, ah: number, bl: number, bh: number, rm: number) => void): Sem => (a, b, _c, rm) => (f(lo(a), hi(a), lo(b), hi(b), rm), out64());
const sfma = (np: boolean, nc: boolean): Sem => (a, b, c, rm) => box(S.f32_fma(unbox(a), unbox(b), unbox(c), rm, np, nc));
const dfma = (np: boolean, nc: boolean): Sem => (a, b, c, rm) => (S.f64_fma(lo(a), hi(a), lo(b), hi(b), lo(c), hi(c), rm, np, nc), out64());
const SIGN = 0x80000000;
export const semantics: Record<string, Sem> = {
  'fadd.s': s2(S.f32_add), 'fsub.s': s2(S.f32_sub), 'fmul.s': s2(S.f32_mul), 'fdiv.s': s2(S.f32_div),
  'fsqrt.s': (a, _b, _c, rm) => box(S.f32_sqrt(unbox(a), rm)),
  'fmadd.s': sfma(false, false), 'fmsub.s': sfma(false, true), 'fnmsub.s': sfma(true, false), 'fnmadd.s': sfma(true, true),
  'fcvt.w.s': (a, _b, _c, rm) => sx32(S.f32_to_i32(unbox(a), rm)),
  'fcvt.wu.s': (a, _b, _c, rm) => sx32(S.f32_to_u32(unbox(a), rm)),
  'fcvt.l.s': (a, _b, _c, rm) => (S.f32_to_i64(unbox(a), rm), x64()),
  'fcvt.lu.s': (a, _b, _c, rm) => (S.f32_to_u64(unbox(a), rm), x64()),
  'fcvt.s.w': (a, _b, _c, rm) => box(S.i32_to_f32(lo(a), rm)),
  'fcvt.s.wu': (a, _b, _c, rm) => box(S.u32_to_f32(lo(a), rm)),
  'fcvt.s.l': (a, _b, _c, rm) => box(S.i64_to_f32(lo(a), hi(a), rm)),
  'fcvt.s.lu': (a, _b, _c, rm) => box(S.u64_to_f32(lo(a), hi(a), rm)),
  'fcvt.s.d': (a, _b, _c, rm) => box(S.f64_to_f32(lo(a), hi(a), rm)),
  'fadd.d': d2((al, ah, bl, bh, rm) => S.f64_add(al, ah, bl, bh, rm, false)),
  'fsub.d': d2((al, ah, bl, bh, rm) => S.f64_add(al, ah, bl, bh, rm, true)),
  'fmul.d': d2(S.f64_mul), 'fdiv.d': d2(S.f64_div),
  'fsqrt.d': (a, _b, _c, rm) => (S.f64_sqrt(lo(a), hi(a), rm), out64()),
  'fmadd.d': dfma(false, false), 'fmsub.d': dfma(false, true), 'fnmsub.d': dfma(true, false), 'fnmadd.d': dfma(true, true),
  'fcvt.w.d': (a, _b, _c, rm) => sx32(S.f64_to_i32(lo(a), hi(a), rm)),
  'fcvt.wu.d': (a, _b, _c, rm) => sx32(S.f64_to_u32(lo(a), hi(a), rm)),
  'fcvt.l.d': (a, _b, _c, rm) => (S.f64_to_i64(lo(a), hi(a), rm), x64()),
  'fcvt.lu.d': (a, _b, _c, rm) => (S.f64_to_u64(lo(a), hi(a), rm), x64()),
  'fcvt.d.l': (a, _b, _c, rm) => (S.i64_to_f64(lo(a), hi(a), rm), out64()),
  'fcvt.d.lu': (a, _b, _c, rm) => (S.u64_to_f64(lo(a), hi(a), rm), out64()),
  'fmin.s': (a, b) => box(S.f32_minmax(unbox(a), unbox(b), false)),
  'fmax.s': (a, b) => box(S.f32_minmax(unbox(a), unbox(b), true)),
  'feq.s': (a, b) => BigInt(S.f32_eq(unbox(a), unbox(b))),
  'flt.s': (a, b) => BigInt(S.f32_lt(unbox(a), unbox(b))),
  'fle.s': (a, b) => BigInt(S.f32_le(unbox(a), unbox(b))),
  'fclass.s': (a) => BigInt(S.f32_class(unbox(a))),
  'fsgnj.s': (a, b) => box((unbox(a) & ~SIGN) | (unbox(b) & SIGN)),
  'fsgnjn.s': (a, b) => box((unbox(a) & ~SIGN) | (~unbox(b) & SIGN)),
  'fsgnjx.s': (a, b) => box(unbox(a) ^ (unbox(b) & SIGN)),
  'fmv.x.w': (a) => sx32(lo(a)),
  'fmv.w.x': (a) => box(lo(a)),
  'fcvt.d.s': (a) => (S.f32_to_f64(unbox(a)), out64()),
  'fmin.d': (a, b) => (S.f64_minmax(lo(a), hi(a), lo(b), hi(b), false), out64()),
  'fmax.d': (a, b) => (S.f64_minmax(lo(a), hi(a), lo(b), hi(b), true), out64()),
  'feq.d': (a, b) => BigInt(S.f64_eq(lo(a), hi(a), lo(b), hi(b))),
  'flt.d': (a, b) => BigInt(S.f64_lt(lo(a), hi(a), lo(b), hi(b))),
  'fle.d': (a, b) => BigInt(S.f64_le(lo(a), hi(a), lo(b), hi(b))),
  'fclass.d': (a) => BigInt(S.f64_class(lo(a), hi(a))),
  'fsgnj.d': (a, b) => (a & ~(1n << 63n)) | (b & (1n << 63n)),
  'fsgnjn.d': (a, b) => (a & ~(1n << 63n)) | (~b & (1n << 63n)),
  'fsgnjx.d': (a, b) => a ^ (b & (1n << 63n)),
  'fmv.x.d': (a) => a,
  'fmv.d.x': (a) => a,
  'fcvt.d.w': (a) => (S.i32_to_f64(lo(a)), out64()),
  'fcvt.d.wu': (a) => (S.u32_to_f64(lo(a)), out64()),
};

// Operand kinds, as in the guest's table.
export const kinds: Record<string, string> = {};
for (const n of ['fadd.s', 'fsub.s', 'fmul.s', 'fdiv.s', 'fmin.s', 'fmax.s', 'feq.s', 'flt.s', 'fle.s', 'fsgnj.s', 'fsgnjn.s', 'fsgnjx.s']) kinds[n] = 'SS-';
for (const n of ['fadd.d', 'fsub.d', 'fmul.d', 'fdiv.d', 'fmin.d', 'fmax.d', 'feq.d', 'flt.d', 'fle.d', 'fsgnj.d', 'fsgnjn.d', 'fsgnjx.d']) kinds[n] = 'DD-';
for (const n of ['fsqrt.s', 'fcvt.w.s', 'fcvt.wu.s', 'fcvt.l.s', 'fcvt.lu.s', 'fclass.s', 'fmv.x.w', 'fcvt.d.s']) kinds[n] = 'S--';
for (const n of ['fsqrt.d', 'fcvt.w.d', 'fcvt.wu.d', 'fcvt.l.d', 'fcvt.lu.d', 'fclass.d', 'fmv.x.d', 'fcvt.s.d']) kinds[n] = 'D--';
for (const n of ['fcvt.s.w', 'fcvt.s.wu', 'fcvt.s.l', 'fcvt.s.lu', 'fcvt.d.l', 'fcvt.d.lu', 'fmv.w.x', 'fmv.d.x', 'fcvt.d.w', 'fcvt.d.wu']) kinds[n] = 'X--';
for (const n of ['fmadd.s', 'fmsub.s', 'fnmsub.s', 'fnmadd.s']) kinds[n] = 'SSS';
for (const n of ['fmadd.d', 'fmsub.d', 'fnmsub.d', 'fnmadd.d']) kinds[n] = 'DDD';

function mix(h: number, v: number): number {
  h = Math.imul(h ^ v, 2654435761);
  return ((h << 5) | (h >>> 27)) >>> 0;
}
const RMS = ['rne', 'rtz', 'rdn', 'rup', 'rmm', 'dyn'];

/** Checksum of one line "<index> <name> <rm>" of the guest's output, computed by the model. */
export function modelChecksum(index: number, name: string, rmName: string, ncases: number): string {
  const sem = semantics[name];
  const k = kinds[name];
  if (!sem || !k) throw new Error(`fprand model: unknown operation ${name}`);
  const rm = rmName === '-' ? 0 : RMS.indexOf(rmName);
  if (rm < 0) throw new Error(`fprand model: bad rounding mode ${rmName}`);
  lcg = 0x9e3779b97f4a7c15n ^ BigInt((index << 8) | rm);
  let h = 0x811c9dc5;
  for (let n = 0; n < ncases; n++) {
    const inp: bigint[] = [0n, 0n, 0n];
    let firstS = 0;
    let firstD = 0n;
    for (let j = 0; j < 3; j++) {
      switch (k[j]) {
        case 'S': { const v = j === 1 ? near32(firstS) : gen32(); if (j === 0) firstS = v; inp[j] = box32(v); break; }
        case 'D': { const v = j === 1 ? near64(firstD) : gen64(); if (j === 0) firstD = v; inp[j] = v; break; }
        case 'X': inp[j] = genx(); break;
        default: inp[j] = 0n;
      }
    }
    if (k[2] !== '-' && (rnd() & 3) === 0) {
      const p = BigInt(rnd() & 3);
      fx.flags = 0;
      if (k[2] === 'S') inp[2] = box(S.f32_mul(unbox(inp[0]!), unbox(inp[1]!), 0)) ^ 0x80000000n ^ p;
      else { S.f64_mul(lo(inp[0]!), hi(inp[0]!), lo(inp[1]!), hi(inp[1]!), 0); inp[2] = out64() ^ 0x8000000000000000n ^ p; }
    }
    fx.flags = 0;
    // 'dyn': the guest sets frm = n mod 5 before each case and uses rm = 7.
    const r = sem(inp[0]!, inp[1]!, inp[2]!, rm === 5 ? n % 5 : rm) & M64;
    h = mix(mix(mix(h, Number(r & 0xffffffffn)), Number(r >> 32n)), fx.flags);
  }
  return h.toString(16).padStart(8, '0');
}

/** Recomputes every checksum line of a guest output; returns the lines the model produces. */
export function modelOutput(guestOutput: string): string[] {
  const lines = guestOutput.split('\n');
  const m = /^fprand v1 cases=(\d+)/.exec(lines[0] ?? '');
  if (!m) throw new Error('fprand model: no header line');
  const ncases = Number(m[1]);
  const res: string[] = [];
  for (const line of lines) {
    const f = line.trim().split(' ');
    if (f.length !== 4 || !/^\d+$/.test(f[0]!)) continue;
    res.push(`${f[0]} ${f[1]} ${f[2]} ${modelChecksum(Number(f[0]), f[1]!, f[2]!, ncases)}`);
  }
  return res;
}
