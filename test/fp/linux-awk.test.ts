// Floating point in a real userland: the Linux guest of fixtures/linux/build.sh (Debian kernel,
// Debian's static glibc busybox; glibc uses F/D from its first instructions) with its init script
// replaced by fixtures/fp/linux/rcS, which runs awk floating-point work and prints "fp:" lines.
// vmctl (builtin SBI) and QEMU 7.2 (its default OpenSBI) must print the same lines.
// Skipped with a message when the guest has not been built (as test/board/linux.test.ts).
import { describe, it, expect } from 'vitest';
import { existsSync, mkdtempSync, rmSync, copyFileSync, chmodSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { spawnSync } from 'node:child_process';
import { runGuest } from '../helpers/run-guest.js';
import { runQemuLinux } from './qemu-linux.js';

const OUT = process.env.VMCTL_LINUX_DIR ?? join(homedir(), '.cache/vmctl/linux/out');
const IMAGE = join(OUT, 'Image');
const INITRD = join(OUT, 'initramfs.cpio.gz');
const haveLinux = existsSync(IMAGE) && existsSync(INITRD);
if (!haveLinux) console.warn(`test/fp/linux-awk.test.ts: skipped, no guest kernel in ${OUT} (build it with fixtures/linux/build.sh)`);

/** The guest's initramfs with fixtures/fp/linux/rcS as /etc/init.d/rcS (cpio and gzip do the work). */
function fpInitrd(dir: string): string {
  const root = join(dir, 'root');
  const out = join(dir, 'initramfs-fp.cpio.gz');
  const sh = (cmd: string): void => {
    const r = spawnSync('sh', ['-c', cmd], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`${cmd}: ${r.stderr}`);
  };
  sh(`mkdir -p '${root}' && cd '${root}' && gzip -dc '${INITRD}' | cpio -idm --quiet`);
  copyFileSync(resolve('fixtures/fp/linux/rcS'), join(root, 'etc/init.d/rcS'));
  chmodSync(join(root, 'etc/init.d/rcS'), 0o755);
  sh(`cd '${root}' && find . | cpio -o -H newc --quiet | gzip -9 > '${out}'`);
  return out;
}

const fpLines = (s: string): string[] => s.replace(/\r/g, '').split('\n').filter((l) => l.startsWith('fp:'));

describe.skipIf(!haveLinux)('awk floating point under Linux: vmctl == QEMU', () => {
  it('prints the same fp: lines', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vmctl-fp-linux-'));
    try {
      const initrd = fpInitrd(dir);
      const q = await runQemuLinux(IMAGE, initrd, 120_000);
      const want = fpLines(q);
      expect(want.at(-1)).toBe('fp: done');
      expect(want.length).toBe(15);
      const r = await runGuest({ firmware: { kind: 'builtin' }, kernelPath: IMAGE, initrdPath: initrd, cmdline: 'console=ttyS0', cpus: 1, memoryBytes: 256 << 20 },
        { timeoutMs: 240_000 });
      expect(r.timedOut).toBe(false);
      expect(fpLines(r.output)).toEqual(want);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
