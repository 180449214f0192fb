// Boots a Linux Image + initramfs on qemu-system-riscv64 (virt, QEMU's default OpenSBI, the CPU of
// the hart issue) and returns the console output once QEMU exits (the guest powers off).
import { spawn } from 'node:child_process';
import { QEMU_BINARY, QEMU_CPU, requireQemu } from '../helpers/qemu.js';

export function runQemuLinux(image: string, initrd: string, timeoutMs: number): Promise<string> {
  requireQemu();
  const args = ['-machine', 'virt', '-cpu', QEMU_CPU, '-m', '256M', '-smp', '1', '-nographic', '-monitor', 'none',
    '-serial', 'stdio', '-kernel', image, '-initrd', initrd, '-append', 'console=ttyS0'];
  return new Promise((resolveP, reject) => {
    const p = spawn(QEMU_BINARY, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (b: Buffer) => { out += b.toString('latin1'); });
    const timer = setTimeout(() => { p.kill('SIGKILL'); reject(new Error(`QEMU Linux boot timed out:\n${out.slice(-2000)}`)); }, timeoutMs);
    p.on('error', (e) => { clearTimeout(timer); reject(e); });
    p.on('close', () => { clearTimeout(timer); resolveP(out); });
  });
}
