// Linux boot timing (not part of `npm run bench`): boots the cached fixtures/linux guest
// (~/.cache/vmctl/linux/out) in-process and reports the wall and CPU time and the instructions
// to the init script's marker. With several harts they run in parallel on hart threads, as in a
// VM's worker (dist/hart-worker.js: build first). Usage:
//   npx esbuild src/bench/boot.ts --bundle --platform=node --format=esm --packages=external \
//     --outfile=dist/boot.mjs && node dist/boot.mjs [cpus] [--no-jit] [--opensbi] [--one-thread]
import { homedir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { VirtMachine } from '../board/virt.js';
import { hartThreads } from '../vm/hart-threads.js';

const OUT = process.env.VMCTL_LINUX_DIR ?? join(homedir(), '.cache/vmctl/linux/out');
const cpus = Number(process.argv.find((a) => /^\d+$/.test(a)) ?? 1);
const opensbi = process.argv.includes('--opensbi');
const MARKER = 'vmctl-linux: userspace up';
let text = '';
let done = false;
const vm = VirtMachine.create(
  { memoryBytes: 256 << 20, cpus, firmware: opensbi ? { kind: 'file', path: '/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_jump.bin' } : { kind: 'builtin' },
    kernelPath: join(OUT, 'Image'), initrdPath: join(OUT, 'initramfs.cpio.gz'), cmdline: 'console=ttyS0', disks: [] },
  { consoleOutput: (b) => { text += Buffer.from(b).toString('latin1'); if (text.includes(MARKER)) done = true; },
    powerEvent: () => { done = true; }, log: () => {} },
  process.argv.includes('--one-thread') ? undefined : hartThreads(pathToFileURL(join(process.cwd(), 'dist/hart-worker.js'))),
);
if (process.argv.includes('--no-jit')) for (const h of vm.harts) h.jitEnabled = false;
let wake: (() => void) | null = null;
vm.onWake = () => wake?.();
const start = performance.now();
const cpu0 = process.cpuUsage();
let idle = 0;
while (!done) {
  const s = vm.run(20);
  if (s === 'halted') break;
  if (s === 'idle') {
    const w = Math.min(vm.idleTimeoutMs(), 20);
    idle += w;
    await new Promise<void>((r) => { wake = r; setTimeout(r, w); });
    wake = null;
  } else await new Promise((r) => setImmediate(r));
}
const ms = performance.now() - start;
const cpu = process.cpuUsage(cpu0);
vm.close();
const uptime = /\[\s*([\d.]+)\] Run \/init/.exec(text)?.[1];
console.log(`${cpus} hart(s), ${opensbi ? 'OpenSBI fw_jump' : 'builtin SBI'}: boot to marker ${(ms / 1000).toFixed(3)} s wall (guest uptime at Run /init ${uptime ?? '?'} s), process CPU ${((cpu.user + cpu.system) / 1e6).toFixed(3)} s, ${vm.instructionsRetired()} instructions, ${text.includes(MARKER) ? 'marker seen' : 'NO MARKER'}`);
