// The Linux test guest (fixtures/linux/build.sh, cached in ~/.cache/vmctl/linux/out) driven on
// vmctl's machine and on QEMU: a shell on the console, commands typed one after another, disks
// attached as virtio-blk.

import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { VirtMachine } from '../../src/board/virt.js';
import type { MachineConfig } from '../../src/board/machine-types.js';

export const LINUX = [process.env.VMCTL_LINUX_DIR, join(homedir(), '.cache/vmctl/linux/out'), '/tmp/linux-guest/out']
  .find((d): d is string => d !== undefined && existsSync(join(d, 'Image')) && existsSync(join(d, 'disk.img')));
export const OPENSBI = '/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_dynamic.bin';

/** Boots the machine, types each command once the previous one printed its end marker, and stops
 *  (closing the machine: disks flushed) after the last marker. Returns the console output. */
export async function session(cfg: MachineConfig, commands: (string | { host: () => void; cmd: string })[], timeoutMs: number): Promise<string> {
  let text = '';
  const vm = VirtMachine.create(cfg, {
    consoleOutput: (b) => { text += Buffer.from(b).toString('latin1'); },
    powerEvent: () => {},
    log: (m) => { text += `\n[vm log] ${m}\n`; },
  });
  const deadline = performance.now() + timeoutMs;
  let step = -1;
  try {
    for (;;) {
      // Step 0 waits for the shell; step k waits for the marker of command k-1.
      const waitFor = step < 0 ? 'shell on console' : `END-${step}-${step * 7 + 1}`;
      if (text.includes(waitFor)) {
        step++;
        if (step === commands.length) break;
        // The marker is computed by the shell, so the echoed command line never matches it.
        const c = commands[step];
        if (typeof c !== 'string') c.host();
        vm.consoleInput(new TextEncoder().encode(`${typeof c === 'string' ? c : c.cmd}; echo END-${step}-$((${step}*7+1))\n`));
      }
      if (performance.now() > deadline) throw new Error(`timed out at step ${step}; console:\n${text.slice(-3000)}`);
      const s = vm.run(50);
      if (s === 'halted') throw new Error(`guest stopped at step ${step}; console:\n${text.slice(-3000)}`);
      if (s === 'idle') await new Promise((r) => setTimeout(r, Math.min(vm.idleTimeoutMs(), 20)));
      else await new Promise((r) => setImmediate(r));
    }
  } finally {
    vm.close();
  }
  return text;
}

/** The Linux guest with a shell, under OpenSBI, with `disks` (paths, or full attachments). */
export function linuxConfig(disks: string | MachineConfig['disks'], extra: Partial<MachineConfig> = {}): MachineConfig {
  return {
    memoryBytes: 128 * 1024 * 1024, cpus: 1,
    firmware: { kind: 'file', path: OPENSBI },
    kernelPath: join(LINUX!, 'Image'), initrdPath: join(LINUX!, 'initramfs.cpio.gz'),
    cmdline: 'console=ttyS0 vmctl=shell',
    disks: typeof disks === 'string' ? [{ path: disks, readonly: false, name: 'disk0' }] : disks,
    ...extra,
  };
}

/** Boots the guest on qemu-system-riscv64 with `drives` (QEMU -drive specs, each becoming a
 *  virtio-blk-device), types `script` (which should end with `poweroff -f`) once the shell is
 *  up, and returns the console output when QEMU exits. `poweroff -f` is a power cut for QEMU's
 *  disk caches (QEMU 7.2's test finisher calls exit()), and ext2's sync and umount send no flush:
 *  a script that writes a qcow2 drive flushes it (`sync /dev/vdX`, an fsync of the disk) before
 *  it powers off, or QEMU's new L2 entries and refcounts can be lost. */
export function qemuLinuxSession(drives: string[], script: string, timeoutMs: number): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    const q = spawn('qemu-system-riscv64', [
      '-machine', 'virt', '-cpu', 'rv64,h=false,zba=false,zbb=false,zbc=false,zbs=false', '-m', '128M', '-nographic',
      '-kernel', join(LINUX!, 'Image'), '-initrd', join(LINUX!, 'initramfs.cpio.gz'), '-append', 'console=ttyS0 vmctl=shell',
      '-global', 'virtio-mmio.force-legacy=false',
      ...drives.flatMap((d, i) => ['-drive', `${d},if=none,id=d${i}`, '-device', `virtio-blk-device,drive=d${i}`]), '-no-reboot',
    ], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let sent = false;
    const timer = setTimeout(() => { q.kill('SIGKILL'); reject(new Error(`QEMU timed out:\n${out.slice(-2000)}`)); }, timeoutMs);
    q.stdout.on('data', (b: Buffer) => {
      out += b.toString('latin1');
      // Type only once the shell shows its prompt: busybox's line editor starts by asking the
      // terminal where its cursor is (ESC [6n), and what was typed before it got there could be
      // taken in as the answer (a QEMU run then lost part of its command line, now and then).
      const shell = out.indexOf('shell on console');
      if (!sent && shell >= 0 && out.indexOf('vmctl-guest:', shell) >= 0 && /# \x1b\[6n|# $/.test(out)) {
        sent = true;
        q.stdin.write(script);
      }
    });
    q.stderr.on('data', (b: Buffer) => { out += b.toString('latin1'); });
    q.on('exit', () => { clearTimeout(timer); resolve(out); });
  });
}
