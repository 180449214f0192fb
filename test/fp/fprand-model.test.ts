// The softfloat library against QEMU's softfloat: fixtures/fp/bin/fprand.qemu.txt is the output of
// fixtures/fp/bin/fprand.elf on qemu-system-riscv64 7.2 (regenerate: fixtures/fp/build.sh). The
// model (fprand-model.ts) replays the guest's operand stream through src/riscv/fp/softfloat.ts and
// must produce the same checksum, per operation and rounding mode.
import { describe, it, expect } from 'vitest';
import { readFileSync } from 'node:fs';
import { modelOutput } from './fprand-model.js';

describe('fprand: softfloat model == QEMU', () => {
  it('every operation and rounding mode has the checksum QEMU printed', () => {
    const q = readFileSync('fixtures/fp/bin/fprand.qemu.txt', 'utf8');
    const want = q.split('\n').filter((l) => /^\d+ /.test(l));
    expect(want.length).toBeGreaterThan(150);
    const got = modelOutput(q);
    const bad = want.filter((l, i) => l !== got[i]).map((l) => `qemu: ${l}  model: ${got[want.indexOf(l)]}`);
    expect(bad).toEqual([]);
  });
});
