// How many host cores this process may use: what `host.cpus` defaults to (config.yaml). The
// CPUs the process may run on (its affinity mask: os.availableParallelism), lowered by a cgroup
// CPU limit where there is one (a container's --cpus): cgroup v2 cpu.max, or v1
// cpu.cfs_quota_us / cpu.cfs_period_us, on the process's cgroup and every cgroup above it (the
// tightest applies). A limit may be a fraction of a core (1.5).

import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';

function read(file: string): string | null {
  try { return readFileSync(file, 'utf8'); } catch { return null; }
}

/** The cgroup CPU limit in cores (Infinity when none), from the cgroup file system at `root`. */
export function cgroupCpuLimit(root = '/sys/fs/cgroup', procCgroup = read('/proc/self/cgroup') ?? ''): number {
  let limit = Infinity;
  for (const line of procCgroup.split('\n')) {
    const [, controllers, path] = line.split(':');
    if (path === undefined) continue;
    const v2 = controllers === '';
    if (!v2 && !controllers.split(',').includes('cpu')) continue;
    // Walk from the process's cgroup up to the root: every level's limit applies.
    const parts = path.split('/').filter((p) => p !== '');
    for (let n = parts.length; n >= 0; n--) {
      const dir = [v2 ? root : `${root}/cpu`, ...parts.slice(0, n)].join('/');
      if (v2) {
        const m = /^(\d+)\s+(\d+)/.exec(read(`${dir}/cpu.max`) ?? '');
        if (m && Number(m[2]) > 0) limit = Math.min(limit, Number(m[1]) / Number(m[2]));
      } else {
        const quota = Number(read(`${dir}/cpu.cfs_quota_us`));
        const period = Number(read(`${dir}/cpu.cfs_period_us`));
        if (quota > 0 && period > 0) limit = Math.min(limit, quota / period);
      }
    }
  }
  return limit;
}

/** Host cores this process may use: its CPUs, or fewer under a cgroup CPU limit. */
export function hostCpus(): number {
  return Math.min(availableParallelism(), cgroupCpuLimit());
}
