// `npm run bench:linux`: how long the Linux test guest (fixtures/linux/build.sh: Linux 6.1 +
// busybox, 1 hart, 128 MiB, console=ttyS0, its init powers off) takes to reach userspace
// ("vmctl-linux: userspace up") and to power off, measured in one run on:
//   - vmctl's machine driven by the VM run loop in this process (src/vm/run-loop.ts; no daemon,
//     no worker), with `firmware: builtin` and with OpenSBI fw_jump;
//   - `vmctl run` of the same VM (the CLI, the daemon already running, the VM's worker): what a
//     user waits for;
//   - qemu-system-riscv64 (TCG) with OpenSBI fw_jump, QEMU's own default firmware.
// Times are wall-clock seconds from the start (QEMU and `vmctl run`: from spawning the process);
// the ratio is vmctl's time over QEMU's. Usage: npm run bench:linux [-- LINUX_DIR]
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { FirmwareSpec } from '../board/machine-types.js';
import { VirtMachine } from '../board/virt.js';
import type { FromWorker } from '../vm/messages.js';
import { ConsoleBatcher, RunLoop } from '../vm/run-loop.js';

const DIR = resolve(process.argv[2] ?? process.env.VMCTL_LINUX_DIR ?? join(homedir(), '.cache/vmctl/linux/out'));
const KERNEL = join(DIR, 'Image');
const INITRD = join(DIR, 'initramfs.cpio.gz');
const OPENSBI = '/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_jump.bin';
const MARKER = 'vmctl-linux: userspace up';
const CMDLINE = 'console=ttyS0';
const MEMORY_MIB = 128;
const TIMEOUT_MS = 300_000;

interface Times { userspace: number | null; poweroff: number | null; note?: string }

/** Watches a console stream for the marker; `t` is seconds since the start. */
function markerWatch(): { push(text: string, t: number): void; userspace: number | null } {
  let tail = '';
  const w = {
    userspace: null as number | null,
    push(text: string, t: number) {
      if (w.userspace !== null) return;
      tail = (tail + text).slice(-4096);
      if (tail.includes(MARKER)) w.userspace = t;
    },
  };
  return w;
}

/** vmctl's machine under the VM run loop, in this process. */
function inProcess(firmware: FirmwareSpec): Promise<Times> {
  return new Promise((resolvePromise) => {
    const start = performance.now();
    const secs = (): number => (performance.now() - start) / 1000;
    const watch = markerWatch();
    let poweroff: number | null = null;
    let note: string | undefined;
    const post = (m: FromWorker): void => {
      if (m.type === 'console') watch.push(Buffer.from(m.data).toString('latin1'), secs());
      else if (m.type === 'power') {
        poweroff = secs();
        if (m.event.kind !== 'poweroff' || m.event.failed) note = `ended with ${JSON.stringify(m.event)}`;
      } else if (m.type === 'fatal') note = m.message.split('\n')[0];
    };
    const host = new ConsoleBatcher(post);
    const machine = VirtMachine.create({
      memoryBytes: MEMORY_MIB * 1024 * 1024, cpus: 1, firmware, kernelPath: KERNEL, initrdPath: INITRD, cmdline: CMDLINE, disks: [],
    }, host);
    const timer = setTimeout(() => {
      note = `no power-off within ${TIMEOUT_MS / 1000} s`;
      loop.handle({ type: 'stop' });
    }, TIMEOUT_MS);
    const loop = new RunLoop(machine, host, post, () => {
      clearTimeout(timer);
      resolvePromise({ userspace: watch.userspace, poweroff, note });
    });
    loop.start();
  });
}

/** A process whose stdout is the guest's console: seconds to the marker and to its exit. */
function spawned(cmd: string, args: string[], env?: NodeJS.ProcessEnv): Promise<Times> {
  return new Promise((resolvePromise) => {
    const start = performance.now();
    const secs = (): number => (performance.now() - start) / 1000;
    const watch = markerWatch();
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: env ?? process.env });
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => watch.push(b.toString('latin1'), secs()));
    child.stderr.on('data', (b: Buffer) => { stderr += b.toString(); });
    const timer = setTimeout(() => child.kill('SIGKILL'), TIMEOUT_MS);
    child.on('error', (e) => resolvePromise({ userspace: null, poweroff: null, note: e.message }));
    child.on('close', (code) => {
      clearTimeout(timer);
      const t = secs();
      resolvePromise({ userspace: watch.userspace, poweroff: code === 0 ? t : null, ...(code !== 0 ? { note: `exit ${code}: ${stderr.trim().split('\n').pop()}` } : {}) });
    });
  });
}

async function vmctlRun(): Promise<Times> {
  const bin = resolve('bin/vmctl');
  const home = mkdtempSync(join(tmpdir(), 'vmctl-bench-'));
  const env = { ...process.env, VMCTL_HOME: home, NO_COLOR: '1' };
  const yaml = join(home, 'linux.yaml');
  writeFileSync(yaml, `name: linux\ncpus: 1\nmemory: ${MEMORY_MIB}MiB\nboot:\n  firmware: builtin\n  kernel: ${KERNEL}\n  initrd: ${INITRD}\n  cmdline: "${CMDLINE}"\n`);
  try {
    // The daemon is started first: `vmctl run` of a VM, not a daemon's start-up, is measured.
    await spawned(process.execPath, [bin, 'daemon', 'start'], env);
    return await spawned(process.execPath, [bin, 'run', '-f', yaml, '--timeout', '5m'], env);
  } finally {
    await spawned(process.execPath, [bin, 'daemon', 'stop', '--force'], env);
    rmSync(home, { recursive: true, force: true });
  }
}

const s = (t: number | null): string => (t === null ? '   -  ' : `${t.toFixed(2).padStart(5)} s`);
const ratio = (a: number | null, b: number | null): string => (a !== null && b !== null && b > 0 ? `${(a / b).toFixed(1)}x` : '-');

async function main(): Promise<void> {
  if (!existsSync(KERNEL) || !existsSync(INITRD)) {
    console.error(`bench:linux: no Linux guest in ${DIR}; build it with: bash fixtures/linux/build.sh ${DIR}`);
    process.exitCode = 1;
    return;
  }
  console.log(`Linux guest in ${DIR}: 1 hart, ${MEMORY_MIB} MiB, cmdline "${CMDLINE}"; times to "${MARKER}" and to power-off`);
  const rows: [string, Times][] = [];
  rows.push(['vmctl, in-process, firmware builtin', await inProcess({ kind: 'builtin' })]);
  if (existsSync(OPENSBI)) rows.push(['vmctl, in-process, OpenSBI fw_jump', await inProcess({ kind: 'file', path: OPENSBI })]);
  rows.push(['vmctl run (CLI, daemon, worker), builtin', await vmctlRun()]);
  const qemu = await spawned('qemu-system-riscv64', ['-machine', 'virt', '-m', `${MEMORY_MIB}M`, '-smp', '1', '-nographic', '-monitor', 'none',
    '-serial', 'stdio', '-bios', OPENSBI, '-kernel', KERNEL, '-initrd', INITRD, '-append', CMDLINE]);
  rows.push(['qemu-system-riscv64 (TCG), OpenSBI fw_jump', qemu]);
  const w = Math.max(...rows.map(([n]) => n.length));
  console.log(`${''.padEnd(w)}  userspace   power-off   (x QEMU's time)`);
  for (const [name, t] of rows) {
    const x = name.startsWith('qemu') ? '' : `   (${ratio(t.userspace, qemu.userspace)}, ${ratio(t.poweroff, qemu.poweroff)})`;
    console.log(`${name.padEnd(w)}  ${s(t.userspace)}     ${s(t.poweroff)}${x}${t.note ? `   ${t.note}` : ''}`);
    if (t.userspace === null || t.poweroff === null) process.exitCode = 1;
  }
}

void main();
