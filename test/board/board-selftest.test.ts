// fixtures/firmware-tests/board-selftest.elf: a bare-metal program (M-mode, every hart) that
// exercises CLINT software and timer interrupts, PLIC claim/complete with the UART's THR-empty
// and received-data interrupts, the goldfish RTC, the empty virtio-mmio slots and the test
// finisher. Its console output on vmctl must equal its output on qemu-system-riscv64.
import { describe, expect, it } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { runGuest } from '../helpers/run-guest.js';

const ELF = fileURLToPath(new URL('../../fixtures/firmware-tests/board-selftest.elf', import.meta.url));
const PROMPT = 'uart: type a line\n';
const LINE = 'hello from the host\n';
const haveQemu = spawnSync('qemu-system-riscv64', ['--version'], { stdio: 'ignore' }).status === 0;

async function onVmctl(cpus: number, threads = false) {
  return runGuest({ kernelPath: ELF, firmware: { kind: 'none' }, cpus, memoryBytes: 128 << 20 },
    { timeoutMs: 60_000, script: [{ when: PROMPT, send: LINE }], threads });
}

/** QEMU 7.2, modern virtio-mmio (force-legacy=false, as vmctl's slots are). */
function onQemu(cpus: number): Promise<{ output: string; code: number | null }> {
  return new Promise((resolve, reject) => {
    const q = spawn('qemu-system-riscv64', ['-machine', 'virt', '-cpu', 'rv64,h=false,zba=false,zbb=false,zbc=false,zbs=false',
      '-m', '128M', '-smp', String(cpus), '-nographic', '-bios', 'none', '-kernel', ELF,
      '-global', 'virtio-mmio.force-legacy=false'], { stdio: ['pipe', 'pipe', 'inherit'] });
    let out = '';
    let sent = false;
    const timer = setTimeout(() => q.kill(), 60_000);
    q.stdout.setEncoding('latin1');
    q.stdout.on('data', (d: string) => {
      out += d;
      if (!sent && out.includes(PROMPT)) { sent = true; q.stdin.write(LINE); }
    });
    q.on('error', reject);
    q.on('close', (code) => { clearTimeout(timer); resolve({ output: out.replace(/\r\n/g, '\n'), code }); });
  });
}

describe('board self-test guest', () => {
  for (const cpus of [1, 4]) {
    it(`runs to the test finisher with ${cpus} hart(s)`, async () => {
      const r = await onVmctl(cpus);
      expect(r.timedOut).toBe(false);
      expect(r.power).toEqual({ kind: 'poweroff', code: 0, source: 'test-finisher', failed: false });
      expect(r.output).toContain(`harts: ${cpus}\n`);
      expect(r.output).toContain('uart: got "hello from the host" through interrupts\n');
      expect(r.output).toContain('virtio 7: magic 0x74726976 version 2 device 0 vendor 0x554d4551\n');
      expect(r.output.endsWith('board-selftest: done\n')).toBe(true);
    });

    it.skipIf(!haveQemu)(`prints exactly what QEMU prints with ${cpus} hart(s)`, async () => {
      const [ours, qemu] = await Promise.all([onVmctl(cpus), onQemu(cpus)]);
      expect(qemu.code).toBe(0);
      expect(ours.output).toBe(qemu.output);
    });
  }

  // Harts 1..3 on threads of their own, reaching the devices through the machine's thread: the
  // same output as with every hart on one thread (QEMU's own 4-hart output varies with how soon
  // a loaded host runs its vCPU threads: 'harts: 1' was seen).
  it('prints the same with 4 harts on threads as on one thread', async () => {
    const [threads, one] = await Promise.all([onVmctl(4, true), onVmctl(4)]);
    expect(threads.power).toEqual({ kind: 'poweroff', code: 0, source: 'test-finisher', failed: false });
    expect(threads.output).toContain('harts: 4\nhart 1: software interrupt received\nhart 2: software interrupt received\nhart 3: software interrupt received\n');
    expect(threads.output).toBe(one.output);
  }, 90_000);
});
