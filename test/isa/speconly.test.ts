// Spec checks that cannot be compared with QEMU 7.2 because QEMU does not survive them
// (fixtures/isa/src/speconly.c): vmctl's output is held to the lines the spec requires.
//  - MRET to an odd mepc. Priv 3.1.14: mepc[0] is always zero, so MRET returns to the even
//    address. QEMU 7.2 keeps bit 0 in mepc and returns to the odd address; the guest then
//    runs astray (its trap handler reports a trap storm).
//  - SRET to an odd sepc, likewise (priv 4.1.7: sepc[0] is always zero).
//  - Exact instret (priv 3.1.11): QEMU 7.2 without icount counts host clock ticks instead.
//  - A 32-bit instruction whose second half lies past the end of RAM. Priv 3.1.16: an
//    instruction access fault with mepc at the start of the instruction and mtval at the
//    portion that faulted. QEMU 7.2 aborts: "translator_access: Assertion `phys_page != -1'".
import { describe, expect, it } from 'vitest';
import { runGuest } from '../helpers/run-guest.js';
import { elfPath } from './differential.js';

describe('ISA suite: speconly (vmctl alone, QEMU 7.2 cannot run these)', () => {
  it('returns from xRET to the even address, reports a straddling fetch fault exactly, counts instret exactly', async () => {
    const v = await runGuest({ kernelPath: elfPath('speconly') }, { timeoutMs: 60_000 });
    expect(v.output).toBe(
      'mret to odd mepc: r=5 traps=0\n' +
        'sret to odd sepc: r=7 traps=0\n' +
        '32-bit instruction straddling the end of RAM: cause=1 epc=0000000087fffffe tval=0000000088000000\n' +
        'instret across 100 nops: 101\n' +
        'instret across 10 c.nop and a HINT: 12\n' +
        'instret across a hot loop: 30001\n' +
        'PASS\n',
    );
    expect(v.power).toEqual({ kind: 'poweroff', code: 0, source: 'test-finisher', failed: false });
  });
});
