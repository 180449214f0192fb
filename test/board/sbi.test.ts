// vmctl's builtin SBI against Debian's OpenSBI: fixtures/firmware-tests/sbi-calls.c (an S-mode
// program at 0x80200000) probes extensions, starts/stops hart 1 through HSM, sends IPIs, asks
// for remote fences and a timer interrupt, and checks error codes. Both firmwares must produce
// the same console output from the program.
import { describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { runGuest } from '../helpers/run-guest.js';
import type { FirmwareSpec } from '../../src/board/machine-types.js';

const PROGRAM = fileURLToPath(new URL('../../fixtures/firmware-tests/sbi-calls.bin', import.meta.url));
const FW_DYNAMIC = '/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_dynamic.bin';

async function run(firmware: FirmwareSpec, cpus: number) {
  const r = await runGuest({ firmware, kernelPath: PROGRAM, cpus, memoryBytes: 128 << 20 }, { timeoutMs: 60_000 });
  expect(r.timedOut, r.output).toBe(false);
  const start = r.output.indexOf('sbi-calls: start');
  expect(start).toBeGreaterThanOrEqual(0);
  return { text: r.output.slice(start), power: r.power };
}

describe('builtin SBI', () => {
  it('handles base, HSM, IPI, RFENCE, TIME and SRST calls', async () => {
    const r = await run({ kind: 'builtin' }, 2);
    const text = r.text.replace(/\r\n/g, '\n');
    expect(text).toContain('spec version: error 0 value 16777216\n');
    expect(text).toContain('hart 1 running: opaque 0x1234, SIE clear\n');
    expect(text).toContain('hart 1 took 2 IPIs\n');
    expect(text).toContain('timer interrupts: 1\n');
    expect(text).toContain('hart 1 stopped\n');
    expect(text).toMatch(/sbi-calls: done\n$/);
    expect(r.power).toEqual({ kind: 'poweroff', code: 0, source: 'sbi', failed: false });
  });

  it.skipIf(!existsSync(FW_DYNAMIC))('answers exactly as OpenSBI does', async () => {
    for (const cpus of [2, 4]) {
      const ours = await run({ kind: 'builtin' }, cpus);
      const opensbi = await run({ kind: 'file', path: FW_DYNAMIC }, cpus);
      expect(ours.text).toBe(opensbi.text);
    }
  });
});
