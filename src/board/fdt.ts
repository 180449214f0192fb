// A small flattened-device-tree (DTB) writer: begin node, property, end node, as TinyEMU does.
// Format: Devicetree Specification v0.4, chapter 5 "Flattened Devicetree (DTB) Format":
// a 40-byte header, the memory reservation block (pairs of u64, ended by 0/0), the structure
// block (FDT_BEGIN_NODE/FDT_PROP/FDT_END_NODE/FDT_END tokens, big-endian, 4-byte aligned) and
// the strings block (property names, NUL-terminated, shared).

const FDT_MAGIC = 0xd00dfeed;
const FDT_BEGIN_NODE = 1;
const FDT_END_NODE = 2;
const FDT_PROP = 3;
const FDT_END = 9;
const HEADER_SIZE = 40;

export class FdtWriter {
  private struct: number[] = [];         // bytes of the structure block
  private readonly strings: number[] = [];
  private readonly stringOffsets = new Map<string, number>();
  private readonly reserved: [number, number][] = [];
  private depth = 0;
  private finished = false;

  /** Adds a memory reservation (address, size) to the reservation block. */
  reserve(address: number, size: number): void {
    this.reserved.push([address, size]);
  }

  beginNode(name: string): void {
    this.token(FDT_BEGIN_NODE);
    this.bytes(utf8z(name));
    this.pad();
    this.depth++;
  }

  endNode(): void {
    if (this.depth === 0) throw new Error('fdt: endNode without beginNode');
    this.token(FDT_END_NODE);
    this.depth--;
  }

  /** A property with raw bytes as value. */
  prop(name: string, value: Uint8Array): void {
    this.token(FDT_PROP);
    this.u32(value.length);
    this.u32(this.stringOffset(name));
    this.bytes(value);
    this.pad();
  }

  /** An empty property (a boolean flag such as `interrupt-controller`). */
  propEmpty(name: string): void { this.prop(name, new Uint8Array(0)); }

  /** A list of 32-bit cells. */
  propCells(name: string, ...cells: number[]): void {
    const v = new Uint8Array(cells.length * 4);
    const dv = new DataView(v.buffer);
    cells.forEach((c, i) => dv.setUint32(i * 4, c >>> 0));
    this.prop(name, v);
  }

  /** A string (or a string list: several NUL-separated strings). */
  propStrings(name: string, ...values: string[]): void {
    const parts = values.map(utf8z);
    const v = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let o = 0;
    for (const p of parts) { v.set(p, o); o += p.length; }
    this.prop(name, v);
  }

  /** Finishes the tree and returns the DTB. */
  finish(bootCpuId = 0): Uint8Array {
    if (this.depth !== 0) throw new Error(`fdt: ${this.depth} node(s) left open`);
    if (!this.finished) { this.token(FDT_END); this.finished = true; }
    const rsvSize = (this.reserved.length + 1) * 16;
    const offRsv = HEADER_SIZE;
    const offStruct = offRsv + rsvSize;
    const offStrings = offStruct + this.struct.length;
    const total = offStrings + this.strings.length;
    const out = new Uint8Array(total);
    const dv = new DataView(out.buffer);
    dv.setUint32(0, FDT_MAGIC);
    dv.setUint32(4, total);
    dv.setUint32(8, offStruct);
    dv.setUint32(12, offStrings);
    dv.setUint32(16, offRsv);
    dv.setUint32(20, 17);           // version
    dv.setUint32(24, 16);           // last compatible version
    dv.setUint32(28, bootCpuId);
    dv.setUint32(32, this.strings.length);
    dv.setUint32(36, this.struct.length);
    let o = offRsv;
    for (const [addr, size] of this.reserved) {
      setU64(dv, o, addr); setU64(dv, o + 8, size); o += 16;
    }
    out.set(this.struct, offStruct);
    out.set(this.strings, offStrings);
    return out;
  }

  private stringOffset(name: string): number {
    let off = this.stringOffsets.get(name);
    if (off === undefined) {
      off = this.strings.length;
      for (const b of utf8z(name)) this.strings.push(b);
      this.stringOffsets.set(name, off);
    }
    return off;
  }

  private token(t: number): void { this.u32(t); }
  private u32(v: number): void { this.struct.push((v >>> 24) & 0xff, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff); }
  private bytes(b: Uint8Array): void { for (const x of b) this.struct.push(x); }
  private pad(): void { while (this.struct.length % 4 !== 0) this.struct.push(0); }
}

function utf8z(s: string): Uint8Array {
  const b = new TextEncoder().encode(s);
  const out = new Uint8Array(b.length + 1);
  out.set(b);
  return out;
}

function setU64(dv: DataView, off: number, v: number): void {
  dv.setUint32(off, Math.floor(v / 0x1_0000_0000) >>> 0);
  dv.setUint32(off + 4, v >>> 0);
}

/** Splits a 64-bit value (exact JS number) into two cells, high first, as `reg` wants. */
export function cells64(v: number): [number, number] {
  return [Math.floor(v / 0x1_0000_0000) >>> 0, v % 0x1_0000_0000 >>> 0];
}
