// Issue 18 as the user met it: a guest built for QEMU whose UART interrupt handler completes at
// the PLIC without clearing THR empty. `vmctl run` with one hart must run it to its end, with the
// counts QEMU gives (test/devices/irq-qemu.test.ts compares every line with QEMU).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ROOT, VmctlHome } from './harness.js';

const h = new VmctlHome();
const dir = mkdtempSync(join(tmpdir(), 'vmctl-e2e-irq-'));
afterAll(async () => {
  await h.cleanup();
  rmSync(dir, { recursive: true, force: true });
});

describe('interrupts a handler leaves standing', () => {
  it('vmctl run: the UART guest on one hart takes a standing THR-empty interrupt once and runs to its end', async () => {
    const yaml = join(dir, 'irq-uart.yaml');
    writeFileSync(yaml, [
      'name: irq-uart',
      'cpus: 1',
      'memory: 128MiB',
      'boot:',
      '  firmware: none',
      `  kernel: ${join(ROOT, 'fixtures/irq/bin/irq-uart.elf')}`,
      '',
    ].join('\n'));
    const r = await h.run(['run', '-f', yaml, '--timeout', '120s'], { input: 'abcdef', timeoutMs: 150_000 });
    expect(r.stdout).toContain('thre-left-pending M harts 0: 1 interrupt, pending again while claimed: 0\n');
    expect(r.stdout).toContain('thre-left-pending S harts 0: 1 interrupt, pending again while claimed: 0\n');
    expect(r.stdout).toContain('rx-read-rbr S harts 0: 2 interrupts, read "cd"\n');
    expect(r.stdout.endsWith('PASS\n'), r.stdout).toBe(true);
    expect(r.code).toBe(0);
  });
});
