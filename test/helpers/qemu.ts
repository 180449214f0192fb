// Runs a bare-metal guest on the real qemu-system-riscv64 for differential tests.
// QEMU is the reference the ISA suite compares vmctl with; when it is not installed the
// tests must fail loudly (CI installs qemu-system-misc), never pass by skipping.

import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** The CPU vmctl emulates: QEMU's rv64 without H and the bit-manipulation extensions
 *  (issue 2). QEMU 7.2's rv64 then reports rv64imafdc_zicsr_zifencei_zihintpause_sstc. */
export const QEMU_CPU = 'rv64,h=false,zba=false,zbb=false,zbc=false,zbs=false';
export const QEMU_BINARY = process.env.QEMU_SYSTEM_RISCV64 ?? 'qemu-system-riscv64';

export interface QemuResult {
  /** Everything the guest wrote to its console (UART on virt, HTIF console on spike). */
  output: string;
  /** QEMU's exit status: the guest's exit code via the test finisher or HTIF. */
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
  stderr: string;
}

export interface QemuOptions {
  /** `virt` (UART + SiFive test finisher) or `spike` (HTIF tohost). */
  machine?: 'virt' | 'spike';
  memoryMiB?: number;
  /** Number of harts (-smp). */
  cpus?: number;
  timeoutMs?: number;
  /** Extra arguments, e.g. ['-d', 'in_asm,int', '-D', '/tmp/q.log'] when chasing a bug. */
  extraArgs?: string[];
  /** Console input: written to QEMU's stdin (the serial port's backend) at the start. Stdin
   *  stays open until QEMU exits (at end of file QEMU's stdio backend closes, and console
   *  output written around then is lost). */
  input?: string;
}

/** Throws with an actionable message when QEMU is missing or too old to compare with. */
export function requireQemu(): string {
  const r = spawnSync(QEMU_BINARY, ['--version'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) {
    throw new Error(
      `${QEMU_BINARY} is not runnable (${r.error?.message ?? `exit ${r.status}`}): the ISA differential ` +
        `tests need it. Install it (Debian: apt-get install qemu-system-misc) or set QEMU_SYSTEM_RISCV64.`,
    );
  }
  const m = /version (\d+)\.(\d+)/.exec(r.stdout);
  if (!m) throw new Error(`cannot read the QEMU version from: ${r.stdout.trim()}`);
  return `${m[1]}.${m[2]}`;
}

export function runQemu(elfPath: string, opts: QemuOptions = {}): Promise<QemuResult> {
  const machine = opts.machine ?? 'virt';
  const serialDir = opts.input === undefined ? mkdtempSync(join(tmpdir(), 'vmctl-qemu-')) : null;
  const serialFile = serialDir === null ? null : join(serialDir, 'serial.out');
  const args = [
    '-machine', machine,
    '-cpu', QEMU_CPU,
    '-m', `${opts.memoryMiB ?? 128}M`,
    '-smp', String(opts.cpus ?? 1),
    '-bios', 'none',
    '-nographic',
    '-monitor', 'none',
    // virt: the NS16550A; spike: HTIF's console device. Without input, into a file: QEMU 7.2's
    // 16550 gives a byte up after a few failed writes to its backend (serial_xmit's
    // MAX_XMIT_RETRY), so a reader of a pipe slowed by a loaded host lost the end of a long
    // output (CI: fuzzbr's reference output stopped at block 70 of 128, exit status 0). A
    // regular file never refuses a write.
    '-serial', serialFile === null ? 'stdio' : `file:${serialFile}`,
    '-kernel', elfPath,
    ...(opts.extraArgs ?? []),
  ];
  // -nographic with -serial stdio and no monitor: stdout carries only the guest's bytes.
  return new Promise((resolve, reject) => {
    const child = spawn(QEMU_BINARY, args, { stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
    if (child.stdin && opts.input !== undefined) {
      child.stdin.on('error', () => {}); // QEMU may be gone before it reads everything
      child.stdin.write(opts.input, 'latin1');
    }
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, opts.timeoutMs ?? 20_000);
    child.stdout!.on('data', (b: Buffer) => out.push(b));
    child.stderr!.on('data', (b: Buffer) => err.push(b));
    const serialOutput = (): Buffer => {
      if (serialFile === null) return Buffer.concat(out);
      let b: Buffer;
      try { b = readFileSync(serialFile); } catch { b = Buffer.alloc(0); } // QEMU never started
      rmSync(serialDir!, { recursive: true, force: true });
      return b;
    };
    child.on('error', (e) => {
      clearTimeout(timer);
      serialOutput();
      reject(new Error(`cannot start ${QEMU_BINARY}: ${e.message}`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      child.stdin?.destroy();
      resolve({
        output: serialOutput().toString('latin1'),
        exitCode: code,
        signal,
        timedOut,
        stderr: Buffer.concat(err).toString('utf8'),
      });
    });
  });
}
