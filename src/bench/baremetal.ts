// Bare-metal benchmark guests (fixtures/bench/*.elf, see fixtures/bench/build.sh): each runs on
// vmctl's virt machine in this process (the VirtMachine the VM runtime uses, no firmware: the hart
// starts at the ELF entry in M-mode) and then on qemu-system-riscv64; both must print the same
// result line.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { VirtMachine } from '../board/virt.js';
import type { PowerEvent } from '../board/machine-types.js';
import { ownCpuSeconds, reapedChildrenCpuSeconds, type Row } from './measure.js';
import { QEMU, QEMU_CPU } from './qemu.js';

/** The guests and the shape of code each stands for. */
export const BARE_METAL = [
  { name: 'bench', what: 'CRC32, sorting, 64-bit multiply/divide' },
  { name: 'sieve', what: 'byte-array stores' },
  { name: 'qsort', what: 'recursion over 64-bit keys' },
  { name: 'sort64', what: '64-bit compares and sorts' },
  { name: 'interp', what: 'switch tables, indirect jumps' },
  { name: 'fnptr', what: 'function-pointer calls' },
] as const;

interface VmctlRun { line: string; instret: number; wall: number; cpu: number; power: PowerEvent | null; jit: string }

function runVmctl(elf: string, jit: boolean): VmctlRun {
  let out = '';
  let power: PowerEvent | null = null;
  const vm = VirtMachine.create(
    { memoryBytes: 128 * 1024 * 1024, cpus: 1, firmware: { kind: 'none' }, kernelPath: elf, cmdline: '', disks: [] },
    {
      consoleOutput: (bytes) => { out += Buffer.from(bytes).toString('latin1'); },
      powerEvent: (ev) => { power ??= ev; },
      log: () => {},
    },
  );
  if (!jit) for (const h of vm.harts) h.jitEnabled = false;
  const cpu0 = ownCpuSeconds();
  const start = performance.now();
  try {
    // The guest never sleeps (WFI only after it has finished), so run until it powers off.
    while (vm.run(1000) !== 'halted') { /* keep going */ }
  } finally {
    vm.close();
  }
  const wall = (performance.now() - start) / 1000;
  const cpu = ownCpuSeconds() - cpu0;
  const instret = vm.instructionsRetired();
  return { line: out.trim(), instret, wall, cpu, power, jit: vm.jitStats().describe(instret) };
}

function runQemu(elf: string): { line: string; wall: number; cpu: number } | string {
  const cpu0 = reapedChildrenCpuSeconds();
  const start = performance.now();
  const r = spawnSync(QEMU, ['-machine', 'virt', '-bios', 'none', '-nographic', '-monitor', 'none',
    '-serial', 'stdio', '-cpu', QEMU_CPU, '-kernel', elf], { encoding: 'latin1', timeout: 600_000 });
  const wall = (performance.now() - start) / 1000;
  if (r.error || r.status !== 0) return `QEMU failed: ${r.error?.message ?? `exit ${r.status}`} ${r.stderr.trim()}`;
  return { line: r.stdout.trim(), wall, cpu: reapedChildrenCpuSeconds() - cpu0 };
}

export function benchBareMetal(dir: string, names: readonly string[], opts: { qemu: boolean; jit: boolean; log: (s: string) => void }): Row[] {
  const rows: Row[] = [];
  for (const g of BARE_METAL) {
    if (!names.includes(g.name)) continue;
    const elf = join(dir, `${g.name}.elf`);
    if (!existsSync(elf)) throw new Error(`${elf} is missing: run fixtures/bench/build.sh`);
    const v = runVmctl(elf, opts.jit);
    let mismatch: string | undefined;
    if (v.power === null || v.power.kind !== 'poweroff' || v.power.failed) mismatch = `vmctl: the guest did not power off cleanly (${JSON.stringify(v.power)})`;
    const q = opts.qemu ? runQemu(elf) : null;
    if (typeof q === 'string') mismatch = q;
    else if (q !== null && q.line !== v.line) mismatch = `vmctl printed '${v.line}', QEMU '${q.line}'`;
    const qt = q !== null && typeof q !== 'string' ? { wall: q.wall, cpu: q.cpu } : null;
    opts.log(`  ${g.name} (${g.what}): ${v.line}; ${(v.instret / 1e6).toFixed(0)} M instructions, vmctl ${v.wall.toFixed(2)} s` +
      `${qt ? `, QEMU ${qt.wall.toFixed(2)} s` : ''}`);
    rows.push({ group: 'bare metal', name: `${g.name} (${g.what})`, vmctl: { wall: v.wall, cpu: v.cpu }, qemu: qt, mismatch, jit: v.jit });
  }
  return rows;
}
