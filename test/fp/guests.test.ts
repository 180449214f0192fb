// The FP guests (fixtures/fp) on vmctl's hart and on QEMU 7.2 (the CPU named in the hart issue):
//  * fprand: pseudo-random operands for every F/D operation and static rounding mode; one checksum
//    of result bits and fflags per (operation, mode) — vmctl must print QEMU's checksums;
//  * fpdirected: hand-derived expected values (boundary values, every mode, every flag, FS, frm,
//    fcsr, NaN boxing, compressed loads/stores); it checks itself and must pass, and its full
//    output (every result) must equal QEMU's.
//  * fpcode: ordinary gcc -O2 FP code (Mandelbrot, n-body, single matmul, Newton/series with
//    conversions), results printed as raw bits — must equal QEMU.
// The committed QEMU outputs are re-checked against a live QEMU so that they cannot go stale.
import { describe, it, expect } from 'vitest';
import { readFileSync } from 'node:fs';
import { runGuest } from '../helpers/run-guest.js';
import { runQemu, requireQemu } from '../helpers/qemu.js';

const lines = (s: string): string[] => s.split('\n').map((l) => l.trimEnd()).filter((l) => l.length > 0);

for (const name of ['fprand', 'fpdirected', 'fpcode']) {
  const elf = `fixtures/fp/bin/${name}.elf`;
  const ref = `fixtures/fp/bin/${name}.qemu.txt`;
  describe(`${name}: vmctl == QEMU`, () => {
    it('committed QEMU output equals a live QEMU run', async () => {
      requireQemu();
      const q = await runQemu(elf, { timeoutMs: 60_000 });
      expect(q.exitCode).toBe(0);
      expect(lines(q.output)).toEqual(lines(readFileSync(ref, 'utf8')));
    });

    it('vmctl passes and prints exactly what QEMU prints', async () => {
      const r = await runGuest({ kernelPath: elf }, { timeoutMs: 300_000 });
      expect(r.timedOut).toBe(false);
      const want = lines(readFileSync(ref, 'utf8'));
      const got = lines(r.output);
      // Report differing lines (operation, mode, checksum or result) rather than one big diff.
      const bad: string[] = [];
      for (let i = 0; i < Math.max(want.length, got.length); i++) {
        if (want[i] !== got[i]) bad.push(`qemu: ${want[i] ?? '(none)'}  vmctl: ${got[i] ?? '(none)'}`);
      }
      expect(bad).toEqual([]);
      expect(r.power).toMatchObject({ kind: 'poweroff', failed: false });
    });
  });
}
