// What the benchmark measures besides wall time: CPU time of processes (the machine the bench
// runs on is often shared, and CPU time is far less disturbed by other load than wall time), the
// load average, and the workload's result table.
import { readFileSync } from 'node:fs';
import { loadavg } from 'node:os';

/** Clock ticks per second of /proc/PID/stat (USER_HZ: 100 on every Linux port that matters). */
const USER_HZ = 100;

function statFields(pid: number | 'self'): string[] | null {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'latin1');
    // Fields after the command name, which is in parentheses and may hold spaces.
    return s.slice(s.lastIndexOf(')') + 2).split(' ');
  } catch {
    return null;
  }
}

/** User + system CPU seconds of a running process (all its threads); null when it is gone. */
export function processCpuSeconds(pid: number): number | null {
  const f = statFields(pid);
  // utime and stime are fields 14 and 15 of proc(5); f[0] is field 3.
  return f === null ? null : (Number(f[11]) + Number(f[12])) / USER_HZ;
}

/** CPU seconds of this process's children that have exited and been waited for (cutime + cstime). */
export function reapedChildrenCpuSeconds(): number {
  const f = statFields('self');
  return f === null ? 0 : (Number(f[13]) + Number(f[14])) / USER_HZ;
}

/** This process's own CPU seconds (all threads). */
export function ownCpuSeconds(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

export function loadText(): string {
  return loadavg().map((l) => l.toFixed(2)).join(' ');
}

/** One side of a workload: wall seconds, and CPU seconds when they could be measured. */
export interface Timing { wall: number; cpu: number | null }

export interface Row {
  readonly group: string;
  readonly name: string;
  readonly vmctl: Timing;
  readonly qemu: Timing | null;
  /** A difference between the two emulators' results (the workload's output must match). */
  readonly mismatch?: string;
  /** The translator's figures for the vmctl side (--verbose). */
  readonly jit?: string;
}

const fmt = (s: number | null | undefined): string => (s === null || s === undefined ? '-' : s.toFixed(3));
const ratio = (a: number | null | undefined, b: number | null | undefined): number | null =>
  a === null || a === undefined || b === null || b === undefined || b <= 0 ? null : a / b;

export function geomean(xs: number[]): number {
  return xs.length === 0 ? NaN : Math.exp(xs.reduce((s, x) => s + Math.log(x), 0) / xs.length);
}

/** The table: per workload vmctl and QEMU seconds and their ratio (wall, then CPU where known),
 *  then the geometric mean and the worst ratio. */
export function formatTable(rows: readonly Row[]): string {
  const head = ['workload', 'vmctl s', 'qemu s', 'ratio', 'vmctl cpu', 'qemu cpu', 'cpu ratio'];
  const body = rows.map((r) => [
    `${r.group}: ${r.name}`, fmt(r.vmctl.wall), fmt(r.qemu?.wall), fmt(ratio(r.vmctl.wall, r.qemu?.wall)),
    fmt(r.vmctl.cpu), fmt(r.qemu?.cpu), fmt(ratio(r.vmctl.cpu, r.qemu?.cpu)),
  ]);
  const width = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (cells: string[]): string => cells.map((c, i) => (i === 0 ? c.padEnd(width[i]) : c.padStart(width[i]))).join('  ');
  const out = [line(head), ...body.map(line)];
  const walls = rows.map((r) => ratio(r.vmctl.wall, r.qemu?.wall)).filter((x): x is number => x !== null);
  const cpus = rows.map((r) => ratio(r.vmctl.cpu, r.qemu?.cpu)).filter((x): x is number => x !== null);
  if (walls.length > 0) {
    const worst = rows.reduce((w, r) => ((ratio(r.vmctl.wall, r.qemu?.wall) ?? 0) > (ratio(w.vmctl.wall, w.qemu?.wall) ?? 0) ? r : w));
    out.push(`geometric mean of the ${walls.length} wall-time ratios (vmctl / QEMU): ${geomean(walls).toFixed(2)}; ` +
      `highest ${fmt(ratio(worst.vmctl.wall, worst.qemu?.wall))} (${worst.group}: ${worst.name})`);
  }
  if (cpus.length > 0) out.push(`geometric mean of the ${cpus.length} CPU-time ratios: ${geomean(cpus).toFixed(2)}`);
  for (const r of rows) if (r.mismatch) out.push(`MISMATCH ${r.group}: ${r.name}: ${r.mismatch}`);
  return out.join('\n');
}
