// The WebAssembly tier (issue 16, docs/guest-ram.md (e)): the code of one RAM page reachable
// from an entry point, as one wasm function that V8's baseline compiler (Liftoff) makes runnable
// in well under a millisecond, so that warm code is translated, not only the code jit.ts finds
// hot enough for a JavaScript region.
//
// What a region takes in: as jit.ts's regions, every instruction reached from the entry by
// falling through, branches (both ways) and JAL within the page (calls too, with their return
// points), breadth first, at most MAX_REGION instructions. Translated: RV64I and M integer
// operations, branches, JAL, JALR, loads and stores through the
// soft TLB (FLW, FLD, FSW, FSD too), FENCE, the D moves without rounding (FSGNJ*.D, FMV.X.D,
// FMV.D.X) inline, the other F/D instructions (arithmetic, FMA, conversions, compares, FCLASS,
// FMIN/FMAX, the S moves) through a call of the hart's fp import (fpKind), and the compressed
// forms (decoded through CEXP as the interpreter does). AMOs, LR and SC are run by the hart
// for the region (the import `x`: see hartExec). Anything else (SYSTEM, FENCE.I, reserved
// encodings) is left out: reaching it leaves the function, and the interpreter
// runs it.
// The fp import runs the interpreter's own execFp (fp/execute.ts: softfloat, bit-exact, fflags,
// frm for DYN, canonical NaNs, NaN-boxing) on the hart: the f registers are already in the state
// memory, fflags/frm/mstatus stay in the hart (nothing in wasm code reads them), and an x source
// or result goes through the register file in the state memory around the call. A reserved
// rounding mode traps there (illegal instruction), which leaves the region as a trapping load
// does. A call costs about what the interpreter takes for the instruction (execFp is most of
// it), where leaving the region cost an exit, the interpreter up to its next branch and an entry;
// the commonest cases are inline instead (FP_FAST, fpInline). docs/guest-ram.md (e), "F/D
// arithmetic", has the figures.
// F/D loads, stores and moves (function prologues and epilogues saving fs0-fs11 cut the busybox
// programs' regions: sort and awk) read and write the f registers in the state memory (FREGS);
// the hart tells whether the FP unit is on (FP_ON: mstatus.FS, which nothing in wasm code can
// change) before each call, and a write of an f register sets FP_DIRTY, which the hart turns into
// mstatus.FS = Dirty when the call returns. With the unit off they leave (EXIT_FP) before the
// instruction, which the interpreter then runs (an illegal-instruction trap).
//
// The function: (pc0: f64, next: i32, ex: i32, budget: i32, n: i32) -> retired: i32 (n = retired
// before, in the regions that chained into this one: the budget is checked on the sum).
//   pc0 = virtual address of the page; next = index of the block to start at, ex = its page
//   offset. That function (the hart's entry) loads x1..x31 from the hart's register file
//   (xlo/xhi, which are views on the hart's state memory, imported as memory 0) and calls the
//   region's body, which has them as i64 parameters after those five; the body stores them all
//   back when it returns to the hart. The next pc is written at EXIT (i64) in the same memory.
//   Blocks dispatch through `loop` + `br_table` on `next`: taken branches and jumps inside the
//   region set next and go round; the budget is checked there, as in jit.ts (leave when fewer
//   than `size` instructions remain, so code that only falls through stays within budget).
//   A JALR whose target is the return point of a call in the region goes on there; any other,
//   and a jump out of the region, goes on into the region at its target when the chain cache
//   (CHAIN, filled by the hart) holds the pc: a tail call of that region's body through the
//   region table, the registers passed as its parameters (a region no longer loads the ones it
//   uses and stores the ones it wrote at each such step), whose body checks the budget before its
//   first block; else the function returns to the hart.
// Loads and stores: the soft TLB's tag (tagLo/tagHi), page offset and chunk slot arrays are
// also views on the state memory (hart.ts, Tlb): the function compares the tag and alignment and
// calls the access module's load or store (access.ts, through the hart's function table) with
// the chunk slot; on a miss, or when the page's chunk has no slot in the access module yet, it
// calls the hart's slow path (an import: page walks, MMIO, misaligned accesses, faults, stores
// into pages with translated code, whose write entries are never valid), and leaves after a
// trap there or a store the interpreter must look at (an interrupt line changed by a device,
// translated code dropped).
// Same contract otherwise as jit.ts (retired count returned, n up to date at every exit; 0
// retired = left before its first instruction) and the same validity rules (hart.ts drops the
// page's translations on stores into covered bytes and on FENCE.I).
// Harts on threads of their own (`smp`): a store takes the slow path (which breaks other harts'
// LR reservations) while any reservation is held, the set's `active` word read from its shared
// memory (imported); FENCE is atomic.fence; aligned doublewords are single i64 accesses. Harts
// sharing a thread enter wasm code only while no reservation is held (hart.ts), and a FENCE
// needs no barrier there; an LR inside a region (run by the hart, see hartExec) may leave one
// held while the region and those it chains into go on: their stores are the hart's own, which
// do not break it, and no other hart runs meanwhile.
import { decodeAt } from '../jit.js';
import { beginBody, beginModule, Emitter, endBody, F64, I32, I64, type Import } from './emit.js';
import { ACCESS_TABLE, LOADS } from './access.js';

// ---- the hart's state memory (one 64 KiB page, not shared: one hart's) ----
export const STATE_BYTES = 65536;
/** x registers: low words (33 int32, index 32 the x0 sink) and high words. */
export const XL = 0, XH = 256;
/** The read and write soft TLBs: per table, four int32 arrays of TLB_SIZE entries. */
export const TLB_R = 1024, TLB_W = 5120, TLB_BYTES = 4096;
export const T_TAGLO = 0, T_TAGHI = 1024, T_OFF = 2048, T_SLOT = 3072;
/** The pc a function leaves with (i64), why it left (int32: EXIT_*), a slow load's value (i64). */
export const EXIT = 9216, EXIT_WHY = 9224, SCRATCH = 9232;
/** Calls from one region into the next through the chain cache (uint32, wraps; statistics). */
export const CHAINS = 9240;
/** Int32 words: the FP unit is on (set by the hart before each call), an F/D load wrote an f
 *  register (set by wasm code, cleared by the hart). */
export const FP_ON = 9244, FP_DIRTY = 9248;
/** Int32 words: fflags bits raised by wasm code's inline F/D operations (the hart ORs them into
 *  fflags and clears the word after each call: the fp import's operations accrue into fflags
 *  themselves, and nothing reads fflags while wasm code runs), and the hart's frm (set by the
 *  hart before each call: nothing in wasm code can change it). */
export const FP_FLAGS = 9252, FP_FRM = 9256;
/** The f registers (32 × 8 bytes, raw bits; the hart's fregs and fregsF64 are views on them). */
export const FREGS = 9472;
/** Why: a trap in a load or store (the hart's pc is already the trap vector), a JALR, a branch
 *  or jump or falling through out of the region, the budget, a store after which the interpreter
 *  must look, an F/D load or store with the FP unit off. */
export const EXIT_TRAP = 0, EXIT_JALR = 1, EXIT_OUT = 2, EXIT_BUDGET = 3, EXIT_STORE = 4, EXIT_FP = 5;
/** The chain cache: CHAIN_SIZE entries of four int32 (virtual pc low and high word, the region's
 *  slot in the region table, its block index), indexed by chainIndex (the page number mixed in:
 *  functions often start at the same offset of their pages). A
 *  region leaving at a JALR or out of itself goes on there itself (a tail call through the
 *  region table) when the entry holds its next pc; the hart fills entries as it enters regions
 *  and empties them all whenever translated code or the fetch translation may have changed. */
export const CHAIN = 16384, CHAIN_SIZE = 2048, CHAIN_MASK = CHAIN_SIZE - 1;
/** The chain cache entry of a pc (its low word; the same in wasm code: see translateRegion). */
export function chainIndex(lo: number): number { return ((lo >>> 1) ^ (lo >>> 12)) & CHAIN_MASK; }
/** A chain tag no pc has (pcs are even). */
export const CHAIN_INVALID = 1;
/** Region functions the region table holds (the hart drops all translated code when full). */
export const REGION_TABLE = 8192;

/** Instructions per region at most. */
const MAX_REGION = 192;
/** Return points a JALR compares its target with before leaving the region. */
const MAX_RETURNS = 8;
/** Regions smaller than this are not worth a module. */
const MIN_REGION = 3;
/** `ex` of an exit whose pc is in tpc (JALR). */
const FAR = 0x7fffffff;

/** What a region module imports from its hart (hart.ts): the state memory, the RAM access
 *  table, and the slow paths of loads and stores: (pc of the instruction, address low and high
 *  word, funct3[, value low and high word]) -> 0 when it trapped (the hart's pc is then the trap
 *  vector), 1 when done (a load's value at SCRATCH), 2 (stores) when done and the interpreter
 *  must look before the next instruction. */
export interface WasmImports {
  s: WebAssembly.Memory; t: WebAssembly.Table;
  /** The region table (REGION_TABLE region functions, by slot), chained regions call through. */
  c: WebAssembly.Table;
  ld: (pc: number, lo: number, hi: number, f3: number) => number;
  /** An F/D instruction the region does not do inline: (its pc, its bits) -> 1 when it retired,
   *  0 when it trapped (the hart's pc is then the trap vector: a reserved rounding mode). It runs
   *  on the hart's state (f registers in the state memory, x[rs1] and x[rd] there too: the region
   *  stores its source before and loads its result after, fflags, frm, mstatus.FS). */
  fp: (pc: number, insn: number) => number;
  st: (pc: number, lo: number, hi: number, f3: number, vlo: number, vhi: number) => number;
  /** Runs one instruction (pc, its bits) for the region, with the registers it reads in the
   *  register file: status as `st`'s. */
  x: (pc: number, insn: number) => number;
  /** The hart's ReservationSet memory (imported by regions of `smp` harts). */
  r: WebAssembly.Memory;
}
/** (page's virtual address, block index, its page offset, budget, instructions retired before) ->
 *  instructions retired, the ones before included. */
export type WasmFn = (pc0: number, next: number, ex: number, budget: number, n: number) => number;
/** A region's body: WasmFn's parameters, then x1..x31 (i64). The region table holds these; only
 *  wasm code calls them (its entry, and the regions chaining into it). */
export type WasmBody = (...args: never[]) => number;
/** A translated region: `entries[i]` = page offset of block i (where it can be entered). */
export interface WasmRegion { readonly fn: WasmFn; readonly body: WasmBody; readonly size: number; readonly covered: number[]; readonly entries: number[]; readonly bytes: number }
/** A region's module before instantiation: what it was made from is `reads` (the page's
 *  halfword indices discovery looked at, each instruction's first and second halfword, also
 *  where it found nothing to translate) with `smp` and the entry offset; nothing else goes into
 *  the module (the page's virtual address is a parameter of its function, RAM and the hart's
 *  state are imports), so it serves any hart, page and address where those halfwords are the
 *  same (wasm/region-cache.ts). */
export interface WasmModule { readonly module: WebAssembly.Module; readonly size: number; readonly covered: number[]; readonly entries: number[]; readonly bytes: number; readonly reads: number[] }

const OP = 0, BR = 1, JAL = 2, JALR = 3, NONE = -1;

/** How an instruction takes part in a region, NONE when it is not translated. */
function kindOf(insn: number): number {
  const f3 = (insn >>> 12) & 7, f7 = insn >>> 25;
  switch (insn & 0x7f) {
    case 0x13:
      if (f3 === 1) return (insn >>> 26) === 0 ? OP : NONE;
      if (f3 === 5) return (insn >>> 26) === 0 || (insn >>> 26) === 0x10 ? OP : NONE;
      return OP;
    case 0x33:
      if (f7 === 0) return OP;
      if (f7 === 0x20) return f3 === 0 || f3 === 5 ? OP : NONE;
      if (f7 === 1) return OP; // MUL, MULH, MULHSU, MULHU, DIV, DIVU, REM, REMU
      return NONE;
    case 0x3b:
      if (f7 === 0) return f3 === 0 || f3 === 1 || f3 === 5 ? OP : NONE;
      if (f7 === 0x20) return f3 === 0 || f3 === 5 ? OP : NONE;
      if (f7 === 1) return f3 === 0 || f3 >= 4 ? OP : NONE;
      return NONE;
    case 0x1b:
      if (f3 === 0) return OP;
      if (f3 === 1) return f7 === 0 ? OP : NONE;
      if (f3 === 5) return f7 === 0 || f7 === 0x20 ? OP : NONE;
      return NONE;
    case 0x37: case 0x17: return OP;
    case 0x03: return f3 === 7 ? NONE : OP;
    case 0x23: return f3 >= 4 ? NONE : OP;
    case 0x07: case 0x27: return f3 === 2 || f3 === 3 ? OP : NONE; // FLW, FLD, FSW, FSD
    case 0x53: // OP-FP, S and D: inline or through the hart's fp import (see fpKind)
      return fpKind(insn) !== FP_NONE ? OP : NONE;
    case 0x43: case 0x47: case 0x4b: case 0x4f: return (f7 & 3) <= 1 ? OP : NONE; // FMADD, FMSUB, FNMSUB, FNMADD (S, D)
    case 0x63: return f3 === 2 || f3 === 3 ? NONE : BR;
    case 0x6f: return JAL;
    case 0x67: return f3 === 0 ? JALR : NONE;
    case 0x0f: return f3 === 0 ? OP : NONE; // FENCE; FENCE.I goes to the interpreter
    case 0x2f: return amoKind(insn);
    default: return NONE;
  }
}

/** AMOs, LR and SC (A, .W and .D): run by the hart itself (the import `x`, hart.ts execAmo)
 *  without leaving the region; other encodings of the opcode are left to the interpreter (an
 *  illegal-instruction trap). */
function amoKind(insn: number): number {
  const f3 = (insn >>> 12) & 7, f5 = insn >>> 27;
  if (f3 !== 2 && f3 !== 3) return NONE;
  switch (f5) {
    case 0x02: return ((insn >>> 20) & 31) === 0 ? OP : NONE; // LR: rs2 must be 0
    case 0x03: case 0x01: case 0x00: case 0x04: case 0x0c: case 0x08: case 0x10: case 0x14: case 0x18: case 0x1c: return OP;
    default: return NONE;
  }
}

// How an F/D arithmetic instruction (OP-FP, and the FMA family) is translated.
/** Not translated: an encoding the interpreter rejects whatever the state (H/Q formats, funct5 or
 *  funct3 or rs2 out of range). */
const FP_NONE = 0;
/** FSGNJ*.D, FMV.X.D, FMV.D.X: bits moved inline, no rounding, no flags. */
const FP_MOVE = 1;
/** Through the hart's fp import (execFp on the f registers in the state memory, fflags and frm in
 *  the hart, a reserved rounding mode an illegal-instruction trap there): f registers only. */
const FP_CALL = 2;
/** The same, with x[rs1] as its source (FCVT.S/D.W/WU/L/LU, FMV.W.X). */
const FP_CALL_XS = 3;
/** The same, with x[rd] as its result (FEQ/FLT/FLE, FCVT.W/WU/L/LU.S/D, FMV.X.W, FCLASS). */
const FP_CALL_XD = 4;

/** FADD.D, FSUB.D (round to nearest, even), FEQ.D, FLT.D, FLE.D, FCVT.D.W, FCVT.D.WU: inline for
 *  operands and results where no flag but NX can arise (see fpInline), else through the import. */
const FP_FAST = 5;

/** FP_* for an OP-FP instruction (0x53), as execute.ts's opFp decodes it. */
function fpKind(insn: number): number {
  const fmt = (insn >>> 25) & 3, f5 = insn >>> 27, f3 = (insn >>> 12) & 7, rs2 = (insn >>> 20) & 31;
  if (fmt > 1) return FP_NONE;
  switch (f5) {
    case 0x00: case 0x01: return fmt === 1 && (f3 === 0 || f3 === 7) ? FP_FAST : FP_CALL; // FADD FSUB
    case 0x02: case 0x03: return FP_CALL; // FMUL FDIV
    case 0x0b: return rs2 === 0 ? FP_CALL : FP_NONE; // FSQRT
    case 0x04: return f3 > 2 ? FP_NONE : fmt === 1 ? FP_MOVE : FP_CALL; // FSGNJ*
    case 0x05: return f3 > 1 ? FP_NONE : FP_CALL; // FMIN FMAX
    case 0x08: return rs2 === (fmt === 1 ? 0 : 1) ? FP_CALL : FP_NONE; // FCVT.S.D, FCVT.D.S
    case 0x14: return f3 > 2 ? FP_NONE : fmt === 1 ? FP_FAST : FP_CALL_XD; // FLE FLT FEQ
    case 0x18: return rs2 > 3 ? FP_NONE : FP_CALL_XD; // FCVT.int.S/D
    case 0x1a: return rs2 > 3 ? FP_NONE : fmt === 1 && rs2 < 2 && (f3 <= 4 || f3 === 7) ? FP_FAST : FP_CALL_XS; // FCVT.S/D.int
    case 0x1c: return rs2 !== 0 || f3 > 1 ? FP_NONE : f3 === 0 && fmt === 1 ? FP_MOVE : FP_CALL_XD; // FMV.X.W/D, FCLASS
    case 0x1e: return rs2 !== 0 || f3 !== 0 ? FP_NONE : fmt === 1 ? FP_MOVE : FP_CALL_XS; // FMV.W.X, FMV.D.X
    default: return FP_NONE;
  }
}

interface Node { off: number; len: number; insn: number; kind: number; target: number }

const emitter = new Emitter();

// Locals of a region's body function: its parameters (those of WasmFn, then x1..x31 as i64: X0 + r),
// then its own.
const P_PC0 = 0, P_NEXT = 1, P_EX = 2, P_BUDGET = 3, L_N = 4 /* a parameter: retired before */, X0 = 4;
const L_LIM = 36, L_LO = 37, L_E4 = 38, L_SLOT = 39, L_ADDR = 40, L_PC0 = 41, L_TPC = 42, L_F = 43, L_FA = 44, L_FB = 45, L_FS = 46;
// Entries of the hart's function table (access.ts): loads by funct3, then stores.
const F_LOAD = 0, F_STORE = LOADS.length;
// Imported functions: the hart's slow paths (hart.ts, wasmImports); then the region's entry from
// the hart and its body.
const F_SLOW_LOAD = 0, F_SLOW_STORE = 1, F_FP = 2, F_EXEC = 3, F_REGION = 4, F_BODY = 5;
/** Type indices: the hart's entry (WasmFn), the body (WasmFn's parameters and x1..x31). */
const T_ENTRY = 0, T_BODY = 6;
const BODY_PARAMS = [F64, I32, I32, I32, I32, ...new Array<number>(31).fill(I64)];

/** The region of the page reachable from byte offset `entry` (page halfwords from index `base`
 *  of `view`) as a wasm module instantiated against the hart's `state` memory and RAM access
 *  functions; null when there is too little to translate there. */
export function translateRegion(view: Uint16Array, base: number, entry: number, imports: WasmImports, smp: boolean): WasmRegion | null {
  const m = translateModule(view, base, entry, smp);
  return m === null ? null : instantiateRegion(m, imports);
}

/** A region's module instantiated against a hart's imports. */
export function instantiateRegion(m: WasmModule, imports: WasmImports): WasmRegion {
  const inst = new WebAssembly.Instance(m.module, { h: imports as unknown as WebAssembly.ModuleImports });
  return { fn: inst.exports.r as WasmFn, body: inst.exports.b as WasmBody, size: m.size, covered: m.covered, entries: m.entries, bytes: m.bytes };
}

/** translateRegion's module (not instantiated), with what it was made from (WasmModule). */
export function translateModule(view: Uint16Array, base: number, entry: number, smp: boolean): WasmModule | null {
  // ---- discovery (breadth first, as jit.ts's compileRegion) ----
  const at = new Map<number, Node>();
  const reads: number[] = [];
  const leaders = new Set<number>([entry]);
  const work = [entry];
  let count = 0;
  const visit = (o: number, leader: boolean): void => {
    if (leader) leaders.add(o);
    if (o >= 0 && o <= 4092 && !at.has(o)) work.push(o);
  };
  while (work.length > 0 && count < MAX_REGION) {
    const o = work.shift()!;
    if (at.has(o)) continue;
    if (o >= 0 && o <= 4092) reads.push(o >> 1, (o >> 1) + 1); // what decodeAt may read
    const i = decodeAt(view, base, o);
    if (i === null) continue;
    const kind = kindOf(i.insn);
    if (kind === NONE) continue;
    const insn = i.insn;
    let target = 0;
    if (kind === BR) target = o + (((insn >> 31) << 12) | (((insn >>> 7) & 1) << 11) | (((insn >>> 25) & 63) << 5) | (((insn >>> 8) & 15) << 1));
    else if (kind === JAL) target = o + (((insn >> 31) << 20) | (insn & 0xff000) | (((insn >>> 20) & 1) << 11) | (((insn >>> 21) & 1023) << 1));
    at.set(o, { off: o, len: i.len, insn, kind, target });
    count++;
    switch (kind) {
      case OP: visit(o + i.len, false); break;
      case BR: visit(target, true); visit(o + i.len, true); break;
      case JAL: visit(target, true); if (((insn >>> 7) & 31) !== 0) visit(o + i.len, true); break;
      default: break; // JALR leaves
    }
  }
  if (count < MIN_REGION || !at.has(entry)) return null;
  const offs = [...at.keys()].sort((a, b) => a - b);
  // Blocks: a leader, or an instruction not reached by falling through from the one before.
  const starts: number[] = [];
  const index = new Map<number, number>();
  for (let x = 0; x < offs.length; x++) {
    const o = offs[x];
    const prev = x > 0 ? at.get(offs[x - 1])! : null;
    const fallsIn = prev !== null && prev.off + prev.len === o && (prev.kind === OP || prev.kind === BR);
    if (leaders.has(o) || !fallsIn) { index.set(o, starts.length); starts.push(o); }
  }
  // Return points of the region's calls (JAL with a link), where its JALRs look first.
  const rets: number[] = [];
  for (const nd of at.values()) {
    if (nd.kind === JAL && ((nd.insn >>> 7) & 31) !== 0 && index.has(nd.off + nd.len) && rets.length < MAX_RETURNS) rets.push(nd.off + nd.len);
  }
  // Registers: x1..x31 are the body's parameters (X0 + r), passed on to the next region when it
  // chains (see the exit): no register goes through the state memory between regions.
  const L = new Int32Array(32);
  for (let r = 1; r < 32; r++) L[r] = X0 + r;

  // ---- the module ----
  const e = emitter;
  const mi: Import[] = [
    { module: 'h', name: 's', kind: 'memory', min: STATE_BYTES / 65536, max: STATE_BYTES / 65536, shared: false },
    { module: 'h', name: 't', kind: 'table', size: ACCESS_TABLE },
    { module: 'h', name: 'c', kind: 'table', size: REGION_TABLE },
    { module: 'h', name: 'ld', kind: 'func', type: 3 },
    { module: 'h', name: 'st', kind: 'func', type: 4 },
    { module: 'h', name: 'fp', kind: 'func', type: 5 },
    { module: 'h', name: 'x', kind: 'func', type: 5 },
  ];
  // harts on other threads: the LR/SC reservation set (memory 1), whose `active` word a store
  // checks (see access)
  if (smp) mi.push({ module: 'h', name: 'r', kind: 'memory', min: 1, max: 1, shared: true });
  const code = beginModule(e, [
    { params: [F64, I32, I32, I32, I32], results: [I32] },
    { params: [I32, I32], results: [I64] },
    { params: [I32, I32, I64], results: [] },
    { params: [F64, I32, I32, I32], results: [I32] },
    { params: [F64, I32, I32, I32, I32, I32], results: [I32] },
    { params: [F64, I32], results: [I32] },
    { params: BODY_PARAMS, results: [I32] },
  ], mi, [T_ENTRY, T_BODY], [['r', F_REGION], ['b', F_BODY]]);
  const size = count;
  const get = (r: number): void => { if (r === 0) e.i64c(0); else e.get(L[r]); };
  const put = (r: number): void => { if (r === 0) e.byte(0x1a); else e.set(L[r]); };
  const addN = (k: number): void => { if (k !== 0) { e.get(L_N); e.i32c(k); e.byte(0x6a); e.set(L_N); } };
  // x[r] (r != 0) between its local and the register file in the state memory (XL/XH halves):
  // loadX leaves the i64 on the stack, storeX stores the local
  const loadX = (r: number): void => {
    e.i32c(0); e.mem(0x28, 2, XL + 4 * r); e.byte(0xad);
    e.i32c(0); e.mem(0x28, 2, XH + 4 * r); e.byte(0xac); e.i64c(32); e.byte(0x86);
    e.byte(0x84);
  };
  const storeX = (r: number): void => {
    e.i32c(0); e.get(L[r]); e.byte(0xa7); e.mem(0x36, 2, XL + 4 * r);
    e.i32c(0); e.get(L[r]); e.i64c(32); e.byte(0x88); e.byte(0xa7); e.mem(0x36, 2, XH + 4 * r);
  };
  // The hart's entry: the body with the registers from the register file.
  const entryBody = beginBody(e, []);
  for (let p = 0; p <= L_N; p++) e.get(p);
  for (let r = 1; r < 32; r++) loadX(r);
  e.call(F_BODY);
  endBody(e, entryBody);
  // The body. Entry: pc0 as an integer, the budget limit.
  const body = beginBody(e, [[4, I32], [4, I64], [3, F64]]);
  e.get(P_PC0); e.byte(0xb0); e.set(L_PC0);
  e.get(P_BUDGET); e.i32c(size); e.byte(0x6b); e.set(L_LIM);
  const K = starts.length;
  e.byte2(0x02, 0x40); // block $exit
  e.byte2(0x03, 0x40); // loop $loop
  // n > lim: leave (ex = the next block's offset)
  e.get(L_N); e.get(L_LIM); e.byte(0x4a); e.byte2(0x04, 0x40); e.i32c(0); e.i32c(EXIT_BUDGET); e.mem(0x36, 2, EXIT_WHY); e.br(2); e.byte(0x0b);
  for (let i = 0; i < K; i++) e.byte2(0x02, 0x40);
  e.get(P_NEXT);
  e.byte(0x0e); e.u32(K); for (let i = 0; i < K; i++) e.u32(i); e.u32(K + 1);
  let blk = -1;   // index of the block being written
  let k = 0;      // instructions of the block before the one being written
  // Leaves the region (depth `d` = blocks/ifs between here and the current block's level).
  const exit = (t: number, d: number, why: number): void => {
    e.i32c(0); e.i32c(why); e.mem(0x36, 2, EXIT_WHY);
    e.i32c(t); e.set(P_EX); e.br(K - blk + d);
  };
  const jump = (t: number, d: number): void => {
    const x = index.get(t);
    if (x === undefined) { exit(t, d, EXIT_OUT); return; }
    e.i32c(t); e.set(P_EX); e.i32c(x); e.set(P_NEXT); e.br(K - 1 - blk + d);
  };
  // A load (store: `store`) of 2^align bytes at x[rs1] + imm: the soft-TLB lookup in table
  // `tlb` and, on a hit, the access module's function `f` (through the table). On a miss the
  // hart's slow path is called (an import: page walk, MMIO, misaligned accesses, faults); a
  // trap there leaves the region (the pc is the trap vector), and so does a store after which
  // the interpreter must look (an interrupt line changed, translated code was dropped).
  // A load leaves its value on the stack.
  // A store's value (i64) comes from `value`.
  const access = (rs1: number, imm: number, align: number, f3: number, store: boolean, value: () => void, off: number, next: number): void => {
    const tlb = store ? TLB_W : TLB_R;
    get(rs1); e.i64c(imm); e.byte(0x7c); e.tee(L_ADDR);
    e.byte(0xa7); e.tee(L_LO);
    e.i32c(12); e.byte(0x76); e.i32c(255); e.byte(0x71); e.i32c(2); e.byte(0x74); e.tee(L_E4);
    e.mem(0x28, 2, tlb + T_TAGLO); e.get(L_LO); e.i32c(-4096); e.byte(0x71); e.byte(0x73);
    e.get(L_E4); e.mem(0x28, 2, tlb + T_TAGHI); e.get(L_ADDR); e.i64c(32); e.byte(0x88); e.byte(0xa7); e.byte(0x73); e.byte(0x72);
    if (align !== 0) { e.get(L_LO); e.i32c((1 << align) - 1); e.byte(0x71); e.byte(0x72); }
    // a store while some hart holds a reservation: the slow path, which breaks it (storeBy)
    if (store && smp) { e.i32c(0); e.mem(0x28, 2, 0, 1); e.byte(0x72); }
    e.get(L_E4); e.mem(0x28, 2, tlb + T_SLOT); e.tee(L_SLOT); e.i32c(31); e.byte(0x76); e.byte(0x72); // slot -1: chunk not in the access module yet
    e.byte2(0x04, store ? 0x40 : 0x7e);
    // slow path: (pc, lo, hi, funct3[, value lo, value hi]) -> status
    e.get(L_PC0); e.i64c(off); e.byte(0x7c); e.byte(0xb9); // f64.convert_i64_s
    e.get(L_LO); e.get(L_ADDR); e.i64c(32); e.byte(0x88); e.byte(0xa7); e.i32c(f3);
    if (store) { value(); e.byte(0xa7); value(); e.i64c(32); e.byte(0x88); e.byte(0xa7); e.call(F_SLOW_STORE); } else e.call(F_SLOW_LOAD);
    e.tee(L_SLOT); e.byte(0x45); // status 0: trapped
    e.byte2(0x04, 0x40); addN(k); exit(off, 2, EXIT_TRAP); e.byte(0x0b);
    if (store) {
      e.get(L_SLOT); e.i32c(2); e.byte(0x46); // status 2: done, the interpreter must look
      e.byte2(0x04, 0x40); addN(k + 1); exit(next, 2, EXIT_STORE); e.byte(0x0b);
    } else { e.i32c(0); e.mem(0x29, 3, SCRATCH); }
    e.byte(0x05); // else: the fast path
    e.get(L_SLOT);
    e.get(L_E4); e.mem(0x28, 2, tlb + T_OFF); e.get(L_LO); e.i32c(4095); e.byte(0x71); e.byte(0x6a);
    if (store) { value(); callAccess(F_STORE + f3, 2); } else callAccess(F_LOAD + f3, 1);
    e.byte(0x0b);
  };
  const callAccess = (f: number, type: number): void => { e.i32c(f); e.byte(0x11); e.u32(type); e.byte(0); };
  const noValue = (): void => {};
  // f[r]'s 64 bits onto the stack; an f register was written (the hart sets mstatus.FS = Dirty)
  const getF = (r: number): void => { e.i32c(0); e.mem(0x29, 3, FREGS + 8 * r); };
  const fDirty = (): void => { e.i32c(0); e.i32c(1); e.mem(0x36, 2, FP_DIRTY); };
  // An F/D load or store at `off`: leaves before it when the FP unit is off.
  const fpOn = (off: number): void => {
    e.i32c(0); e.mem(0x28, 2, FP_ON); e.byte(0x45);
    e.byte2(0x04, 0x40); addN(k); exit(off, 1, EXIT_FP); e.byte(0x0b);
  };
  // An F/D instruction through the hart's fp import: x[rs1] stored for it first (FP_CALL_XS),
  // x[rd] loaded from the state memory after (FP_CALL_XD); a trap leaves the region (the pc is the
  // trap vector), not counting the instruction.
  const fpCall = (off: number, w: number, kind: number, rd: number, rs1: number, d: number): void => {
    if (kind === FP_CALL_XS && rs1 !== 0) storeX(rs1);
    e.get(L_PC0); e.i64c(off); e.byte(0x7c); e.byte(0xb9); e.i32c(w); e.call(F_FP);
    e.byte(0x45); e.byte2(0x04, 0x40); addN(k); exit(off, 1 + d, EXIT_TRAP); e.byte(0x0b);
    if (kind === FP_CALL_XD && rd !== 0) { loadX(rd); e.set(L[rd]); }
  };
  // FP_FAST: inline where the result is the host's and no flag but NX can be raised, else (NaN
  // operands, infinite or overflowing sums, a rounding mode other than RNE for the sums, a
  // reserved one for the conversions) through the import as FP_CALL*:
  //  - FADD.D / FSUB.D in RNE (static, or DYN with frm = RNE): the sum finite (and so the
  //    operands); NX when Fast2Sum's error (softfloat.ts twoSumErr: exact when the sum is finite) is
  //    not zero; a sum in the subnormal range is exact (no UF); zeros' signs are IEEE's, as wasm's.
  //  - FEQ.D / FLT.D / FLE.D: neither operand a NaN (no NV possible).
  //  - FCVT.D.W / FCVT.D.WU: exact, no flag; only the rounding mode's validity matters (DYN: frm).
  const fpInline = (off: number, w: number, rd: number, rs1: number, rs2: number): void => {
    const f5 = w >>> 27, f3 = (w >>> 12) & 7;
    const loadF = (r: number): void => { e.i32c(0); e.mem(0x2b, 3, FREGS + 8 * r); };
    const notNaN = (l: number): void => { e.get(l); e.get(l); e.byte(0x61); };
    const frmIs = (ok: () => void): void => { e.i32c(0); e.mem(0x28, 2, FP_FRM); ok(); };
    if (f5 === 0x1a) {
      // the fast path's condition: a valid rounding mode (DYN: frm <= 4)
      if (f3 === 7) { frmIs(() => { e.i32c(5); e.byte(0x49); }); } else e.i32c(1);
      e.byte2(0x04, 0x40);
      e.i32c(0); get(rs1); e.byte(0xa7); e.byte(((w >>> 20) & 31) === 0 ? 0xb7 : 0xb8); e.mem(0x39, 3, FREGS + 8 * rd);
      fDirty();
      e.byte(0x05);
      fpCall(off, w, FP_CALL_XS, rd, rs1, 1);
      e.byte(0x0b);
      return;
    }
    loadF(rs1); e.set(L_FA); loadF(rs2); e.set(L_FB);
    if (f5 === 0x14) {
      notNaN(L_FA); notNaN(L_FB); e.byte(0x71);
      e.byte2(0x04, 0x40);
      e.get(L_FA); e.get(L_FB); e.byte(f3 === 2 ? 0x61 : f3 === 1 ? 0x63 : 0x65); e.byte(0xad); put(rd);
      e.byte(0x05);
      fpCall(off, w, FP_CALL_XD, rd, rs1, 1);
      e.byte(0x0b);
      return;
    }
    // FADD.D, FSUB.D (a - b = a + -b, also for zeros' signs)
    if (f5 === 1) { e.get(L_FB); e.byte(0x9a); e.set(L_FB); }
    e.get(L_FA); e.get(L_FB); e.byte(0xa0); e.set(L_FS);
    // the sum finite (so were the operands): its exponent not all ones (i64.reinterpret, << 1,
    // < 0xffe0...0 unsigned)
    e.get(L_FS); e.byte(0xbd); e.i64c(1); e.byte(0x86); e.i64c(-(2 ** 53)); e.byte(0x54);
    if (f3 === 7) { frmIs(() => { e.byte(0x45); }); e.byte(0x71); }
    e.byte2(0x04, 0x40);
    e.i32c(0); e.get(L_FS); e.mem(0x39, 3, FREGS + 8 * rd);
    fDirty();
    // Fast2Sum's error: |a| >= |b| ? b - (s - a) : a - (s - b); NX when not zero
    e.get(L_FB); e.get(L_FS); e.get(L_FA); e.byte(0xa1); e.byte(0xa1);
    e.get(L_FA); e.get(L_FS); e.get(L_FB); e.byte(0xa1); e.byte(0xa1);
    e.get(L_FA); e.byte(0x99); e.get(L_FB); e.byte(0x99); e.byte(0x66);
    e.byte(0x1b); // select
    e.i64c(0); e.byte(0xbf); e.byte(0x62); // f64.ne 0 (f64.reinterpret_i64 of 0 = +0)
    e.byte2(0x04, 0x40); e.i32c(0); e.i32c(0); e.mem(0x28, 2, FP_FLAGS); e.i32c(1); e.byte(0x72); e.mem(0x36, 2, FP_FLAGS); e.byte(0x0b);
    e.byte(0x05);
    fpCall(off, w, FP_CALL, rd, rs1, 1);
    e.byte(0x0b);
  };
  // An instruction the hart runs for the region (import `x`: AMO, LR, SC): rs1 and rs2 go to
  // the register file first, rd comes back from it; a trap there leaves before the instruction
  // (the pc is the trap vector), a store the interpreter must look at (translated code dropped,
  // an interrupt line changed) after it.
  const hartExec = (off: number, insn: number, next: number, rs1: number, rs2: number, rd: number): void => {
    if (rs1 !== 0) storeX(rs1);
    if (rs2 !== 0 && rs2 !== rs1) storeX(rs2);
    e.get(L_PC0); e.i64c(off); e.byte(0x7c); e.byte(0xb9); e.i32c(insn | 0); e.call(F_EXEC); e.set(L_SLOT);
    if (rd !== 0) { loadX(rd); e.set(L[rd]); }
    e.get(L_SLOT); e.byte(0x45); // status 0: trapped
    e.byte2(0x04, 0x40); addN(k); exit(off, 1, EXIT_TRAP); e.byte(0x0b);
    e.get(L_SLOT); e.i32c(2); e.byte(0x46); // status 2: done, the interpreter must look
    e.byte2(0x04, 0x40); addN(k + 1); exit(next, 1, EXIT_STORE); e.byte(0x0b);
  };
  // The high 64 bits of the 128-bit product (MULH: f3 1, both signed; MULHSU: 2, rs1 signed;
  // MULHU: 3), which wasm has no instruction for: the unsigned product from four 32x32-bit
  // products, then for a signed operand less than 0 the other operand subtracted (x - 2^64 as
  // the signed value). Temporaries: L_ADDR, L_TPC, L_F (free between instructions).
  const mulHigh = (f3: number, rs1: number, rs2: number): void => {
    const lo = (r: number): void => { get(r); e.i64c(0xffffffff); e.byte(0x83); };
    const hi = (r: number): void => { get(r); e.i64c(32); e.byte(0x88); };
    lo(rs1); hi(rs2); e.byte(0x7e); e.set(L_ADDR);              // p01 = a0 * b1
    hi(rs1); lo(rs2); e.byte(0x7e); e.set(L_TPC);               // p10 = a1 * b0
    lo(rs1); lo(rs2); e.byte(0x7e); e.i64c(32); e.byte(0x88);   // (a0 * b0) >> 32
    e.get(L_ADDR); e.i64c(0xffffffff); e.byte(0x83); e.byte(0x7c);
    e.get(L_TPC); e.i64c(0xffffffff); e.byte(0x83); e.byte(0x7c); e.set(L_F); // mid
    hi(rs1); hi(rs2); e.byte(0x7e);                             // a1 * b1
    e.get(L_ADDR); e.i64c(32); e.byte(0x88); e.byte(0x7c);
    e.get(L_TPC); e.i64c(32); e.byte(0x88); e.byte(0x7c);
    e.get(L_F); e.i64c(32); e.byte(0x88); e.byte(0x7c);         // the unsigned high word
    if (f3 !== 3) { get(rs1); e.i64c(63); e.byte(0x87); get(rs2); e.byte(0x83); e.byte(0x7d); } // - (a < 0 ? b : 0)
    if (f3 === 1) { get(rs2); e.i64c(63); e.byte(0x87); get(rs1); e.byte(0x83); e.byte(0x7d); } // - (b < 0 ? a : 0)
  };
  // 64-bit division and remainder as RISC-V defines them (M: by zero, overflow), which wasm
  // would trap on: `wide` = i64 operands, else the low words (the *W forms).
  const divide = (f3: number, rs1: number, rs2: number, wide: boolean): void => {
    const T = wide ? 0x7e : 0x7f;
    const a = (): void => { get(rs1); if (!wide) e.byte(0xa7); };
    const b = (): void => { get(rs2); if (!wide) e.byte(0xa7); };
    const c = (n: number): void => { if (wide) e.i64c(n); else e.i32c(n); };
    const op = (w: number, n: number): void => { e.byte(wide ? w : n); };
    b(); op(0x50, 0x45); e.byte2(0x04, T); // divisor 0
    if (f3 === 4 || f3 === 5) c(-1); else a();
    e.byte(0x05);
    if (f3 === 4) {
      // overflow (MIN / -1 = MIN): b = -1 gives 0 - a, which wraps to MIN there
      b(); c(-1); op(0x51, 0x46); e.byte2(0x04, T); c(0); a(); op(0x7d, 0x6b); e.byte(0x05); a(); b(); op(0x7f, 0x6d); e.byte(0x0b);
    } else {
      a(); b(); op([0, 0, 0, 0, 0x7f, 0x80, 0x81, 0x82][f3], [0, 0, 0, 0, 0x6d, 0x6e, 0x6f, 0x70][f3]); // rem_s of MIN by -1 is 0 in wasm, as in RISC-V
    }
    e.byte(0x0b);
    if (!wide) e.byte(0xac);
  };

  for (let x = 0; x < offs.length; x++) {
    const nd = at.get(offs[x])!;
    const o = nd.off, w = nd.insn, next = o + nd.len;
    if (index.get(o) !== undefined) {
      e.byte(0x0b); // end of the block before: this block's code
      blk = index.get(o)!;
      k = 0;
    }
    const rd = (w >>> 7) & 31, rs1 = (w >>> 15) & 31, rs2 = (w >>> 20) & 31, f3 = (w >>> 12) & 7, f7 = w >>> 25;
    const imm = w >> 20;
    switch (w & 0x7f) {
      case 0x13:
        get(rs1);
        if (f3 === 1 || f3 === 5) { e.i64c(imm & 63); e.byte(f3 === 1 ? 0x86 : (w >>> 30) & 1 ? 0x87 : 0x88); } else {
          e.i64c(imm);
          e.byte([0x7c, 0, 0x53, 0x54, 0x85, 0, 0x84, 0x83][f3]);
          if (f3 === 2 || f3 === 3) e.byte(0xad);
        }
        put(rd);
        break;
      case 0x33:
        if (f7 === 1 && f3 >= 4) divide(f3, rs1, rs2, true);
        else if (f7 === 1 && f3 !== 0) mulHigh(f3, rs1, rs2);
        else {
          get(rs1); get(rs2);
          if (f7 === 1) e.byte(0x7e);
          else if (f7 === 0x20) e.byte(f3 === 0 ? 0x7d : 0x87);
          else { e.byte([0x7c, 0x86, 0x53, 0x54, 0x85, 0x88, 0x84, 0x83][f3]); if (f3 === 2 || f3 === 3) e.byte(0xad); }
        }
        put(rd);
        break;
      case 0x3b:
        if (f7 === 1 && f3 >= 4) divide(f3, rs1, rs2, false);
        else if (f3 === 0) { get(rs1); get(rs2); e.byte(f7 === 1 ? 0x7e : f7 === 0x20 ? 0x7d : 0x7c); e.byte(0xc4); }
        else { get(rs1); e.byte(0xa7); get(rs2); e.byte(0xa7); e.byte(f3 === 1 ? 0x74 : f7 === 0x20 ? 0x75 : 0x76); e.byte(0xac); }
        put(rd);
        break;
      case 0x1b:
        get(rs1);
        if (f3 === 0) { e.i64c(imm); e.byte(0x7c); e.byte(0xc4); } else { e.byte(0xa7); e.i32c(rs2); e.byte(f3 === 1 ? 0x74 : f7 === 0x20 ? 0x75 : 0x76); e.byte(0xac); }
        put(rd);
        break;
      case 0x37: e.i64c(w & 0xfffff000); put(rd); break;
      case 0x17: e.get(L_PC0); e.i64c(o + (w & 0xfffff000)); e.byte(0x7c); put(rd); break;
      case 0x03: access(rs1, imm, f3 & 3, f3, false, noValue, o, next); put(rd); break;
      case 0x23:
        access(rs1, ((w >> 25) << 5) | ((w >>> 7) & 31), f3, f3, true, () => get(rs2), o, next);
        break;
      case 0x07: // FLW (LWU, NaN-boxed), FLD into f[rd]
        fpOn(o);
        access(rs1, imm, f3, f3 === 2 ? 6 : 3, false, noValue, o, next);
        if (f3 === 2) { e.i64c(-4294967296); e.byte(0x84); }
        e.set(L_F); e.i32c(0); e.get(L_F); e.mem(0x37, 3, FREGS + 8 * rd);
        fDirty();
        break;
      case 0x27: // FSW, FSD of f[rs2]
        fpOn(o);
        access(rs1, ((w >> 25) << 5) | ((w >>> 7) & 31), f3, f3, true, () => getF(rs2), o, next);
        break;
      case 0x43: case 0x47: case 0x4b: case 0x4f:
        fpOn(o);
        fpCall(o, w, FP_CALL, rd, rs1, 0);
        break;
      case 0x53:
        fpOn(o);
        if (fpKind(w) === FP_FAST) { fpInline(o, w, rd, rs1, rs2); break; }
        if (fpKind(w) !== FP_MOVE) { fpCall(o, w, fpKind(w), rd, rs1, 0); break; }
        if (f7 === 0x71) { getF(rs1); put(rd); break; } // FMV.X.D
        e.i32c(0);
        if (f7 === 0x79) get(rs1); // FMV.D.X
        else {
          // FSGNJ.D (f3 0), FSGNJN.D (1), FSGNJX.D (2): f[rs1] without its sign, the sign of
          // f[rs2], of its complement, of f[rs1] ^ f[rs2]
          getF(rs1); e.i64c(1); e.byte(0x86); e.i64c(1); e.byte(0x88);
          getF(rs2);
          if (f3 === 1) { e.i64c(-1); e.byte(0x85); } else if (f3 === 2) { getF(rs1); e.byte(0x85); }
          e.i64c(63); e.byte(0x88); e.i64c(63); e.byte(0x86); e.byte(0x84);
        }
        e.mem(0x37, 3, FREGS + 8 * rd);
        fDirty();
        break;
      case 0x0f: if (smp) e.byte3(0xfe, 0x03, 0x00); break; // FENCE: atomic.fence when other harts run on other threads
      case 0x2f: hartExec(o, w, next, rs1, rs2, rd); break;
      case 0x63:
        addN(k + 1); k = 0;
        get(rs1); get(rs2); e.byte([0x51, 0x52, 0, 0, 0x53, 0x59, 0x54, 0x5a][f3]);
        e.byte2(0x04, 0x40); jump(nd.target, 1); e.byte(0x0b);
        if (!at.has(next)) exit(next, 0, EXIT_OUT);
        continue;
      case 0x6f:
        e.get(L_PC0); e.i64c(next); e.byte(0x7c); put(rd);
        addN(k + 1); k = 0;
        jump(nd.target, 0);
        continue;
      case 0x67:
        // the target first (rd may be rs1), then the link
        get(rs1); e.i64c(imm); e.byte(0x7c); e.i64c(-2); e.byte(0x83); e.set(L_TPC);
        e.get(L_PC0); e.i64c(next); e.byte(0x7c); put(rd);
        addN(k + 1); k = 0;
        // a return to a call of this region: dispatched here (as jit.ts's regions do)
        for (const r of rets) {
          e.get(L_TPC); e.get(L_PC0); e.byte(0x7d); e.i64c(r); e.byte(0x51);
          e.byte2(0x04, 0x40); jump(r, 1); e.byte(0x0b);
        }
        exit(FAR, 0, EXIT_JALR);
        continue;
      default: throw new Error(`wasm tier: no code for ${w.toString(16)}`); // kindOf let in only what is handled above
    }
    k++;
    const nn = at.get(next);
    if (nn === undefined) { addN(k); exit(next, 0, EXIT_OUT); } else if (index.get(next) !== undefined) addN(k);
  }
  e.byte(0x0b); // end loop
  e.byte(0x0b); // end $exit
  // the one exit: the next pc
  e.get(P_EX); e.i32c(FAR); e.byte(0x47); e.byte2(0x04, 0x40);
  e.get(L_PC0); e.get(P_EX); e.byte(0xac); e.byte(0x7c); e.set(L_TPC);
  e.byte(0x0b);
  e.i32c(0); e.get(L_TPC); e.mem(0x37, 3, EXIT);
  // a JALR or a way out of the region: on into the region the chain cache maps the pc to
  e.i32c(0); e.mem(0x28, 2, EXIT_WHY); e.i32c(EXIT_JALR); e.byte(0x6b); e.i32c(2); e.byte(0x49);
  e.byte2(0x04, 0x40);
  e.get(L_TPC); e.byte(0xa7); e.tee(L_LO);
  e.i32c(1); e.byte(0x76); e.get(L_LO); e.i32c(12); e.byte(0x76); e.byte(0x73); // chainIndex
  e.i32c(CHAIN_MASK); e.byte(0x71); e.i32c(4); e.byte(0x74); e.tee(L_E4);
  e.mem(0x28, 2, CHAIN); e.get(L_LO); e.byte(0x46);
  e.get(L_E4); e.mem(0x28, 2, CHAIN + 4); e.get(L_TPC); e.i64c(32); e.byte(0x88); e.byte(0xa7); e.byte(0x46);
  e.byte(0x71);
  e.byte2(0x04, 0x40);
  e.i32c(0); e.i32c(0); e.mem(0x28, 2, CHAINS); e.i32c(1); e.byte(0x6a); e.mem(0x36, 2, CHAINS);
  e.get(L_TPC); e.i64c(-4096); e.byte(0x83); e.byte(0xb9); // pc0
  e.get(L_E4); e.mem(0x28, 2, CHAIN + 12); // next
  e.get(L_LO); e.i32c(4095); e.byte(0x71); // ex
  e.get(P_BUDGET); e.get(L_N);
  for (let r = 1; r < 32; r++) e.get(L[r]);
  e.get(L_E4); e.mem(0x28, 2, CHAIN + 8);
  e.byte(0x13); e.u32(T_BODY); e.u32(1); // return_call_indirect (the body's type, table 1): the budget is checked there
  e.byte(0x0b);
  e.byte(0x0b);
  // back to the hart: every register (this region's and those it chained from) to the register file
  for (let r = 1; r < 32; r++) storeX(r);
  e.get(L_N);
  endBody(e, body);
  e.end(code);
  const bytes = e.bytes();
  const module = new WebAssembly.Module(bytes);
  const covered: number[] = [];
  for (const o of offs) covered.push(o, at.get(o)!.len);
  return { module, size, covered, entries: starts, bytes: bytes.length, reads };
}
