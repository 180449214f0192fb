// Scripting a real shell on the console: the Linux test guest (fixtures/linux/build.sh) with
// vmctl=shell, busybox ash at the prompt. A command that answers after 2 s is not cut off by a
// piped console; exec returns a command's output alone and its exit status.
// Skipped when the Linux guest has not been built on this machine.

import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LINUX, VmctlHome } from './harness.js';

const h = new VmctlHome();
afterAll(() => h.cleanup());

async function exec(cmd: string, opts: string[] = []): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return h.run(['exec', 'sh', ...opts, '--', cmd], { timeoutMs: 120_000 });
}

describe.skipIf(!LINUX)('a shell on the console (Linux guest)', () => {
  beforeAll(async () => {
    const f = join(h.home, 'sh.yaml');
    writeFileSync(f, [
      'name: sh', 'cpus: 1', 'memory: 128MiB', 'boot:', '  firmware: builtin',
      `  kernel: ${join(LINUX!, 'Image')}`, `  initrd: ${join(LINUX!, 'initramfs.cpio.gz')}`, '  cmdline: "console=ttyS0 vmctl=shell"',
      'shutdown:', '  console: "poweroff -f\\n"', '',
    ].join('\n'));
    expect((await h.run(['create', '-f', f])).code).toBe(0);
    const start = await h.run(['start', 'sh', '--wait-for', "shell on console; 'poweroff -f' ends the VM", '--timeout', '5m'], { timeoutMs: 330_000 });
    expect(start.code, start.stderr).toBe(0);
    // Kernel messages on the console would mix into the output (e.g. "random: crng init done").
    expect((await exec('dmesg -n 1', ['--shell-timeout', '60s'])).code).toBe(0);
  }, 400_000);

  it('piped console: the answer to a command that takes 2 s arrives (default --quiet-for 3s)', async () => {
    const r = await h.run(['console', 'sh'], { input: 'sleep 2; echo "answer-$((6*7))"\n', timeoutMs: 60_000 });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('answer-42');
  });

  it('piped console --until waits past the default quiet time for the marker', async () => {
    // The marker is assembled by the guest, so the echo of the typed line cannot match it.
    const r = await h.run(['console', 'sh', '--until', 'finished-7', '--timeout', '60s'], { input: 'sleep 4; echo "finished-$((3+4))"\n', timeoutMs: 90_000 });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('finished-7');
  });

  it('exec: the output alone (stdout and stderr, no echo, no prompt), LF line ends, no added newline', async () => {
    const r = await exec('echo out; echo err >&2; printf "no newline"');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('out\nerr\nno newline');
    expect(r.stderr).toBe('');
  });

  it('exec returns the command\'s exit status; a syntax error is the shell\'s 2', async () => {
    expect((await exec('exit 3')).code).toBe(3);
    expect((await exec('false')).code).toBe(1);
    const bad = await exec('echo "unclosed');
    expect(bad.code).toBe(2);
    expect(bad.stdout).toContain('unterminated quoted string');
  });

  it('exec keeps quotes, runs in a subshell with stdin from /dev/null, and passes long output intact', async () => {
    expect((await exec(`printf '%s|' "a  b" 'it'"'"'s' \\\\x; echo`)).stdout).toBe("a  b|it's|\\x|\n");
    expect((await exec('cd /tmp; cat; echo "read: $?"')).stdout).toBe('read: 0\n');
    expect((await exec('pwd')).stdout).toBe('/\n');
    const many = await exec('seq 1 3000');
    expect(many.code).toBe(0);
    expect(many.stdout).toBe(`${Array.from({ length: 3000 }, (_, i) => i + 1).join('\n')}\n`);
  });

  it('exec --timeout: 124, and the shell is usable again afterwards', async () => {
    const t = await exec('sleep 3; echo late', ['--timeout', '1s']);
    expect(t.code).toBe(124);
    expect(t.stderr).toContain('timed out after 1s; the command may still be running in the guest');
    // The next exec is typed while `sleep 3` still runs: its line waits in the tty for the shell.
    const next = await exec('echo next', ['--shell-timeout', '30s']);
    expect(next.code).toBe(0);
    expect(next.stdout).toBe('next\n');
  });
});
