// The Linux test guest (fixtures/linux/build.sh) in the benchmark, run through the real `vmctl`
// (CLI, daemon, VM worker) in a temporary VMCTL_HOME, and on qemu-system-riscv64:
//  - boot: from `vmctl start` (QEMU: from spawning it) to the init script's userspace marker,
//    with 1 and 4 harts; vmctl with its builtin SBI and with OpenSBI fw_dynamic, QEMU with the same
//    OpenSBI fw_dynamic (Debian's opensbi package);
//  - programs: the guest's `vmctl=bench` mode times busybox programs on the text of a disk named
//    bench-data and mke2fs on a 256 MiB disk named bench-scratch, with the guest's own clock, and
//    prints each program's time and result; the results must be the same on both emulators.
import { spawn, spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { closeSync, existsSync, ftruncateSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';
import { processCpuSeconds, reapedChildrenCpuSeconds, type Row, type Timing } from './measure.js';
import { QEMU, QEMU_CPU } from './qemu.js';
import { benchText } from './text.js';

export const VMCTL = resolve(dirname(fileURLToPath(import.meta.url)), '../bin/vmctl');
const OPENSBI = '/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_dynamic.bin';
const MARKER = 'vmctl-linux: userspace up';
const MEMORY_MIB = 256;
const DATA_BYTES = 2 << 20;
const SCRATCH_BYTES = 256 << 20;

export interface LinuxBenchOptions {
  /** Folder with Image and initramfs.cpio.gz. */
  guest: string;
  /** Scratch folder (removed by the caller). */
  tmp: string;
  qemu: boolean;
  boots: boolean;
  programs: boolean;
  log: (s: string) => void;
}

/** Checks that the guest has the init script's bench mode (built by a recent build.sh). */
export function checkGuest(dir: string): string | null {
  for (const f of ['Image', 'initramfs.cpio.gz']) if (!existsSync(join(dir, f))) return `${join(dir, f)} is missing: run fixtures/linux/build.sh`;
  if (!gunzipSync(readFileSync(join(dir, 'initramfs.cpio.gz'))).includes('vmctl=bench')) {
    return `${dir}/initramfs.cpio.gz has no vmctl=bench mode: rebuild it with fixtures/linux/build.sh`;
  }
  return null;
}

/** The real vmctl CLI in a temporary VMCTL_HOME (`tmp`/home). */
export class Vmctl {
  readonly home: string;
  readonly env: NodeJS.ProcessEnv;
  constructor(tmp: string) {
    this.home = join(tmp, 'home');
    this.env = { ...process.env, VMCTL_HOME: this.home, NO_COLOR: '1' };
  }
  run(args: string[], timeoutMs = 1_800_000): SpawnSyncReturns<string> {
    const r = spawnSync(process.execPath, [VMCTL, ...args], { env: this.env, encoding: 'utf8', timeout: timeoutMs, maxBuffer: 64 << 20 });
    return r;
  }
  must(args: string[], timeoutMs?: number): string {
    const r = this.run(args, timeoutMs);
    if (r.status !== 0) throw new Error(`vmctl ${args.join(' ')} failed (exit ${r.status ?? r.signal}): ${r.stderr.trim() || r.stdout.slice(-2000)}`);
    return r.stdout;
  }
  daemonPid(): number { return Number.parseInt(readFileSync(join(this.home, 'vmd.pid'), 'utf8'), 10); }
  /** The last translator line the VM's worker logged when it stopped (run-loop.ts); `vmctl run`
   *  adds a suffix to the VM's name. */
  translatorLine(vm: string): string | undefined {
    const re = new RegExp(`vm ${vm}(-\\S+)?: translator: (.*)$`);
    const l = readFileSync(join(this.home, 'vmd.log'), 'utf8').split('\n').map((x) => re.exec(x)).filter((x) => x !== null).pop();
    return l?.[2];
  }
}

export interface Vm { name: string; cpus: number; firmware: 'builtin' | 'opensbi'; cmdline: string; disks?: { path: string; readonly: boolean; name: string }[] }

export function vmYaml(guest: string, vm: Vm): string {
  const disks = vm.disks ?? [];
  return [
    `name: ${vm.name}`, `cpus: ${vm.cpus}`, `memory: ${MEMORY_MIB}MiB`, 'boot:',
    `  firmware: ${vm.firmware === 'builtin' ? 'builtin' : OPENSBI}`,
    `  kernel: ${join(guest, 'Image')}`, `  initrd: ${join(guest, 'initramfs.cpio.gz')}`, `  cmdline: "${vm.cmdline}"`,
    ...(disks.length === 0 ? [] : ['disks:', ...disks.flatMap((d) => [`  - path: ${d.path}`, `    readonly: ${d.readonly}`, `    name: ${d.name}`])]),
    '',
  ].join('\n');
}

function qemuArgs(guest: string, cpus: number, cmdline: string, disks: { path: string; readonly: boolean; name: string }[] = []): string[] {
  return ['-machine', 'virt', '-cpu', QEMU_CPU, '-m', `${MEMORY_MIB}M`, '-smp', String(cpus), '-nographic', '-monitor', 'none',
    '-serial', 'stdio', '-no-reboot', '-bios', OPENSBI, '-kernel', join(guest, 'Image'), '-initrd', join(guest, 'initramfs.cpio.gz'),
    '-append', cmdline,
    ...disks.flatMap((d, i) => ['-drive', `if=none,format=raw,id=d${i},file=${d.path}${d.readonly ? ',readonly=on' : ''}`,
      '-device', `virtio-blk-device,drive=d${i},serial=${d.name}`])];
}

interface Streamed {
  out: string;
  /** Timing when `until` appeared (QEMU is then killed), else when the process ended. */
  t: Timing;
  /** CPU seconds of `cpuPid` when each `vmctl-bench: begin|end NAME` line arrived. */
  marks: Map<string, number>;
  code: number | null;
}

/** Runs a process, following its output line by line: at `until` (if given) it is timed and
 *  killed; at the guest's `vmctl-bench: begin|end NAME` lines the CPU time of `cpuPid(child)` (the
 *  process that runs the guest) is sampled. */
function runStreaming(cmd: string, args: string[], o: { env?: NodeJS.ProcessEnv; until?: string; timeoutMs: number; cpuPid: (child: number) => number }): Promise<Streamed> {
  return new Promise((resolveP, reject) => {
    const cpu0 = reapedChildrenCpuSeconds();
    const start = performance.now();
    const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: o.env });
    let out = '', err = '', line = '';
    let t: Timing | null = null;
    const marks = new Map<string, number>();
    const timer = setTimeout(() => { p.kill('SIGKILL'); reject(new Error(`${cmd} timed out: ${out.slice(-2000)}`)); }, o.timeoutMs);
    p.stdout.on('data', (b: Buffer) => {
      const s = b.toString('latin1');
      out += s;
      line += s;
      for (let i = line.indexOf('\n'); i >= 0; i = line.indexOf('\n')) {
        const m = /^vmctl-bench: (begin|end) (\S+)\r?$/.exec(line.slice(0, i));
        line = line.slice(i + 1);
        if (m) marks.set(`${m[1]} ${m[2]}`, processCpuSeconds(o.cpuPid(p.pid!)) ?? NaN);
      }
      if (o.until !== undefined && t === null && out.includes(o.until)) {
        t = { wall: (performance.now() - start) / 1000, cpu: processCpuSeconds(o.cpuPid(p.pid!)) };
        p.kill('SIGKILL');
      }
    });
    p.stderr.on('data', (b: Buffer) => { err += b.toString('latin1'); });
    p.on('error', (e) => { clearTimeout(timer); reject(e); });
    p.on('close', (code) => {
      clearTimeout(timer);
      if (t === null) {
        if (o.until !== undefined) { reject(new Error(`${cmd} exited (${code}) before '${o.until}': ${err.trim()} ${out.slice(-2000)}`)); return; }
        t = { wall: (performance.now() - start) / 1000, cpu: reapedChildrenCpuSeconds() - cpu0 };
      }
      if (code !== 0 && o.until === undefined) { reject(new Error(`${cmd} ${args.slice(0, 3).join(' ')} failed (exit ${code}): ${err.trim()} ${out.slice(-3000)}`)); return; }
      resolveP({ out, t, marks, code });
    });
  });
}

/** A sparse file of `bytes` (a fresh scratch disk each run). */
function sparse(path: string, bytes: number): void {
  rmSync(path, { force: true });
  const fd = openSync(path, 'w');
  ftruncateSync(fd, bytes);
  closeSync(fd);
}

/** The guest's `vmctl-bench: NAME SECONDS CHECK` lines. */
function benchLines(out: string): Map<string, { seconds: number; check: string }> {
  const m = new Map<string, { seconds: number; check: string }>();
  for (const l of out.split(/\r?\n/)) {
    const x = /^vmctl-bench: (\S+) (\d+\.\d+) ?(.*)$/.exec(l);
    if (x) m.set(x[1], { seconds: Number(x[2]), check: x[3].trim() });
  }
  return m;
}

export async function benchLinux(o: LinuxBenchOptions): Promise<Row[]> {
  const rows: Row[] = [];
  mkdirSync(o.tmp, { recursive: true });
  const v = new Vmctl(o.tmp);
  v.must(['daemon', 'start'], 60_000);
  try {
    if (o.boots) {
      for (const cpus of [1, 4]) {
        for (const firmware of ['builtin', 'opensbi'] as const) {
          const name = `boot-${cpus}-${firmware}`;
          const file = join(o.tmp, `${name}.yaml`);
          writeFileSync(file, vmYaml(o.guest, { name, cpus, firmware, cmdline: 'console=ttyS0' }));
          v.must(['create', '-f', file]);
          const pid = v.daemonPid();
          const d0 = processCpuSeconds(pid) ?? 0, c0 = reapedChildrenCpuSeconds();
          const start = performance.now();
          v.must(['start', name, '--wait-for', MARKER, '--timeout', '10m']);
          const wall = (performance.now() - start) / 1000;
          const cpu = (processCpuSeconds(pid) ?? 0) - d0 + reapedChildrenCpuSeconds() - c0;
          v.must(['wait', name, '--state', 'stopped', '--timeout', '10m']);
          const jit = v.translatorLine(name);
          const q = o.qemu ? await runStreaming(QEMU, qemuArgs(o.guest, cpus, 'console=ttyS0'), { until: MARKER, timeoutMs: 600_000, cpuPid: (c) => c }) : null;
          const label = `${cpus} hart${cpus > 1 ? 's' : ''}, vmctl ${firmware === 'builtin' ? 'builtin SBI' : 'OpenSBI'} / QEMU OpenSBI`;
          o.log(`  boot to '${MARKER}', ${label}: vmctl ${wall.toFixed(2)} s${q ? `, QEMU ${q.t.wall.toFixed(2)} s` : ''}`);
          rows.push({ group: 'linux boot', name: label, vmctl: { wall, cpu }, qemu: q?.t ?? null, jit });
        }
      }
    }
    if (o.programs) {
      const data = join(o.tmp, 'bench-data.img');
      writeFileSync(data, benchText(DATA_BYTES));
      const scratch = join(o.tmp, 'bench-scratch.img');
      sparse(scratch, SCRATCH_BYTES);
      const disks = [{ path: data, readonly: true, name: 'bench-data' }, { path: scratch, readonly: false, name: 'bench-scratch' }];
      const name = 'programs';
      const file = join(o.tmp, `${name}.yaml`);
      writeFileSync(file, vmYaml(o.guest, { name, cpus: 1, firmware: 'builtin', cmdline: 'console=ttyS0 vmctl=bench', disks }));
      const daemon = v.daemonPid();
      const r = await runStreaming(process.execPath, [VMCTL, 'run', '-f', file, '--timeout', '30m'], { env: v.env, timeoutMs: 1_900_000, cpuPid: () => daemon });
      const jit = v.translatorLine(name);
      if (!r.out.includes('vmctl-bench: done')) throw new Error(`the guest's bench mode did not finish: ${r.out.slice(-3000)}`);
      const vm = benchLines(r.out);
      sparse(scratch, SCRATCH_BYTES);
      const q = o.qemu ? await runStreaming(QEMU, qemuArgs(o.guest, 1, 'console=ttyS0 vmctl=bench', disks), { timeoutMs: 1_800_000, cpuPid: (c) => c }) : null;
      const qm = q === null ? null : benchLines(q.out);
      const cpu = (s: Streamed | null, prog: string): number | null => {
        const b = s?.marks.get(`begin ${prog}`), e = s?.marks.get(`end ${prog}`);
        return b === undefined || e === undefined || Number.isNaN(b + e) ? null : e - b;
      };
      for (const [prog, x] of vm) {
        const y = qm?.get(prog);
        let mismatch: string | undefined;
        if (x.check.startsWith('FAILED')) mismatch = `vmctl: ${x.check}`;
        else if (qm !== null && y === undefined) mismatch = 'QEMU did not run it';
        else if (y !== undefined && y.check !== x.check) mismatch = `vmctl's result '${x.check}', QEMU's '${y.check}'`;
        o.log(`  ${prog}: vmctl ${x.seconds.toFixed(3)} s${y ? `, QEMU ${y.seconds.toFixed(3)} s` : ''} (${x.check})`);
        rows.push({ group: 'linux program', name: prog, vmctl: { wall: x.seconds, cpu: cpu(r, prog) },
          qemu: y ? { wall: y.seconds, cpu: cpu(q, prog) } : null, mismatch, jit });
      }
    }
  } finally {
    v.run(['daemon', 'stop'], 60_000);
  }
  return rows;
}
