// A hart that only waits for another hart reports `polling` (src/riscv/hart.ts) so that its
// thread can rest instead of spinning a host core (src/board/smp.ts): a loop of WFIs that cannot
// wait (an interrupt pending but masked: OpenSBI 1.1's sbi_hsm_hart_wait with the coldboot IPI
// still set), and, on a hart of a machine whose harts run on several threads, a loop that comes
// back to the same pc with every register unchanged and no store or CSR write on the way
// (OpenSBI's _wait_for_boot_hart). Loops that do work never poll, and polling changes nothing the
// guest can see: once the awaited word is written, the hart goes on.
import { describe, expect, test } from 'vitest';
import { buildAsm, loadElf, makeMachine, type Mini } from './harness.js';

const FINISH = `
  li t0, 0x100000
  li t1, 0x5555
  sw t1, 0(t0)
1: j 1b
`;

/** Loads a program (`body` after `la a0, flag`; flag: two doublewords, zero, that a loop waits
 *  on or works on) on a fresh one-hart machine. */
function load(body: string): { m: Mini; flag: number } {
  const m = makeMachine();
  const elf = buildAsm(`
.globl _start
_start:
  la a0, flag
${body}
.balign 8
flag: .dword 0, 0
`);
  m.harts[0].setPc(loadElf(m.mem, elf));
  // the flag's address: the program puts it in a0 first (la a0, flag); run up to there
  const h = m.harts[0];
  h.run(2);
  return { m, flag: Number(h.getX(10)) };
}

function setFlag(m: Mini, addr: number): void {
  m.mem.ram.write(addr, new Uint8Array([1, 0, 0, 0, 0, 0, 0, 0]));
}

/** Runs slices of 20000 (as hart threads do) until `done`; the slices' retired counts. */
function slices(m: Mini, n: number, done: () => boolean = () => false): number[] {
  const out: number[] = [];
  for (let k = 0; k < n && m.exit === null && !done(); k++) out.push(m.harts[0].run(20_000));
  return out;
}

/** A loop that does work: counts t0 down from `n`, then finishes. */
const countdown = (n: number): string => `
  li t0, ${n}
count:
  ld t1, 0(a0)
  addi t0, t0, -1
  bnez t0, count
${FINISH}
`;

const WFI_LOOP = `
  li t0, 8
  csrw mie, t0          # MSIE
  csrci mstatus, 8      # MIE = 0: a pending MSIP is never taken
loop:
  wfi
  ld t1, 0(a0)
  beqz t1, loop
${FINISH}
`;

const SPIN_LOOP = `
  li t0, 1
spin:
  ld t1, 0(a0)
  nop
  nop
  bne t0, t1, spin
${FINISH}
`;

describe('a hart waiting for memory reports polling', () => {
  test('a loop of WFIs that complete at once (MSIP pending, mstatus.MIE = 0) polls, then goes on when the word is written', () => {
    const { m, flag } = load(WFI_LOOP);
    const h = m.harts[0];
    h.setInterruptLevel(3, true); // the IPI nobody cleared
    const n = h.run(20_000);
    expect(h.polling).toBe(true);
    expect(h.waiting).toBe(false);
    expect(n).toBeLessThan(200); // a few loop iterations, not the whole slice
    // Polling again at once: the loop has not changed.
    expect(h.run(20_000)).toBeLessThan(10);
    expect(h.polling).toBe(true);
    // Another IPI, to the line already up: the hart is to look again (its caller runs it).
    h.setInterruptLevel(3, true);
    expect(h.polling).toBe(false);
    setFlag(m, flag);
    slices(m, 5);
    expect(m.exit).toEqual({ code: 0 });
  });

  test('with nothing pending the same loop sleeps in WFI (waiting), it does not poll', () => {
    const { m } = load(WFI_LOOP);
    const h = m.harts[0];
    h.run(20_000);
    expect(h.waiting).toBe(true);
    expect(h.polling).toBe(false);
  });

  test('a pure spin on a hart of a multi-threaded machine (smp) polls after two slices, and leaves when the word is written', () => {
    const { m, flag } = load(SPIN_LOOP);
    const h = m.harts[0];
    h.smp = true;
    const ran = slices(m, 6, () => h.polling);
    expect(h.polling).toBe(true);
    expect(ran.length).toBeLessThanOrEqual(4);
    expect(ran[ran.length - 1]).toBeLessThanOrEqual(128); // the probe's steps only
    const pc = h.pc;
    // Rests do not move the hart: it is still in its loop, and polls again at once.
    expect(h.run(20_000)).toBeLessThanOrEqual(128);
    expect(h.polling).toBe(true);
    expect(Math.abs(h.pc - pc)).toBeLessThan(16);
    setFlag(m, flag);
    slices(m, 5);
    expect(m.exit).toEqual({ code: 0 });
  });

  test('the same spin on a hart alone (not smp) runs whole slices: nothing changes for one-hart machines', () => {
    const { m } = load(SPIN_LOOP);
    const h = m.harts[0];
    const ran = slices(m, 6);
    expect(ran).toEqual([20_000, 20_000, 20_000, 20_000, 20_000, 20_000]);
    expect(h.polling).toBe(false);
  });

  test('a loop that changes a register each time round (a countdown) never polls', () => {
    const { m } = load(countdown(200_000));
    const h = m.harts[0];
    h.smp = true;
    const ran = slices(m, 50);
    expect(m.exit).toEqual({ code: 0 });
    expect(ran.slice(0, -1).every((n) => n === 20_000)).toBe(true);
    expect(h.polling).toBe(false);
  });

  // Registers as they are each time round, but the loop changes memory: it may work (an AMOADD
  // counter with rd = x0), not wait. Any store, AMO, SC or CSR write counts as work.
  for (const [what, insn, adds] of [['an AMOADD with rd = x0', 'amoadd.d zero, t1, (a0)', 1], ['a plain store', 'sd t1, 8(a0)', 0]] as const) {
    test(`a loop whose registers never change but that writes memory (${what}) never polls`, () => {
      const { m, flag } = load(`
  li t1, 1
work:
  ${insn}
  j work
`);
      const h = m.harts[0];
      h.smp = true;
      const ran = slices(m, 20);
      expect(ran).toEqual(Array(20).fill(20_000));
      expect(h.polling).toBe(false);
      const word = new Uint8Array(8);
      m.mem.ram.read(flag, word);
      // li, then 399999 instructions of the loop: 200000 AMOADDs
      expect(new DataView(word.buffer).getUint32(0, true)).toBe(adds * 200_000);
    });
  }

  test('a working loop is probed less and less often (the probe steps instruction by instruction)', () => {
    const { m } = load(countdown(4_000_000));
    const h = m.harts[0];
    h.smp = true;
    const probe = h as unknown as { spinProbe(): number };
    const real = probe.spinProbe.bind(h);
    let probes = 0;
    probe.spinProbe = () => { probes++; return real(); };
    const ran = slices(m, 200);
    expect(ran.length).toBe(200);
    expect(h.polling).toBe(false);
    // Every slice from the third would be probed without the back-off (198); with it: after
    // gaps of 1, 2, 4 … 64 slices.
    expect(probes).toBeGreaterThanOrEqual(3);
    expect(probes).toBeLessThan(15);
  });

  test('a loop whose only change is in an FP register never polls', () => {
    const { m } = load(`
  li t0, 0x2000
  csrs mstatus, t0      # FS = Initial
  .word 0xf20000d3       # fmv.d.x f1, zero
  li t1, 1
  .word 0xd2237153       # fcvt.d.l f2, t1
fp:
  ld t1, 0(a0)
  .word 0x0220f0d3       # fadd.d f1, f1, f2 (the harness assembles without D)
  beqz t1, fp
${FINISH}
`);
    const h = m.harts[0];
    h.smp = true;
    const ran = slices(m, 8);
    expect(ran).toEqual(Array(8).fill(20_000));
    expect(h.polling).toBe(false);
  });
});
