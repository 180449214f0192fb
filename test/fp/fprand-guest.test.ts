// The fprand guest (fixtures/fp) on vmctl's hart and on QEMU 7.2: the same checksum of result bits
// and fflags for every F/D operation and static rounding mode. The committed QEMU output is also
// re-checked against a live QEMU run so that the reference cannot go stale.
import { describe, it, expect } from 'vitest';
import { readFileSync } from 'node:fs';
import { runGuest } from '../helpers/run-guest.js';
import { runQemu, requireQemu } from '../helpers/qemu.js';

const ELF = 'fixtures/fp/bin/fprand.elf';
const REF = 'fixtures/fp/bin/fprand.qemu.txt';
const lines = (s: string): string[] => s.split('\n').map((l) => l.trimEnd()).filter((l) => l.length > 0);

describe('fprand on vmctl == QEMU', () => {
  it('committed reference equals a live QEMU run', async () => {
    requireQemu();
    const q = await runQemu(ELF, { timeoutMs: 60_000 });
    expect(q.exitCode).toBe(0);
    expect(lines(q.output)).toEqual(lines(readFileSync(REF, 'utf8')));
  });

  it('vmctl prints the same checksum for every operation and rounding mode', async () => {
    const r = await runGuest({ kernelPath: ELF }, { timeoutMs: 300_000 });
    expect(r.timedOut).toBe(false);
    expect(r.power).toMatchObject({ kind: 'poweroff', failed: false });
    const want = lines(readFileSync(REF, 'utf8'));
    const got = lines(r.output);
    const bad = want.filter((l, i) => l !== got[i]).map((l, i) => `qemu: ${l}  vmctl: ${got[want.indexOf(l)]}`);
    expect(bad).toEqual([]);
    expect(got.length).toBe(want.length);
  });
});
