// The reference emulator the benchmark compares with (never a runtime dependency of vmctl).
import { spawnSync, type ChildProcess } from 'node:child_process';

export const QEMU = process.env.QEMU_SYSTEM_RISCV64 ?? 'qemu-system-riscv64';
/** The CPU vmctl emulates: QEMU's rv64 without H and the bit-manipulation extensions. */
export const QEMU_CPU = 'rv64,h=false,zba=false,zbb=false,zbc=false,zbs=false';

/** QEMU's version line, or null when it cannot run. */
export function qemuVersion(): string | null {
  const r = spawnSync(QEMU, ['--version'], { encoding: 'utf8' });
  return r.error || r.status !== 0 ? null : r.stdout.split('\n')[0].trim();
}

/** The shell on a QEMU guest's serial console (`-serial stdio`, the Linux test guest's
 *  `vmctl=shell`): waits for output, and runs a command to get its output. */
export function qemuShell(q: ChildProcess): { waitFor(re: RegExp, ms: number): Promise<void>; run(cmd: string): Promise<string> } {
  let text = '';
  q.stdout!.on('data', (b: Buffer) => { text += b.toString('latin1'); });
  const waitFor = async (re: RegExp, ms: number): Promise<void> => {
    const deadline = Date.now() + ms;
    while (!re.test(text)) {
      if (Date.now() > deadline || q.exitCode !== null) throw new Error(`qemu: no ${re} in ${ms} ms`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  let n = 0;
  const run = async (cmd: string): Promise<string> => {
    const k = ++n;
    const from = text.length;
    q.stdin!.write(`${cmd}; echo "bench-done-$((${k}*7))"\n`);
    await waitFor(new RegExp(`bench-done-${k * 7}`), 600_000);
    const seen = text.slice(from);
    return seen.slice(seen.indexOf('\n') + 1, seen.lastIndexOf(`bench-done-${k * 7}`));
  };
  return { waitFor, run };
}
