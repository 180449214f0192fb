// Linux boot timing (not part of `npm run bench`): boots the cached fixtures/linux guest
// (~/.cache/vmctl/linux/out) with the builtin SBI in-process and reports the wall and CPU time
// and the instructions to the init script's marker. Usage:
//   npx esbuild src/bench/boot.ts --bundle --platform=node --format=esm --packages=external \
//     --outfile=/tmp/boot.mjs && node /tmp/boot.mjs [cpus] [--no-jit]
import { homedir } from 'node:os';
import { join } from 'node:path';
import { VirtMachine } from '../board/virt.js';

const OUT = process.env.VMCTL_LINUX_DIR ?? join(homedir(), '.cache/vmctl/linux/out');
const cpus = Number(process.argv.find((a) => /^\d+$/.test(a)) ?? 1);
const MARKER = 'vmctl-linux: userspace up';
let text = '';
let done = false;
const vm = VirtMachine.create(
  { memoryBytes: 256 << 20, cpus, firmware: { kind: 'builtin' }, kernelPath: join(OUT, 'Image'),
    initrdPath: join(OUT, 'initramfs.cpio.gz'), cmdline: 'console=ttyS0', disks: [] },
  { consoleOutput: (b) => { text += Buffer.from(b).toString('latin1'); if (text.includes(MARKER)) done = true; },
    powerEvent: () => { done = true; }, log: () => {} },
);
if (process.argv.includes('--no-jit')) for (const h of vm.harts) h.jitEnabled = false;
const start = performance.now();
const cpu0 = process.cpuUsage();
let idle = 0;
while (!done) {
  const s = vm.run(20);
  if (s === 'halted') break;
  if (s === 'idle') {
    // Wait for the next timer event (busy: this script has no event loop to return to).
    const w = Math.min(vm.idleTimeoutMs(), 20);
    idle += w;
    const t = performance.now();
    while (performance.now() - t < w) { /* wait */ }
  }
}
const ms = performance.now() - start;
const cpu = process.cpuUsage(cpu0);
vm.close();
console.log(`boot to marker: ${(ms / 1000).toFixed(3)} s (cpu ${((cpu.user + cpu.system) / 1e6).toFixed(3)} s), ${vm.instructionsRetired()} instructions, idle ~${idle.toFixed(0)} ms, ${text.includes(MARKER) ? 'marker seen' : 'NO MARKER'}`);
