// Builds the big test guests once before the suite, with the project's own scripts, into caches
// outside the repository. Tests that need such a guest skip with a message when it is absent;
// under CI (CI=true) a failed build fails the whole run instead, so nothing is silently untested.
//
// VMCTL_LINUX_DIR: where the Linux guest is (built) (default ~/.cache/vmctl/linux/out).
// VMCTL_SKIP_LINUX_BUILD=1: do not run the build (the tests use a guest already there, or skip).
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { elapsedText, runNarrated } from './helpers/narrated-build.js';

export default async function setup(): Promise<void> {
  const out = process.env.VMCTL_LINUX_DIR ?? join(homedir(), '.cache/vmctl/linux/out');
  if (process.env.VMCTL_SKIP_LINUX_BUILD === '1') return;
  const say = (line: string): void => { process.stderr.write(`global-setup: ${line}\n`); };
  // The script is incremental: a cached build is not narrated; a real one (minutes) shows
  // build.sh's phase and progress lines as they come, instead of minutes of silence.
  const r = await runNarrated('bash', ['fixtures/linux/build.sh', out], {
    quietMs: 5000,
    heartbeatMs: 30_000,
    announce: `building the Linux test guest into ${out} with fixtures/linux/build.sh; the first build takes minutes ` +
      '(VMCTL_SKIP_LINUX_BUILD=1 skips it; see the README)',
    say,
  });
  const ok = r.status === 0 && existsSync(join(out, 'Image')) && existsSync(join(out, 'initramfs.cpio.gz'));
  if (ok) {
    say(`Linux test guest ready in ${out} (${elapsedText(r.seconds * 1000)})`);
    return;
  }
  const msg = `global-setup: building the Linux test guest with fixtures/linux/build.sh failed (exit ${r.status}):\n${r.tail.join('\n')}`;
  if (process.env.CI) throw new Error(msg);
  process.stderr.write(`${msg}\nThe Linux tests will be skipped.\n`);
}
