// The reference emulator the benchmark compares with (never a runtime dependency of vmctl).
import { spawnSync } from 'node:child_process';

export const QEMU = process.env.QEMU_SYSTEM_RISCV64 ?? 'qemu-system-riscv64';
/** The CPU vmctl emulates: QEMU's rv64 without H and the bit-manipulation extensions. */
export const QEMU_CPU = 'rv64,h=false,zba=false,zbb=false,zbc=false,zbs=false';

/** QEMU's version line, or null when it cannot run. */
export function qemuVersion(): string | null {
  const r = spawnSync(QEMU, ['--version'], { encoding: 'utf8' });
  return r.error || r.status !== 0 ? null : r.stdout.split('\n')[0].trim();
}
