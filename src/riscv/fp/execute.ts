// F/D execution hook (owned by H4 — issue 5). The hart (src/riscv/hart.ts) calls `execFp` for the
// opcodes LOAD-FP 0x07, STORE-FP 0x27, FMADD/FMSUB/FNMSUB/FNMADD 0x43/0x47/0x4b/0x4f and OP-FP 0x53
// (compressed C.FLD/C.FSD/C.FLDSP/C.FSDSP arrive already expanded to FLD/FSD).
// Contract: return true when the instruction retired (the hart then advances pc); otherwise raise
// a trap through the hart (hart.illegalInstruction(), or a failed hart.loadMem/storeMem which has
// already trapped) and return false.
// Until F/D are implemented, every FP instruction is illegal (misa has no F/D; FP_PRESENT = false
// also makes the fflags/frm/fcsr CSRs illegal).
import type { Hart } from '../hart.js';

/** True once F and D are implemented: the hart then reports F/D in misa and exposes fcsr. */
export const FP_PRESENT = false;

export function execFp(hart: Hart, _insn: number): boolean {
  hart.illegalInstruction();
  return false;
}
