// The reference emulator the benchmark compares with (never a runtime dependency of vmctl).
import { spawnSync } from 'node:child_process';
import { createConnection } from 'node:net';

export const QEMU = process.env.QEMU_SYSTEM_RISCV64 ?? 'qemu-system-riscv64';
/** The CPU vmctl emulates: QEMU's rv64 without H and the bit-manipulation extensions. */
export const QEMU_CPU = 'rv64,h=false,zba=false,zbb=false,zbc=false,zbs=false';

/** QEMU's version line, or null when it cannot run. */
export function qemuVersion(): string | null {
  const r = spawnSync(QEMU, ['--version'], { encoding: 'utf8' });
  return r.error || r.status !== 0 ? null : r.stdout.split('\n')[0].trim();
}

/** One HMP command on QEMU's monitor socket (`-monitor unix:PATH,server=on,wait=off`): its answer. */
export function hmpCommand(socket: string, cmd: string): Promise<string> {
  return new Promise((res, rej) => {
    const s = createConnection(socket);
    let got = '';
    s.on('data', (b) => {
      got += b.toString();
      if (got.split('(qemu)').length > 2) { s.end(); res(got.split('(qemu)')[1]); }
    });
    s.on('connect', () => s.write(`${cmd}\n`));
    s.on('error', rej);
  });
}
