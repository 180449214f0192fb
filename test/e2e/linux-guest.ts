// The Linux test guest (fixtures/linux/build.sh) driven through the real CLI and daemon: find a
// build that has what a test needs, create and start a VM with a shell on its console, run shell
// commands and read their output.

import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'vitest';
import type { VmctlHome } from './harness.js';

/** The first Linux build whose kernel config has every option in `needs` (e.g. VIRTIO_NET). */
export function findLinux(needs: readonly string[] = []): string | undefined {
  return [process.env.VMCTL_LINUX_DIR, join(homedir(), '.cache', 'vmctl', 'linux', 'out'), '/tmp/linux-guest/out'].find((d) => {
    if (!d || !existsSync(join(d, 'Image')) || !existsSync(join(d, 'initramfs.cpio.gz'))) return false;
    if (needs.length === 0) return true;
    const cfg = existsSync(join(d, 'kernel.config')) ? readFileSync(join(d, 'kernel.config'), 'utf8') : '';
    return needs.every((o) => cfg.includes(`\nCONFIG_${o}=y`));
  });
}

/** Creates VM `name` from the Linux build with a shell on its console; `extra` adds YAML lines. */
export async function createLinuxVm(h: VmctlHome, linux: string, name: string, extra: string[] = [], cmdline = 'console=ttyS0 vmctl=shell'): Promise<void> {
  const f = join(h.home, `${name}.yaml`);
  writeFileSync(f, [
    `name: ${name}`, 'cpus: 1', 'memory: 256MiB', 'boot:', '  firmware: builtin',
    `  kernel: ${join(linux, 'Image')}`, `  initrd: ${join(linux, 'initramfs.cpio.gz')}`, `  cmdline: "${cmdline}"`,
    'shutdown:', '  console: "poweroff -f\\n"', '  timeout: 30s', ...extra, '',
  ].join('\n'));
  const r = await h.run(['create', '-f', f]);
  expect(r.code, r.stderr).toBe(0);
}

/** Starts the VM and waits for its shell; kernel messages are kept off the console (exec output). */
export async function startLinuxVm(h: VmctlHome, name: string): Promise<void> {
  const r = await h.run(['start', name, '--wait-for', 'shell on console', '--timeout', '5m'], { timeoutMs: 330_000 });
  expect(r.code, r.stderr).toBe(0);
  expect((await guestRun(h, name, 'dmesg -n 1')).status).toBe(0);
}

/** Runs `script` in the guest's shell with `vmctl exec`: its output and exit status. */
export async function guestRun(h: VmctlHome, name: string, script: string, timeoutMs = 120_000): Promise<{ out: string; status: number }> {
  const r = await h.run(['exec', name, '--timeout', `${Math.ceil(timeoutMs / 1000)}s`, '--', script], { timeoutMs: timeoutMs + 30_000 });
  expect(r.code === 124 || r.code === 255 ? r.stderr : '', `${script}: exec failed`).toBe('');
  return { out: r.stdout.replace(/\r/g, ''), status: r.code ?? -1 };
}
