// Loop translator: hot single-block loops compiled into JavaScript functions.
//
// The interpreter (hart.ts) counts how often each backward-branch target of a RAM page is reached;
// at HOT_THRESHOLD it asks compileLoop() to translate the straight-line code from that target up to
// the first control transfer. If that transfer is a conditional branch back to the target (a
// single-block loop: checksums, copies, scans, partition loops, ...), the loop becomes one JS
// function that runs whole iterations without fetch, decode or dispatch; anything else stays with
// the interpreter. Only loops are translated because a call into translated code pays off only
// when it runs many instructions: V8 does not optimize code that runs a few thousand times, and
// an operating system's warm, branchy code is better served by the interpreter.
//
// The generated code is the interpreter's semantics with the decoded fields as constants (same
// expressions as in hart.ts) and the same soft-TLB fast paths for loads and stores, falling back
// to the hart's slow paths (which take traps).
//
// Contract: fn(h, pc0, budget, xl, xh, rTag, rTagH, rView, rOff, wTag, wTagH, wView, wOff, wPa, resv),
// pc0 = virtual address of the loop head (loops are keyed by physical address; everything
// pc-relative is computed from pc0). It runs whole iterations while at most `budget` instructions
// retire, returns how many retired and leaves the next pc in h.pc; when an instruction traps,
// h.jitTrap is set and h.pc is already the trap vector.
// Validity: loops belong to a physical page; the hart drops a page's loops when it stores into
// bytes they were compiled from (code pages are never writable in the soft TLB) and drops all of
// them on FENCE.I (Zifencei: other harts' and devices' writes to code become visible through it).
import * as alu from './alu.js';
import { CEXP } from './compressed.js';

export const HOT_THRESHOLD = 256;
const MAX_BLOCK = 48;

export type BlockFn = (...args: unknown[]) => number;
const FN_CACHE_MAX = 10_000;
const fnCache = new Map<string, BlockFn>();
export interface CompiledBlock { readonly fn: BlockFn; readonly len: number }

const ARGS = ['h', 'pc0', 'budget', 'xl', 'xh', 'rTag', 'rTagH', 'rView', 'rOff', 'wTag', 'wTagH', 'wView', 'wOff', 'wPa', 'resv'];

/** Code for one instruction, or null when the interpreter must execute it (block ends before it).
 *  `k` = instructions retired before this one in the block; `off` = its byte offset from pc0. */
function gen(insn: number, off: number, ilen: number, k: number): { code: string; end: boolean; target?: number } | null {
  const rd = (insn >>> 7) & 31, rs1 = (insn >>> 15) & 31, rs2 = (insn >>> 20) & 31;
  const f3 = (insn >>> 12) & 7;
  const D = rd === 0 ? 32 : rd; // writes to x0 go to the sink register, as in the interpreter
  const here = `pc0 + ${off}`;
  switch (insn & 0x7f) {
    case 0x13: {
      const imm = insn >> 20, ih = imm >> 31;
      let c: string;
      switch (f3) {
        case 0: c = `const l = (al + ${imm}) | 0; xh[${D}] = (ah + ${ih} + ((l >>> 0) < (al >>> 0) ? 1 : 0)) | 0; xl[${D}] = l;`; break;
        case 1: {
          if ((insn >>> 26) !== 0) return null;
          const s = imm & 63;
          c = (s & 32) ? `xh[${D}] = al << ${s & 31}; xl[${D}] = 0;` : s !== 0 ? `xh[${D}] = (ah << ${s}) | (al >>> ${32 - s}); xl[${D}] = al << ${s};` : `xh[${D}] = ah; xl[${D}] = al;`;
          break;
        }
        case 2: c = `xl[${D}] = (ah < ${ih} || (ah === ${ih} && (al >>> 0) < ${imm >>> 0})) ? 1 : 0; xh[${D}] = 0;`; break;
        case 3: c = `xl[${D}] = ((ah >>> 0) < ${ih >>> 0} || (ah === ${ih} && (al >>> 0) < ${imm >>> 0})) ? 1 : 0; xh[${D}] = 0;`; break;
        case 4: c = `xl[${D}] = al ^ ${imm}; xh[${D}] = ah ^ ${ih};`; break;
        case 5: {
          const top = insn >>> 26, s = imm & 63;
          if (top === 0) c = (s & 32) ? `xl[${D}] = ah >>> ${s & 31}; xh[${D}] = 0;` : s !== 0 ? `xl[${D}] = (al >>> ${s}) | (ah << ${32 - s}); xh[${D}] = ah >>> ${s};` : `xl[${D}] = al; xh[${D}] = ah;`;
          else if (top === 0x10) c = (s & 32) ? `xl[${D}] = ah >> ${s & 31}; xh[${D}] = ah >> 31;` : s !== 0 ? `xl[${D}] = (al >>> ${s}) | (ah << ${32 - s}); xh[${D}] = ah >> ${s};` : `xl[${D}] = al; xh[${D}] = ah;`;
          else return null;
          break;
        }
        case 6: c = `xl[${D}] = al | ${imm}; xh[${D}] = ah | ${ih};`; break;
        default: c = `xl[${D}] = al & ${imm}; xh[${D}] = ah & ${ih};`; break;
      }
      return { code: `{ const al = xl[${rs1}], ah = xh[${rs1}]; ${c} }`, end: false };
    }
    case 0x33: {
      const f7 = insn >>> 25;
      let c: string;
      if (f7 === 0) {
        switch (f3) {
          case 0: c = `const l = (al + bl) | 0; xh[${D}] = (ah + bh + ((l >>> 0) < (al >>> 0) ? 1 : 0)) | 0; xl[${D}] = l;`; break;
          case 1: c = `const s = bl & 63; if (s & 32) { xh[${D}] = al << (s & 31); xl[${D}] = 0; } else if (s !== 0) { xh[${D}] = (ah << s) | (al >>> (32 - s)); xl[${D}] = al << s; } else { xh[${D}] = ah; xl[${D}] = al; }`; break;
          case 2: c = `xl[${D}] = (ah < bh || (ah === bh && (al >>> 0) < (bl >>> 0))) ? 1 : 0; xh[${D}] = 0;`; break;
          case 3: c = `xl[${D}] = ((ah >>> 0) < (bh >>> 0) || (ah === bh && (al >>> 0) < (bl >>> 0))) ? 1 : 0; xh[${D}] = 0;`; break;
          case 4: c = `xl[${D}] = al ^ bl; xh[${D}] = ah ^ bh;`; break;
          case 5: c = `const s = bl & 63; if (s & 32) { xl[${D}] = ah >>> (s & 31); xh[${D}] = 0; } else if (s !== 0) { xl[${D}] = (al >>> s) | (ah << (32 - s)); xh[${D}] = ah >>> s; } else { xl[${D}] = al; xh[${D}] = ah; }`; break;
          case 6: c = `xl[${D}] = al | bl; xh[${D}] = ah | bh;`; break;
          default: c = `xl[${D}] = al & bl; xh[${D}] = ah & bh;`; break;
        }
      } else if (f7 === 0x20 && f3 === 0) {
        c = `const l = (al - bl) | 0; xh[${D}] = (ah - bh - ((al >>> 0) < (bl >>> 0) ? 1 : 0)) | 0; xl[${D}] = l;`;
      } else if (f7 === 0x20 && f3 === 5) {
        c = `const s = bl & 63; if (s & 32) { xl[${D}] = ah >> (s & 31); xh[${D}] = ah >> 31; } else if (s !== 0) { xl[${D}] = (al >>> s) | (ah << (32 - s)); xh[${D}] = ah >> s; } else { xl[${D}] = al; xh[${D}] = ah; }`;
      } else if (f7 === 1) {
        const fn = ['mul64(al, ah, bl, bh)', 'mulh64(al, ah, bl, bh)', 'mulhsu64(al, ah, bl, bh)', 'mulhu64(al, ah, bl, bh)',
          'div64(al, ah, bl, bh, false)', 'divu64(al, ah, bl, bh, false)', 'div64(al, ah, bl, bh, true)', 'divu64(al, ah, bl, bh, true)'][f3];
        c = `${fn}; xl[${D}] = res[0]; xh[${D}] = res[1];`;
      } else return null;
      return { code: `{ const al = xl[${rs1}], ah = xh[${rs1}], bl = xl[${rs2}], bh = xh[${rs2}]; ${c} }`, end: false };
    }
    case 0x3b: {
      const f7 = insn >>> 25;
      let e: string;
      if (f7 === 0 && f3 === 0) e = '(a + b) | 0';
      else if (f7 === 0 && f3 === 1) e = 'a << (b & 31)';
      else if (f7 === 0 && f3 === 5) e = '(a >>> (b & 31)) | 0';
      else if (f7 === 0x20 && f3 === 0) e = '(a - b) | 0';
      else if (f7 === 0x20 && f3 === 5) e = 'a >> (b & 31)';
      else if (f7 === 1 && f3 === 0) e = 'Math.imul(a, b)';
      else if (f7 === 1 && f3 >= 4) e = `div32(a, b, ${f3 >= 6}, ${(f3 & 1) === 1}) | 0`;
      else return null;
      return { code: `{ const a = xl[${rs1}], b = xl[${rs2}]; const v = ${e}; xl[${D}] = v; xh[${D}] = v >> 31; }`, end: false };
    }
    case 0x1b: {
      let e: string;
      const f7 = insn >>> 25;
      if (f3 === 0) e = `(a + ${insn >> 20}) | 0`;
      else if (f3 === 1 && f7 === 0) e = `a << ${rs2}`;
      else if (f3 === 5 && f7 === 0) e = `(a >>> ${rs2}) | 0`;
      else if (f3 === 5 && f7 === 0x20) e = `a >> ${rs2}`;
      else return null;
      return { code: `{ const a = xl[${rs1}]; const v = ${e}; xl[${D}] = v; xh[${D}] = v >> 31; }`, end: false };
    }
    case 0x37: {
      const v = insn & 0xfffff000;
      return { code: `xl[${D}] = ${v}; xh[${D}] = ${v >> 31};`, end: false };
    }
    case 0x17:
      return { code: `{ const v = ${here} + ${insn & 0xfffff000}; xl[${D}] = v | 0; xh[${D}] = Math.floor(v / 4294967296) | 0; }`, end: false };
    case 0x03: {
      if (f3 === 7) return null;
      const imm = insn >> 20;
      const rd32 = [
        `const v = dv.getInt8(a); xl[${D}] = v; xh[${D}] = v >> 31;`,
        `const v = dv.getInt16(a, true); xl[${D}] = v; xh[${D}] = v >> 31;`,
        `const v = dv.getInt32(a, true); xl[${D}] = v; xh[${D}] = v >> 31;`,
        `xl[${D}] = dv.getInt32(a, true); xh[${D}] = dv.getInt32(a + 4, true);`,
        `xl[${D}] = dv.getUint8(a); xh[${D}] = 0;`,
        `xl[${D}] = dv.getUint16(a, true); xh[${D}] = 0;`,
        `xl[${D}] = dv.getInt32(a, true); xh[${D}] = 0;`,
      ][f3];
      return {
        code: `{ const bl = xl[${rs1}]; const lo = (bl + ${imm}) | 0; const hi = (xh[${rs1}] + ${imm >> 31} + ((lo >>> 0) < (bl >>> 0) ? 1 : 0)) | 0;
  const e = (lo >>> 12) & 255, po = lo & 4095;
  if (rTag[e] === (lo & -4096) && rTagH[e] === hi && po <= 4088) { const dv = rView[e], a = rOff[e] + po; ${rd32} }
  else { h.pc = ${here}; if (!h.loadSlow(lo, hi, ${f3})) { h.jitTrap = true; return n + ${k}; } xl[${D}] = h.memLo; xh[${D}] = h.memHi; } }`,
        end: false,
      };
    }
    case 0x23: {
      if (f3 >= 4) return null;
      const imm = ((insn >> 25) << 5) | ((insn >>> 7) & 31);
      const st = [
        `dv.setInt8(a, xl[${rs2}]);`,
        `dv.setInt16(a, xl[${rs2}], true);`,
        `dv.setInt32(a, xl[${rs2}], true);`,
        `dv.setInt32(a, xl[${rs2}], true); dv.setInt32(a + 4, xh[${rs2}], true);`,
      ][f3];
      return {
        code: `{ const bl = xl[${rs1}]; const lo = (bl + ${imm}) | 0; const hi = (xh[${rs1}] + ${imm >> 31} + ((lo >>> 0) < (bl >>> 0) ? 1 : 0)) | 0;
  const e = (lo >>> 12) & 255, po = lo & 4095;
  if (wTag[e] === (lo & -4096) && wTagH[e] === hi && po <= 4088) { const dv = wView[e], a = wOff[e] + po; ${st} if (resv.active !== 0) resv.storeBy(h.hartId, wPa[e] + po, ${1 << f3}); }
  else { h.pc = ${here}; if (!h.storeSlow(lo, hi, ${f3}, xl[${rs2}], xh[${rs2}])) { h.jitTrap = true; return n + ${k}; } if (h.codeDirty || h.linesChanged) { h.codeDirty = false; h.pc = ${here} + ${ilen}; return n + ${k + 1}; } } }`,
        end: false,
      };
    }
    case 0x63: {
      let cond: string;
      switch (f3) {
        case 0: cond = 'al === bl && ah === bh'; break;
        case 1: cond = 'al !== bl || ah !== bh'; break;
        case 4: cond = 'ah < bh || (ah === bh && (al >>> 0) < (bl >>> 0))'; break;
        case 5: cond = '!(ah < bh || (ah === bh && (al >>> 0) < (bl >>> 0)))'; break;
        case 6: cond = '(ah >>> 0) < (bh >>> 0) || (ah === bh && (al >>> 0) < (bl >>> 0))'; break;
        case 7: cond = '!((ah >>> 0) < (bh >>> 0) || (ah === bh && (al >>> 0) < (bl >>> 0)))'; break;
        default: return null;
      }
      const imm = ((insn >> 31) << 12) | (((insn >>> 7) & 1) << 11) | (((insn >>> 25) & 63) << 5) | (((insn >>> 8) & 15) << 1);
      // Only a branch back to the loop head is translated (the caller checks the target).
      return {
        code: `{ const al = xl[${rs1}], ah = xh[${rs1}], bl = xl[${rs2}], bh = xh[${rs2}];
  if (${cond}) { n += ${k + 1}; if (n + ${k + 1} > budget) { h.pc = pc0; return n; } continue; }
  h.pc = pc0 + ${off + ilen}; return n + ${k + 1}; }`,
        end: true,
        target: off + imm,
      };
    }
    case 0x0f:
      return f3 === 0 ? { code: '', end: false } : null; // FENCE: nothing to order here; FENCE.I goes to the interpreter
    default:
      return null;
  }
}

/** Compiles the loop whose head is at byte offset `off` of a page whose halfwords start at index
 *  `base` of `view`; null = the code there is not a translatable single-block loop. */
export function compileLoop(view: Uint16Array, base: number, off: number): CompiledBlock | null {
  const parts: string[] = [];
  let o = off, k = 0, loops = false;
  while (k < MAX_BLOCK && o <= 4094) {
    let insn = view[base + (o >> 1)];
    let ilen = 2;
    if ((insn & 3) === 3) {
      if (o > 4092) break;
      insn |= view[base + (o >> 1) + 1] << 16;
      ilen = 4;
    } else {
      insn = CEXP[insn];
      if (insn === 0) break;
    }
    const g = gen(insn, o - off, ilen, k);
    if (g === null) break;
    parts.push(g.code);
    k++;
    o += ilen;
    if (g.end) { loops = g.target === 0; break; }
  }
  if (!loops) return null;
  const body = parts.join('\n');
  // Identical loops (the same instructions at any address: everything is relative to pc0) share
  // one function, so a loop dropped by FENCE.I and compiled again keeps V8's optimized code.
  let fn = fnCache.get(body);
  if (fn === undefined) {
    const src = `"use strict"; const { res, mul64, mulh64, mulhsu64, mulhu64, div64, divu64, div32 } = alu;
return function loop(${ARGS.join(', ')}) {
let n = 0;
for (;;) {
${body}
}
};`;
    fn = new Function('alu', src)(alu) as BlockFn;
    if (fnCache.size >= FN_CACHE_MAX) fnCache.clear();
    fnCache.set(body, fn);
  }
  return { fn, len: k };
}
