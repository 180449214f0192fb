// The legacy SBI v0.1 hart-mask calls (send_ipi 0x04, remote_fence_i 0x05, remote_sfence_vma
// 0x06, remote_sfence_vma_asid 0x07: a0 points to the mask in S-mode virtual memory) and
// probe_extension of the legacy EIDs. fixtures/firmware-tests/sbi-legacy.c runs on 3 harts: IPIs
// through masks in memory, a null mask (every started hart), bits of missing harts, a stopped
// hart, a remote SFENCE.VMA (and its ASID form) that must reach another hart's TLB while it reads
// a page being remapped, a mask read through an alias mapping (VA != PA) and an unmapped mask
// (a load page fault of the ECALL, taken by S-mode as OpenSBI redirects it). vmctl's builtin
// SBI must print exactly what Debian's OpenSBI prints, on vmctl and on QEMU 7.2.
import { describe, expect, it } from 'vitest';
import { fileURLToPath } from 'node:url';
import { runGuest } from '../helpers/run-guest.js';
import { requireQemu, runQemu } from '../helpers/qemu.js';
import type { FirmwareSpec } from '../../src/board/machine-types.js';

const PROGRAM = fileURLToPath(new URL('../../fixtures/firmware-tests/sbi-legacy.bin', import.meta.url));
const FW_DYNAMIC = '/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_dynamic.bin';

/** The program's own lines (OpenSBI's banner comes before them). */
function report(output: string): string {
  const text = output.replace(/\r\n/g, '\n');
  const start = text.indexOf('sbi-legacy: start\n');
  expect(start, text).toBeGreaterThanOrEqual(0);
  return text.slice(start);
}

const EXPECTED = [
  'sbi-legacy: start',
  ...Array.from({ length: 10 }, (_, eid) => `probe 0x${eid.toString(16)} -> ${eid <= 8 ? 1 : 0}`),
  'other harts started',
  'send_ipi(other 1): 0',
  'IPIs: other 1 1, other 2 0',
  'send_ipi(null: all harts): 0',
  'IPIs: other 1 2, other 2 1, this hart pending 1',
  'clear_ipi: 0',
  'this hart pending 0',
  'send_ipi(other 1, harts 7 and 63): 0',
  'send_ipi(other 2) to wake it: 0',
  'send_ipi(null) with other 2 stopped: 0',
  'IPIs: other 1 4, other 2 2',
  'remote_fence_i(other 1 and 2): 0',
  'send_ipi(other 1) to wake it: 0',
  'remote_sfence_vma(other 1, PROBE_VA, 4096): 0',
  'remote_sfence_vma_asid(other 1, PROBE_VA, 4096, its ASID): 0',
  'other 1 read stale pages after the fences: 0 and 0',
  'send_ipi(other 1), mask read through the alias mapping: 0',
  ...[4, 5, 6, 7].map((eid) => `EID 0x${eid} with an unmapped mask: scause 13, stval is the pointer 1, sepc is the ECALL 1, a0 unchanged 1`),
  'IPIs: other 1 6, other 2 2',
  'sbi-legacy: done',
  '',
].join('\n');

async function vmctl(firmware: FirmwareSpec, threads = false) {
  const r = await runGuest({ firmware, kernelPath: PROGRAM, cpus: 3, memoryBytes: 128 << 20 }, { timeoutMs: 60_000, threads });
  expect(r.timedOut, r.output).toBe(false);
  return r;
}

describe('legacy SBI v0.1 hart-mask calls', () => {
  // Harts taking turns on one thread, and in parallel on hart threads (src/board/smp.ts).
  for (const threads of [false, true]) {
    const how = threads ? 'harts on threads' : 'harts on one thread';
    it(`vmctl, builtin SBI, ${how}`, async () => {
      const r = await vmctl({ kind: 'builtin' }, threads);
      expect(report(r.output)).toBe(EXPECTED);
      expect(r.power).toEqual({ kind: 'poweroff', code: 0, source: 'sbi', failed: false });
    }, 90_000);

    it(`vmctl, OpenSBI fw_dynamic, ${how}`, async () => {
      const r = await vmctl({ kind: 'file', path: FW_DYNAMIC }, threads);
      expect(r.output).toContain('OpenSBI v1.');
      expect(report(r.output)).toBe(EXPECTED);
      expect(r.power).toEqual({ kind: 'poweroff', code: 0, source: 'test-finisher', failed: false });
    }, 90_000);
  }

  it('QEMU 7.2, OpenSBI fw_dynamic', async () => {
    requireQemu();
    const r = await runQemu(PROGRAM, { cpus: 3, timeoutMs: 60_000, extraArgs: ['-bios', FW_DYNAMIC] });
    expect(r.timedOut, r.stderr).toBe(false);
    expect(r.output).toContain('OpenSBI v1.');
    expect(report(r.output)).toBe(EXPECTED);
    expect(r.exitCode).toBe(0);
  }, 90_000);
});
