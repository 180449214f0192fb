// Differential test of fixtures/isa/src/fuzzloop on QEMU 7.2 and vmctl (see differential.ts).
import { describe, it } from 'vitest';
import { differential } from './differential.js';
import { PROGRAMS } from './programs.js';

describe('ISA suite: fuzzloop', () => {
  it('prints the same and exits the same on vmctl as on QEMU (spec corrections applied)', async () => {
    await differential(PROGRAMS['fuzzloop']);
  });
});
