// The Linux test guest in this process, for profiling the emulator (`node --cpu-prof
// dist/bench-inproc.js ...`); not part of `npm run bench`, which runs Linux through the real
// daemon (linux.ts). Boots ~/.cache/vmctl/linux/out (or VMCTL_LINUX_DIR) to the init script's
// marker, or with --programs runs the guest's vmctl=bench mode to its end, and prints wall and CPU
// time, instructions and the translator's figures.
// With several harts they run in parallel on hart threads, as in a VM's worker (dist/hart-worker.js:
// build first), unless --one-thread.
// --boots N: N machines one after the other in this process (the same threads: see
// wasm/region-cache.ts), each with its own figures; --cpus 1,4: the boots' harts in turn.
//   node dist/bench-inproc.js [--cpus N[,N...]] [--opensbi] [--no-jit] [--programs] [--one-thread] [--boots N]
import { homedir, tmpdir } from 'node:os';
import { mkdtempSync, rmSync, writeFileSync, closeSync, openSync, ftruncateSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { VirtMachine } from '../board/virt.js';
import { hartThreads } from '../vm/hart-threads.js';
import { JitStats } from '../riscv/jit.js';
import { benchText } from './text.js';

const OUT = process.env.VMCTL_LINUX_DIR ?? join(homedir(), '.cache/vmctl/linux/out');
const arg = (name: string): string | undefined => { const i = process.argv.indexOf(name); return i < 0 ? undefined : process.argv[i + 1]; };
const cpusList = (arg('--cpus') ?? '1').split(',').map(Number);
const programs = process.argv.includes('--programs');
const MARKER = programs ? 'vmctl-bench: done' : 'vmctl-linux: userspace up';
const tmp = mkdtempSync(join(tmpdir(), 'vmctl-inproc-'));
const disks: { path: string; readonly: boolean; name: string }[] = [];
if (programs) {
  writeFileSync(join(tmp, 'data.img'), benchText(2 << 20));
  const fd = openSync(join(tmp, 'scratch.img'), 'w');
  ftruncateSync(fd, 256 << 20);
  closeSync(fd);
  disks.push({ path: join(tmp, 'data.img'), readonly: true, name: 'bench-data' }, { path: join(tmp, 'scratch.img'), readonly: false, name: 'bench-scratch' });
}
const threads = process.argv.includes('--one-thread') ? undefined : hartThreads(pathToFileURL(join(process.cwd(), 'dist/hart-worker.js')));
const boots = Number(arg('--boots') ?? 1);
for (let boot = 0; boot < boots; boot++) {
const cpus = cpusList[boot % cpusList.length];
let text = '';
let done = false;
const vm = VirtMachine.create(
  { memoryBytes: 256 << 20, cpus,
    firmware: process.argv.includes('--opensbi') ? { kind: 'file', path: '/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_dynamic.bin' } : { kind: 'builtin' },
    kernelPath: join(OUT, 'Image'), initrdPath: join(OUT, 'initramfs.cpio.gz'),
    cmdline: programs ? 'console=ttyS0 vmctl=bench' : 'console=ttyS0', disks },
  { consoleOutput: (b) => {
    const s = Buffer.from(b).toString('latin1');
    if (programs) for (const l of s.split('\n')) if (l.startsWith('vmctl-bench:')) console.log(l);
    text += s; if (text.includes(MARKER)) done = true;
  }, powerEvent: () => { done = true; }, log: () => {} },
  threads,
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
const instret = vm.instructionsRetired();
const uptime = /\[\s*([\d.]+)\] Run \/init/.exec(text)?.[1];
console.log(`${cpus} hart(s), ${uptime ? `guest uptime at Run /init ${uptime} s, ` : ''}${programs ? 'bench mode' : 'boot to marker'}: ${(ms / 1000).toFixed(3)} s (cpu ${((cpu.user + cpu.system) / 1e6).toFixed(3)} s), ` +
  `${instret} instructions, idle ~${idle.toFixed(0)} ms, ${text.includes(MARKER) ? 'marker seen' : 'NO MARKER'}`);
console.log(`translator: ${vm.jitStats().describe(instret)}`);
if (process.argv.includes('--per-hart')) {
  const per = vm.hartInstructions();
  for (let i = 0; i < cpus; i++) {
    const s = new JitStats();
    if (i === 0) s.add(vm.harts[0].jitStats); else (vm as unknown as { smp: { addJitStats(h: number, s: JitStats): void } }).smp.addJitStats(i, s);
    console.log(`  hart ${i}: ${s.describe(per[i])}`);
  }
}
}
rmSync(tmp, { recursive: true, force: true });
