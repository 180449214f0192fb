// Assembly prelude shared by the hart's system tests: an M-mode trap handler that appends
// (mcause, mtval, mepc, mode-before-trap) to a log and resumes after the trapping instruction,
// an S-mode handler that does the same with the S CSRs, and pass/fail exits (test finisher).
export const LOG = 0x80200000;      // 4 words per trap: cause, tval, epc, previous mode (MPP/SPP)
export const DATA = 0x80300000;

export function program(body: string, extra = ''): string {
  return `
  .option norelax
  .globl _start
_start:
  la t0, mtrap
  csrw mtvec, t0
  la t0, strap
  csrw stvec, t0
  li s11, ${LOG}
  # PMP: one NAPOT entry over the whole address space with RWX, so S/U can reach memory.
  li t0, -1
  csrw pmpaddr0, t0
  li t0, 0x1f
  csrw pmpcfg0, t0
${body}
pass:
  li t0, 0x100000
  li t1, 0x5555
  sw t1, 0(t0)
1: j 1b
fail:
  li t0, 0x100000
  li t1, 0x13333
  sw t1, 0(t0)
1: j 1b

  .align 4
mtrap:
  csrr t5, mcause
  sd t5, 0(s11)
  csrr t5, mtval
  sd t5, 8(s11)
  csrr t5, mepc
  sd t5, 16(s11)
  csrr t5, mstatus
  srli t5, t5, 11
  andi t5, t5, 3
  sd t5, 24(s11)
  addi s11, s11, 32
  csrr t5, mcause
  bltz t5, 2f             # interrupts resume at mepc
  csrr t5, mepc
  lhu t6, 0(t5)
  andi t6, t6, 3
  addi t5, t5, 2
  li a7, 3
  bne t6, a7, 1f
  addi t5, t5, 2
1: csrw mepc, t5
2: mret

  .align 4
strap:
  csrr t5, scause
  sd t5, 0(s11)
  csrr t5, stval
  sd t5, 8(s11)
  csrr t5, sepc
  sd t5, 16(s11)
  csrr t5, sstatus
  srli t5, t5, 8
  andi t5, t5, 1
  sd t5, 24(s11)
  addi s11, s11, 32
  csrr t5, scause
  bltz t5, 2f
  csrr t5, sepc
  lhu t6, 0(t5)
  andi t6, t6, 3
  addi t5, t5, 2
  li a7, 3
  bne t6, a7, 1f
  addi t5, t5, 2
1: csrw sepc, t5
2: sret
${extra}
`;
}
