// `npm run bench:wasm -- [features|compile|speed|cross|memory]`: the measured prototype behind
// docs/guest-ram.md (e), "A WebAssembly tier, measured" (issue 16). Nothing here is used by the
// hart; it answers, with numbers on the running Node, whether translating RISC-V blocks into
// WebAssembly (compiled by V8's baseline compiler Liftoff in microseconds) would beat today's
// translator (src/riscv/jit.ts: JavaScript regions that cost V8 10-20 ms to optimize).
//   features  which wasm features validate by default (multi-memory, memory64, shared memory
//             imports, return_call, exception handling, memory.discard)
//   compile   per-block cost: RISC-V blocks of ALU ops made into a wasm module (our emitter
//             below) + instantiation + first call (Liftoff), against jit.ts's compileRegion for
//             the same block + V8's optimizing compile of it
//   speed     a SHA-256 round as RV64 code (the shape busybox sha256sum runs), run as jit.ts's
//             region and as wasm (registers in i64 locals, RAM an imported shared memory reached
//             through a soft TLB kept in a second memory); instructions per second over time,
//             each in a fresh process (default tiering, Liftoff only, TurboFan only)
//   cross     ns per JS->wasm call and per wasm->JS import call
//   memory    multi-memory: how many memories a module can import, load/store cost in memory 0
//             vs memory 15 vs one picked at run time (br_table); memory64 from JS; RSS of a big
//             memory (and whether pages go back)
// Run with --allow-natives-syntax (the npm script does) so V8's optimization of the JavaScript
// regions can be timed; without it that column is skipped.
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { compileRegion, type BlockFn } from '../riscv/jit.js';
import { Hart, Tlb } from '../riscv/hart.js';
import { ReservationSet } from '../riscv/reservations.js';
import { PhysicalMemoryMap } from '../memory/bus.js';
import { ChunkViews, CHUNK_SIZE, GuestRam, newChunkMemory } from '../memory/ram.js';
import { leb, str, vec, section, sleb, funcType, local, I32, I64 } from '../memory/atomics64.js';

const SELF = fileURLToPath(import.meta.url);
const natives = process.execArgv.includes('--allow-natives-syntax');
// V8 intrinsics, reachable only through new Function when the flag is on
const prepareOpt = natives ? new Function('f', '%PrepareFunctionForOptimization(f)') as (f: unknown) => void : null;
const optimizeNext = natives ? new Function('f', '%OptimizeFunctionOnNextCall(f)') as (f: unknown) => void : null;
const now = (): number => performance.now();

// ---------------------------------------------------------------- wasm module assembly
const MEM = 0x02, FUNC = 0x00;
/** Limits: flags 0 (min), 1 (min, max), 3 (shared), 4 (memory64), 5 (memory64 with max). */
const limits = (flags: number, min: number, max?: number): number[] => [flags, ...leb(min), ...(max === undefined ? [] : leb(max))];
const memImport = (mod: string, name: string, lim: number[]): number[] => [...str(mod), ...str(name), MEM, ...lim];
/** Memory operand: alignment log2, memory index (multi-memory sets bit 6 of the alignment), offset. */
const memarg = (align: number, mem: number, offset = 0): number[] => mem === 0 ? [align, ...leb(offset)] : [align | 0x40, ...leb(mem), ...leb(offset)];
/** Signed LEB128 of an int32 without BigInt (atomics64.ts's sleb takes BigInts: ~10x slower,
 *  which made most of this emitter's time). */
const sleb32 = (n: number): number[] => { const o: number[] = []; for (;;) { const b = n & 0x7f; n >>= 7; if ((n === 0 && (b & 0x40) === 0) || (n === -1 && (b & 0x40) !== 0)) { o.push(b); return o; } o.push(b | 0x80); } };
const i32c = (n: number): number[] => [0x41, ...sleb32(n | 0)];
const i64c = (n: bigint): number[] => [0x42, ...sleb(BigInt.asIntN(64, n))];
/** i64.const of a number in int32 range (the immediates of RISC-V instructions). */
const i64s = (n: number): number[] => [0x42, ...sleb32(n)];
const lset = (i: number): number[] => [0x21, ...leb(i)];
const ltee = (i: number): number[] => [0x22, ...leb(i)];

interface ModuleSpec {
  types: number[][];
  imports?: number[][];
  funcs: { type: number; locals?: [number, number][]; body: number[] }[];
  memories?: number[][];
  exports?: [string, number, number][]; // name, kind (0 func), index
  tags?: number[]; // type indices (exception handling)
}
function wasmModule(s: ModuleSpec): Uint8Array<ArrayBuffer> {
  const out = [0x00, 0x61, 0x73, 0x6d, 1, 0, 0, 0,
    ...section(1, vec(s.types)),
    ...(s.imports ? section(2, vec(s.imports)) : []),
    ...section(3, vec(s.funcs.map((f) => leb(f.type)))),
    ...(s.memories ? section(5, vec(s.memories)) : []),
    ...(s.tags ? section(13, vec(s.tags.map((t) => [0, ...leb(t)]))) : []),
    ...(s.exports ? section(7, vec(s.exports.map(([n, k, i]) => [...str(n), k, ...leb(i)]))) : []),
    ...section(10, vec(s.funcs.map((f) => {
      const body = [...vec((f.locals ?? []).map(([n, t]) => [...leb(n), t])), ...f.body, 0x0b];
      return [...leb(body.length), ...body];
    })))];
  return new Uint8Array(out);
}

// ---------------------------------------------------------------- 1. features
function features(): void {
  const shared = limits(3, 1, 1);
  const t0 = funcType([], []);
  const tests: [string, ModuleSpec][] = [
    ['baseline (one memory, one function)', { types: [t0], imports: [memImport('m', 'a', limits(0, 1))], funcs: [{ type: 0, body: [] }] }],
    ['multi-memory (imports 2 memories)', { types: [t0], imports: [memImport('m', 'a', limits(0, 1)), memImport('m', 'b', limits(0, 1))], funcs: [{ type: 0, body: [] }] }],
    ['multi-memory load from memory 1', { types: [funcType([], [I32])], imports: [memImport('m', 'a', limits(0, 1)), memImport('m', 'b', limits(0, 1))], funcs: [{ type: 0, body: [...i32c(0), 0x28, ...memarg(2, 1)] }] }],
    ['shared memory import', { types: [t0], imports: [memImport('m', 'a', shared)], funcs: [{ type: 0, body: [] }] }],
    ['two shared memory imports', { types: [t0], imports: [memImport('m', 'a', shared), memImport('m', 'b', shared)], funcs: [{ type: 0, body: [] }] }],
    ['memory64 (defined, i64 address)', { types: [funcType([], [I64])], memories: [limits(4, 1)], funcs: [{ type: 0, body: [...i64c(0n), 0x29, ...memarg(3, 0)] }] }],
    ['memory64 of 16 GiB declared (maximum 262144 pages)', { types: [t0], memories: [limits(5, 1, 262144)], funcs: [{ type: 0, body: [] }] }],
    ['memory64 shared import', { types: [t0], imports: [memImport('m', 'a', limits(7, 1, 1))], funcs: [{ type: 0, body: [] }] }],
    ['return_call (tail call)', { types: [t0], funcs: [{ type: 0, body: [0x12, 0] }] }],
    ['exception handling, legacy try/catch', { types: [t0], tags: [0], funcs: [{ type: 0, body: [0x06, 0x40, 0x08, 0, 0x07, 0, 0x0b] }] }],
    ['exception handling, try_table (exnref)', { types: [t0], tags: [0], funcs: [{ type: 0, body: [0x1f, 0x40, 0, 0x08, 0, 0x0b] }] }],
    ['memory.discard (memory-control proposal, 0xfc 0x12)', { types: [t0], memories: [limits(0, 1)], funcs: [{ type: 0, body: [...i32c(0), ...i32c(65536), 0xfc, 0x12, 0] }] }],
  ];
  console.log(`features (Node ${process.version}, V8 ${process.versions.v8}): WebAssembly.validate`);
  for (const [name, spec] of tests) console.log(`  ${WebAssembly.validate(wasmModule(spec)) ? 'yes' : 'NO '}  ${name}`);
  const js: [string, () => unknown][] = [
    ['JS API memory64: new WebAssembly.Memory({ index: "i64" }) (older spelling)', () => new WebAssembly.Memory({ initial: 1, index: 'i64' } as unknown as WebAssembly.MemoryDescriptor)],
    ['JS API memory64: new WebAssembly.Memory({ address: "i64", initial: 1n })', () => new WebAssembly.Memory({ initial: 1n, address: 'i64' } as unknown as WebAssembly.MemoryDescriptor)],
    ['JS API: WebAssembly.Memory.prototype.discard', () => { if (!('discard' in WebAssembly.Memory.prototype)) throw new Error('absent'); }],
  ];
  for (const [name, f] of js) { let ok = true; try { f(); } catch { ok = false; } console.log(`  ${ok ? 'yes' : 'NO '}  ${name}`); }
}

// ---------------------------------------------------------------- RISC-V code (a tiny assembler)
const R = (f7: number, rs2: number, rs1: number, f3: number, rd: number, op: number): number => ((f7 << 25) | (rs2 << 20) | (rs1 << 15) | (f3 << 12) | (rd << 7) | op) >>> 0;
const I = (imm: number, rs1: number, f3: number, rd: number, op: number): number => (((imm & 0xfff) << 20) | (rs1 << 15) | (f3 << 12) | (rd << 7) | op) >>> 0;
const rv = {
  addi: (rd: number, rs: number, imm: number) => I(imm, rs, 0, rd, 0x13),
  xori: (rd: number, rs: number, imm: number) => I(imm, rs, 4, rd, 0x13),
  andi: (rd: number, rs: number, imm: number) => I(imm, rs, 7, rd, 0x13),
  slli: (rd: number, rs: number, sh: number) => I(sh, rs, 1, rd, 0x13),
  srli: (rd: number, rs: number, sh: number) => I(sh, rs, 5, rd, 0x13),
  add: (rd: number, a: number, b: number) => R(0, b, a, 0, rd, 0x33),
  sub: (rd: number, a: number, b: number) => R(0x20, b, a, 0, rd, 0x33),
  xor: (rd: number, a: number, b: number) => R(0, b, a, 4, rd, 0x33),
  or: (rd: number, a: number, b: number) => R(0, b, a, 6, rd, 0x33),
  and: (rd: number, a: number, b: number) => R(0, b, a, 7, rd, 0x33),
  addw: (rd: number, a: number, b: number) => R(0, b, a, 0, rd, 0x3b),
  slliw: (rd: number, rs: number, sh: number) => I(sh, rs, 1, rd, 0x1b),
  srliw: (rd: number, rs: number, sh: number) => I(sh, rs, 5, rd, 0x1b),
  lw: (rd: number, rs: number, imm: number) => I(imm, rs, 2, rd, 0x03),
  sw: (rs2: number, rs1: number, imm: number) => ((((imm >> 5) & 0x7f) << 25) | (rs2 << 20) | (rs1 << 15) | (2 << 12) | ((imm & 31) << 7) | 0x23) >>> 0,
  bne: (a: number, b: number, off: number) => ((((off >> 12) & 1) << 31) | (((off >> 5) & 0x3f) << 25) | (b << 20) | (a << 15) | (1 << 12) | (((off >> 1) & 15) << 8) | (((off >> 11) & 1) << 7) | 0x63) >>> 0,
};
const [T0, T1, T2, S1, A1, A2, A3, A4, A5, A6, A7, S2, S3, S4, S5, T3, T4, T5, T6] = [5, 6, 7, 9, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 28, 29, 30, 31];

/** One SHA-256 round per iteration, as RV64GC code without Zbb compiles it (rotations as two
 *  shifts and an or): W[i] and K[i] loaded from tables in RAM, the eight working variables in
 *  registers, a store into W, a counter in s1. 56 instructions, one basic block. */
function sha256Loop(): number[] {
  const c: number[] = [
    rv.andi(T6, S2, 252), rv.add(T5, A1, T6), rv.lw(T0, T5, 0), rv.add(T5, A2, T6), rv.lw(T1, T5, 0),
    rv.srliw(T2, A3, 6), rv.slliw(T3, A3, 26), rv.or(T2, T2, T3),
    rv.srliw(T3, A3, 11), rv.slliw(T4, A3, 21), rv.or(T3, T3, T4), rv.xor(T2, T2, T3),
    rv.srliw(T3, A3, 25), rv.slliw(T4, A3, 7), rv.or(T3, T3, T4), rv.xor(T2, T2, T3),
    rv.and(T3, A3, A4), rv.xori(T4, A3, -1), rv.and(T4, T4, A5), rv.xor(T3, T3, T4),
    rv.addw(T2, A6, T2), rv.addw(T2, T2, T3), rv.addw(T2, T2, T0), rv.addw(T2, T2, T1),
    rv.srliw(T3, A7, 2), rv.slliw(T4, A7, 30), rv.or(T3, T3, T4),
    rv.srliw(T4, A7, 13), rv.slliw(T0, A7, 19), rv.or(T4, T4, T0), rv.xor(T3, T3, T4),
    rv.srliw(T4, A7, 22), rv.slliw(T0, A7, 10), rv.or(T4, T4, T0), rv.xor(T3, T3, T4),
    rv.and(T4, A7, S3), rv.and(T0, A7, S4), rv.xor(T4, T4, T0), rv.and(T0, S3, S4), rv.xor(T4, T4, T0),
    rv.addw(T3, T3, T4),
    rv.addi(A6, A5, 0), rv.addi(A5, A4, 0), rv.addi(A4, A3, 0), rv.addw(A3, S5, T2),
    rv.addi(S5, S4, 0), rv.addi(S4, S3, 0), rv.addi(S3, A7, 0), rv.addw(A7, T2, T3),
    rv.add(T5, A1, T6), rv.sw(A3, T5, 0),
    rv.addi(S2, S2, 4), rv.addi(S1, S1, -1),
  ];
  c.push(rv.bne(S1, 0, -4 * c.length));
  return c;
}

/** A block of `len` random ALU instructions on x5..x8, x10..x15 (deterministic per seed), then
 *  `addi s1, s1, -1; bne s1, x0, start`: the shape of warm code (jit.ts translates only loops). */
function aluBlock(len: number, seed: number): number[] {
  let x = seed * 2654435761 >>> 0 || 1;
  const rnd = (n: number): number => { x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0; return x % n; };
  const regs = [5, 6, 7, 8, 10, 11, 12, 13, 14, 15];
  const r = (): number => regs[rnd(regs.length)];
  const c: number[] = [];
  for (let i = 0; i < len; i++) {
    switch (rnd(10)) {
      case 0: c.push(rv.addi(r(), r(), rnd(4096) - 2048)); break;
      case 1: c.push(rv.add(r(), r(), r())); break;
      case 2: c.push(rv.sub(r(), r(), r())); break;
      case 3: c.push(rv.xor(r(), r(), r())); break;
      case 4: c.push(rv.and(r(), r(), r())); break;
      case 5: c.push(rv.or(r(), r(), r())); break;
      case 6: c.push(rv.slli(r(), r(), rnd(64))); break;
      case 7: c.push(rv.srli(r(), r(), rnd(64))); break;
      case 8: c.push(rv.addw(r(), r(), r())); break;
      default: c.push(rv.srliw(r(), r(), rnd(32))); break;
    }
  }
  c.push(rv.addi(S1, S1, -1));
  c.push(rv.bne(S1, 0, -4 * c.length));
  return c;
}

// ---------------------------------------------------------------- RV64 -> wasm (the prototype translator)
// Layout of the per-hart memory (memory 0, not shared: one hart's state): x registers as i64 at
// 8*r; the read/write soft TLB at TLB (tags: page virtual address as i64, 256 entries) and TLB_OFF
// (i32 byte offset of the page in the RAM chunk); the exit pc (page offset) at EXIT.
// Guest RAM is memory 1: one 2 MiB chunk, imported (shared, as ram.ts makes them). A TLB entry is
// valid only for pages of that chunk: a real tier would import every chunk a block touches, or
// check a chunk number in the entry (see the notes in docs/guest-ram.md (e)).
const TLB = 512, TLB_OFF = TLB + 256 * 8, EXIT = TLB_OFF + 256 * 4;

/** One loop of RV64 code (ending in a backward bne to its start) as a wasm function
 *  (budget: i32) -> retired: i32. Registers the block uses are i64 locals, loaded at entry and
 *  stored at exit; every iteration adds its instruction count and leaves when over budget; a
 *  load or store missing the soft TLB leaves before itself (EXIT = its page offset). */
function translateWasm(code: number[]): Uint8Array<ArrayBuffer> {
  return blockModule([code]);
}

/** One module holding a function per block (`run0`, `run1`, ...), as a tier translating a whole
 *  page at once would make. */
function blockModule(blocks: number[][]): Uint8Array<ArrayBuffer> {
  return wasmModule({
    types: [funcType([I32], [I32])],
    imports: [memImport('m', 'state', limits(0, 1)), memImport('m', 'ram', limits(3, CHUNK_SIZE / 65536, CHUNK_SIZE / 65536))],
    funcs: blocks.map(blockFunction),
    exports: blocks.map((_, i) => [`run${i}`, FUNC, i]),
  });
}

function blockFunction(code: number[]): { type: number; locals: [number, number][]; body: number[] } {
  const used = new Set<number>();
  for (const w of code) { used.add((w >>> 7) & 31); used.add((w >>> 15) & 31); used.add((w >>> 20) & 31); }
  used.delete(0);
  // locals: 0 budget (param), 1 n, 2 addr (i64), 3 pa (i32), then one i64 per used register
  const regs = [...used].sort((a, b) => a - b);
  const L = new Map<number, number>(regs.map((r, i) => [r, 4 + i]));
  const get = (r: number): number[] => (r === 0 ? i64s(0) : local(L.get(r)!));
  const put = (r: number, val: number[]): number[] => (r === 0 ? [] : [...val, ...lset(L.get(r)!)]);
  const b: number[] = [];
  for (const r of regs) b.push(...i32c(0), 0x29, ...memarg(3, 0, 8 * r), ...lset(L.get(r)!));
  b.push(0x02, 0x40, 0x03, 0x40); // block $exit, loop $top
  // Soft TLB lookup of x[rs1] + imm into local 3 (byte offset in the chunk), or leave (depth:
  // blocks between the code and $exit).
  const tlb = (rs1: number, imm: number, align: number, k: number, off: number, depth: number): number[] => [
    ...get(rs1), ...i64s(imm), 0x7c, ...ltee(2),
    0xa7, ...i32c(12), 0x76, ...i32c(255), 0x71, ...i32c(3), 0x74, // e*8
    0x29, ...memarg(3, 0, TLB), ...local(2), ...i64s(-4096 | align), 0x83, 0x52, // tag != addr & ~4095 (misaligned: low bits set, so unequal)
    0x04, 0x40, ...i32c(0), ...i32c(off), 0x36, ...memarg(2, 0, EXIT), ...local(1), ...i32c(k), 0x6a, ...lset(1), 0x0c, ...leb(depth + 1), 0x0b,
    ...local(2), 0xa7, ...i32c(12), 0x76, ...i32c(255), 0x71, ...i32c(2), 0x74, 0x28, ...memarg(2, 0, TLB_OFF),
    ...local(2), 0xa7, ...i32c(4095), 0x71, 0x6a, ...lset(3),
  ];
  for (let k = 0; k < code.length; k++) {
    const w = code[k];
    const rd = (w >>> 7) & 31, rs1 = (w >>> 15) & 31, rs2 = (w >>> 20) & 31, f3 = (w >>> 12) & 7, f7 = w >>> 25, imm = w >> 20;
    const wide = (ops: number[]): number[] => [0xa7, ...ops, 0xac]; // i32 op on the low word, sign-extended
    switch (w & 0x7f) {
      case 0x13: {
        const sh = imm & 63, op = [0x7c, 0, 0, 0, 0x85, 0, 0x84, 0x83][f3];
        if (f3 === 1) b.push(...put(rd, [...get(rs1), ...i64s(sh), 0x86]));
        else if (f3 === 5) b.push(...put(rd, [...get(rs1), ...i64s(sh), (w >>> 30) & 1 ? 0x87 : 0x88]));
        else if (op !== 0) b.push(...put(rd, [...get(rs1), ...i64s(imm), op]));
        else throw new Error(`wasm prototype: unsupported op-imm ${w.toString(16)}`);
        break;
      }
      case 0x33: {
        const op = f7 === 0x20 ? 0x7d : [0x7c, 0x86, 0, 0, 0x85, 0x88, 0x84, 0x83][f3];
        if (op === 0 || f7 === 1) throw new Error(`wasm prototype: unsupported op ${w.toString(16)}`);
        b.push(...put(rd, [...get(rs1), ...get(rs2), op]));
        break;
      }
      case 0x3b: b.push(...put(rd, [...get(rs1), ...get(rs2), 0x7c, ...wide([])])); break; // addw
      case 0x1b: b.push(...put(rd, [...get(rs1), ...wide([...i32c(rs2), f3 === 1 ? 0x74 : 0x76])])); break; // slliw/srliw
      case 0x03: b.push(...tlb(rs1, imm, 3, k, 4 * k, 1), ...put(rd, [...local(3), 0x34, ...memarg(2, 1)])); break; // lw: i64.load32_s
      case 0x23: {
        const simm = ((w >> 25) << 5) | ((w >>> 7) & 31);
        b.push(...tlb(rs1, simm, 3, k, 4 * k, 1), ...local(3), ...get(rs2), 0x3e, ...memarg(2, 1)); // sw: i64.store32
        break;
      }
      case 0x63: // bne back to the start (the only branch the prototype's blocks have)
        b.push(...local(1), ...i32c(k + 1), 0x6a, ...lset(1),
          ...get(rs1), ...get(rs2), 0x52, 0x04, 0x40,
          ...local(1), ...local(0), ...i32c(code.length), 0x6b, 0x4c, 0x0d, 1, // n <= budget - size: br $top
          ...i32c(0), ...i32c(0), 0x36, ...memarg(2, 0, EXIT), 0x0c, 2, 0x0b,
          ...i32c(0), ...i32c(4 * (k + 1)), 0x36, ...memarg(2, 0, EXIT));
        break;
      default: throw new Error(`wasm prototype: unsupported instruction ${w.toString(16)}`);
    }
  }
  b.push(0x0b, 0x0b); // end loop, end block
  for (const r of regs) b.push(...i32c(0), ...local(L.get(r)!), 0x37, ...memarg(3, 0, 8 * r));
  b.push(...local(1));
  return { type: 0, locals: [[1, I32], [1, I64], [1, I32], [regs.length, I64]], body: b };
}

// ---------------------------------------------------------------- a hart-shaped environment for both
const PC0 = 0x80000000, DATA = 0x80100000; // code page and data tables (RAM at 0x80000000, chunk 0)

class Env {
  readonly chunk = newChunkMemory();
  readonly views = new ChunkViews(this.chunk);
  readonly state = new WebAssembly.Memory({ initial: 1 });
  readonly xl = new Int32Array(33);
  readonly xh = new Int32Array(33);
  readonly r = new Tlb();
  readonly w = new Tlb();
  readonly h = { pc: 0, hartId: 0, codeDirty: false, rawInsn: 0, jitTrap: false, jumpFar(): void { throw new Error('far jump'); } };
  readonly resv = { active: new Int32Array(1), storeBy(): void { /* no reservations */ } };
  constructor() {
    const s64 = new BigInt64Array(this.state.buffer), s32 = new Int32Array(this.state.buffer);
    for (const va of [DATA]) {
      const e = (va >>> 12) & 255, off = va - 0x80000000;
      for (const t of [this.r, this.w]) {
        t.tagLo[e] = va | 0; t.tagHi[e] = 0; t.off[e] = off; t.pa[e] = va;
        t.u8[e] = this.views.u8; t.u16[e] = this.views.u16; t.i32[e] = this.views.i32; t.f64[e] = this.views.f64; t.chunk[e] = this.views;
      }
      s64[TLB / 8 + e] = BigInt(va); s32[TLB_OFF / 4 + e] = off;
    }
    for (let e = 0; e < 256; e++) if (e !== ((DATA >>> 12) & 255)) s64[TLB / 8 + e] = 4095n; // invalid (no address masked by a lookup has these bits)
    const d = new Int32Array(this.chunk.buffer, DATA - 0x80000000, 128);
    for (let i = 0; i < 128; i++) d[i] = Math.imul(i + 1, 0x9e3779b9);
  }
  /** Sets x[r] in both register files (JS halves, wasm state memory). */
  set(r: number, v: bigint): void {
    this.xl[r] = Number(BigInt.asIntN(32, v)); this.xh[r] = Number(BigInt.asIntN(32, v >> 32n));
    new BigInt64Array(this.state.buffer)[r] = BigInt.asIntN(64, v);
  }
  jsReg(r: number): bigint { return BigInt.asIntN(64, (BigInt(this.xh[r]) << 32n) | BigInt(this.xl[r] >>> 0)); }
  wasmReg(r: number): bigint { return new BigInt64Array(this.state.buffer)[r]; }
}

function codeView(code: number[]): Uint16Array {
  const v = new Uint16Array(2048);
  code.forEach((w, i) => { v[2 * i] = w & 0xffff; v[2 * i + 1] = w >>> 16; });
  return v;
}
function jsRegion(code: number[]): BlockFn {
  const reg = compileRegion(codeView(code), 0, 0, true, false);
  if (reg === null) throw new Error('jit.ts made no region of the block');
  return reg.fn;
}
function wasmRun(env: Env, bytes: Uint8Array<ArrayBuffer>): (budget: number) => number {
  const inst = new WebAssembly.Instance(new WebAssembly.Module(bytes), { m: { state: env.state, ram: env.chunk } });
  return inst.exports.run0 as (budget: number) => number;
}
function shaEnv(): Env {
  const env = new Env();
  env.set(A1, BigInt(DATA)); env.set(A2, BigInt(DATA + 256)); env.set(S2, 0n);
  [A3, A4, A5, A6, A7, S3, S4, S5].forEach((r, i) => env.set(r, BigInt(0x6a09e667 + i * 0x1234567)));
  return env;
}

// ---------------------------------------------------------------- 2. compile cost
function compile(): void {
  console.log(`compile (Node ${process.version}): per block of N ALU instructions + addi/bne (a loop, as jit.ts needs); 120 is near jit.ts's largest region (128)`);
  console.log('  per block:  wasm: emit (this prototype)  Module+Instance  first call (lazy Liftoff)  [all blocks in one module: emit+Module+Instance  first call]  |  JS: compileRegion (jit.ts)  first call  TurboFan (%OptimizeFunctionOnNextCall + call)');
  for (const [len, count] of [[20, 1], [20, 10], [20, 100], [20, 1000], [120, 1], [120, 10], [120, 100]]) {
    const seed0 = count * 7919 + len;
    const env = new Env();
    env.set(S1, 1n);
    // wasm: one module per block (a tier would compile blocks as they warm up)
    let t = now();
    const bytes: Uint8Array<ArrayBuffer>[] = [];
    for (let i = 0; i < count; i++) bytes.push(translateWasm(aluBlock(len, seed0 + i)));
    const tEmit = now() - t;
    t = now();
    const runs = bytes.map((by) => wasmRun(env, by));
    const tInst = now() - t;
    t = now();
    for (const f of runs) { env.set(S1, 1n); f(1000); }
    const tCall = now() - t;
    // wasm: the same blocks in one module (a page's worth at a time)
    t = now();
    const one = new WebAssembly.Instance(new WebAssembly.Module(blockModule(Array.from({ length: count }, (_, i) => aluBlock(len, seed0 + i)))), { m: { state: env.state, ram: env.chunk } });
    const tOne = now() - t;
    t = now();
    for (let i = 0; i < count; i++) { env.set(S1, 1n); (one.exports[`run${i}`] as (b: number) => number)(1000); }
    const tOneCall = now() - t;
    // JS: jit.ts's own code generator and new Function, then V8's optimization of each
    t = now();
    const fns: BlockFn[] = [];
    for (let i = 0; i < count; i++) fns.push(jsRegion(aluBlock(len, seed0 + i)));
    const tGen = now() - t;
    t = now();
    for (const f of fns) { env.xl[S1] = 1; f(env.h, PC0, 0, 1000, env.xl, env.xh, env.r, env.w, env.resv); }
    const tJsCall = now() - t;
    let tOpt = NaN;
    if (prepareOpt && optimizeNext) {
      for (const f of fns) { prepareOpt(f); env.xl[S1] = 1; f(env.h, PC0, 0, 1000, env.xl, env.xh, env.r, env.w, env.resv); }
      t = now();
      for (const f of fns) { optimizeNext(f); env.xl[S1] = 1; f(env.h, PC0, 0, 1000, env.xl, env.xh, env.r, env.w, env.resv); }
      tOpt = now() - t;
    }
    const us = (ms: number): string => `${(1000 * ms / count).toFixed(1).padStart(8)} µs`;
    console.log(`  N=${len} ${String(count).padStart(4)} blocks  ${us(tEmit)}  ${us(tInst)}  ${us(tCall)}  [${us(tOne)}  ${us(tOneCall)}]  |  ${us(tGen)}  ${us(tJsCall)}  ${Number.isNaN(tOpt) ? 'n/a (run with --allow-natives-syntax)' : us(tOpt)}`);
  }
}

// ---------------------------------------------------------------- 3. run speed
/** Runs `step` (which retires about `chunk` instructions per call) for `ms` and prints the
 *  instructions per second in successive windows (first call, to 10 ms, 100 ms, 1 s, then). */
function timeline(label: string, step: () => number, ms: number): void {
  const marks = [10, 100, 1000, ms];
  const out: string[] = [];
  const t0 = now();
  let t = now();
  let n = step();
  out.push(`first call ${(n / (now() - t) / 1000).toFixed(0)} MIPS`);
  let from = now(), nWin = 0, m = 0;
  for (;;) {
    nWin += step();
    const el = now() - t0;
    if (el >= marks[m]) {
      out.push(`${m === 0 ? 0 : marks[m - 1]}-${marks[m]} ms ${(nWin / (now() - from) / 1000).toFixed(0)}`);
      from = now(); nWin = 0; m++;
      if (m === marks.length) break;
    }
  }
  void n; n = 0;
  console.log(`  ${label.padEnd(34)} ${out.join(', ')} MIPS`);
}

function speedChild(kind: string): void {
  const code = sha256Loop();
  const env = shaEnv();
  const CHUNK = 100_000; // instructions per call (the hart's budget per slice is of this order)
  if (kind === 'interpreter' || kind === 'hart') {
    // The real hart on the same code and data (bare M-mode, no paging: its soft TLB maps physical
    // pages): its interpreter alone, or with jit.ts as it runs in a VM (tiers, thresholds).
    const { h } = realHart(code, env, kind === 'hart');
    timeline(`${kind === 'hart' ? 'hart, jit.ts on' : 'hart, interpreter only'}, ${process.version}`, () => { h.setX(S1, 1 << 30); return h.run(CHUNK); }, 3000);
  } else if (kind === 'js') {
    const fn = jsRegion(code);
    timeline(`JS region (jit.ts), ${process.version}`, () => { env.xl[S1] = 1 << 30; return fn(env.h, PC0, 0, CHUNK, env.xl, env.xh, env.r, env.w, env.resv); }, 3000);
  } else {
    const run = wasmRun(env, translateWasm(code));
    timeline(`wasm ${kind}, ${process.version}`, () => { new BigInt64Array(env.state.buffer)[S1] = 1n << 30n; return run(CHUNK); }, 3000);
  }
}

/** The real hart (src/riscv/hart.ts) on `code` at PC0, with the registers and data of `env`
 *  (bare M-mode, no paging: its soft TLB maps physical pages). */
function realHart(code: number[], env: Env, jit: boolean): { h: Hart; ram: GuestRam } {
  const ram = new GuestRam(PC0, 4 * CHUNK_SIZE);
  const h = new Hart(0, new PhysicalMemoryMap(ram), { mtime: () => 0 }, new ReservationSet());
  ram.write(PC0, new Uint8Array(new Uint32Array(code).buffer));
  ram.write(DATA, new Uint8Array(env.chunk.buffer, DATA - PC0, 512));
  for (let r = 1; r < 32; r++) h.setX(r, env.jsReg(r));
  h.setPc(PC0);
  h.jitEnabled = jit;
  return { h, ram };
}

/** The two translations of the SHA-256 loop compute the same registers and memory as each other
 *  and as the hart's interpreter. */
function checkSame(): void {
  const code = sha256Loop();
  const a = shaEnv(), b = shaEnv();
  a.set(S1, 1000n); b.set(S1, 1000n);
  const fn = jsRegion(code);
  let nj = 0, nw = 0;
  while (a.xl[S1] !== 0) nj += fn(a.h, PC0, 0, 1 << 20, a.xl, a.xh, a.r, a.w, a.resv);
  const c = shaEnv(); c.set(S1, 1000n);
  const { h, ram } = realHart(code, c, false);
  let ni = 0;
  while (h.getX(S1) !== 0n) ni += h.run(code.length); // one iteration per call: none beyond the loop
  const mi = new Uint8Array(512); ram.read(DATA, mi);
  const run = wasmRun(b, translateWasm(code));
  while (b.wasmReg(S1) !== 0n) nw += run(1 << 20);
  const badI = [...Array(32).keys()].filter((r) => r > 0 && BigInt.asIntN(64, h.getX(r)) !== b.wasmReg(r));
  if (badI.length > 0 || ni !== nw || !mi.every((v, i) => v === new Uint8Array(b.chunk.buffer, DATA - 0x80000000, 512)[i])) {
    console.error(`wasm translation and the hart's interpreter differ: registers ${badI.join(',')}, retired ${nw} vs ${ni}`);
    process.exit(1);
  }
  const bad = [...Array(32).keys()].filter((r) => r > 0 && a.jsReg(r) !== b.wasmReg(r));
  const ma = new Uint8Array(a.chunk.buffer, DATA - 0x80000000, 512), mb = new Uint8Array(b.chunk.buffer, DATA - 0x80000000, 512);
  if (bad.length > 0 || nj !== nw || !ma.every((v, i) => v === mb[i])) {
    console.error(`wasm and JS translations differ: registers ${bad.join(',')}, retired ${nj} vs ${nw}`);
    process.exit(1);
  }
  console.log(`  check: 1000 iterations (${nj} instructions) give the same registers and memory in JS and wasm as in the hart's interpreter`);
}

function speed(): void {
  console.log(`speed: SHA-256 round loop, ${sha256Loop().length} RV64 instructions per iteration, 100 000 per call; each line a fresh process`);
  checkSame();
  const runs: [string, string[]][] = [
    ['interpreter', []],
    ['hart', []],
    ['js', []],
    ['default tiering (Liftoff, then TurboFan)', []],
    ['Liftoff only', ['--liftoff-only']],
    ['TurboFan only', ['--no-liftoff']],
  ];
  for (const [kind, flags] of runs) process.stdout.write(execFileSync(process.execPath, [...flags, SELF, 'speed-child', kind]));
}

// ---------------------------------------------------------------- 4. crossing cost
function cross(): void {
  const mod = wasmModule({
    types: [funcType([I32], [I32])],
    imports: [[...str('m'), ...str('f'), 0x00, 0]],
    funcs: [
      { type: 0, body: [...local(0), ...i32c(1), 0x6a] },                                     // nop: x + 1
      { type: 0, locals: [[1, I32]], body: [0x03, 0x40, ...local(1), 0x10, 0, ...lset(1), ...local(0), ...i32c(1), 0x6b, ...ltee(0), 0x0d, 0, 0x0b, ...local(1)] }, // n calls of import
      { type: 0, locals: [[1, I32]], body: [0x03, 0x40, ...local(1), ...i32c(1), 0x6a, ...lset(1), ...local(0), ...i32c(1), 0x6b, ...ltee(0), 0x0d, 0, 0x0b, ...local(1)] }, // same loop, no call
    ],
    exports: [['nop', FUNC, 1], ['callJs', FUNC, 2], ['loop', FUNC, 3]],
  });
  const inst = new WebAssembly.Instance(new WebAssembly.Module(mod), { m: { f: (x: number) => (x + 1) | 0 } });
  const { nop, callJs, loop } = inst.exports as Record<string, (n: number) => number>;
  const N = 10_000_000;
  const jsNop = (x: number): number => (x + 1) | 0;
  // one loop per callee, so that each call site stays monomorphic (V8 can inline the JS-to-wasm
  // wrapper only there)
  const jsLoop = (): number => { let x = 0; for (let i = 0; i < N; i++) x = jsNop(x); return x; };
  const wasmLoop = (): number => { let x = 0; for (let i = 0; i < N; i++) x = nop(x); return x; };
  const time = (f: () => number): number => { f(); f(); const t = now(); f(); return (now() - t) * 1e6 / N; };
  const anyLoop = (f: (x: number) => number): number => { let x = 0; for (let i = 0; i < N; i++) x = f(x); return x; };
  const base = time(jsLoop);
  const js2w = time(wasmLoop);
  time(() => anyLoop(jsNop));
  const polyW = time(() => anyLoop(nop)), polyJ = time(() => anyLoop(jsNop));
  const w2js = time(() => callJs(N));
  const wloop = time(() => loop(N));
  console.log(`cross (Node ${process.version}): ${N} calls each`);
  console.log(`  JS -> wasm call: ${(js2w - base).toFixed(1)} ns (${js2w.toFixed(1)} ns per iteration, a JS -> JS call ${base.toFixed(1)} ns)`);
  console.log(`  a call site that calls both (as the hart's call of translated code would): ${polyW.toFixed(1)} ns per iteration calling wasm, ${polyJ.toFixed(1)} calling JS`);
  console.log(`  wasm -> JS import call: ${(w2js - wloop).toFixed(1)} ns (${w2js.toFixed(1)} ns per iteration, the loop alone ${wloop.toFixed(1)} ns)`);
}

// ---------------------------------------------------------------- 5. memory
async function memory(): Promise<void> {
  console.log(`memory (Node ${process.version}):`);
  const chunk = newChunkMemory();
  const shared = limits(3, CHUNK_SIZE / 65536, CHUNK_SIZE / 65536);
  for (const n of [16, 100, 1000, 10000, 100000]) {
    const imports = Array.from({ length: n }, (_, i) => memImport('m', `c${i}`, shared));
    const bytes = wasmModule({ types: [funcType([], [])], imports, funcs: [{ type: 0, body: [] }] });
    let res = WebAssembly.validate(bytes) ? 'validates' : 'does not validate';
    if (res === 'validates') {
      const obj: Record<string, WebAssembly.Memory> = {};
      for (let i = 0; i < n; i++) obj[`c${i}`] = chunk;
      const t = now();
      try { new WebAssembly.Instance(new WebAssembly.Module(bytes), { m: obj }); res += `, instantiates (${(now() - t).toFixed(1)} ms, the same chunk imported ${n} times)`; } catch (e) { res += `, instantiation fails: ${(e as Error).message}`; }
    }
    console.log(`  a module importing ${n} shared 2 MiB memories: ${res}`);
  }
  for (const flags of [[], ['--liftoff-only']]) process.stdout.write(execFileSync(process.execPath, [...flags, SELF, 'memaccess-child']));
  // memory64 and page release
  let m64 = 'no';
  for (const [spelling, desc] of [
    ["{ index: 'i64' }, page counts as Numbers", { initial: 1, maximum: 65536 * 4, index: 'i64', shared: true }],
    ["{ address: 'i64' }, page counts as BigInts", { initial: 1n, maximum: 65536n * 4n, address: 'i64', shared: true }],
  ] as const) {
    try {
      const m = new WebAssembly.Memory(desc as unknown as WebAssembly.MemoryDescriptor);
      const t = now(); m.grow((typeof desc.initial === 'bigint' ? 65536n * 4n - 1n : 65536 * 4 - 1) as number);
      m64 = `yes, grown to ${m.buffer.byteLength / 2 ** 30} GiB in ${(now() - t).toFixed(1)} ms, RSS ${(process.memoryUsage().rss / 2 ** 20).toFixed(0)} MiB`;
    } catch (e) { m64 = `no: ${(e as Error).message}`; }
    console.log(`  shared memory64 of 16 GiB (the largest guest vmctl allows) from JS, ${spelling}: ${m64}`);
  }
  const rss = (): string => `${(process.memoryUsage().rss / 2 ** 20).toFixed(0)} MiB`;
  const before = rss();
  let big: WebAssembly.Memory | null = new WebAssembly.Memory({ initial: 16384, maximum: 16384, shared: true }); // 1 GiB
  const afterAlloc = rss();
  new Uint8Array(big.buffer, 0, 512 * 2 ** 20).fill(1);
  const afterTouch = rss();
  new Uint8Array(big.buffer, 0, 512 * 2 ** 20).fill(0);
  const afterZero = rss();
  big = null;
  const gc = (globalThis as { gc?: () => void }).gc;
  let afterDrop = 'not measured (run with --expose-gc)';
  if (gc) { gc(); await new Promise((r) => setTimeout(r, 200)); gc(); await new Promise((r) => setTimeout(r, 200)); afterDrop = rss(); }
  console.log(`  RSS: ${before} before; 1 GiB shared memory allocated ${afterAlloc}; 512 MiB touched ${afterTouch}; zeroed again ${afterZero}; memory dropped + GC ${afterDrop}`);
}

/** Load + add + store of a doubleword in memory 0 against memory 15 of a module importing 16
 *  distinct chunks (each call of a loop of 20 M iterations; run in its own process per tier). */
function memAccessChild(): void {
  const shared = limits(3, CHUNK_SIZE / 65536, CHUNK_SIZE / 65536);
  const M = 16;
  const mems = Array.from({ length: M }, () => newChunkMemory());
  const body = (m: number): number[] => [0x03, 0x40,
    ...local(0), ...i32c(0x3ff8), 0x71, ...local(0), ...i32c(0x3ff8), 0x71, 0x29, ...memarg(3, m), ...i64c(1n), 0x7c, 0x37, ...memarg(3, m), // mem[a] += 1
    ...local(0), ...i32c(8), 0x6b, ...ltee(0), 0x0d, 0, 0x0b];
  const mod = wasmModule({
    types: [funcType([I32], [])],
    imports: mems.map((_, i) => memImport('m', `c${i}`, shared)),
    funcs: [{ type: 0, body: body(0) }, { type: 0, body: body(M - 1) }],
    exports: [['m0', FUNC, 0], ['mN', FUNC, 1]],
  });
  const inst = new WebAssembly.Instance(new WebAssembly.Module(mod), { m: Object.fromEntries(mems.map((c, i) => [`c${i}`, c])) });
  const { m0, mN } = inst.exports as Record<string, (n: number) => void>;
  // The memory chosen at run time (a TLB entry would carry the slot of its chunk among those
  // the module imported): br_table over 4 of the imported memories, slot 0 always, or rotating
  // through 0..3 with each access. Local 1 = slot.
  const acc = (m: number): number[] => [...local(0), ...i32c(0x3ff8), 0x71, ...local(0), ...i32c(0x3ff8), 0x71, 0x29, ...memarg(3, m), ...i64c(1n), 0x7c, 0x37, ...memarg(3, m)];
  const select = (slot: number[]): number[] => [0x03, 0x40, ...slot, ...lset(1),
    0x02, 0x40, 0x02, 0x40, 0x02, 0x40, 0x02, 0x40, 0x02, 0x40,
    ...local(1), 0x0e, 3, 0, 1, 2, 3, 0x0b,     // br_table m0 m1 m2 m3 (default m3)
    ...acc(0), 0x0c, 3, 0x0b, ...acc(1), 0x0c, 2, 0x0b, ...acc(2), 0x0c, 1, 0x0b, ...acc(3), 0x0b,
    ...local(0), ...i32c(8), 0x6b, ...ltee(0), 0x0d, 0, 0x0b];
  const modSel = wasmModule({
    types: [funcType([I32], [])],
    imports: mems.map((_, i) => memImport('m', `c${i}`, shared)),
    funcs: [{ type: 0, locals: [[1, I32]], body: select(i32c(0)) }, { type: 0, locals: [[1, I32]], body: select([...local(0), ...i32c(3), 0x76, ...i32c(3), 0x71]) },
      { type: 0, locals: [[1, I32]], body: select([...local(0), ...i32c(16), 0x76, ...i32c(3), 0x71]) }],
    exports: [['s0', FUNC, 0], ['sR', FUNC, 1], ['sS', FUNC, 2]],
  });
  const sel = new WebAssembly.Instance(new WebAssembly.Module(modSel), { m: Object.fromEntries(mems.map((c, i) => [`c${i}`, c])) }).exports as Record<string, (n: number) => void>;
  // the same in one shared 16 GiB memory64, at 8 GiB
  const big = new WebAssembly.Memory({ initial: 262144n, maximum: 262144n, address: 'i64', shared: true } as unknown as WebAssembly.MemoryDescriptor);
  const mod64 = wasmModule({
    types: [funcType([I32], [])],
    imports: [memImport('m', 'big', limits(7, 262144, 262144))],
    funcs: [{ type: 0, body: [0x03, 0x40,
      ...local(0), ...i32c(0x3ff8), 0x71, 0xad, ...i64c(1n << 33n), 0x7c, ...ltee(1), ...local(1), 0x29, ...memarg(3, 0), ...i64c(1n), 0x7c, 0x37, ...memarg(3, 0),
      ...local(0), ...i32c(8), 0x6b, ...ltee(0), 0x0d, 0, 0x0b], locals: [[1, I64]] }],
    exports: [['m64', FUNC, 0]],
  });
  const m64 = new WebAssembly.Instance(new WebAssembly.Module(mod64), { m: { big } }).exports.m64 as (n: number) => void;
  const N = 8 * 20_000_000;
  for (const [name, f] of [['memory 0', m0], [`memory ${M - 1}`, mN], ['memory 0', m0], [`memory ${M - 1}`, mN], ['a 16 GiB memory64 (at 8 GiB), alone', m64],
    ['the memory picked by br_table (always memory 0)', sel.s0], ['the memory picked by br_table (memories 0-3 in turn)', sel.sR],
    ['the memory picked by br_table (0-3, changing every 8192 accesses)', sel.sS]] as const) {
    f(N); const t = now(); f(N); console.log(`  64-bit load+add+store in ${name}${name.startsWith('memory') ? ` of ${M}` : ''} (${process.execArgv.join(' ') || 'default tiering'}): ${((now() - t) * 1e6 / (N / 8)).toFixed(2)} ns`);
  }
}

const mode = process.argv[2];
if (mode === 'speed-child') speedChild(process.argv[3]);
else if (mode === 'memaccess-child') memAccessChild();
else {
  // `check` (also the start of `speed`) is what test/bench/wasm-tier.test.ts runs
  const all: Record<string, () => void | Promise<void>> = { features, compile, speed, cross, memory, check: checkSame };
  const pick = mode === undefined ? Object.keys(all).filter((p) => p !== 'check') : mode.split(',');
  for (const p of pick) {
    if (!(p in all)) { console.error(`bench:wasm: unknown part '${p}' (expected ${Object.keys(all).join(', ')})`); process.exit(2); }
    await all[p]();
  }
}
