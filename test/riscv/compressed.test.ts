// RVC: the same program assembled with and without compressed instructions must leave the same
// architectural state (every C instruction expands to one base instruction — ISA spec, "C"
// chapter); plus the reserved encodings that must raise illegal-instruction.
import { describe, expect, test } from 'vitest';
import { runAsm, type Mini, buildAsm } from './harness.js';
import { program, DATA, LOG } from './prelude.js';
import { expandCompressed } from '../../src/riscv/compressed.js';

function u64(m: Mini, addr: number): bigint {
  const b = new Uint8Array(8);
  m.mem.ram.read(addr, b);
  return new DataView(b.buffer).getBigUint64(0, true);
}

const body = `
  li sp, ${DATA + 0x800}
  li s0, ${DATA + 0x400}
  li a0, 0x123456789abcdef0
  li a1, -7
  addi a0, a0, 13          # c.addi
  li a2, 31                # c.li
  lui a3, 0x1f             # c.lui
  lui a4, 0xfffe0          # c.lui negative
  addi sp, sp, -64         # c.addi16sp
  addi a5, sp, 24          # c.addi4spn
  slli a0, a0, 3           # c.slli
  srli a1, a1, 5           # c.srli
  mv s1, a1
  srai s1, s1, 60          # c.srai
  andi a2, a2, -9          # c.andi
  sub a0, a0, a1           # c.sub
  xor a1, a1, a2           # c.xor
  or a2, a2, a3            # c.or
  and a3, a3, a4           # c.and
  subw a4, a4, a0          # c.subw
  addw a5, a5, a1          # c.addw
  addiw a0, a0, -1         # c.addiw
  mv a6, a0                # c.mv
  add a6, a6, a2           # c.add
  sw a0, 0(s0)             # c.sw
  sd a1, 8(s0)             # c.sd
  lw a7, 0(s0)             # c.lw
  ld s1, 8(s0)             # c.ld
  sw a2, 4(sp)             # c.swsp
  sd a3, 16(sp)            # c.sdsp
  lw t3, 4(sp)             # c.lwsp
  ld t4, 16(sp)            # c.ldsp
  li t5, 0
  beqz t5, 1f              # c.beqz
  li t5, 99
1: bnez t5, 2f             # c.bnez (not taken)
  addi t5, t5, 5
2: j 3f                    # c.j
  li t5, 100
3: la t6, 4f
  jr t6                    # c.jr
  li t5, 101
4: la t6, 5f
  jalr t6                  # c.jalr (ra differs between the two builds; not compared)
  j 6f
5: addi t5, t5, 1
  ret                      # c.jr ra
6: nop                     # c.nop
  li t0, ${DATA}
  .irp r, 2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
  sd x\\r, (\\r*8)(t0)
  .endr
`;

describe('compressed instructions', () => {
  test('RVC and non-RVC builds of the same program end in the same state', () => {
    const withC = runAsm(program(`  .option rvc\n${body}`));
    const withoutC = runAsm(program(`  .option norvc\n${body}`));
    expect(buildAsm(program(`  .option rvc\n${body}`)).length).toBeLessThan(buildAsm(program(`  .option norvc\n${body}`)).length);
    expect(withC.exit).toEqual({ code: 0 });
    expect(withoutC.exit).toEqual({ code: 0 });
    // x2..x30 (ra and t6 hold code addresses, which differ between the builds)
    const regs = (m: Mini) => Array.from({ length: 29 }, (_, i) => u64(m, DATA + (i + 2) * 8));
    const a = regs(withC), b = regs(withoutC);
    expect(a).toEqual(b);
    expect(a[28]).toBe(6n);  // t5 (x30) went through the taken/not-taken paths
  });

  test('reserved RVC encodings are illegal (mtval = the 16 bits)', () => {
    const reserved = [
      0x0000, // all zeros
      0x0004, // C.ADDI4SPN nzuimm=0
      0x8000, // quadrant 0 funct3=100
      0x2001, // C.ADDIW rd=0
      0x6101, // C.ADDI16SP imm=0
      0x6501, // C.LUI a0 with nzimm=0
      0x9c41, // C.SUBW? (bit12=1, funct2=11, f=10): reserved
      0x9c61, // reserved
      0x4002, // C.LWSP rd=0
      0x6002, // C.LDSP rd=0
      0x8002, // C.JR rs1=0
    ];
    for (const h of reserved) expect(expandCompressed(h)).toBe(0);
    const m = runAsm(program(reserved.map((h) => `  .half 0x${h.toString(16)}`).join('\n')));
    expect(m.exit).toEqual({ code: 0 });
    const got: bigint[] = [];
    for (let a = LOG; u64(m, a) !== 0n; a += 32) got.push(u64(m, a + 8));
    expect(got).toEqual(reserved.map(BigInt));
  });

  test('HINT encodings execute as no-ops', () => {
    const m = runAsm(program(`
      li a0, 5
      .half 0x0005             # c.nop with imm 1 (HINT)
      .half 0x4001             # c.li x0, 0 (HINT)
      .half 0x8002 | (0 << 7) | (5 << 2)   # c.mv x0, ra (HINT)
      .half 0x0002             # c.slli x0 (HINT)
      addi x0, x0, 1           # HINT
      .word 0x0100000f         # pause (fence.w... HINT)
      .word 0x8330000f         # fence.tso
      li t0, ${DATA}
      sd a0, 0(t0)
    `));
    expect(m.exit).toEqual({ code: 0 });
    expect(u64(m, DATA)).toBe(5n);
    expect(u64(m, LOG)).toBe(0n);
  });
});
