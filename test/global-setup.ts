// Builds the big test guests once before the suite, with the project's own scripts, into caches
// outside the repository. Tests that need such a guest skip with a message when it is absent;
// under CI (CI=true) a failed build fails the whole run instead, so nothing is silently untested.
//
// VMCTL_LINUX_DIR: where the Linux guest is (built) (default ~/.cache/vmctl/linux/out).
// VMCTL_SKIP_LINUX_BUILD=1: do not run the build (the tests use a guest already there, or skip).
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

/** A build that takes longer than this is a real one: its progress is shown from then on. */
const QUIET_MS = 5000;
/** With no progress line for this long (another build holds the lock), say it is still going. */
const HEARTBEAT_MS = 30_000;

export default async function setup(): Promise<void> {
  const out = process.env.VMCTL_LINUX_DIR ?? join(homedir(), '.cache/vmctl/linux/out');
  if (process.env.VMCTL_SKIP_LINUX_BUILD === '1') return;
  const t0 = Date.now();
  const elapsed = (): string => {
    const s = Math.round((Date.now() - t0) / 1000);
    return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  };
  const say = (line: string): void => { process.stderr.write(`global-setup: ${line}\n`); };

  // The script is incremental: a cached build returns in seconds and is not narrated. A real one
  // (minutes) shows build.sh's phase and progress lines as they come, instead of minutes of silence.
  const child = spawn('bash', ['fixtures/linux/build.sh', out], { stdio: ['ignore', 'ignore', 'pipe'] });
  const held: string[] = [];
  const tail: string[] = [];
  let streaming = false;
  let lastLine = Date.now();
  createInterface({ input: child.stderr! }).on('line', (line) => {
    tail.push(line);
    if (tail.length > 15) tail.shift();
    lastLine = Date.now();
    if (streaming) say(line);
    else held.push(line);
  });
  const quiet = setTimeout(() => {
    streaming = true;
    say(`building the Linux test guest into ${out} with fixtures/linux/build.sh; the first build takes minutes ` +
      '(VMCTL_SKIP_LINUX_BUILD=1 skips it; see the README)');
    for (const l of held.splice(0)) say(l);
  }, QUIET_MS);
  const heartbeat = setInterval(() => {
    if (streaming && Date.now() - lastLine >= HEARTBEAT_MS) say(`still building, ${elapsed()} so far (last: ${tail[tail.length - 1] ?? 'nothing yet'})`);
  }, HEARTBEAT_MS / 3);
  const status = await new Promise<number | null>((resolve) => {
    child.on('error', (e) => {
      tail.push(String(e));
      resolve(null);
    });
    child.on('close', (code) => resolve(code));
  });
  clearTimeout(quiet);
  clearInterval(heartbeat);

  const ok = status === 0 && existsSync(join(out, 'Image')) && existsSync(join(out, 'initramfs.cpio.gz'));
  if (ok) {
    say(`Linux test guest ready in ${out} (${elapsed()})`);
    return;
  }
  const msg = `global-setup: building the Linux test guest with fixtures/linux/build.sh failed (exit ${status}):\n${tail.join('\n')}`;
  if (process.env.CI) throw new Error(msg);
  process.stderr.write(`${msg}\nThe Linux tests will be skipped.\n`);
}
