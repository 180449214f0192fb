// Interrupts delivered as QEMU 7.2 delivers them (issue 18): the fixtures/irq guests count how
// many external interrupts the UART, a virtio-blk device and the goldfish RTC deliver under
// handlers that clear their cause in different ways (or leave it standing), through M- and
// S-mode PLIC contexts, on one hart and on three (the last hart alone, then all of them). Each
// count is either exact (the events are counted) or a storm ended at a cap, so it does not
// depend on the speed of the emulator; vmctl must print exactly what QEMU prints.
import { mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { requireQemu, runQemu } from '../helpers/qemu.js';
import { runGuest } from '../helpers/run-guest.js';
import { firstDifference } from '../isa/differential.js';

const BIN = join(dirname(fileURLToPath(import.meta.url)), '../../fixtures/irq/bin');
const dir = mkdtempSync(join(tmpdir(), 'vmctl-irq-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function disk(name: string): string {
  const path = join(dir, name);
  writeFileSync(path, '');
  truncateSync(path, 1024 * 1024);
  return path;
}

interface Guest {
  name: 'uart' | 'virtio' | 'rtc';
  /** Console input: the UART guest reads 3 bytes for each (mode, targets) combination. */
  input?: (harts: number) => string;
  disk?: boolean;
}

const GUESTS: Guest[] = [
  { name: 'uart', input: (harts) => 'abcdefghijkl'.slice(0, 3 * (harts === 1 ? 2 : 4)) },
  { name: 'virtio', disk: true },
  { name: 'rtc' },
];

describe('interrupt delivery matches QEMU 7.2 (fixtures/irq)', () => {
  for (const g of GUESTS) {
    for (const harts of [1, 3]) {
      it(`irq-${g.name} on ${harts} hart(s): the same interrupt counts as on QEMU`, async () => {
        requireQemu();
        const elf = join(BIN, `irq-${g.name}.elf`);
        const input = g.input?.(harts);
        const qemuDisk = g.disk ? ['-global', 'virtio-mmio.force-legacy=false',
          '-drive', `file=${disk(`q-${harts}.img`)},if=none,format=raw,id=d0,readonly=on`,
          '-device', 'virtio-blk-device,drive=d0'] : [];
        const [q, v] = await Promise.all([
          runQemu(elf, { cpus: harts, input, extraArgs: qemuDisk, timeoutMs: 90_000 }),
          runGuest({ kernelPath: elf, cpus: harts, disks: g.disk ? [{ path: disk(`v-${harts}.img`), readonly: true, name: 'irq' }] : [] },
            { timeoutMs: 90_000, input }),
        ]);
        expect(q.timedOut, `QEMU timed out: ${q.output}`).toBe(false);
        // The guest checks QEMU's counts against its own expectations: the fixture is right.
        expect(q.output.endsWith('PASS\n'), q.output).toBe(true);
        expect(q.exitCode).toBe(0);
        expect(q.output).toContain(`harts: ${harts}\n`);
        const diff = firstDifference(q.output, v.output);
        expect(diff, diff ?? '').toBeNull();
        expect(v.timedOut).toBe(false);
        expect(v.power).toMatchObject({ kind: 'poweroff', code: 0, source: 'test-finisher' });
      });
    }
  }
});
