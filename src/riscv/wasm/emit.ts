// A WebAssembly module writer for the translator (translate.ts): bytes go into one growable
// buffer, integers as LEB128 written in place, no arrays built per instruction. Section and
// function-body sizes are written as 5-byte (padded) LEB128, which the binary format allows, so
// that they can be patched once their contents are written.

/** Value types and a few opcodes used by name. */
export const I32 = 0x7f, I64 = 0x7e, F64 = 0x7c;
const SECTION_TYPE = 1, SECTION_IMPORT = 2, SECTION_FUNC = 3, SECTION_EXPORT = 7, SECTION_CODE = 10;

export class Emitter {
  buf = new Uint8Array(1 << 16);
  len = 0;

  reset(): void { this.len = 0; }

  private room(n: number): void {
    if (this.len + n <= this.buf.length) return;
    const b = new Uint8Array(Math.max(this.buf.length * 2, this.len + n));
    b.set(this.buf.subarray(0, this.len));
    this.buf = b;
  }

  byte(b: number): void { this.room(1); this.buf[this.len++] = b; }
  byte2(a: number, b: number): void { this.room(2); this.buf[this.len++] = a; this.buf[this.len++] = b; }
  byte3(a: number, b: number, c: number): void { this.room(3); const u = this.buf; u[this.len++] = a; u[this.len++] = b; u[this.len++] = c; }

  /** Unsigned LEB128 of a uint32. */
  u32(n: number): void {
    this.room(5);
    n >>>= 0;
    for (;;) {
      const b = n & 0x7f;
      n >>>= 7;
      if (n === 0) { this.buf[this.len++] = b; return; }
      this.buf[this.len++] = b | 0x80;
    }
  }

  /** Signed LEB128 of an int32. */
  s32(n: number): void {
    this.room(5);
    n |= 0;
    for (;;) {
      const b = n & 0x7f;
      n >>= 7;
      if ((n === 0 && (b & 0x40) === 0) || (n === -1 && (b & 0x40) !== 0)) { this.buf[this.len++] = b; return; }
      this.buf[this.len++] = b | 0x80;
    }
  }

  /** Signed LEB128 of an integer-valued number of at most 53 bits (i64.const operands). */
  s53(n: number): void {
    if (n === (n | 0)) { this.s32(n); return; }
    this.room(10);
    for (;;) {
      const b = ((n % 128) + 128) % 128; // the low 7 bits, also for negative n
      n = (n - b) / 128;
      if ((n === 0 && (b & 0x40) === 0) || (n === -1 && (b & 0x40) !== 0)) { this.buf[this.len++] = b; return; }
      this.buf[this.len++] = b | 0x80;
    }
  }

  name(s: string): void {
    this.u32(s.length);
    this.room(s.length);
    for (let i = 0; i < s.length; i++) this.buf[this.len++] = s.charCodeAt(i);
  }

  /** Starts something whose size comes first: returns where to patch (see end). */
  sized(): number { this.room(5); const at = this.len; this.len += 5; return at; }
  /** Writes the size of what follows `at` (from sized()) as a 5-byte LEB128. */
  end(at: number): void {
    let n = this.len - at - 5;
    for (let i = 0; i < 4; i++) { this.buf[at + i] = (n & 0x7f) | 0x80; n >>>= 7; }
    this.buf[at + 4] = n & 0x7f;
  }

  section(id: number): number { this.byte(id); return this.sized(); }

  // ---- instructions ----
  i32c(n: number): void { this.byte(0x41); this.s32(n); }
  i64c(n: number): void { this.byte(0x42); this.s53(n); }
  get(l: number): void { this.byte(0x20); this.u32(l); }
  set(l: number): void { this.byte(0x21); this.u32(l); }
  tee(l: number): void { this.byte(0x22); this.u32(l); }
  br(depth: number): void { this.byte(0x0c); this.u32(depth); }
  brIf(depth: number): void { this.byte(0x0d); this.u32(depth); }
  call(f: number): void { this.byte(0x10); this.u32(f); }
  /** A load or store opcode with its memory argument (memory index `mem`, multi-memory when not 0). */
  mem(op: number, align: number, offset: number, mem = 0): void {
    if (mem === 0) { this.byte2(op, align); } else { this.byte2(op, align | 0x40); this.u32(mem); }
    this.u32(offset);
  }

  /** The module bytes written so far (a copy: the buffer is reused). */
  bytes(): Uint8Array<ArrayBuffer> { return this.buf.slice(0, this.len); }
}

/** A function type: params and results as value-type bytes. */
export interface FuncType { params: readonly number[]; results: readonly number[] }
export type Import =
  | { module: string; name: string; kind: 'memory'; min: number; max: number; shared: boolean }
  | { module: string; name: string; kind: 'func'; type: number }
  | { module: string; name: string; kind: 'table'; size: number }; // funcref, fixed size

/** Writes the module header, type, import and function sections and the export of function
 *  `exportIndex` as `exportName`, then leaves the emitter at the start of the code section: the
 *  caller writes `funcCount` bodies (body(), then end of each with endBody) and calls finish. */
export function beginModule(e: Emitter, types: readonly FuncType[], imports: readonly Import[], funcTypes: readonly number[],
  exports: readonly [string, number][]): number {
  e.reset();
  e.byte2(0x00, 0x61); e.byte2(0x73, 0x6d); e.byte2(1, 0); e.byte2(0, 0);
  let s = e.section(SECTION_TYPE);
  e.u32(types.length);
  for (const t of types) {
    e.byte(0x60);
    e.u32(t.params.length); for (const p of t.params) e.byte(p);
    e.u32(t.results.length); for (const r of t.results) e.byte(r);
  }
  e.end(s);
  s = e.section(SECTION_IMPORT);
  e.u32(imports.length);
  for (const im of imports) {
    e.name(im.module); e.name(im.name);
    if (im.kind === 'func') { e.byte(0x00); e.u32(im.type); } else if (im.kind === 'table') {
      e.byte3(0x01, 0x70, 1); e.u32(im.size); e.u32(im.size);
    } else {
      e.byte(0x02); e.byte(im.shared ? 3 : 1); e.u32(im.min); e.u32(im.max);
    }
  }
  e.end(s);
  s = e.section(SECTION_FUNC);
  e.u32(funcTypes.length);
  for (const t of funcTypes) e.u32(t);
  e.end(s);
  s = e.section(SECTION_EXPORT);
  e.u32(exports.length);
  for (const [n, f] of exports) { e.name(n); e.byte(0x00); e.u32(f); }
  e.end(s);
  const code = e.section(SECTION_CODE);
  e.u32(funcTypes.length);
  return code;
}

/** Starts a function body with local groups [count, type]; returns the patch point for endBody. */
export function beginBody(e: Emitter, locals: readonly [number, number][]): number {
  const at = e.sized();
  e.u32(locals.length);
  for (const [n, t] of locals) { e.u32(n); e.byte(t); }
  return at;
}
export function endBody(e: Emitter, at: number): void { e.byte(0x0b); e.end(at); }
