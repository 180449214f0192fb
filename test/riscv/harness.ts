// A minimal bare-metal machine for hart unit tests: RAM at 0x80000000, a UART THR at 0x10000000
// (output only), the SiFive test finisher at 0x100000 and an mtime source. It does not depend on
// the board (src/board), so hart tests stay independent of it. Programs are assembled with
// riscv64-unknown-elf-gcc at test time from test/riscv/asm/*.S (see buildAsm).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GuestRam } from '../../src/memory/ram.js';
import { PhysicalMemoryMap } from '../../src/memory/bus.js';
import { Hart } from '../../src/riscv/hart.js';
import { ReservationSet } from '../../src/riscv/reservations.js';

export const RAM_BASE = 0x80000000;

export interface Mini {
  mem: PhysicalMemoryMap;
  harts: Hart[];
  out: string[];
  exit: { code: number } | null;
  time: { now: number };
}

export function makeMachine(opts: { harts?: number; ramMiB?: number } = {}): Mini {
  const ram = new GuestRam(RAM_BASE, (opts.ramMiB ?? 16) * 1024 * 1024);
  const mem = new PhysicalMemoryMap(ram);
  const m: Mini = { mem, harts: [], out: [], exit: null, time: { now: 0 } };
  mem.addDevice(0x10000000, 0x100, 'uart', {
    read: (off) => (off === 5 ? 0x60 : 0),
    write: (off, _s, v) => { if (off === 0) m.out.push(String.fromCharCode(v & 0xff)); },
  });
  mem.addDevice(0x100000, 0x1000, 'finisher', {
    read: () => 0,
    write: (off, _s, v) => {
      if (off !== 0) return;
      if ((v & 0xffff) === 0x5555) m.exit = { code: 0 };
      else if ((v & 0xffff) === 0x3333) m.exit = { code: v >>> 16 };
    },
  });
  const resv = new ReservationSet();
  const clock = { mtime: () => m.time.now };
  for (let i = 0; i < (opts.harts ?? 1); i++) m.harts.push(new Hart(i, mem, clock, resv));
  return m;
}

/** Loads the PT_LOAD segments of an ELF64 into RAM; returns the entry point. */
export function loadElf(mem: PhysicalMemoryMap, elf: Uint8Array): number {
  const dv = new DataView(elf.buffer, elf.byteOffset, elf.byteLength);
  const entry = Number(dv.getBigUint64(24, true));
  const phoff = Number(dv.getBigUint64(32, true));
  const phentsize = dv.getUint16(54, true), phnum = dv.getUint16(56, true);
  for (let i = 0; i < phnum; i++) {
    const p = phoff + i * phentsize;
    if (dv.getUint32(p, true) !== 1) continue;
    const off = Number(dv.getBigUint64(p + 8, true));
    const paddr = Number(dv.getBigUint64(p + 24, true));
    const filesz = Number(dv.getBigUint64(p + 32, true));
    if (filesz > 0) mem.ram.write(paddr, elf.subarray(off, off + filesz));
  }
  return entry;
}

let tmp: string | null = null;
/** Assembles one .S source (string) into an ELF linked at 0x80000000 and returns its bytes. */
export function buildAsm(source: string): Uint8Array {
  tmp ??= mkdtempSync(join(tmpdir(), 'hart-test-'));
  const name = `t${Math.random().toString(36).slice(2)}`;
  const src = join(tmp, `${name}.S`), out = join(tmp, `${name}.elf`);
  writeFileSync(src, source);
  execFileSync('riscv64-unknown-elf-gcc', [
    '-march=rv64imac_zicsr_zifencei', '-mabi=lp64', '-nostdlib', '-nostartfiles', '-static',
    '-Wl,-Ttext=0x80000000', '-Wl,-N', '-Wl,--no-relax', '-o', out, src,
  ]);
  return readFileSync(out);
}

/** Runs until the finisher is hit or `max` instructions; returns the machine. */
export function runAsm(source: string, opts: { max?: number; harts?: number; setup?: (m: Mini) => void } = {}): Mini {
  const m = makeMachine({ harts: opts.harts });
  const entry = loadElf(m.mem, buildAsm(source));
  for (const h of m.harts) h.setPc(entry);
  opts.setup?.(m);
  let left = opts.max ?? 1_000_000;
  while (m.exit === null && left > 0) {
    let any = false;
    for (const h of m.harts) {
      if (h.halted || h.waiting) continue;
      any = true;
      left -= h.run(Math.min(1000, left)) || 1;
      if (m.exit !== null) break;
    }
    if (!any) break;
  }
  return m;
}
