// Guest RAM for translated wasm code (translate.ts): one module per hart that imports the RAM
// chunks the hart has met (each its own shared WebAssembly.Memory, src/memory/ram.ts) and
// exports a load and a store function per width taking (slot, byte offset in the chunk), the
// slot picked by a br_table. Memory indices are static in wasm, so this is how code reaches a
// chunk chosen at run time (by the soft TLB entry of the page: Tlb.slot in hart.ts) while RAM
// stays chunked (docs/guest-ram.md (e)).
// Region modules call these functions through the hart's function table (ACCESS_TABLE entries):
// when the hart meets a chunk the module lacks (touched for the first time, or made again after
// the balloon dropped it), it makes the module again with that chunk in a new slot and puts the
// new functions in the table; regions made before keep working, and a chunk's slot never
// changes while the hart holds it. Until then the TLB entries of that chunk have slot -1, which
// translated code treats as a miss.
import type { ChunkViews } from '../../memory/ram.js';
import { CHUNK_SIZE } from '../../memory/ram.js';
import { beginBody, beginModule, Emitter, endBody, I32, I64, type Import } from './emit.js';

/** The exports, in the order region modules import them. */
export const LOADS = ['lb', 'lh', 'lw', 'ld', 'lbu', 'lhu', 'lwu'] as const; // by funct3
export const STORES = ['sb', 'sh', 'sw', 'sd'] as const;                      // by funct3
/** Opcode and alignment (log2) of each load (i64.load8_s ... i64.load32_u) and store. */
const LOAD_OP: readonly [number, number][] = [[0x30, 0], [0x32, 1], [0x34, 2], [0x29, 3], [0x31, 0], [0x33, 1], [0x35, 2]];
const STORE_OP: readonly [number, number][] = [[0x3c, 0], [0x3d, 1], [0x3e, 2], [0x37, 3]];

/** Entries of the hart's function table: the loads by funct3, then the stores by funct3. */
export const ACCESS_TABLE = LOADS.length + STORES.length;

const emitter = new Emitter();

/** Whether this V8 has what the tier needs: multi-memory (Node 24 and later have it on by
 *  default; Node 20's V8 11.3 has not). */
export const WASM_TIER_SUPPORTED = ((): boolean => {
  const e = new Emitter();
  const mem = (name: string): Import => ({ module: 'c', name, kind: 'memory', min: 1, max: 1, shared: true });
  const code = beginModule(e, [{ params: [], results: [] }], [mem('0'), mem('1')], [0], []);
  endBody(e, beginBody(e, []));
  e.end(code);
  return WebAssembly.validate(e.bytes());
})();

/** Makes the access module for `chunks` (slot i = chunks[i]; null: a slot no longer in use,
 *  never given to a TLB entry) and puts its functions in `table`. */
export function ramAccess(chunks: readonly (ChunkViews | null)[], table: WebAssembly.Table): void {
  const e = emitter;
  const pages = CHUNK_SIZE / 65536;
  const mems: number[] = []; // memory index of each slot, -1 for none
  const imports: Import[] = [];
  const c: Record<string, WebAssembly.Memory> = {};
  chunks.forEach((v, i) => {
    if (v === null) { mems.push(-1); return; }
    mems.push(imports.length);
    c[String(i)] = v.memory;
    imports.push({ module: 'c', name: String(i), kind: 'memory', min: pages, max: pages, shared: true });
  });
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
      if (mems[i] < 0) { e.byte(0x00); continue; } // unreachable
      e.get(1);
      if (!load) e.get(2);
      e.mem(op, align, 0, mems[i]);
      e.byte(0x0f); // return
    }
    e.byte(0x0b); // end $default: no such slot (never given)
    e.byte(0x00); // unreachable
    endBody(e, at);
  };
  for (const [op, align] of LOAD_OP) body(true, op, align);
  for (const [op, align] of STORE_OP) body(false, op, align);
  e.end(code);
  const inst = new WebAssembly.Instance(new WebAssembly.Module(e.bytes()), { c });
  names.forEach((name, i) => table.set(i, inst.exports[name] as () => void));
}
