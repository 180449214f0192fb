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

describe('builtin SBI survives hostile callers', () => {
  it('random ECALL arguments never throw', async () => {
    const { Hart } = await import('../../src/riscv/hart.js');
    const { GuestRam } = await import('../../src/memory/ram.js');
    const { PhysicalMemoryMap } = await import('../../src/memory/bus.js');
    const { BuiltinSbi } = await import('../../src/board/sbi/builtin-sbi.js');
    const mem = new PhysicalMemoryMap(new GuestRam(0x80000000, 4 << 20));
    const clock = { mtime: () => 0 };
    const harts = [0, 1, 2].map((i) => new Hart(i, mem, clock));
    let events = 0;
    const sbi = new BuiltinSbi({ harts, putchar: () => {}, getchar: () => -1, power: () => { events++; },
      trapSink: 0x1000, ramBase: 0x80000000, ramSize: 4 << 20 });
    sbi.boot(0x80200000, 0x80300000);
    let s = 12345;
    const r64 = () => { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; const hi = s; s = (Math.imul(s, 1664525) + 1013904223) >>> 0; return (BigInt(hi) << 32n) | BigInt(s); };
    const eids = [0, 1, 2, 3, 4, 8, 0x10, 0x54494d45, 0x735049, 0x52464e43, 0x48534d, 0x53525354];
    for (let i = 0; i < 20_000; i++) {
      const h = harts[i % 3];
      for (let r = 10; r <= 15; r++) h.setX(r, (i & 3) === 0 ? r64() : r64() & 0xfn);
      h.setX(17, (i & 7) === 0 ? r64() : BigInt(eids[i % eids.length]));
      h.setX(16, r64() & 7n);
      const eid = h.getX(17), fid = h.getX(16);
      expect(sbi.ecall(h)).toBe(true);
      // a0 is an SBI error code, except where the call does not return to its caller
      // (HSM hart_stop, non-retentive suspend) or is a legacy call with its own result
      const noReturn = eid === 0x48534dn && (fid === 1n || fid === 3n);
      if (eid >= 0x10n && !noReturn) {
        const err = BigInt.asIntN(64, h.getX(10));
        expect(err <= 0n && err >= -8n).toBe(true);
      }
    }
    expect(events).toBeGreaterThan(0); // some random calls were SRST / legacy shutdown
  });
});
