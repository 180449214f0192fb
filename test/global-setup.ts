// Builds the big test guests once before the suite, with the project's own scripts, into caches
// outside the repository. Tests that need such a guest skip with a message when it is absent;
// under CI (CI=true) a failed build fails the whole run instead, so nothing is silently untested.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

export default function setup(): void {
  const out = process.env.VMCTL_LINUX_DIR ?? join(homedir(), '.cache/vmctl/linux/out');
  if (process.env.VMCTL_SKIP_LINUX_BUILD === '1') return;
  const t0 = Date.now();
  // The script is incremental: a cached build returns in seconds.
  const r = spawnSync('bash', ['fixtures/linux/build.sh', out], { stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' });
  const ok = r.status === 0 && existsSync(join(out, 'Image')) && existsSync(join(out, 'initramfs.cpio.gz'));
  if (ok) {
    process.stderr.write(`global-setup: Linux test guest ready in ${out} (${((Date.now() - t0) / 1000).toFixed(0)} s)\n`);
    return;
  }
  const tail = (r.stderr ?? String(r.error ?? '')).split('\n').slice(-15).join('\n');
  const msg = `global-setup: building the Linux test guest with fixtures/linux/build.sh failed (exit ${r.status}):\n${tail}`;
  if (process.env.CI) throw new Error(msg);
  process.stderr.write(`${msg}\nThe Linux tests will be skipped.\n`);
}
