// Saved state, snapshots, clones and qcow2 in the benchmark (`npm run bench -- --only
// snapshot,qcow2`, or `npm run bench:snapshot`), with the Linux test guest through the real `vmctl`
// (CLI, daemon, VM worker) in a temporary VMCTL_HOME:
//  - snapshot: a cold boot to a shell answering a command, against `save` (its time and the state
//    file's size) and a resume (`start` of the saved VM) to the same shell answering; the pause a
//    running VM's `snapshot take` costs the guest (measured by the worker), and the whole take;
//    `clone --linked` of a VM with a 10 GiB disk that holds data;
//  - qcow2: sequential `dd` inside the guest, 1 MiB blocks with O_DIRECT (the guest's page cache
//    left out), on a raw disk and on a qcow2 disk of the same size: first write (the qcow2 image
//    allocates its clusters), rewrite, read; each timed by the guest's clock, median of three.
import { closeSync, copyFileSync, mkdirSync, openSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { Vmctl } from './linux.js';

export interface SnapshotBenchOptions {
  guest: string;
  /** Scratch folder (removed by the caller). */
  tmp: string;
  snapshot: boolean;
  qcow2: boolean;
  log: (s: string) => void;
}

const MEMORY = '256MiB';
const CLONE_DISK_GIB = 10;
const DD_MIB = 64;
const DD_REPEAT = 3;

function linuxYaml(guest: string, name: string, disks: string[]): string {
  return [
    `name: ${name}`, 'cpus: 1', `memory: ${MEMORY}`, 'boot:', '  firmware: builtin',
    `  kernel: ${join(guest, 'Image')}`, `  initrd: ${join(guest, 'initramfs.cpio.gz')}`, '  cmdline: "console=ttyS0 vmctl=shell"',
    'shutdown:', '  console: "poweroff -f\\n"', '  timeout: 30s',
    ...(disks.length ? ['disks:', ...disks.map((d) => `  - path: ${d}`)] : []), '',
  ].join('\n');
}

const seconds = (t0: number): number => (performance.now() - t0) / 1000;
const mib = (b: number): string => `${(b / 1048576).toFixed(1)} MiB`;
const figure = (label: string, text: string): string => `${label.padEnd(32)}${text}`;

/** Creates `name` from YAML text and starts it to its shell; returns the start's wall time to
 *  the shell answering a command. */
function bootToShell(v: Vmctl, name: string, yaml: string): number {
  const f = join(v.home, `${name}.yaml`);
  writeFileSync(f, yaml);
  v.must(['create', '-f', f]);
  const t0 = performance.now();
  v.must(['start', name, '--wait-for', 'shell on console', '--timeout', '10m']);
  v.must(['exec', name, '--', 'true']);
  const t = seconds(t0);
  v.must(['exec', name, '--', 'dmesg -n 1']);
  return t;
}

function snapshotScenario(o: SnapshotBenchOptions, v: Vmctl): string[] {
  const out: string[] = [];
  copyFileSync(join(o.guest, 'disk.img'), join(o.tmp, 'disk.img'));
  o.log('snapshot: cold boot of the Linux guest to its shell');
  const cold = bootToShell(v, 'lx', linuxYaml(o.guest, 'lx', [join(o.tmp, 'disk.img')]));
  // Some of the guest's RAM in use, as a running system has: 32 MiB of random data in ramfs.
  v.must(['exec', 'lx', '--timeout', '10m', '--', 'dd if=/dev/urandom of=/tmp/fill bs=1M count=32 2>/dev/null']);
  o.log('snapshot: save and resume');
  let t0 = performance.now();
  const saved = JSON.parse(v.must(['save', 'lx', '--json'])) as { savedState: { bytes: number }; saveSeconds: number };
  const saveWall = seconds(t0);
  t0 = performance.now();
  v.must(['start', 'lx']);
  v.must(['exec', 'lx', '--', 'true']);
  const resume = seconds(t0);
  out.push(figure('cold boot to a shell answering', `${cold.toFixed(2)} s`));
  out.push(figure('save', `${saveWall.toFixed(2)} s (the daemon's figure ${saved.saveSeconds.toFixed(2)} s), state file ${mib(saved.savedState.bytes)} (guest RAM ${MEMORY})`));
  out.push(figure('resume to a shell answering', `${resume.toFixed(2)} s (${(resume / cold * 100).toFixed(0)}% of the cold boot)`));

  o.log('snapshot: three snapshots of the running VM');
  const pauses: number[] = [];
  const takes: number[] = [];
  for (let i = 1; i <= 3; i++) {
    t0 = performance.now();
    v.must(['snapshot', 'take', 'lx', `s${i}`]);
    takes.push(seconds(t0));
    const l = JSON.parse(v.must(['snapshot', 'list', 'lx', '--json'])) as { snapshots: { name: string; pauseSeconds: number; stateBytes: number }[] };
    pauses.push(l.snapshots.find((s) => s.name === `s${i}`)!.pauseSeconds);
    v.must(['exec', 'lx', '--', `echo ${i} > /tmp/step`]);
  }
  out.push(figure('snapshot take, the guest held', `${pauses.map((p) => `${(p * 1000).toFixed(0)} ms`).join(', ')}; the whole command ${takes.map((t) => `${t.toFixed(2)} s`).join(', ')}`));
  v.must(['stop', 'lx', '--force']);

  o.log(`snapshot: linked clone of a VM with a ${CLONE_DISK_GIB} GiB disk`);
  const big = join(o.tmp, 'big.img');
  // A raw disk with data spread over its whole size: 1 MiB every 256 MiB.
  v.must(['disk', 'create', big, '--size', `${CLONE_DISK_GIB}GiB`, '--format', 'raw']);
  const fd = openSync(big, 'r+');
  const chunk = Buffer.alloc(1 << 20, 0xa5);
  for (let off = 0; off < CLONE_DISK_GIB * 1024; off += 256) writeSync(fd, chunk, 0, chunk.length, off * 1048576);
  closeSync(fd);
  const f = join(v.home, 'big.yaml');
  writeFileSync(f, linuxYaml(o.guest, 'big', [big]));
  v.must(['create', '-f', f]);
  t0 = performance.now();
  v.must(['clone', 'big', 'bigclone', '--linked']);
  const clone = seconds(t0);
  out.push(figure(`clone --linked, ${CLONE_DISK_GIB} GiB disk`, `${clone.toFixed(2)} s (the whole command: CLI, daemon, a snapshot of the source, the overlay)`));
  return out;
}

/** MiB/s of a `dd` command in the guest, timed by the guest's clock (/proc/uptime). */
function ddRate(v: Vmctl, vm: string, cmd: string): number {
  const r = v.must(['exec', vm, '--timeout', '10m', '--', `a=$(cut -d' ' -f1 /proc/uptime); ${cmd} 2>/dev/null || echo FAILED; b=$(cut -d' ' -f1 /proc/uptime); echo "secs $a $b"`]);
  if (r.includes('FAILED')) throw new Error(`${cmd} failed in the guest: ${r}`);
  const m = /secs ([\d.]+) ([\d.]+)/.exec(r);
  if (!m) throw new Error(`no timing from the guest: ${r}`);
  return DD_MIB / (Number(m[2]) - Number(m[1]));
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1];

type DdKind = 'write' | 'rewrite' | 'read';

/** Sequential dd on /dev/vda (raw) and /dev/vdb (qcow2), alternating so that a change of the
 *  host's load hits both alike; REPEAT times each, on fresh ground for first writes. */
function ddFigures(v: Vmctl, vm: string): Record<DdKind, { raw: number; qcow2: number }> {
  const runs: Record<DdKind, { raw: number[]; qcow2: number[] }> = { write: { raw: [], qcow2: [] }, rewrite: { raw: [], qcow2: [] }, read: { raw: [], qcow2: [] } };
  const cmd = (k: DdKind, dev: string, i: number): string => k === 'read'
    ? `dd if=/dev/${dev} of=/dev/null bs=1M count=${DD_MIB} skip=${i * DD_MIB} iflag=direct`
    : `dd if=/tmp/data of=/dev/${dev} bs=1M count=${DD_MIB} seek=${k === 'write' ? i * DD_MIB : 0} oflag=direct`;
  for (const k of ['write', 'rewrite', 'read'] as const) {
    for (let i = 0; i < DD_REPEAT; i++) {
      runs[k].raw.push(ddRate(v, vm, cmd(k, 'vda', i)));
      runs[k].qcow2.push(ddRate(v, vm, cmd(k, 'vdb', i)));
    }
  }
  const f = (k: DdKind) => ({ raw: median(runs[k].raw), qcow2: median(runs[k].qcow2) });
  return { write: f('write'), rewrite: f('rewrite'), read: f('read') };
}

function qcow2Scenario(o: SnapshotBenchOptions, v: Vmctl): string[] {
  const raw = join(o.tmp, 'dd-raw.img');
  const qcow = join(o.tmp, 'dd.qcow2');
  v.must(['disk', 'create', raw, '--size', '256MiB', '--format', 'raw']);
  v.must(['disk', 'create', qcow, '--size', '256MiB', '--format', 'qcow2']);
  o.log('qcow2: the guest with a raw disk (vda) and a qcow2 disk (vdb)');
  bootToShell(v, 'dd', linuxYaml(o.guest, 'dd', [raw, qcow]));
  // Random data (not zeros, which an image could store as zero clusters), from the guest's RAM.
  v.must(['exec', 'dd', '--timeout', '10m', '--', `dd if=/dev/urandom of=/tmp/data bs=1M count=${DD_MIB} 2>/dev/null`]);
  const r = ddFigures(v, 'dd');
  v.must(['stop', 'dd', '--force']);
  const line = (k: DdKind): string =>
    `${k.padEnd(10)} raw ${r[k].raw.toFixed(1).padStart(6)} MiB/s   qcow2 ${r[k].qcow2.toFixed(1).padStart(6)} MiB/s   qcow2/raw ${(r[k].qcow2 / r[k].raw).toFixed(2)}`;
  return [
    `dd in the guest, ${DD_MIB} MiB in 1 MiB blocks, O_DIRECT, median of ${DD_REPEAT} (guest clock); qcow2 image afterwards ${mib(statSync(qcow).size)}:`,
    line('write'), line('rewrite'), line('read'),
  ];
}

/** Runs the chosen scenarios; returns the lines to print. */
export function benchSnapshots(o: SnapshotBenchOptions): string[] {
  const v = new Vmctl(o.tmp);
  mkdirSync(v.home, { recursive: true });
  try {
    return [...(o.snapshot ? snapshotScenario(o, v) : []), ...(o.qcow2 ? qcow2Scenario(o, v) : [])];
  } finally {
    v.run(['daemon', 'stop']);
  }
}
