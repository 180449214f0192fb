// qemu-img (Debian qemu-utils) as the reference for qcow2: what it checks, reads and compares.
// Missing qemu-img fails the tests loudly: they must not pass by skipping.

import { spawnSync } from 'node:child_process';

export function qemuImg(args: string[], okCodes: number[] = [0]): { code: number; stdout: string; stderr: string } {
  const r = spawnSync('qemu-img', args, { encoding: 'utf8' });
  if (r.error) throw new Error(`qemu-img is not runnable (${r.error.message}); install qemu-utils`);
  const code = r.status ?? -1;
  if (!okCodes.includes(code)) throw new Error(`qemu-img ${args.join(' ')} exited ${code}:\n${r.stdout}${r.stderr}`);
  return { code, stdout: r.stdout, stderr: r.stderr };
}

export interface CheckResult {
  /** Corruptions plus other check errors (what must be 0). */
  errors: number;
  leaks: number;
  text: string;
}

/** `qemu-img check` of a qcow2 image. */
export function qemuCheck(path: string): CheckResult {
  const r = qemuImg(['check', '--output=json', path], [0, 1, 2, 3]);
  let j: Record<string, unknown> = {};
  try { j = JSON.parse(r.stdout) as Record<string, unknown>; } catch { /* reported below */ }
  const num = (k: string) => (typeof j[k] === 'number' ? (j[k] as number) : 0);
  const text = qemuImg(['check', path], [0, 1, 2, 3]).stdout;
  if (r.code === 1 || r.stdout.trim() === '') return { errors: 1, leaks: 0, text: `${r.stdout}${r.stderr}${text}` };
  return { errors: num('corruptions') + num('check-errors'), leaks: num('leaks'), text };
}

/** `qemu-img info --output=json` (with --backing-chain: an array). */
export function qemuInfo(path: string, chain = false): any {
  return JSON.parse(qemuImg(['info', '--output=json', ...(chain ? ['--backing-chain'] : []), path]).stdout);
}

/** True when the two images have the same guest-visible contents (`qemu-img compare`). */
export function qemuSame(a: string, b: string): { same: boolean; text: string } {
  const r = qemuImg(['compare', a, b], [0, 1]);
  return { same: r.code === 0, text: r.stdout + r.stderr };
}
