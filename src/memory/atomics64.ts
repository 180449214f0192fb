// 64-bit atomic read-modify-write operations on a chunk of guest RAM (docs/guest-ram.md).
//
// JavaScript's Atomics work on BigInt64Array only with BigInts (an allocation per operation,
// measured), so doubleword AMOs, SC.D and the page walker's A/D update use a tiny WebAssembly
// module instead: its i64.atomic.* instructions operate on the chunk's shared memory (a chunk is
// a WebAssembly.Memory, see ram.ts). Each thread instantiates it once per chunk it touches.
// Every function takes a byte offset in the chunk (8-aligned) and 32-bit halves, returns the low
// word of the old value and leaves its high word for `hi()` (a per-instance global: one thread).
//   load(a)                              i64.atomic.load
//   loadNaN(a)                           i64.atomic.load of a doubleword whose exponent bits are
//                                        all ones (a NaN or an infinity), as one f64 that is
//                                        never a NaN: sign << 52 | the 52 mantissa bits (exact:
//                                        < 2^53); -1 if the exponent is not all ones (any more)
//   store(a, lo, hi)                     i64.atomic.store (returns 0)
//   cas(a, expLo, expHi, newLo, newHi)   i64.atomic.rmw.cmpxchg
//   add/and/or/xor/xchg(a, lo, hi)       i64.atomic.rmw.{add,and,or,xor,xchg}
// (load/store measured slower than the Float64Array views the hart uses: see the note.)
// The bytes are assembled here (no toolchain needed); each function is a handful of opcodes.

export interface Atomics64 {
  load(a: number): number;
  loadNaN(a: number): number;
  store(a: number, lo: number, hi: number): number;
  cas(a: number, expLo: number, expHi: number, newLo: number, newHi: number): number;
  add(a: number, lo: number, hi: number): number;
  and(a: number, lo: number, hi: number): number;
  or(a: number, lo: number, hi: number): number;
  xor(a: number, lo: number, hi: number): number;
  xchg(a: number, lo: number, hi: number): number;
  hi(): number;
}

// (The byte helpers below are exported for src/bench/wasm-tier.ts, which assembles larger modules.)
export const leb = (n: number): number[] => { const o: number[] = []; do { let b = n & 0x7f; n >>>= 7; if (n) b |= 0x80; o.push(b); } while (n); return o; };
export const str = (s: string): number[] => [...leb(s.length), ...Buffer.from(s)];
export const vec = (items: number[][]): number[] => [...leb(items.length), ...items.flat()];
export const section = (id: number, body: number[]): number[] => [id, ...leb(body.length), ...body];
export const I32 = 0x7f, I64 = 0x7e, F64 = 0x7c;
export const sleb = (n: bigint): number[] => { const o: number[] = []; for (;;) { const b = Number(n & 0x7fn); n >>= 7n; if ((n === 0n && (b & 0x40) === 0) || (n === -1n && (b & 0x40) !== 0)) { o.push(b); return o; } o.push(b | 0x80); } };
const i64const = (n: bigint): number[] => [0x42, ...sleb(n)];
export const funcType = (params: number[], results: number[]): number[] => [0x60, ...vec(params.map((p) => [p])), ...vec(results.map((r) => [r]))];
export const local = (i: number): number[] => [0x20, ...leb(i)];
const GET = [0x23, 0], SET = [0x24, 0];
const atomic = (op: number): number[] => [0xfe, op, 3, 0];                // memarg: align 2^3, offset 0
const pack = (lo: number, hi: number): number[] => [...local(lo), 0xad, ...local(hi), 0xad, 0x42, 32, 0x86, 0x84]; // (u64)lo | (u64)hi << 32
const RETURN_OLD = [...SET, ...GET, 0xa7];                                   // global = old; return (i32)old
const EXP = 0x7ff0000000000000n;
// loadNaN's body; local 1 (i64) holds the value
const LOAD_NAN = [...local(0), ...atomic(0x11), 0x22, 1, ...i64const(EXP), 0x83, ...i64const(EXP), 0x52, // (v = load(a)) & EXP != EXP
  0x04, F64, 0x44, 0, 0, 0, 0, 0, 0, 0xf0, 0xbf,                                                            // if: f64.const -1
  0x05, ...local(1), ...i64const(0xfffffffffffffn), 0x83, ...local(1), ...i64const(63n), 0x88, ...i64const(52n), 0x86, 0x84, 0xba, // else: f64(v & mant | v >>> 63 << 52)
  0x0b];

const OPS: [string, number][] = [['add', 0x1f], ['and', 0x2d], ['or', 0x34], ['xor', 0x3b], ['xchg', 0x42]];

function moduleBytes(pages: number): Uint8Array<ArrayBuffer> {
  const types = [funcType([I32, I32, I32, I32, I32], [I32]), funcType([I32, I32, I32], [I32]), funcType([], [I32]), funcType([I32], [I32]), funcType([I32], [F64])];
  const funcs: [number, number[], number[]?][] = [
    [3, [...local(0), ...atomic(0x11), ...RETURN_OLD]],                     // load
    [4, LOAD_NAN, [1, 1, I64]],                                               // loadNaN (one i64 local)
    [1, [...local(0), ...pack(1, 2), ...atomic(0x18), 0x41, 0]],            // store; i32.const 0
    [0, [...local(0), ...pack(1, 2), ...pack(3, 4), ...atomic(0x49), ...RETURN_OLD]],
    ...OPS.map(([, op]): [number, number[]] => [1, [...local(0), ...pack(1, 2), ...atomic(op), ...RETURN_OLD]]),
    [2, [...GET, 0x42, 32, 0x88, 0xa7]],                                     // (i32)(global >> 32)
  ];
  const names = ['load', 'loadNaN', 'store', 'cas', ...OPS.map(([n]) => n), 'hi'];
  return new Uint8Array([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0,
    ...section(1, vec(types)),
    ...section(2, vec([[...str('m'), ...str('mem'), 2, 3, ...leb(pages), ...leb(pages)]])), // shared memory, min = max
    ...section(3, vec(funcs.map(([t]) => leb(t)))),
    ...section(6, vec([[I64, 1, 0x42, 0, 0x0b]])),                           // mutable i64 global, 0
    ...section(7, vec(names.map((n, i) => [...str(n), 0, ...leb(i)]))),
    ...section(10, vec(funcs.map(([, code, locals]) => { const body = [...(locals ?? [0]), ...code, 0x0b]; return [...leb(body.length), ...body]; }))),
  ]);
}

const modules = new Map<number, WebAssembly.Module>();

/** This thread's 64-bit atomics over `memory` (a chunk: a shared memory with fixed size). */
export function atomics64(memory: WebAssembly.Memory): Atomics64 {
  const pages = memory.buffer.byteLength / 65536;
  let m = modules.get(pages);
  if (m === undefined) { m = new WebAssembly.Module(moduleBytes(pages)); modules.set(pages, m); }
  return new WebAssembly.Instance(m, { m: { mem: memory } }).exports as unknown as Atomics64;
}
