// A warm-up program for the interpreter loop, run once per process on a private hart.
//
// Why: V8 optimizes Hart.execBlock with the type feedback of the paths it has executed so far.
// Each instruction variant a guest reaches for the first time after that (a rarely used funct3,
// a misaligned load, a 64-bit divide, ...) throws the optimized code away and it is compiled
// again: during one Linux boot we measured ~30 re-optimizations of that large function (~0.6-1 s of
// compile time). Running every variant once, before any guest, gives V8 complete feedback.
//
// The program: every RV64IM(A) integer instruction variant, loads and stores of every width
// (aligned, misaligned, page-crossing), every branch taken and not taken, JAL/JALR, LUI/AUIPC,
// FENCE, CSR accesses, ECALL/illegal traps, and the common compressed forms, in a loop.

const R = (f7: number, rs2: number, rs1: number, f3: number, rd: number, op: number): number =>
  ((f7 << 25) | (rs2 << 20) | (rs1 << 15) | (f3 << 12) | (rd << 7) | op) >>> 0;
const I = (imm: number, rs1: number, f3: number, rd: number, op: number): number =>
  (((imm & 0xfff) << 20) | (rs1 << 15) | (f3 << 12) | (rd << 7) | op) >>> 0;
const S = (imm: number, rs2: number, rs1: number, f3: number, op: number): number =>
  ((((imm >> 5) & 0x7f) << 25) | (rs2 << 20) | (rs1 << 15) | (f3 << 12) | ((imm & 31) << 7) | op) >>> 0;
const B = (imm: number, rs2: number, rs1: number, f3: number): number =>
  ((((imm >> 12) & 1) << 31) | (((imm >> 5) & 0x3f) << 25) | (rs2 << 20) | (rs1 << 15) | (f3 << 12) |
    (((imm >> 1) & 15) << 8) | (((imm >> 11) & 1) << 7) | 0x63) >>> 0;
const J = (imm: number, rd: number): number =>
  ((((imm >> 20) & 1) << 31) | (((imm >> 1) & 0x3ff) << 21) | (((imm >> 11) & 1) << 20) | (((imm >> 12) & 0xff) << 12) | (rd << 7) | 0x6f) >>> 0;

/** Registers used: s0 (x8) = data pointer (set by the caller), s1 (x9) = data + 4093 - 8 (page-crossing),
 *  a0..a7 (x10..x17) = operands, t0..t2 (x5..x7) = results, s2 (x18) = loop counter. */
export function warmUpProgram(loopCount: number): { words: number[]; halves: number[] } {
  if (loopCount < 1 || loopCount > 2047) throw new RangeError("loopCount must fit an addi immediate");
  const w: number[] = [];
  // operand set-up: a0 = -7 (negative), a1 = 3, a2 = big, a3 = 0, a4 = -1, a5 = 0x8000_0000
  w.push(I(-7, 0, 0, 10, 0x13), I(3, 0, 0, 11, 0x13), (0x12345 << 12 | (12 << 7) | 0x37) >>> 0, I(0, 0, 0, 13, 0x13),
    I(-1, 0, 0, 14, 0x13), ((0x80000 << 12) | (15 << 7) | 0x37) >>> 0, I(loopCount, 0, 0, 18, 0x13));
  // a6 = INT64_MIN, a7 = INT64_MAX: upper halves whose sums overflow an int32 (addi, add, sub), as a5's lower half does
  w.push(I(-1, 0, 0, 16, 0x13), I(63, 16, 1, 16, 0x13), I(-1, 0, 0, 17, 0x13), I(1, 17, 5, 17, 0x13));
  const loopStart = w.length;
  w.push(0x00010001); // c.nop; c.nop: the compressed path runs in the loop too (the forms below run once, after it)
  for (const [a, b] of [[10, 11], [12, 14], [13, 15], [14, 10], [15, 15], [16, 17], [17, 17]]) {
    for (let f3 = 0; f3 < 8; f3++) {
      w.push(R(0, b, a, f3, 5, 0x33), R(1, b, a, f3, 6, 0x33)); // OP, M
      w.push(I(f3 === 1 || f3 === 5 ? 13 : -5, a, f3, 7, 0x13)); // OP-IMM
    }
    w.push(R(0x20, b, a, 0, 5, 0x33), R(0x20, b, a, 5, 5, 0x33), I(0x400 | 7, a, 5, 5, 0x13)); // sub, sra, srai
    w.push(I(45, a, 1, 5, 0x13), I(45, a, 5, 5, 0x13), I(0x400 | 45, a, 5, 5, 0x13)); // shifts >= 32
    for (const f3 of [0, 1, 5]) w.push(R(0, b, a, f3, 5, 0x3b)); // addw sllw srlw
    w.push(R(0x20, b, a, 0, 5, 0x3b), R(0x20, b, a, 5, 5, 0x3b)); // subw sraw
    for (const f3 of [0, 4, 5, 6, 7]) w.push(R(1, b, a, f3, 6, 0x3b)); // mulw divw divuw remw remuw
    w.push(I(-3, a, 0, 7, 0x1b), I(5, a, 1, 7, 0x1b), I(5, a, 5, 7, 0x1b), I(0x400 | 5, a, 5, 7, 0x1b)); // OP-IMM-32
    for (let f3 = 0; f3 < 8; f3++) if (f3 !== 2 && f3 !== 3) { w.push(B(8, b, a, f3), I(0, 0, 0, 0, 0x13)); } // taken or not
  }
  for (const base of [8, 9]) { // aligned (s0) and page-crossing/misaligned (s1)
    for (let f3 = 0; f3 < 4; f3++) w.push(S(8, 12, base, f3, 0x23));
    for (let f3 = 0; f3 < 7; f3++) w.push(I(8, base, f3, 5, 0x03));
    for (let f3 = 0; f3 < 7; f3++) w.push(I(1, base, f3, 5, 0x03));
  }
  w.push(I(-8, 8, 3, 5, 0x03), S(-16, 12, 8, 3, 0x23)); // negative offsets (a carry into the upper half)
  w.push(((0x1 << 12) | (5 << 7) | 0x17) >>> 0); // auipc
  w.push(J(8, 1), I(0, 0, 0, 0, 0x13)); // jal over a nop
  w.push(((0 << 12) | (6 << 7) | 0x17) >>> 0, I(12, 6, 0, 1, 0x67), I(0, 0, 0, 0, 0x13)); // auipc t1; jalr ra, 12(t1)
  w.push(0x0ff0000f, 0x0000100f); // fence, fence.i
  w.push(I(0x340, 10, 1, 5, 0x73), I(0x340, 0, 2, 6, 0x73), I(0xb02, 0, 2, 7, 0x73)); // csrrw/csrrs mscratch, rdinstret
  w.push(I(0x7c0, 0, 2, 5, 0x73)); // unknown CSR: illegal
  w.push(0x00000073); // ecall (M): trap
  // reserved encodings of each major opcode (illegal-instruction traps)
  w.push(I(0x800 | 3, 10, 1, 5, 0x13), I(0x200 | 3, 10, 5, 5, 0x13), R(0x20, 11, 10, 1, 5, 0x33), R(2, 11, 10, 0, 5, 0x33),
    R(0, 11, 10, 2, 5, 0x3b), R(0x20, 11, 10, 1, 5, 0x3b), R(1, 11, 10, 1, 5, 0x3b), R(4, 11, 10, 0, 5, 0x3b),
    I(0, 10, 2, 5, 0x1b), I(0, 8, 7, 5, 0x03), S(0, 11, 8, 4, 0x23), B(8, 11, 10, 2), I(0, 10, 1, 5, 0x67),
    I(0, 0, 2, 0, 0x0f), 0x0000007f);
  // a store while a reservation is held (LR), then every store width on a page already in the TLB
  w.push(R(0x08, 0, 8, 3, 5, 0x2f));
  for (let f3 = 0; f3 < 4; f3++) w.push(S(16, 12, 8, f3, 0x23));
  w.push(R(0x0c, 11, 8, 3, 6, 0x2f));
  for (let f3 = 0; f3 < 4; f3++) w.push(S(24, 12, 8, f3, 0x23));
  w.push(R(0x00, 11, 8, 3, 5, 0x2f), R(0x08, 0, 8, 3, 5, 0x2f), R(0x0c, 11, 8, 3, 6, 0x2f)); // amoadd.d, lr.d, sc.d
  // F/D (the caller turns mstatus.FS on): loads, stores, arithmetic, moves and conversions
  w.push(I(0, 8, 3, 1, 0x07), I(0, 8, 2, 3, 0x07), R(0x01, 1, 1, 7, 2, 0x53), R(0x09, 2, 1, 7, 2, 0x53),
    R(0x0d, 1, 2, 7, 2, 0x53), R(0x00, 3, 3, 7, 4, 0x53), ((1 << 27) | (1 << 25) | (1 << 20) | (1 << 15) | (7 << 12) | (5 << 7) | 0x43) >>> 0,
    R(0x71, 0, 2, 0, 5, 0x53), R(0x61, 0, 2, 1, 6, 0x53), R(0x51, 2, 1, 2, 5, 0x53), S(8, 2, 8, 3, 0x27), S(16, 4, 8, 2, 0x27));
  // faulting accesses (nothing at address 0; a misaligned AMO), then a store to the caller's
  // device at 0x2000000 that raises and lowers an interrupt line (ends the block)
  w.push(I(0, 0, 3, 5, 0x03), S(0, 12, 0, 3, 0x23), R(0x00, 11, 9, 2, 5, 0x2f));
  w.push(((0x2000 << 12) | (5 << 7) | 0x37) >>> 0, S(0, 11, 5, 2, 0x23), S(0, 0, 5, 2, 0x23));
  w.push(I(-1, 18, 0, 18, 0x13)); // s2--
  const back = (loopStart - w.length) * 4;
  w.push(B(back, 0, 18, 1)); // bnez s2, loop
  // compressed forms (as halfwords, run after the loop): c.addi, c.li, c.mv, c.add, c.sub..., c.lw/ld/sw/sd, c.beqz/bnez, c.j
  const halves = [
    0x0505, 0x4581, 0x862a, 0x962e, 0x8d0d, 0x8d2d, 0x8d4d, 0x8d6d, 0x9d0d, 0x9d2d, 0x0532, 0x8105, 0x8505, 0x8905,
    0x4004, 0x6004, 0xc004, 0xe004, 0xc119, 0xe119, 0xa011, 0x0001, 0x0000,
  ];
  return { words: w, halves };
}

/** M-mode trap handler (at the start of RAM): skip the trapping instruction (2 or 4 bytes). */
export const WARMUP_HANDLER = [
  0x34102f73,                 // csrr t5, mepc
  I(0, 30, 5, 31, 0x03),      // lhu t6, 0(t5)
  I(3, 31, 7, 31, 0x13),      // andi t6, t6, 3
  I(2, 30, 0, 30, 0x13),      // addi t5, t5, 2
  I(3, 0, 0, 29, 0x13),       // li t4, 3
  B(8, 29, 31, 1),            // bne t6, t4, +8
  I(2, 30, 0, 30, 0x13),      // addi t5, t5, 2
  I(0x341, 30, 1, 0, 0x73),   // csrw mepc, t5
  0x30200073,                 // mret
];

/** A second warm-up, with translation on, on two pages (the second starts at word JIT_PAGE2): four
 *  hot loops, then a loop calling five functions: F (a loop at its entry), H (no loop: the JAL to
 *  it makes it hot), K (a store to the caller's device at 0x2001000, which ends the region), G
 *  (the same, on the second page: entered from another page) and P (reached only by JALR, as
 *  through a function pointer), so that the hart's one call site of translated regions has seen
 *  several of them (megamorphic feedback) and the interpreter's region entries (page entry,
 *  branch, JAL, JALR) and compilations (page entry, branch, JAL, JALR) have run before V8 first
 *  optimizes it. Then, once each, F's region is entered by an interpreted JAL, JALR and backward
 *  branch, and K's by a JAL, with ra on the second page, so that the region leaves to another page
 *  and the return is a JALR across pages. Without this, each of these paths first taken by a
 *  guest deoptimizes the interpreter loop ("insufficient type feedback", "wrong call target"),
 *  which costs 50-130 ms of recompilation each time. */
export const JIT_PAGE2 = 1024;
export function jitWarmUpProgram(loopCount: number): number[] {
  const w: number[] = [];
  const jal = (target: number, rd: number): number => J((target - w.length) * 4, rd);
  w.push(0);                                              // j MAIN (patched below)
  const f = w.length;                                     // F: a loop at the function's entry; ret
  w.push(I(-1, 7, 0, 7, 0x13), B(-4, 0, 7, 1), I(0, 1, 0, 0, 0x67));
  const h = w.length;                                     // H: no loop; ret
  w.push(I(1, 28, 0, 28, 0x13), I(0, 1, 0, 0, 0x67));
  const k = w.length;                                     // K: a store to the caller's device at 0x2001000 (ends the region); ret
  w.push(S(0, 0, 20, 2, 0x23), I(0, 1, 0, 0, 0x67));
  const p = w.length;                                     // P: no loop, reached only by JALR; ret
  w.push(I(1, 31, 0, 31, 0x13), I(0, 1, 0, 0, 0x67));
  w[0] = J(w.length * 4, 0);
  w.push(((0x2001 << 12) | (20 << 7) | 0x37) >>> 0);     // lui s4, 0x2001
  for (let v = 1; v <= 4; v++) {
    w.push(I(loopCount, 0, 0, 5, 0x13));                  // li t0, loopCount
    w.push(I(-1, 5, 0, 5, 0x13), I(v, 6, 0, 6, 0x13));    // L: addi t0, t0, -1; addi t1, t1, v
    w.push(B(-8, 0, 5, 1));                               // bnez t0, L
  }
  const g = JIT_PAGE2, pad = JIT_PAGE2 + 2;
  w.push(I(loopCount, 0, 0, 18, 0x13));                   // li s2, loopCount
  const c = w.length;
  w.push(I(2, 0, 0, 7, 0x13));                            // C: li t2, 2
  for (const fn of [f, h, k, g]) w.push(jal(fn, 1));      // call F, H, K, G
  w.push((6 << 7) | 0x17, I((p - w.length) * 4, 6, 0, 1, 0x67)); // auipc t1, 0; jalr ra, P-.(t1)
  w.push(I(-1, 18, 0, 18, 0x13));                         // addi s2, s2, -1
  w.push(B((c - w.length) * 4, 0, 18, 1));                // bnez s2, C
  // F's region entered once by each of JAL, JALR and a backward branch, returning to the pad on
  // the second page (ra), which jumps back to the continuation (s3) with a JALR across pages
  for (const [entry, fn] of [['jal', f], ['jalr', f], ['branch', f], ['jal', k]] as const) {
    w.push(I(2, 0, 0, 7, 0x13));                          // li t2, 2
    const s3 = w.length;
    w.push((19 << 7) | 0x17, 0);                          // auipc s3, 0; addi s3, s3, (continuation) patched below
    const d = (pad - w.length) * 4, hi = (d + 0x800) >> 12;
    w.push(((hi << 12) | (1 << 7) | 0x17) >>> 0, I(d - (hi << 12), 1, 0, 1, 0x13)); // ra = the pad
    if (entry === 'jal') w.push(jal(fn, 0));
    else if (entry === 'branch') w.push(jal(f + 1, 0));  // onto F's bnez, taken back to F
    else w.push((6 << 7) | 0x17, I((f - w.length) * 4, 6, 0, 0, 0x67)); // auipc t1, 0; jalr x0, F-.(t1)
    w[s3 + 1] = I((w.length - s3) * 4, 19, 0, 19, 0x13);
  }
  w.push(0x10500073);                                     // wfi: the end
  while (w.length < JIT_PAGE2) w.push(I(0, 0, 0, 0, 0x13));
  w.push(S(0, 0, 20, 2, 0x23), I(0, 1, 0, 0, 0x67));     // G: a store to the device; ret
  w.push(I(0, 19, 0, 0, 0x67));                           // pad (G + 8): jr s3
  return w;
}
