// `npm run bench`: runs fixtures/bench/bench.elf (CRC32, sorting, 64-bit multiply/divide; see
// fixtures/bench/bench.c) on vmctl's hart in-process and on qemu-system-riscv64, one after the
// other; checks both print the same result line and reports MIPS for each (QEMU cannot count
// instructions here, so its figure is vmctl's exact instruction count / QEMU's wall time).
//
// The in-process machine is deliberately minimal (RAM, an NS16550 transmit register, the SiFive
// test finisher): the benchmark measures the hart, not the board.
import { readFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { resolve } from 'node:path';
import { GuestRam } from '../memory/ram.js';
import { PhysicalMemoryMap } from '../memory/bus.js';
import { Hart } from '../riscv/hart.js';

const ELF = resolve(process.argv[2] ?? 'fixtures/bench/bench.elf');
const QEMU_CPU = 'rv64,h=false,zba=false,zbb=false,zbc=false,zbs=false';

function loadElf(ram: GuestRam, elf: Uint8Array): number {
  const dv = new DataView(elf.buffer, elf.byteOffset, elf.byteLength);
  const phoff = Number(dv.getBigUint64(32, true));
  const phentsize = dv.getUint16(54, true), phnum = dv.getUint16(56, true);
  for (let i = 0; i < phnum; i++) {
    const p = phoff + i * phentsize;
    if (dv.getUint32(p, true) !== 1) continue;
    const off = Number(dv.getBigUint64(p + 8, true));
    const paddr = Number(dv.getBigUint64(p + 24, true));
    const filesz = Number(dv.getBigUint64(p + 32, true));
    if (filesz > 0) ram.write(paddr, elf.subarray(off, off + filesz));
  }
  return Number(dv.getBigUint64(24, true));
}

function runVmctl(elf: Uint8Array): { line: string; instret: number; seconds: number } {
  const ram = new GuestRam(0x80000000, 128 * 1024 * 1024);
  const mem = new PhysicalMemoryMap(ram);
  let out = '';
  let done = false;
  mem.addDevice(0x10000000, 0x100, 'uart', {
    read: (off) => (off === 5 ? 0x60 : 0), // LSR: transmitter empty
    write: (off, _size, v) => { if (off === 0) out += String.fromCharCode(v & 0xff); },
  });
  mem.addDevice(0x100000, 0x1000, 'test-finisher', {
    read: () => 0,
    write: (off, _size, v) => { if (off === 0 && (v & 0xffff) !== 0) done = true; },
  });
  const t0 = performance.now();
  const hart = new Hart(0, mem, { mtime: () => Math.floor((performance.now() - t0) * 10_000) });
  hart.setPc(loadElf(ram, elf));
  const start = performance.now();
  while (!done && !hart.waiting) hart.run(10_000_000);
  const seconds = (performance.now() - start) / 1000;
  return { line: out.trim(), instret: hart.instret, seconds };
}

function runQemu(): { line: string; seconds: number } | null {
  const start = performance.now();
  const r = spawnSync('qemu-system-riscv64', ['-machine', 'virt', '-bios', 'none', '-nographic', '-monitor', 'none',
    '-serial', 'stdio', '-cpu', QEMU_CPU, '-kernel', ELF], { encoding: 'latin1', timeout: 120_000 });
  const seconds = (performance.now() - start) / 1000;
  if (r.error || r.status !== 0) {
    console.log(`qemu: not run (${r.error?.message ?? `exit ${r.status}`})`);
    return null;
  }
  return { line: r.stdout.trim(), seconds };
}

const elf = readFileSync(ELF);
const v = runVmctl(elf);
const vMips = v.instret / v.seconds / 1e6;
console.log(`vmctl: ${v.line}`);
console.log(`vmctl: ${v.instret} instructions in ${v.seconds.toFixed(2)} s = ${vMips.toFixed(1)} MIPS`);
const q = runQemu();
if (q) {
  const qMips = v.instret / q.seconds / 1e6;
  console.log(`qemu:  ${q.line}`);
  console.log(`qemu:  ${q.seconds.toFixed(2)} s wall (incl. start-up) = ${qMips.toFixed(1)} MIPS`);
  console.log(`ratio: vmctl/qemu = ${(vMips / qMips).toFixed(3)}`);
  if (q.line !== v.line) {
    console.log('MISMATCH: vmctl and QEMU printed different result lines');
    process.exitCode = 1;
  } else console.log('result lines match');
}
