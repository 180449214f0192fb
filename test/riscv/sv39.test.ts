// Sv39 translation (priv spec 4.3/4.4): walks, superpages, permission checks (SUM, MXR, R/W/X),
// hardware A/D updates, misaligned superpages, non-canonical addresses, sfence.vma.
import { describe, expect, test } from 'vitest';
import { runAsm, type Mini } from './harness.js';
import { program, LOG, DATA } from './prelude.js';

function u64(m: Mini, addr: number): bigint {
  const b = new Uint8Array(8);
  m.mem.ram.read(addr, b);
  return new DataView(b.buffer).getBigUint64(0, true);
}

const ROOT = 0x80400000, L1 = 0x80401000, L0 = 0x80402000;
const pte = (pa: number, flags: number): string => `0x${((BigInt(pa) >> 12n) << 10n | BigInt(flags)).toString(16)}`;

describe('Sv39', () => {
  test('translation, permissions, A/D updates and page faults from S-mode', () => {
    const setup = `
      li t0, ${ROOT}
      li t1, ${pte(0x80000000, 0xcf)}      # root[2]: 1 GiB identity superpage RWX A D
      sd t1, 16(t0)
      li t1, ${pte(L1, 0x01)}               # root[0] -> L1
      sd t1, 0(t0)
      li t1, ${pte(0x80001000, 0xcf)}       # root[1]: misaligned gigapage
      sd t1, 8(t0)
      li t0, ${L1}
      li t1, ${pte(L0, 0x01)}
      sd t1, 0(t0)
      li t0, ${L0}
      li t1, ${pte(DATA, 0x07)}             # 0x1000: RW, A=D=0
      sd t1, 8(t0)
      li t1, ${pte(DATA + 0x1000, 0xd7)}    # 0x2000: U page
      sd t1, 16(t0)
      li t1, ${pte(DATA + 0x2000, 0x49)}    # 0x3000: execute-only
      sd t1, 24(t0)
      li t1, ${pte(DATA + 0x3000, 0x43)}    # 0x4000: read-only
      sd t1, 32(t0)
      li t1, ${pte(0x100000, 0xc7)}         # finisher page
      li t2, ${L0 + 2048}
      sd t1, 0(t2)
      li t0, ${DATA + 0x1000}
      li t1, 0x5a5a
      sd t1, 0(t0)
      li t0, ${(8n << 60n) | BigInt(ROOT >>> 12)}
      csrw satp, t0
      sfence.vma
      li t0, 0x1800
      csrc mstatus, t0
      li t0, 0x800
      csrs mstatus, t0
      la t0, 1f
      csrw mepc, t0
      mret
1:`;
    const m = runAsm(program(`
      ${setup}
      li s0, ${DATA + 0x10000}
      li t0, 0x1000
      ld t1, 0(t0)
      li t2, ${L0 + 8}
      ld t3, 0(t2)
      sd t3, 0(s0)              # PTE after a load: A=1, D=0
      li t1, 0x1234
      sd t1, 8(t0)
      ld t3, 0(t2)
      sd t3, 8(s0)              # after a store: A=1, D=1
      li t0, 0x2000
      ld t1, 0(t0)              # U page without SUM: fault
      li t4, 0x40000
      csrs sstatus, t4
      ld t1, 0(t0)              # with SUM: ok
      sd t1, 16(s0)
      csrc sstatus, t4
      li t0, 0x3000
      ld t1, 0(t0)              # execute-only: fault
      li t4, 0x80000
      csrs sstatus, t4
      ld t1, 0(t0)              # MXR: ok
      csrc sstatus, t4
      li t0, 0x4000
      sd t1, 0(t0)              # read-only: store fault
      li t0, 0x5000
      ld t1, 0(t0)              # invalid PTE
      li t0, 0x40000000
      ld t1, 0(t0)              # misaligned superpage
      li t0, 1
      slli t0, t0, 39
      ld t1, 0(t0)              # not canonical
      li t0, 0x1008
      li t1, 5
      amoadd.d t1, t1, (t0)     # AMO on a writable page: ok
      li t0, 0x4000
      amoadd.d t1, t1, (t0)     # AMO on a read-only page: store/AMO page fault
      # map 0x5000 now; sfence.vma makes it visible
      li t2, ${L0 + 40}
      li t3, ${pte(DATA + 0x4000, 0xc7)}
      sd t3, 0(t2)
      sfence.vma
      li t0, 0x5000
      li t1, 99
      sd t1, 0(t0)
      ecall
    `));
    expect(m.exit).toEqual({ code: 0 });
    const base = DATA + 0x10000;
    expect(u64(m, base) & 0xc0n).toBe(0x40n);
    expect(u64(m, base + 8) & 0xc0n).toBe(0xc0n);
    expect(u64(m, base + 16)).toBe(0x5a5an);
    expect(u64(m, DATA + 8)).toBe(0x1234n + 5n);
    expect(u64(m, DATA + 0x4000)).toBe(99n);
    const t: [bigint, bigint][] = [];
    for (let a = LOG; u64(m, a) !== 0n; a += 32) t.push([u64(m, a), u64(m, a + 8)]);
    expect(t).toEqual([
      [13n, 0x2000n], [13n, 0x3000n], [15n, 0x4000n], [13n, 0x5000n], [13n, 0x40000000n], [13n, 1n << 39n],
      [15n, 0x4000n], [9n, 0n],
    ]);
  });

  test('U-mode: only U pages; S cannot execute U pages; MPRV makes M loads translate', () => {
    const m = runAsm(program(`
      li t0, ${ROOT}
      li t1, ${pte(0x80000000, 0xdf)}      # root[2]: identity gigapage with U
      sd t1, 16(t0)
      li t1, ${pte(0x00000000, 0xc7)}      # root[0]: gigapage 0..1G (finisher) RW, not U
      sd t1, 0(t0)
      li t0, ${(8n << 60n) | BigInt(ROOT >>> 12)}
      csrw satp, t0
      # M-mode with MPRV=1, MPP=S: loads translate with S permissions -> U page without SUM faults
      li t0, 0x1800
      csrc mstatus, t0
      li t0, 0x800
      csrs mstatus, t0
      li t0, 0x20000
      csrs mstatus, t0
      li t0, ${DATA}
      ld t1, 0(t0)
      li t0, 0x20000
      csrc mstatus, t0
      # (the trap and mret above left MPP = U: select S again)
      li t0, 0x800
      csrs mstatus, t0
      # S-mode fetch from a U page faults (instruction page fault)
      la t0, 1f
      csrw mepc, t0
      mret
1:    nop
    `, ''), { max: 2000 });
    const t: [bigint, bigint][] = [];
    for (let a = LOG; u64(m, a) !== 0n && t.length < 3; a += 32) t.push([u64(m, a), u64(m, a + 8)]);
    expect(t[0]).toEqual([13n, BigInt(DATA)]);
    expect(t[1][0]).toBe(12n);
  });
});

describe('MPRV across mret', () => {
  test('mret that leaves MPRV set with MPP now U makes M-mode loads translate as U', () => {
    const ROOT2 = 0x80400000;
    const m = runAsm(program(`
      li t0, ${ROOT2}
      li t1, ${pte(0x80000000, 0xcf)}      # identity gigapage, not U
      sd t1, 16(t0)
      li t0, ${(8n << 60n) | BigInt(ROOT2 >>> 12)}
      csrw satp, t0
      li t0, 0x1800
      csrs mstatus, t0          # MPP = M
      li t0, 0x20000
      csrs mstatus, t0          # MPRV = 1: data accesses as M (bare)
      li s0, ${DATA}
      ld t1, 0(s0)              # fills the TLB in the M context
      la t0, 1f
      csrw mepc, t0
      mret                      # stays in M, MPP := U, MPRV stays 1
1:    ld t1, 0(s0)              # now translated as U: the page is not U -> load page fault
      li t0, 0x20000
      csrc mstatus, t0
    `));
    expect(m.exit).toEqual({ code: 0 });
    expect([u64(m, LOG), u64(m, LOG + 8)]).toEqual([13n, BigInt(DATA)]);
  });
});
