// `npm run bench [-- OPTIONS]`: vmctl against qemu-system-riscv64 on the same workloads, one after
// the other in the same run, each ratio vmctl time / QEMU time and their geometric mean:
//   bare metal     our guests of different shapes (fixtures/bench, baremetal.ts), in this process
//   linux boot     the Linux test guest to its userspace marker, 1 and 4 harts (linux.ts)
//   linux program  busybox programs and mke2fs inside that guest, timed by the guest (linux.ts)
//   snapshot       save time and state size, resume vs cold boot, snapshot pause, linked clone of
//                  a 10 GiB disk (snapshot.ts; vmctl only: `npm run bench:snapshot` runs it alone)
//   qcow2          sequential dd in that guest on a qcow2 disk against a raw one (snapshot.ts)
//   linux network  TCP throughput guest -> host and host -> guest through user-mode NAT (net.ts)
// Options:
//   --only LIST    comma-separated sections (bare, boot, programs, snapshot, qcow2, net) or bare-metal guest names
//   --repeat N     run everything N times; then the median of each workload's ratios
//   --verbose      the translator's figures for each workload
//   --no-qemu      vmctl only
//   --no-jit       bare-metal guests with translation off (the pure interpreter)
// The machine may be shared: the load average is printed before and after, and CPU times (less
// disturbed by other load than wall times) are given where they can be measured.
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, homedir, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { BARE_METAL, benchBareMetal } from './baremetal.js';
import { benchLinux, checkGuest } from './linux.js';
import { formatTable, geomean, loadText, type Row } from './measure.js';
import { benchNet, checkNetGuest } from './net.js';
import { qemuVersion } from './qemu.js';
import { benchSnapshots } from './snapshot.js';

const USAGE = 'usage: npm run bench -- [--only bare,boot,programs,snapshot,qcow2,net,GUEST] [--repeat N] [--verbose] [--no-qemu] [--no-jit]';

function parseArgs(argv: string[]): { only: Set<string> | null; repeat: number; verbose: boolean; qemu: boolean; jit: boolean } {
  const o = { only: null as Set<string> | null, repeat: 1, verbose: false, qemu: true, jit: true };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--verbose' || a === '-v') o.verbose = true;
    else if (a === '--no-qemu') o.qemu = false;
    else if (a === '--no-jit') o.jit = false;
    else if (a === '--only' || a === '--repeat') {
      const val = argv[++i];
      if (val === undefined) throw new Error(`${a} needs a value\n${USAGE}`);
      if (a === '--repeat') {
        o.repeat = Number(val);
        if (!Number.isInteger(o.repeat) || o.repeat < 1) throw new Error(`--repeat: expected a whole number >= 1, got '${val}'`);
      } else {
        const known = ['bare', 'boot', 'programs', 'snapshot', 'qcow2', 'net', ...BARE_METAL.map((g) => g.name)];
        o.only = new Set(val.split(','));
        for (const x of o.only) if (!known.includes(x)) throw new Error(`--only: unknown workload '${x}' (expected ${known.join(', ')})`);
      }
    } else throw new Error(`unknown option '${a}'\n${USAGE}`);
  }
  return o;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 === 1 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

async function main(): Promise<void> {
  const opts = parseArgs(process.argv.slice(2));
  const want = (section: string): boolean => opts.only === null || opts.only.has(section);
  const bare = BARE_METAL.map((g) => g.name).filter((n) => want('bare') || opts.only!.has(n));
  const qemu = opts.qemu ? qemuVersion() : null;
  if (opts.qemu && qemu === null) throw new Error('qemu-system-riscv64 is not runnable (Debian: apt-get install qemu-system-misc), or use --no-qemu');
  const guest = process.env.VMCTL_LINUX_DIR ?? join(homedir(), '.cache/vmctl/linux/out');
  const linux = want('boot') || want('programs');
  const snapshots = want('snapshot') || want('qcow2');
  const net = want('net');
  for (const bad of [linux || snapshots ? checkGuest(guest) : null, net ? checkNetGuest(guest) : null]) {
    if (bad !== null) throw new Error(`${bad} (or set VMCTL_LINUX_DIR, or leave Linux out with --only bare)`);
  }
  console.log(`vmctl bench: Node ${process.version} (V8 ${process.versions.v8}), ${qemu ?? 'no QEMU'}, ` +
    `${cpus().length} host cpus (${cpus()[0]?.model ?? '?'}); load average ${loadText()}`);
  if (linux || snapshots || net) console.log(`Linux guest: ${guest}`);
  const runs: Row[][] = [];
  for (let k = 0; k < opts.repeat; k++) {
    if (opts.repeat > 1) console.log(`--- run ${k + 1} of ${opts.repeat} (load ${loadText()})`);
    const rows: Row[] = [];
    if (bare.length > 0) rows.push(...benchBareMetal(resolve('fixtures/bench'), bare, { qemu: opts.qemu, jit: opts.jit, log: console.log }));
    if (linux || net) {
      const tmp = mkdtempSync(join(tmpdir(), 'vmctl-bench-'));
      try {
        if (linux) rows.push(...await benchLinux({ guest, tmp, qemu: opts.qemu, boots: want('boot'), programs: want('programs'), log: console.log }));
        if (net) rows.push(...await benchNet({ guest, tmp, qemu: opts.qemu, log: console.log }));
      } finally {
        rmSync(tmp, { recursive: true, force: true });
      }
    }
    if (rows.length > 0) console.log(`\n${formatTable(rows)}`);
    if (snapshots) {
      const tmp = mkdtempSync(join(tmpdir(), 'vmctl-bench-snap-'));
      try {
        const lines = benchSnapshots({ guest, tmp, snapshot: want('snapshot'), qcow2: want('qcow2'), log: console.log });
        console.log(`\nsaved state, snapshots, clones, qcow2 (vmctl only, the Linux guest):\n${lines.map((l) => `  ${l}`).join('\n')}`);
      } finally {
        rmSync(tmp, { recursive: true, force: true });
      }
    }
    if (opts.verbose) {
      console.log('translator (vmctl side):');
      let last = '';
      for (const r of rows) {
        if (r.jit === undefined || r.jit === last) continue;
        last = r.jit;
        console.log(`  ${r.group}${r.group === 'linux program' ? 's (the whole run)' : `: ${r.name}`}: ${r.jit}`);
      }
    }
    console.log(`load average ${loadText()}\n`);
    runs.push(rows);
  }
  if (opts.repeat > 1) {
    console.log(`median of ${opts.repeat} runs, per workload (vmctl / QEMU, wall time):`);
    const ratios: number[] = [];
    for (let i = 0; i < runs[0].length; i++) {
      const rs = runs.map((rows) => rows[i]).filter((r) => r?.qemu).map((r) => r.vmctl.wall / r.qemu!.wall);
      if (rs.length === 0) continue;
      const m = median(rs);
      ratios.push(m);
      console.log(`  ${runs[0][i].group}: ${runs[0][i].name}: ${m.toFixed(2)}  (${rs.map((x) => x.toFixed(2)).join(' ')})`);
    }
    if (ratios.length > 0) console.log(`geometric mean of the medians: ${geomean(ratios).toFixed(2)}; highest ${Math.max(...ratios).toFixed(2)}`);
  }
  if (runs.some((rows) => rows.some((r) => r.mismatch))) process.exitCode = 1;
}

main().catch((e: Error) => {
  console.error(`bench: ${e.message}`);
  process.exitCode = 1;
});
