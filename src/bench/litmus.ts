// `npm run bench:litmus [-- ITERATIONS [HARTS...]]`: the litmus guest (fixtures/firmware-tests/
// litmus.c) with many iterations on 2, 4 and 8 harts running in parallel, as a VM's worker runs
// them (hart threads: dist/hart-worker.js). Prints each run's report; exits 1 if any run shows
// an outcome RVWMO forbids. `npm test` runs the same guest with a few hundred iterations
// (test/e2e/harts.test.ts); this is the long version (default 20000 iterations: about 2 million
// AMOs, 2 million ld/sd pairs, 400 000 PTE rewrites, 20 000 MP and SB rounds per pair of harts).
import { resolve } from 'node:path';
import { VirtMachine } from '../board/virt.js';
import type { PowerEvent } from '../board/machine-types.js';
import { hartThreads } from '../vm/hart-threads.js';

const iters = Number(process.argv[2] ?? 20000);
const counts = process.argv.slice(3).map(Number);
const ELF = resolve('fixtures/firmware-tests/litmus.elf');

async function run(cpus: number): Promise<boolean> {
  let out = '';
  let power: PowerEvent | null = null;
  const vm = VirtMachine.create(
    { memoryBytes: 16 * 1024 ** 3, cpus, firmware: { kind: 'none' }, kernelPath: ELF, cmdline: `litmus.iters=${iters}`, disks: [] },
    { consoleOutput: (b) => { const s = Buffer.from(b).toString('latin1'); out += s; process.stdout.write(s); }, powerEvent: (ev) => { power ??= ev; }, log: (m) => console.log(m) },
    hartThreads(new URL('./hart-worker.js', import.meta.url)),
  );
  let wake: (() => void) | null = null;
  vm.onWake = () => wake?.();
  const t0 = performance.now();
  try {
    for (;;) {
      const s = vm.run(50);
      if (s === 'halted') break;
      if (s === 'idle') await new Promise<void>((r) => { wake = r; setTimeout(r, Math.min(50, vm.idleTimeoutMs())); });
      else await new Promise((r) => setImmediate(r));
      wake = null;
    }
  } finally {
    vm.close();
  }
  const ev = power as PowerEvent | null; // (assigned in a callback: TypeScript cannot follow)
  const ok = out.includes('litmus: PASS') && ev !== null && ev.kind === 'poweroff' && !ev.failed;
  console.log(`${cpus} harts: ${ok ? 'PASS' : 'FAIL'} in ${((performance.now() - t0) / 1000).toFixed(0)} s, ${vm.instructionsRetired()} instructions\n`);
  return ok;
}

let failed = false;
for (const cpus of counts.length ? counts : [2, 4, 8]) if (!(await run(cpus))) failed = true;
process.exitCode = failed ? 1 : 0;
