// Translator: hot guest code of one RAM page compiled into JavaScript functions.
//
// The interpreter (hart.ts) counts how often loop heads (backward-branch targets) and jump/call
// targets of a page are reached. Two tiers:
//  1. at HOT_THRESHOLD, a single-block loop (straight-line code ending in a branch back to its head:
//     checksums, copies, scans) becomes a small function that runs whole iterations;
//  2. at REGION_THRESHOLD instructions interpreted on a head's behalf (those run since the previous
//     head or jump target was reached, counted per window of REGION_WINDOW), a region: all the
//     translatable code of the page reachable from the head through fall-through, branches (both
//     ways) and jumps, plus the return points of calls, compiled as `for (;;) switch (pc) {...}`
//     over its blocks. Branches, jumps and returns (JALR) to a block of the region dispatch inside
//     the function; anything else leaves it with h.pc set. Calls are not followed: the callee gets
//     its own region, and the hart chains regions of a page without interpreting in between.
// Translating is expensive (V8 parses and optimizes each function: ~10-20 ms for a region), so
// only code that stays hot is translated; an OS boot's warm code stays with the interpreter.
// The WebAssembly tier (wasm/translate.ts, issue 16) takes warm code instead: a loop head, jump target or page entry reached 8192 times (hart.ts,
// WASM_HOT) becomes a wasm region (the same discovery as the regions here, the same contract and
// validity rules), made in 0.1-0.3 ms and compiled by V8's baseline compiler, so tier 1 below is
// not made; regions here are still made where a head's count reaches REGION_THRESHOLD on
// interpreted instructions (code the wasm tier did not take). Measured (Node 24, load 2-3.6,
// `npm run bench -- --only bare,boot,programs`, same run with VMCTL_WASM_TIER=0; docs/guest-ram.md
// (e)): geometric mean of the vmctl/QEMU ratios 5.92 -> 4.44, the busybox programs 1.2-3.5x
// faster (86% of their instructions translated instead of 39-40%), the 1-hart boot as fast,
// mke2fs 5-25% slower.
//
// The generated code is the interpreter's semantics with the decoded fields as constants (same
// expressions as in hart.ts, 64-bit compares and shifts without short-circuit), the same soft-TLB
// fast paths for loads and stores, and F/D through the FP unit's execFp, as the interpreter calls
// it. A load or store that misses the soft TLB leaves the function before itself: the interpreter
// runs the slow path (which may trap). SYSTEM, AMO, FENCE.I and reserved encodings end a region
// before them.
// V8 optimizes a function with the type feedback of what it has run, and throws the optimized code
// away when it first runs an operation without feedback (then runs it unoptimized, 5-15 times
// slower, until it has compiled it again: 10-200 ms for a region). So translated code holds no
// path that is first taken late: a region takes in only blocks the interpreter has run (the hart's
// `seen` marks), there are no slow paths, every exit only sets constants and breaks to one exit
// sequence, and the budget is checked in one place. Measured (Linux boot to its userspace marker,
// 1 hart, CPU time): 21 deoptimizations of regions -> 5, 4.3-4.8 s -> 1.9 s.
//
// Contract: fn(h, pc0, pc, budget, xl, xh, r, w, resv) (r, w: the hart's read and write soft TLBs),
// pc0 = virtual address of the page (everything pc-relative is computed from it), pc = the byte
// offset to start at (a block of the region). It retires at most `budget` instructions: the
// caller enters only when budget >= size, and every dispatch (taken branch, jump, return) leaves
// when fewer than `size` remain, since code that only falls through retires at most `size`
// before the next dispatch. It returns how many retired and leaves the next pc in h.pc (0 retired:
// it left before its first instruction, which the interpreter must run); when an F/D instruction
// traps, h.jitTrap is set and h.pc is already the trap vector. n (retired) is kept up to date at
// block ends; an exit in the middle of a block adds the instructions before it.
// Validity: translations belong to a physical page; the hart drops a page's translations when it
// stores into bytes they were compiled from (code pages are never writable in the soft TLB, so
// translated code leaves before such a store; an F/D store through execFp ends the running
// function after it) and drops all of them on FENCE.I (Zifencei: other harts' and devices' writes
// to code become visible through it).
import * as alu from './alu.js';
import { CEXP } from './compressed.js';
import { execFp } from './fp/execute.js';
import { D32, D64, FENCE_CELL } from '../memory/ram.js';
import type { WasmFn } from './wasm/translate.js';

export const HOT_THRESHOLD = 256;
/** A first-tier translation (a loop with a straight-line body) is made when a loop head or call
 *  target has been reached HOT_THRESHOLD times. A full region is made for a head (or first-tier
 *  loop) once the instructions interpreted on its behalf reach REGION_THRESHOLD within one window
 *  of REGION_WINDOW instructions: each time a head is reached, it is credited with the instructions
 *  interpreted since the previous head or jump target was reached (or translated code was left),
 *  which is what a region there would have run instead. So a head needs 1/16 of a window's
 *  instructions, sustained: a long loop body reached a few thousand times counts as much as a
 *  short one reached often. The threshold is high because a region costs V8 10-20 ms of
 *  optimizing compilation and, until that is done, runs 4-15 times slower than the interpreter:
 *  it pays off only for code that stays hot for millions of instructions (compute loops), not for
 *  the warm code of an OS boot.
 *  Measured (Node 24, `npm run bench -- --only bare,boot,programs`, vmctl CPU time, against
 *  counting entries, 49152 per window): the busybox programs 2-14% faster, md5sum 2.3x (whose
 *  long loop body was reached too rarely to count), 28% -> 40% of their instructions translated;
 *  the boots and bare-metal guests no slower. Counting entries instead, lower thresholds (16384,
 *  8192) also translate md5sum but make the 1-hart boot 10-20% slower; HOT_THRESHOLD 64 and
 *  MAX_REGION 256 gained nothing. */
export const REGION_THRESHOLD = 262144;
/** Second-tier counts are cleared every REGION_WINDOW instructions retired (per hart). */
export const REGION_WINDOW = 1 << 22;
/** Instructions per region at most (the budget check at dispatch points uses it as its margin).
 *  V8's optimizing compile time grows faster than a region's size (10-20 ms at 64 instructions,
 *  40-200 ms at 256 on a loaded 2-core machine, during which the region runs unoptimized).
 *  Measured (CPU time): Linux boot 1.9 s at 128 and 64, 2.8-3.3 s at 256; the bare-metal guests
 *  the same at 128 and 256, bench 35% slower at 64. */
const MAX_REGION = 128;
const MAX_LOOP = 48;

export type BlockFn = (...args: unknown[]) => number;

/** What a hart's translator did: `npm run bench -- --verbose` prints it, and a VM's log gets it
 *  when the VM stops. Counted at compile time and per entry into translated code, never per
 *  instruction. */
export class JitStats {
  /** First-tier translations (single-block loops). */
  loops = 0;
  /** Full regions. */
  regions = 0;
  /** Time spent generating and compiling translations (ms; V8's later optimization not included). */
  compileMs = 0;
  /** Instructions retired inside translated code (both tiers). */
  translatedInsns = 0;
  /** The WebAssembly tier (wasm/translate.ts): regions, their module bytes, time to make them
   *  (emitting, WebAssembly.Module, Instance; Liftoff compiles lazily at the first call), the
   *  instructions they retired, and how often the RAM access module was made again. */
  wasmRegions = 0;
  wasmBytes = 0;
  wasmMs = 0;
  wasmInsns = 0;
  /** Calls of wasm regions by how they ended (wasm/translate.ts EXIT_*): a trap in a load or
   *  store, a JALR, a jump out of the region, the budget, a store the interpreter must look at,
   *  an F/D load or store with the FP unit off. */
  readonly wasmExits = [0, 0, 0, 0, 0, 0];
  wasmResets = 0;
  /** Loads and stores of wasm regions that took the hart's slow path (soft-TLB miss, a chunk
   *  not in the access module yet, MMIO, a page with translated code, misaligned). */
  wasmSlow = 0;
  /** Calls from a wasm region straight into the next one (its chain cache: wasm/translate.ts). */
  wasmChains = 0;
  /** F/D instructions wasm regions ran through the hart's fp import (wasm/translate.ts FP_CALL*). */
  wasmFp = 0;
  /** Instructions of wasm regions the hart ran for them (AMO, LR, SC: wasm/translate.ts). */
  wasmHartExec = 0;
  /** Wasm regions that came from the translation cache (wasm/region-cache.ts: instantiated, not
   *  made; counted in wasmRegions too), and lookups there that found nothing usable. */
  wasmCached = 0;
  wasmCacheMisses = 0;

  add(o: JitStats): void {
    this.loops += o.loops; this.regions += o.regions; this.compileMs += o.compileMs; this.translatedInsns += o.translatedInsns;
    this.wasmRegions += o.wasmRegions; this.wasmBytes += o.wasmBytes; this.wasmMs += o.wasmMs; this.wasmInsns += o.wasmInsns;
    for (let i = 0; i < this.wasmExits.length; i++) this.wasmExits[i] += o.wasmExits[i];
    this.wasmResets += o.wasmResets; this.wasmSlow += o.wasmSlow; this.wasmChains += o.wasmChains; this.wasmFp += o.wasmFp; this.wasmHartExec += o.wasmHartExec;
    this.wasmCached += o.wasmCached; this.wasmCacheMisses += o.wasmCacheMisses;
  }

  /** Its figures into `a` from index `o` (JIT_FIGURES numbers): a hart thread publishes them so
   *  (src/board/hart-control.ts), and the machine's thread adds them up with addFrom. */
  writeTo(a: Float64Array, o: number): void {
    a[o] = this.loops; a[o + 1] = this.regions; a[o + 2] = this.compileMs; a[o + 3] = this.translatedInsns;
    a[o + 4] = this.wasmRegions; a[o + 5] = this.wasmBytes; a[o + 6] = this.wasmMs; a[o + 7] = this.wasmInsns;
    a[o + 8] = this.wasmResets; a[o + 9] = this.wasmSlow; a[o + 10] = this.wasmChains; a[o + 11] = this.wasmFp; a[o + 12] = this.wasmHartExec;
    for (let i = 0; i < this.wasmExits.length; i++) a[o + 13 + i] = this.wasmExits[i];
    a[o + 19] = this.wasmCached; a[o + 20] = this.wasmCacheMisses;
  }

  /** Adds figures written by writeTo. */
  addFrom(a: Float64Array, o: number): void {
    this.loops += a[o]; this.regions += a[o + 1]; this.compileMs += a[o + 2]; this.translatedInsns += a[o + 3];
    this.wasmRegions += a[o + 4]; this.wasmBytes += a[o + 5]; this.wasmMs += a[o + 6]; this.wasmInsns += a[o + 7];
    this.wasmResets += a[o + 8]; this.wasmSlow += a[o + 9]; this.wasmChains += a[o + 10]; this.wasmFp += a[o + 11]; this.wasmHartExec += a[o + 12];
    for (let i = 0; i < this.wasmExits.length; i++) this.wasmExits[i] += a[o + 13 + i];
    this.wasmCached += a[o + 19]; this.wasmCacheMisses += a[o + 20];
  }

  /** One line for people: what was translated, what it cost, the share of `instret` it ran. */
  describe(instret: number): string {
    const pct = instret > 0 ? (100 * this.translatedInsns / instret).toFixed(1) : '0.0';
    const wasm = this.wasmRegions === 0 ? '' : `; wasm: ${this.wasmRegions} regions (${(this.wasmBytes / 1024).toFixed(0)} KiB; ${this.wasmCached} from the translation cache, ${this.wasmCacheMisses} lookups there missed) in ` +
      `${this.wasmMs.toFixed(0)} ms, ${instret > 0 ? (100 * this.wasmInsns / instret).toFixed(1) : '0.0'}% of instructions ` +
      `(${(this.wasmInsns / Math.max(1, this.wasmExits.reduce((a, b) => a + b))).toFixed(0)} per call from the hart, ${this.wasmChains} regions entered from another; calls ended by a trap ${this.wasmExits[0]}, ` +
      `JALR ${this.wasmExits[1]}, leaving the region ${this.wasmExits[2]}, budget ${this.wasmExits[3]}, a store ${this.wasmExits[4]}, FP off ${this.wasmExits[5]}), RAM access module made ${this.wasmResets} times, ${this.wasmSlow} slow loads and stores, ${this.wasmFp} F/D operations and ${this.wasmHartExec} AMOs run by the hart`;
    return `${this.loops} loops + ${this.regions} regions translated in ${this.compileMs.toFixed(0)} ms; ` +
      `${pct}% of ${instret} instructions ran translated${wasm}`;
  }
}
/** How many numbers JitStats.writeTo writes. */
export const JIT_FIGURES = 21;
const FN_CACHE_MAX = 10_000;
const fnCache = new Map<string, BlockFn>();
/** A compiled region: `size` instructions; `covered` = (offset, length) pairs of the
 *  instructions it was compiled from; `entries` = offsets it can be entered at. */
export interface CompiledRegion { readonly fn: BlockFn; readonly size: number; readonly covered: number[]; readonly entries: number[] }
/** One entry point of a region (what the hart keeps per halfword of a page). */
export interface RegionEntry {
  readonly fn: BlockFn; readonly size: number; readonly pc: number; readonly full: boolean;
  /** A region of the WebAssembly tier (wasm/translate.ts) instead (fn unused), entered at its
   *  block `idx`; null for jit.ts's regions. */
  readonly wasm: WasmFn | null; readonly idx: number;
  /** Its function's slot in the hart's region table (wasm regions; -1 for others). */
  readonly slot: number;
}

const ARGS = ['h', 'pc0', 'pc', 'budget', 'xl', 'xh', 'r', 'w', 'resv'];

/** What one instruction is to the region builder. `code` runs the instruction in place; control
 *  transfers (br, jal, jalr) are emitted by compileRegion from `cond`/`target`/the fields. */
type Gen =
  | { kind: 'op'; code: string }
  | { kind: 'br'; cond: string; target: number }
  | { kind: 'jal'; rd: number; target: number }
  | { kind: 'jalr'; rd: number; rs1: number; imm: number };

/** a < b for 64-bit values given as high words (ah, bh: already signed or unsigned as the compare
 *  wants) and low words (al, bl: int32), without short-circuit: every operation runs on every
 *  path, so V8 has type feedback for all of them (see exitAt). The high-word difference times
 *  2^32 is exact and, when not 0, at least 2^32 in size, so adding the low-word difference
 *  (less than 2^32 in size) cannot change its sign. */
function lt64(ah: string, bh: string, al: string, bl: string): string {
  return `((${ah} - ${bh}) * 4294967296 + ((${al} >>> 0) - (${bl} >>> 0)) < 0)`;
}

/** Code for one instruction, or null when the interpreter must execute it (the region is left
 *  before it). `k` = instructions retired before this one in its block (n is updated at block
 *  ends); `off` = its byte offset in the page (pc0 = the page's virtual address); `raw` = its bits
 *  as fetched (16-bit for compressed). */
function gen(insn: number, raw: number, off: number, ilen: number, k: number, smp: boolean): Gen | null {
  const rd = (insn >>> 7) & 31, rs1 = (insn >>> 15) & 31, rs2 = (insn >>> 20) & 31;
  const f3 = (insn >>> 12) & 7;
  const D = rd === 0 ? 32 : rd; // writes to x0 go to the sink register, as in the interpreter
  const here = `pc0 + ${off}`;
  const op = (code: string): Gen => ({ kind: 'op', code });
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
        case 2: c = `xl[${D}] = ${lt64('ah', `${ih}`, 'al', `${imm >>> 0}`)} ? 1 : 0; xh[${D}] = 0;`; break;
        case 3: c = `xl[${D}] = ${lt64('(ah >>> 0)', `${ih >>> 0}`, 'al', `${imm >>> 0}`)} ? 1 : 0; xh[${D}] = 0;`; break;
        case 4: c = `xl[${D}] = al ^ ${imm}; xh[${D}] = ah ^ ${ih};`; break;
        case 5: {
          const top = insn >>> 26, s = imm & 63;
          if (top === 0) c = (s & 32) ? `xl[${D}] = (ah >>> ${s & 31}) | 0; xh[${D}] = 0;` : s !== 0 ? `xl[${D}] = (al >>> ${s}) | (ah << ${32 - s}); xh[${D}] = ah >>> ${s};` : `xl[${D}] = al; xh[${D}] = ah;`;
          else if (top === 0x10) c = (s & 32) ? `xl[${D}] = ah >> ${s & 31}; xh[${D}] = ah >> 31;` : s !== 0 ? `xl[${D}] = (al >>> ${s}) | (ah << ${32 - s}); xh[${D}] = ah >> ${s};` : `xl[${D}] = al; xh[${D}] = ah;`;
          else return null;
          break;
        }
        case 6: c = `xl[${D}] = al | ${imm}; xh[${D}] = ah | ${ih};`; break;
        default: c = `xl[${D}] = al & ${imm}; xh[${D}] = ah & ${ih};`; break;
      }
      return op(`{ const al = xl[${rs1}], ah = xh[${rs1}]; ${c} }`);
    }
    case 0x33: {
      const f7 = insn >>> 25;
      let c: string;
      if (f7 === 0) {
        switch (f3) {
          case 0: c = `const l = (al + bl) | 0; xh[${D}] = (ah + bh + ((l >>> 0) < (al >>> 0) ? 1 : 0)) | 0; xl[${D}] = l;`; break;
          case 1: c = `const big = (bl & 32) !== 0, l = al << bl, h = (ah << bl) | ((al >>> 1) >>> (31 - (bl & 31))); xl[${D}] = big ? 0 : l; xh[${D}] = big ? l : h;`; break;
          case 2: c = `xl[${D}] = ${lt64('ah', 'bh', 'al', 'bl')} ? 1 : 0; xh[${D}] = 0;`; break;
          case 3: c = `xl[${D}] = ${lt64('(ah >>> 0)', '(bh >>> 0)', 'al', 'bl')} ? 1 : 0; xh[${D}] = 0;`; break;
          case 4: c = `xl[${D}] = al ^ bl; xh[${D}] = ah ^ bh;`; break;
          case 5: c = `const big = (bl & 32) !== 0, h = (ah >>> bl) | 0, l = (al >>> bl) | ((ah << 1) << (31 - (bl & 31))); xl[${D}] = big ? h : l; xh[${D}] = big ? 0 : h;`; break;
          case 6: c = `xl[${D}] = al | bl; xh[${D}] = ah | bh;`; break;
          default: c = `xl[${D}] = al & bl; xh[${D}] = ah & bh;`; break;
        }
      } else if (f7 === 0x20 && f3 === 0) {
        c = `const l = (al - bl) | 0; xh[${D}] = (ah - bh - ((al >>> 0) < (bl >>> 0) ? 1 : 0)) | 0; xl[${D}] = l;`;
      } else if (f7 === 0x20 && f3 === 5) {
        c = `const big = (bl & 32) !== 0, h = ah >> bl, l = (al >>> bl) | ((ah << 1) << (31 - (bl & 31))), s = ah >> 31; xl[${D}] = big ? h : l; xh[${D}] = big ? s : h;`;
      } else if (f7 === 1) {
        const fn = ['mul64(al, ah, bl, bh)', 'mulh64(al, ah, bl, bh)', 'mulhsu64(al, ah, bl, bh)', 'mulhu64(al, ah, bl, bh)',
          'div64(al, ah, bl, bh, false)', 'divu64(al, ah, bl, bh, false)', 'div64(al, ah, bl, bh, true)', 'divu64(al, ah, bl, bh, true)'][f3];
        c = `${fn}; xl[${D}] = res[0]; xh[${D}] = res[1];`;
      } else return null;
      return op(`{ const al = xl[${rs1}], ah = xh[${rs1}], bl = xl[${rs2}], bh = xh[${rs2}]; ${c} }`);
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
      return op(`{ const a = xl[${rs1}], b = xl[${rs2}]; const v = ${e}; xl[${D}] = v; xh[${D}] = v >> 31; }`);
    }
    case 0x1b: {
      let e: string;
      const f7 = insn >>> 25;
      if (f3 === 0) e = `(a + ${insn >> 20}) | 0`;
      else if (f3 === 1 && f7 === 0) e = `a << ${rs2}`;
      else if (f3 === 5 && f7 === 0) e = `(a >>> ${rs2}) | 0`;
      else if (f3 === 5 && f7 === 0x20) e = `a >> ${rs2}`;
      else return null;
      return op(`{ const a = xl[${rs1}]; const v = ${e}; xl[${D}] = v; xh[${D}] = v >> 31; }`);
    }
    case 0x37: {
      const v = insn & 0xfffff000;
      return op(`xl[${D}] = ${v}; xh[${D}] = ${v >> 31};`);
    }
    case 0x17:
      return op(`{ const v = ${here} + ${insn & 0xfffff000}; xl[${D}] = v | 0; xh[${D}] = Math.floor(v / 4294967296) | 0; }`);
    case 0x03: {
      if (f3 === 7) return null;
      const imm = insn >> 20;
      const rd32 = [
        `const v = (r8[e][a] << 24) >> 24; xl[${D}] = v; xh[${D}] = v >> 31;`,
        `const v = (r16[e][a >> 1] << 16) >> 16; xl[${D}] = v; xh[${D}] = v >> 31;`,
        `const v = r32[e][a >> 2]; xl[${D}] = v; xh[${D}] = v >> 31;`,
        smp ? `const x = r64[e][a >> 3]; if (x === x) d64[0] = x; else rCh[e].loadNaN64(a); xl[${D}] = d32[0]; xh[${D}] = d32[1];` : `const w = r32[e]; xl[${D}] = w[a >> 2]; xh[${D}] = w[(a >> 2) + 1];`,
        `xl[${D}] = r8[e][a]; xh[${D}] = 0;`,
        `xl[${D}] = r16[e][a >> 1]; xh[${D}] = 0;`,
        `xl[${D}] = r32[e][a >> 2]; xh[${D}] = 0;`,
      ][f3];
      const align = (1 << (f3 & 3)) - 1;
      return op(`{ const bl = xl[${rs1}]; const lo = (bl + ${imm}) | 0; const hi = (xh[${rs1}] + ${imm >> 31} + ((lo >>> 0) < (bl >>> 0) ? 1 : 0)) | 0;
  const e = (lo >>> 12) & 255, po = lo & 4095;
  if (rTag[e] === (lo & -4096) && rTagH[e] === hi${align === 0 ? '' : ` && (po & ${align}) === 0`}) { const a = rOff[e] + po; ${rd32} }
  else ${exitAt(off, k)} }`);
    }
    case 0x23: {
      if (f3 >= 4) return null;
      const imm = ((insn >> 25) << 5) | ((insn >>> 7) & 31);
      const st = [
        `w8[e][a] = xl[${rs2}];`,
        `w16[e][a >> 1] = xl[${rs2}];`,
        `w32[e][a >> 2] = xl[${rs2}];`,
        smp ? `d32[0] = xl[${rs2}]; d32[1] = xh[${rs2}]; const x = d64[0]; if (x === x) w64[e][a >> 3] = x; else wCh[e].store64(a, xl[${rs2}], xh[${rs2}]);` : `const w = w32[e]; w[a >> 2] = xl[${rs2}]; w[(a >> 2) + 1] = xh[${rs2}];`,
      ][f3];
      const align = (1 << f3) - 1;
      return op(`{ const bl = xl[${rs1}]; const lo = (bl + ${imm}) | 0; const hi = (xh[${rs1}] + ${imm >> 31} + ((lo >>> 0) < (bl >>> 0) ? 1 : 0)) | 0;
  const e = (lo >>> 12) & 255, po = lo & 4095;
  if (wTag[e] === (lo & -4096) && wTagH[e] === hi${align === 0 ? '' : ` && (po & ${align}) === 0`}) { const a = wOff[e] + po; ${st} if (resv.active[0] !== 0) resv.storeBy(h.hartId, wPa[e] + po, ${1 << f3}); }
  else ${exitAt(off, k)} }`);
    }
    case 0x63: {
      let cond: string;
      switch (f3) {
        case 0: cond = '((al ^ bl) | (ah ^ bh)) === 0'; break;
        case 1: cond = '((al ^ bl) | (ah ^ bh)) !== 0'; break;
        case 4: cond = lt64('ah', 'bh', 'al', 'bl'); break;
        case 5: cond = `!${lt64('ah', 'bh', 'al', 'bl')}`; break;
        case 6: cond = lt64('(ah >>> 0)', '(bh >>> 0)', 'al', 'bl'); break;
        case 7: cond = `!${lt64('(ah >>> 0)', '(bh >>> 0)', 'al', 'bl')}`; break;
        default: return null;
      }
      const imm = ((insn >> 31) << 12) | (((insn >>> 7) & 1) << 11) | (((insn >>> 25) & 63) << 5) | (((insn >>> 8) & 15) << 1);
      return { kind: 'br', cond: `const al = xl[${rs1}], ah = xh[${rs1}], bl = xl[${rs2}], bh = xh[${rs2}]; if (${cond})`, target: off + imm };
    }
    case 0x6f:
      return { kind: 'jal', rd: D, target: off + (((insn >> 31) << 20) | (insn & 0xff000) | (((insn >>> 20) & 1) << 11) | (((insn >>> 21) & 1023) << 1)) };
    case 0x67:
      return f3 === 0 ? { kind: 'jalr', rd: D, rs1, imm: insn >> 20 } : null;
    case 0x0f:
      // FENCE: as in the interpreter (a full barrier with other harts' threads); FENCE.I goes to the interpreter
      return f3 === 0 ? op(smp ? 'Atomics.add(FENCE, 0, 0);' : '') : null;
    case 0x07: case 0x27: case 0x43: case 0x47: case 0x4b: case 0x4f: case 0x53:
      // F/D: the FP unit's own semantics (fp/execute.ts), exactly as the interpreter calls them.
      // An F/D store into translated code ends the region after it (as the interpreter's stores do).
      return op(`h.pc = ${here}; h.rawInsn = ${raw}; if (!execFp(h, ${insn | 0})) { h.jitTrap = true; kk = ${k}; sp = 1; break exit; }
  if (h.codeDirty) { h.codeDirty = false; kk = ${k + 1}; ex = ${off + ilen}; break exit; }`);
    default:
      return null;
  }
}

/** Leaves the translated code before the instruction at page offset `off`, the `k` instructions
 *  of its block before it retired: the interpreter runs it (a soft-TLB miss, a misaligned access,
 *  a store into translated code: the slow paths stay out of translated code). Every exit only sets
 *  constants and breaks out to the one exit sequence (see functionSource), so that V8 finds no
 *  operation without type feedback on a path first taken after it optimized the function. */
function exitAt(off: number, k: number): string {
  return k === 0 ? `{ ex = ${off}; break exit; }` : `{ kk = ${k}; ex = ${off}; break exit; }`;
}

/** One decoded instruction of a region. */
export interface Insn { off: number; len: number; insn: number; raw: number }

/** The instruction at byte offset `o` of the page (halfwords from `base` of `view`), compressed
 *  ones expanded; null for reserved encodings and the page's last halfword. */
export function decodeAt(view: Uint16Array, base: number, o: number): Insn | null {
  if (o < 0 || o > 4092) return null; // the last halfword (and page crossings) stay with the interpreter
  const raw = view[base + (o >> 1)];
  if ((raw & 3) === 3) {
    const w = (raw | (view[base + (o >> 1) + 1] << 16)) >>> 0;
    return { off: o, len: 4, insn: w, raw: w };
  }
  const insn = CEXP[raw];
  return insn === 0 ? null : { off: o, len: 2, insn, raw };
}

/** Compiles the region of the page reachable from byte offset `entry` (page halfwords start at
 *  index `base` of `view`): every translatable instruction reached by falling through, branches
 *  (both ways) and JAL within the page, plus the return points of JALs. null = nothing worth
 *  translating there (no loop inside the region). `smp`: doublewords as single 64-bit accesses
 *  (the hart's `smp`, see hart.ts). */
export function compileRegion(view: Uint16Array, base: number, entry: number, full: boolean, smp = false,
  seen: (off: number) => boolean = () => true): CompiledRegion | null {
  const at = new Map<number, { i: Insn; g: Gen }>();
  const leaders = new Set<number>([entry]);
  const work = [entry];
  const unseen: number[] = [];
  let count = 0, loops = false;
  // A region takes in only blocks the hart has run (`seen`): V8 optimizes a function with the type
  // feedback of what has run in it, and throws the optimized code away on the first operation run
  // without feedback. A block never run yet stays out (reaching it leaves the region).
  const visit = (o: number, leader: boolean): void => {
    if (leader) {
      if (full && !seen(o)) { unseen.push(o); return; }
      leaders.add(o);
    }
    if (o >= 0 && o <= 4092 && !at.has(o)) work.push(o);
  };
  const max = full ? MAX_REGION : MAX_LOOP;
  while (work.length > 0 && count < max) {
    const o = work.shift()!; // breadth first: the code nearest the entry
    if (at.has(o)) continue;
    const i = decodeAt(view, base, o);
    if (i === null) continue;
    const g = gen(i.insn, i.raw, o, i.len, 0, smp);
    if (g === null) continue;
    at.set(o, { i, g });
    count++;
    if (!full) {
      // First tier: a loop whose body is straight-line code (forward branches leave it) ending
      // in a branch back to the entry.
      if (g.kind === 'op') visit(o + i.len, false);
      else if (g.kind === 'br') { if (g.target === entry) loops = true; else if (g.target > o) visit(o + i.len, true); }
      continue;
    }
    switch (g.kind) {
      case 'op': visit(o + i.len, false); break;
      case 'br':
        if (g.target <= o) loops = true;
        visit(g.target, true); visit(o + i.len, true); break;
      case 'jal':
        // Jumps and calls are followed (a recursive function stays inside its region); the
        // return point of a call is a block of the region, where its JALR returns.
        if (g.target <= o) loops = true;
        visit(g.target, true);
        if (g.rd !== 32) visit(o + i.len, true);
        break;
      case 'jalr': loops = true; break; // returns into this page stay in the region
    }
  }
  if (!loops) return null;
  for (const o of unseen) if (at.has(o)) leaders.add(o); // reached by falling through anyway
  const offs = [...at.keys()].sort((a, b) => a - b);
  const R = count;
  const out: string[] = [];
  // Leaves the region for `t` (a page offset) or dispatches to it: n is up to date here.
  const jump = (t: number): string => at.has(t)
    ? `pc = ${t}; continue;`
    : exitAt(t, 0);
  // Does the block starting at offs[x] end with a branch back to its own start? Such a block
  // (the body of a single-block loop) is emitted as an inner for (;;), so that its iterations do
  // not go through the switch.
  const selfLoop = (x: number): boolean => {
    for (let y = x; y < offs.length; y++) {
      const { i, g } = at.get(offs[y])!;
      if (y > x && leaders.has(offs[y])) return false;
      if (g.kind === 'br') return g.target === offs[x];
      if (g.kind !== 'op' || !(y + 1 < offs.length && offs[y + 1] === offs[y] + i.len)) return false;
    }
    return false;
  };
  const labels: number[] = [];
  let k = 0;          // instructions of the current block before the one being emitted
  let open = false;   // is the previous instruction falling through into this one?
  let inner = -1;     // start of the block being emitted as an inner loop, or -1
  for (let x = 0; x < offs.length; x++) {
    const o = offs[x];
    const { i } = at.get(o)!;
    let { g } = at.get(o)!;
    if (!open || leaders.has(o)) {
      if (open && k !== 0) out.push(`n += ${k};`);
      out.push(`case ${o}:`);
      labels.push(o);
      k = 0;
      if (selfLoop(x)) { inner = o; out.push('for (;;) {'); }
    }
    if (g.kind === 'op' && k !== 0) g = gen(i.insn, i.raw, o, i.len, k, smp)!; // trap exits count the block so far
    const next = o + i.len;
    const fallsIn = x + 1 < offs.length && offs[x + 1] === next;
    switch (g.kind) {
      case 'op':
        out.push(g.code);
        k++;
        if (!fallsIn) { out.push(`n += ${k}; ${jump(next)}`); open = false; } else open = true;
        break;
      case 'br':
        if (inner === g.target) {
          out.push(`{ n += ${k + 1}; ${g.cond} { if (n > lim) ${exitAt(inner, 0)} continue; } } break; }`);
          inner = -1;
        } else out.push(`{ n += ${k + 1}; ${g.cond} { ${jump(g.target)} } }`);
        if (!fallsIn) { out.push(jump(next)); open = false; } else { open = true; k = 0; leaders.add(next); }
        break;
      case 'jal': {
        out.push(`{ const v = pc0 + ${next}; xl[${g.rd}] = v | 0; xh[${g.rd}] = Math.floor(v / 4294967296) | 0; n += ${k + 1}; ${jump(g.target)} }`);
        open = false;
        break;
      }
      case 'jalr':
        // Target first (rd may be rs1), then the link; a target in this page is dispatched here.
        out.push(`{ const bl = xl[${g.rs1}]; const s = (bl + ${g.imm}) | 0; const lo = s & -2;
  const hi = (xh[${g.rs1}] + ${g.imm >> 31} + ((s >>> 0) < (bl >>> 0) ? 1 : 0)) | 0;
  const v = pc0 + ${next}; xl[${g.rd}] = v | 0; xh[${g.rd}] = Math.floor(v / 4294967296) | 0; n += ${k + 1};
  if (((hi + 0x200000) >>> 0) >= 0x400000) { h.jumpFar(lo, hi); sp = 1; break exit; }
  const d = hi * 4294967296 + (lo >>> 0) - pc0;
  if (d >= 0 && d <= 4092) { pc = d | 0; continue; }
  ex = d; break exit; }`);
        open = false;
        break;
    }
  }
  const body = out.join('\n');
  // Identical regions (the same instructions at the same page offsets) share one function, so a
  // region dropped by FENCE.I and compiled again keeps V8's optimized code.
  const key = `${R}\n${body}`;
  let fn = fnCache.get(key);
  if (fn === undefined) {
    fn = new Function('alu', 'execFp', 'D64', 'D32', 'FENCE', functionSource(body, R))(alu, execFp, D64, D32, FENCE_CELL) as BlockFn;
    if (fnCache.size >= FN_CACHE_MAX) fnCache.clear();
    fnCache.set(key, fn);
  }
  const covered: number[] = [];
  for (const o of offs) covered.push(o, at.get(o)!.i.len);
  return { fn, size: R, covered, entries: labels };
}

/** The function around a region's cases. Every way out goes through one exit sequence: the
 *  exits set `ex` (the page offset to continue at), `kk` (instructions retired in the current
 *  block, not yet in n) or `sp` (h.pc already set: a far jump, a trap) and break out of the
 *  dispatch loop. Without F/D instructions, the x registers the region uses live in local
 *  variables (xl5/xh5 for x5): loaded on entry, stored back at the exit, so V8 can keep them in
 *  machine registers. Nothing called from inside reads or writes x registers except execFp (F/D
 *  loads/stores take their base address from them; FMV/FCVT write them), so regions with F/D keep
 *  using the arrays. */
function functionSource(body: string, size: number): string {
  const head = `"use strict"; const { res, mul64, mulh64, mulhsu64, mulhu64, div64, divu64, div32 } = alu;
return function region(${ARGS.join(', ')}) {
const rTag = r.tagLo, rTagH = r.tagHi, rOff = r.off, r8 = r.u8, r16 = r.u16, r32 = r.i32, r64 = r.f64, rCh = r.chunk;
const wTag = w.tagLo, wTagH = w.tagHi, wOff = w.off, wPa = w.pa, w8 = w.u8, w16 = w.u16, w32 = w.i32, w64 = w.f64, wCh = w.chunk;
const d64 = D64, d32 = D32;
let n = 0, ex = 0, kk = 0, sp = 0;
const lim = budget - ${size};`;
  const loop = (cases: string): string => `exit: for (;;) {
if (n > lim) { ex = pc; break exit; }
switch (pc) {
${cases}
default: ex = pc; break exit;
}
}`;
  const tail = 'if (sp === 0) h.pc = pc0 + ex;\nreturn n + kk;\n};';
  if (body.includes('execFp(')) return `${head}\n${loop(body)}\n${tail}`;
  const used = new Set<number>();
  const local = body.replace(/\bx([lh])\[(\d+)\]/g, (_m, w: string, r: string) => { used.add(Number(r)); return `x${w}${r}`; });
  const regs = [...used].sort((a, b) => a - b);
  const load = regs.map((r) => (r === 0 ? 'xl0 = 0, xh0 = 0' : `xl${r} = xl[${r}], xh${r} = xh[${r}]`)).join(', ');
  const store = regs.filter((r) => r !== 0).map((r) => `xl[${r}] = xl${r}; xh[${r}] = xh${r};`).join(' ');
  return `${head}
${load === '' ? '' : `let ${load};`}
${loop(local)}
${store}
${tail}`;
}
