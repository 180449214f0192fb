// The Linux test guest (fixtures/linux/build.sh, `vmctl=shell` mode) on qemu-system-riscv64 with a
// user-mode NIC (`-netdev user`, slirp, with hostfwd), driven through its serial console: the
// reference that `npm run bench` (network section) and the network comparison test hold vmctl's
// networking against. Never a runtime dependency of vmctl.

import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { QEMU, QEMU_CPU, qemuVersion } from './qemu.js';

const OPENSBI = '/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_jump.bin';
const SHELL_UP = 'shell on console';

export interface QemuForward { readonly proto: 'tcp' | 'udp'; readonly hostPort: number; readonly guestPort: number }

export interface QemuLinuxOptions {
  /** Folder with Image and initramfs.cpio.gz. */
  readonly guest: string;
  /** Bound on 127.0.0.1, as vmctl's forwards. */
  readonly forwards: readonly QemuForward[];
  readonly memoryMiB?: number;
  /** Harts (-smp), default 1. */
  readonly cpus?: number;
  readonly bootTimeoutMs?: number;
  /** Further devices, each a `-device` argument (e.g. virtio-balloon-device,free-page-reporting=on). */
  readonly devices?: readonly string[];
  /** Block backends, each a `-drive` argument (e.g. file=x.qcow2,format=qcow2,if=none,id=d0), for devices to name. */
  readonly drives?: readonly string[];
  /** A Unix socket for the HMP monitor (`balloon`, `info balloon`); default: no monitor. */
  readonly monitorSocket?: string;
}

/** Why the guest cannot run on QEMU here (no QEMU, no OpenSBI), or null. */
export function qemuLinuxMissing(): string | null {
  if (qemuVersion() === null) return `${QEMU} is not runnable (Debian: apt-get install qemu-system-misc)`;
  if (!existsSync(OPENSBI)) return `${OPENSBI} is missing (Debian: apt-get install opensbi)`;
  return null;
}

/** A free TCP port on 127.0.0.1, for a hostfwd (which needs a number). */
export async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const p = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return p;
}

export class QemuLinux {
  private text = '';
  private n = 0;
  private constructor(private readonly q: ChildProcess) {
    q.stdout!.on('data', (b: Buffer) => { this.text += b.toString('latin1'); });
    q.on('error', () => {});
  }

  /** Boots the guest to its console shell, with kernel messages kept off the console. */
  static async boot(o: QemuLinuxOptions): Promise<QemuLinux> {
    const fwd = o.forwards.map((f) => `,hostfwd=${f.proto}:127.0.0.1:${f.hostPort}-:${f.guestPort}`).join('');
    const q = spawn(QEMU, [
      '-machine', 'virt', '-cpu', QEMU_CPU, '-m', `${o.memoryMiB ?? 256}M`, '-smp', String(o.cpus ?? 1), '-nographic',
      '-monitor', o.monitorSocket ? `unix:${o.monitorSocket},server=on,wait=off` : 'none',
      '-serial', 'stdio', '-no-reboot', '-bios', OPENSBI, '-kernel', join(o.guest, 'Image'), '-initrd', join(o.guest, 'initramfs.cpio.gz'),
      '-append', 'console=ttyS0 vmctl=shell', '-global', 'virtio-mmio.force-legacy=false',
      '-netdev', `user,id=n0${fwd}`, '-device', 'virtio-net-device,netdev=n0',
      ...(o.drives ?? []).flatMap((d) => ['-drive', d]),
      ...(o.devices ?? []).flatMap((d) => ['-device', d]),
    ], { stdio: ['pipe', 'pipe', 'pipe'] });
    let err = '';
    q.stderr!.on('data', (b: Buffer) => { err += b.toString(); });
    const vm = new QemuLinux(q);
    try {
      await vm.waitFor((t) => t.includes(SHELL_UP), o.bootTimeoutMs ?? 300_000, () => `QEMU: no '${SHELL_UP}' on the console: ${err.trim()} ${vm.text.slice(-2000)}`);
      await new Promise((r) => setTimeout(r, 500));
      await vm.run('dmesg -n 1');
    } catch (e) {
      vm.kill();
      throw e;
    }
    return vm;
  }

  /** QEMU's process id (for its CPU time). */
  get pid(): number { return this.q.pid!; }

  /** Everything the console printed so far. */
  get console(): string { return this.text; }

  /** Types `script` (one line, not ending in `&`) into the guest's shell and waits for it: its
   *  output (\r removed) and exit status. */
  async run(script: string, timeoutMs = 120_000): Promise<{ out: string; status: number }> {
    const k = ++this.n;
    // The markers are computed by the guest, so the echoed command line (which the shell's line
    // editor may wrap) never matches them.
    const begin = `qemu-begin-${k * 7}\n`;
    const marker = new RegExp(`qemu-done-${k * 7} (\\d+)`);
    const from = this.text.length;
    this.q.stdin!.write(`echo "qemu-begin-$((${k}*7))"; ${script}; echo "qemu-done-$((${k}*7)) $?"\n`);
    await this.waitFor((t) => marker.test(t.slice(from)), timeoutMs, () => `QEMU: '${script}' did not finish in ${timeoutMs} ms: ${this.text.slice(from).slice(-2000)}`);
    const seen = this.text.slice(from).replace(/\r/g, '');
    const m = marker.exec(seen)!;
    return { out: seen.slice(seen.indexOf(begin) + begin.length, m.index), status: Number(m[1]) };
  }

  kill(): void {
    if (this.q.exitCode === null) this.q.kill('SIGKILL');
  }

  private async waitFor(ok: (text: string) => boolean, ms: number, why: () => string): Promise<void> {
    const deadline = Date.now() + ms;
    while (!ok(this.text)) {
      if (Date.now() > deadline || this.q.exitCode !== null) throw new Error(why());
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}
