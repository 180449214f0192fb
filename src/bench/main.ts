// `npm run bench`: runs fixtures/bench/bench.elf (CRC32, sorting, 64-bit multiply/divide; see
// fixtures/bench/bench.c) on vmctl's virt machine in-process (the same VirtMachine the VM runtime
// uses, no firmware: the hart starts at the ELF entry in M-mode) and on qemu-system-riscv64, one
// after the other; checks both print the same result line and reports MIPS for each (QEMU cannot
// count instructions here, so its figure is vmctl's exact instruction count / QEMU's wall time).
import { readFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { resolve } from 'node:path';
import { VirtMachine } from '../board/virt.js';
import type { PowerEvent } from '../board/machine-types.js';

const ELF = resolve(process.argv[2] ?? 'fixtures/bench/bench.elf');
const QEMU_CPU = 'rv64,h=false,zba=false,zbb=false,zbc=false,zbs=false';

function runVmctl(): { line: string; instret: number; seconds: number; power: PowerEvent | null } {
  let out = '';
  let power: PowerEvent | null = null;
  const vm = VirtMachine.create(
    { memoryBytes: 128 * 1024 * 1024, cpus: 1, firmware: { kind: 'none' }, kernelPath: ELF, cmdline: '', disks: [] },
    {
      consoleOutput: (bytes) => { out += Buffer.from(bytes).toString('latin1'); },
      powerEvent: (ev) => { power ??= ev; },
      log: () => {},
    },
  );
  const start = performance.now();
  try {
    // The guest never sleeps (WFI only after it has finished), so run until it powers off.
    while (vm.run(1000) !== 'halted') { /* keep going */ }
  } finally {
    vm.close();
  }
  const seconds = (performance.now() - start) / 1000;
  return { line: out.trim(), instret: vm.instructionsRetired(), seconds, power };
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

readFileSync(ELF); // fail early with a clear error when the ELF is missing
const v = runVmctl();
if (v.power === null || v.power.kind !== 'poweroff' || v.power.failed) {
  console.log(`vmctl: the guest did not power off cleanly (${JSON.stringify(v.power)})`);
  process.exitCode = 1;
}
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
