// Guest RAM for translated wasm code (translate.ts): one module per hart that imports the RAM
// chunks the hart has met (each its own shared WebAssembly.Memory, src/memory/ram.ts) and
// exports a load and a store function per width taking (slot, byte offset in the chunk), the
// slot picked by a br_table. Memory indices are static in wasm, so this is how code reaches a
// chunk chosen at run time (by the soft TLB entry of the page: Tlb.slot in hart.ts) while RAM
// stays chunked (docs/guest-ram.md (e)). Region modules import these functions: a wasm-to-wasm
// call, no JavaScript in between.
// The module is made again when the hart meets a chunk it does not import (a chunk touched for
// the first time, or made again after the balloon dropped it); region modules made against the
// previous one are then dropped (hart.ts, wasmReset).
import type { ChunkViews } from '../../memory/ram.js';
import { CHUNK_SIZE } from '../../memory/ram.js';
import { beginBody, beginModule, Emitter, endBody, I32, I64, type Import } from './emit.js';

/** The exports, in the order region modules import them. */
export const LOADS = ['lb', 'lh', 'lw', 'ld', 'lbu', 'lhu', 'lwu'] as const; // by funct3
export const STORES = ['sb', 'sh', 'sw', 'sd'] as const;                      // by funct3
/** Opcode and alignment (log2) of each load (i64.load8_s ... i64.load32_u) and store. */
const LOAD_OP: readonly [number, number][] = [[0x30, 0], [0x32, 1], [0x34, 2], [0x29, 3], [0x31, 0], [0x33, 1], [0x35, 2]];
const STORE_OP: readonly [number, number][] = [[0x3c, 0], [0x3d, 1], [0x3e, 2], [0x37, 3]];

export type LoadFn = (slot: number, off: number) => bigint;
export interface RamAccess {
  /** Slot of each chunk imported (its memory index in the module). */
  readonly slots: Map<ChunkViews, number>;
  /** The functions, by name (LOADS, STORES). */
  readonly exports: WebAssembly.Exports;
}

const emitter = new Emitter();

/** The access module for `chunks` (slot i = chunks[i]). */
export function ramAccess(chunks: readonly ChunkViews[]): RamAccess {
  const e = emitter;
  const pages = CHUNK_SIZE / 65536;
  const imports: Import[] = chunks.map((_, i) => ({ module: 'c', name: String(i), kind: 'memory', min: pages, max: pages, shared: true }));
  const names = [...LOADS, ...STORES];
  const code = beginModule(e, [{ params: [I32, I32], results: [I64] }, { params: [I32, I32, I64], results: [] }], imports,
    names.map((_, i) => (i < LOADS.length ? 0 : 1)), names.map((n, i) => [n, i]));
  const n = chunks.length;
  const body = (load: boolean, op: number, align: number): void => {
    const at = beginBody(e, []);
    // block $default, then one block per slot; br_table picks the slot's block end, after which
    // comes that slot's access.
    for (let i = 0; i <= n; i++) e.byte2(0x02, 0x40);
    e.get(0);
    e.byte(0x0e); e.u32(n); for (let i = 0; i < n; i++) e.u32(i); e.u32(n);
    for (let i = 0; i < n; i++) {
      e.byte(0x0b); // end of block i: slot i
      e.get(1);
      if (!load) e.get(2);
      e.mem(op, align, 0, i);
      e.byte(0x0f); // return
    }
    e.byte(0x0b); // end $default: a slot this module does not have (never given: see hart.ts)
    e.byte(0x00); // unreachable
    endBody(e, at);
  };
  for (const [op, align] of LOAD_OP) body(true, op, align);
  for (const [op, align] of STORE_OP) body(false, op, align);
  e.end(code);
  const mod = new WebAssembly.Module(e.bytes());
  const c: Record<string, WebAssembly.Memory> = {};
  chunks.forEach((v, i) => { c[String(i)] = v.memory; });
  const inst = new WebAssembly.Instance(mod, { c });
  return { slots: new Map(chunks.map((v, i) => [v, i])), exports: inst.exports };
}
