// SBI remote FENCE.I must reach code that another hart runs as a translated loop (src/riscv/jit.ts
// keeps a hart's hot single-block loops as JS functions that only its own stores and FENCE.I drop).
// fixtures/firmware-tests/remote-fence-i.c: hart B loops over an instruction that yields 1; once the
// loop is hot (100000 iterations, far past the translator's threshold), hart A rewrites it to yield
// 2, calls remote_fence_i for hart B, then raises a flag. Every loop iteration that sees the flag
// must execute the new instruction; the guest prints PASS or FAIL and shuts down through SBI SRST.
// Same binary on vmctl's builtin SBI, on vmctl running Debian's OpenSBI fw_jump, and on QEMU 7.2
// with that OpenSBI; built twice, asking through the RFENCE extension and through the legacy v0.1
// remote_fence_i call (EID 0x05, a pointer to the hart mask).
import { describe, expect, it } from 'vitest';
import { fileURLToPath } from 'node:url';
import { runGuest } from '../helpers/run-guest.js';
import { requireQemu, runQemu } from '../helpers/qemu.js';
import type { FirmwareSpec } from '../../src/board/machine-types.js';

const PROGRAMS = [
  ['RFENCE extension', fileURLToPath(new URL('../../fixtures/firmware-tests/remote-fence-i.bin', import.meta.url))],
  ['legacy v0.1 call', fileURLToPath(new URL('../../fixtures/firmware-tests/remote-fence-i-legacy.bin', import.meta.url))],
] as const;
const FW_JUMP = '/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_jump.bin';

/** The guest's own lines (OpenSBI's banner comes before them). */
function report(output: string): string {
  const text = output.replace(/\r\n/g, '\n');
  const start = text.indexOf('remote-fence-i: start\n');
  expect(start, text).toBeGreaterThanOrEqual(0);
  return text.slice(start);
}

const EXPECTED = 'remote-fence-i: start\n' +
  'loop is hot\n' +
  'remote_fence_i: error 0\n' +
  'after the flag: 10000 iterations, 0 ran the old instruction\n' +
  'remote-fence-i: PASS\n';

async function vmctl(firmware: FirmwareSpec, program: string, threads = false) {
  const r = await runGuest({ firmware, kernelPath: program, cpus: 2, memoryBytes: 128 << 20 }, { timeoutMs: 60_000, threads });
  expect(r.timedOut, r.output).toBe(false);
  return r;
}

describe.each(PROGRAMS)('SBI remote FENCE.I (%s) reaches another hart\'s translated loop', (_, program) => {
  // Harts taking turns on one thread, and in parallel on hart threads (src/board/smp.ts).
  for (const threads of [false, true]) {
    const how = threads ? 'harts on threads' : 'harts on one thread';
    it(`vmctl, builtin SBI, ${how}`, async () => {
      const r = await vmctl({ kind: 'builtin' }, program, threads);
      expect(report(r.output)).toBe(EXPECTED);
      expect(r.power).toEqual({ kind: 'poweroff', code: 0, source: 'sbi', failed: false });
    }, 90_000);

    it(`vmctl, OpenSBI fw_jump, ${how}`, async () => {
      const r = await vmctl({ kind: 'file', path: FW_JUMP }, program, threads);
      expect(r.output).toContain('OpenSBI v1.');
      expect(report(r.output)).toBe(EXPECTED);
      // OpenSBI's SRST backend on virt is the SiFive test finisher
      expect(r.power).toEqual({ kind: 'poweroff', code: 0, source: 'test-finisher', failed: false });
    }, 90_000);
  }

  // Single-threaded TCG (both vCPUs on one host thread, like vmctl's harts): with QEMU 7.2's
  // default multi-threaded TCG, about a third to a half of the runs here keep executing the old
  // instruction on the looping vCPU for good (20 million iterations after the flag were seen
  // stale), although the guest stores, FENCEs, and has OpenSBI run FENCE.I on that hart as Zifencei
  // requires (QEMU's FENCE.I relies on its own detection of writes to translated pages, which
  // misses this cross-vCPU write now and then). thread=single passed 80 runs out of 80.
  // The second -bios overrides runQemu's `-bios none`.
  it('QEMU 7.2, OpenSBI fw_jump', async () => {
    requireQemu();
    const r = await runQemu(program, { cpus: 2, timeoutMs: 60_000, extraArgs: ['-bios', FW_JUMP, '-accel', 'tcg,thread=single'] });
    expect(r.timedOut, r.stderr).toBe(false);
    expect(r.output).toContain('OpenSBI v1.');
    expect(report(r.output)).toBe(EXPECTED);
    expect(r.exitCode).toBe(0);
  }, 90_000);
});
