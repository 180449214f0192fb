// Linux end to end: the kernel and busybox initramfs built by fixtures/linux/build.sh (Debian's
// linux-source-6.1 and busybox, cached in ~/.cache/vmctl/linux/out) boot on the virt board with
// Debian's OpenSBI and with vmctl's builtin SBI, on 1 and 4 harts. The guest's init script
// prints a marker, the number of harts in /proc/cpuinfo, awk's 1/3 (busybox awk uses the D
// extension), the year from the goldfish RTC, then powers off. A shell on the console answers
// typed commands, on the UART (ttyS0) and on the SBI console (hvc0).
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { runGuest } from '../helpers/run-guest.js';
import type { FirmwareSpec } from '../../src/board/machine-types.js';

const OUT = process.env.VMCTL_LINUX_DIR ?? join(homedir(), '.cache/vmctl/linux/out');
const IMAGE = join(OUT, 'Image');
const INITRD = join(OUT, 'initramfs.cpio.gz');
const FW_DYNAMIC = '/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_dynamic.bin';
const haveLinux = existsSync(IMAGE) && existsSync(INITRD);
const haveOpenSbi = existsSync(FW_DYNAMIC);
const haveQemu = spawnSync('qemu-system-riscv64', ['--version'], { stdio: 'ignore' }).status === 0;

/** Boot console lines without printk timestamps, sorted (SMP and async initcalls interleave freely).
 *  Dropped: the HPM counter count OpenSBI finds (QEMU has 16, we have none and no pmu node), the
 *  kernel's "Memory:" line (QEMU's larger device tree — pmu, fw-cfg, flash, pci — makes the
 *  kernel reserve a few KiB more for it), the wall-clock time read from the RTC, and the kernel's
 *  'hrtimer: interrupt took N ns' warning, printed when the host stalls the guest during a timer
 *  interrupt (seen under heavy host load; it says nothing about the board). */
function comparable(out: string): string[] {
  // Up to the start of init: after that, user-space output and late kernel messages (crng
  // init, ...) may interleave mid-line differently on every run, on QEMU too.
  const end = out.indexOf('Run /init as init process');
  if (end >= 0) out = out.slice(0, end);
  // With several harts, OpenSBI's boot hart is whichever wins its lottery: on QEMU that follows
  // the host's scheduling of its hart threads (any of them under load), on vmctl it is hart 0.
  return out.replace(/\r/g, '').split('\n').map((l) => l.replace(/^\[ *\d+\.\d+\] /, '')
    .replace(/^(Boot HART ID +: |Domain0 Boot HART +: )\d+$/, '$1N').replace(/(Registering clocksource cpuid \[0\] hartid \[)\d+\]/, '$1N]'))
    .filter((l) => l !== '' && !/^Boot HART MHPM Count|^Memory: |setting system clock to|^hrtimer: interrupt took /.test(l)).sort();
}
if (!haveLinux) console.warn(`test/board/linux.test.ts: skipped, no guest kernel in ${OUT} (build it with fixtures/linux/build.sh)`);
if (!haveOpenSbi) console.warn(`test/board/linux.test.ts: OpenSBI runs skipped, ${FW_DYNAMIC} missing (Debian package opensbi)`);

const firmwares: [string, FirmwareSpec, boolean][] = [
  ['OpenSBI fw_dynamic', { kind: 'file', path: FW_DYNAMIC }, haveOpenSbi],
  ['builtin SBI', { kind: 'builtin' }, true],
];

function boot(firmware: FirmwareSpec, cpus: number, cmdline: string, script?: { when: string | RegExp; send: string }[]) {
  return runGuest({ firmware, kernelPath: IMAGE, initrdPath: INITRD, cmdline, cpus, memoryBytes: 256 << 20 },
    { timeoutMs: 240_000, script });
}

describe.skipIf(!haveLinux)('Linux guest (fixtures/linux/build.sh)', () => {
  for (const [name, firmware, available] of firmwares) {
    for (const cpus of [1, 4]) {
      it.skipIf(!available)(`boots to busybox init with ${name}, ${cpus} hart(s), and powers off`, async () => {
        const r = await boot(firmware, cpus, 'console=ttyS0');
        const out = r.output.replace(/\r\n/g, '\n');
        expect(r.timedOut, out.slice(-2000)).toBe(false);
        expect(out).toContain('Linux version 6.1');
        expect(out).toContain('\nvmctl-linux: userspace up\n');
        expect(out).toContain(`\nvmctl-linux: harts ${cpus}\n`);
        expect(out).toContain('\nvmctl-linux: awk 1/3 = 0.333333\n');
        expect(out).toContain(`\nvmctl-linux: year ${new Date().getUTCFullYear()}\n`);
        expect(out).toContain('reboot: Power down');
        expect(r.power).toMatchObject({ kind: 'poweroff', code: 0, failed: false });
      });
    }
  }

  // Harts on threads of their own (as in a VM's worker): harts that only wait rest instead of
  // spinning a host core (Hart.polling). Under OpenSBI 1.1 the secondaries spin in
  // _wait_for_boot_hart while the boot hart starts, then loop on WFIs that cannot wait (the
  // coldboot IPI stays pending) until Linux starts them: without the rests the 4-hart boot
  // retired 3.3x the instructions of one hart at load average 4 (0.46 G against 0.14 G), 7.5x at
  // load 18 (QEMU spins there too). Under the builtin SBI the secondaries are HSM-stopped, asleep,
  // until Linux starts them: that case passes without the rests too (a guard against a hart
  // that spins where it should sleep).
  for (const [name, firmware, available] of firmwares) {
    it.skipIf(!available)(`4 harts on hart threads (${name}): waiting harts retire few instructions`, async () => {
      const one = await boot(firmware, 1, 'console=ttyS0');
      const four = await runGuest({ firmware, kernelPath: IMAGE, initrdPath: INITRD, cmdline: 'console=ttyS0', cpus: 4, memoryBytes: 256 << 20 },
        { timeoutMs: 240_000, threads: true });
      expect(four.timedOut, four.output.slice(-2000)).toBe(false);
      expect(four.output.replace(/\r\n/g, '\n')).toContain('\nvmctl-linux: harts 4\n');
      expect(four.power).toMatchObject({ kind: 'poweroff', code: 0, failed: false });
      expect(one.power).toMatchObject({ kind: 'poweroff', code: 0, failed: false });
      // Measured with the rests: 1.5x (OpenSBI), 1.1x (builtin SBI) (the harts share the boot's
      // work, and spin a little on locks whose holder the host preempted).
      expect(four.instret / one.instret, `4 harts ${four.instret}, 1 hart ${one.instret} instructions`).toBeLessThan(2.5);
    });
  }

  for (const cpus of [1, 4]) {
    it.skipIf(!haveOpenSbi || !haveQemu)(`prints the same boot log as QEMU (OpenSBI fw_dynamic, ${cpus} hart(s))`, async () => {
      const r = await boot({ kind: 'file', path: FW_DYNAMIC }, cpus, 'console=ttyS0');
      const q = spawnSync('qemu-system-riscv64', ['-machine', 'virt', '-cpu', 'rv64,h=false,zba=false,zbb=false,zbc=false,zbs=false',
        '-m', '256M', '-smp', String(cpus), '-nographic', '-bios', FW_DYNAMIC, '-kernel', IMAGE, '-initrd', INITRD,
        '-append', 'console=ttyS0', '-global', 'virtio-mmio.force-legacy=false'], { encoding: 'latin1', timeout: 120_000 });
      expect(q.status).toBe(0);
      expect(comparable(r.output)).toEqual(comparable(q.stdout));
    });
  }

  it('answers commands typed on the UART console (ttyS0, builtin SBI)', async () => {
    const r = await boot({ kind: 'builtin' }, 1, 'console=ttyS0 vmctl=shell', [
      { when: "'poweroff -f' ends the VM", send: 'echo "six times seven is $((6*7))"\n' },
      { when: 'six times seven is 42', send: 'poweroff -f\n' },
    ]);
    expect(r.timedOut, r.output.slice(-2000)).toBe(false);
    expect(r.output).toContain('six times seven is 42');
    expect(r.power).toMatchObject({ kind: 'poweroff', code: 0 });
  });

  it.skipIf(!haveOpenSbi)('reboot from the guest is a reset event (OpenSBI -> test finisher 0x7777)', async () => {
    const r = await boot({ kind: 'file', path: FW_DYNAMIC }, 1, 'console=ttyS0 vmctl=shell', [
      { when: "'poweroff -f' ends the VM", send: 'reboot -f\n' },
    ]);
    expect(r.timedOut, r.output.slice(-2000)).toBe(false);
    expect(r.power).toEqual({ kind: 'reset', source: 'test-finisher' });
  });

  it('reboot under the builtin SBI is a reset event (SBI SRST)', async () => {
    const r = await boot({ kind: 'builtin' }, 2, 'console=ttyS0 vmctl=shell', [
      { when: "'poweroff -f' ends the VM", send: 'reboot -f\n' },
    ]);
    expect(r.timedOut, r.output.slice(-2000)).toBe(false);
    expect(r.power).toEqual({ kind: 'reset', source: 'sbi' });
  });

  it.skipIf(!existsSync(join(OUT, 'disk.img')))('finds the disk of virtio-mmio slot 0 (IRQ 1) as /dev/vda', async () => {
    const disk = join(mkdtempSync(join(tmpdir(), 'vmctl-linux-disk-')), 'disk.img');
    copyFileSync(join(OUT, 'disk.img'), disk);
    const r = await runGuest({ firmware: { kind: 'builtin' }, kernelPath: IMAGE, initrdPath: INITRD, cmdline: 'console=ttyS0',
      cpus: 2, memoryBytes: 256 << 20, disks: [{ path: disk, readonly: false, name: 'disk0' }] }, { timeoutMs: 240_000 });
    expect(r.timedOut, r.output.slice(-2000)).toBe(false);
    expect(r.output).toContain('virtio_blk virtio0: [vda] 16384 512-byte logical blocks');
    expect(r.output).toContain('vmctl-linux: disk /dev/vda 16384 sectors');
    expect(r.output).toContain('vmctl-linux: disk README: vmctl test disk');
    expect(r.power).toMatchObject({ kind: 'poweroff', code: 0 });
  });

  it('answers commands typed on the SBI console (hvc0, legacy getchar/putchar)', async () => {
    const r = await boot({ kind: 'builtin' }, 1, 'console=hvc0 vmctl=shell', [
      { when: "'poweroff -f' ends the VM", send: 'uname -m; echo "nproc=$(nproc)"\n' },
      { when: 'nproc=1', send: 'poweroff -f\n' },
    ]);
    expect(r.timedOut, r.output.slice(-2000)).toBe(false);
    expect(r.output).toContain('riscv64');
    expect(r.power).toMatchObject({ kind: 'poweroff', code: 0 });
  });
});
