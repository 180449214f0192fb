// RVC (the "C" extension, RV64) expanded to the equivalent 32-bit instruction.
//
// Unprivileged ISA spec, chapter "C" (Compressed Instructions): every RVC instruction expands to
// a single base instruction. We precompute the expansion of all 2^16 halfwords once (a 256 KiB
// Int32Array) so the interpreter only decodes 32-bit formats. 0 marks reserved/illegal encodings
// (0 is never a valid expansion). HINT encodings expand to no-op equivalents that write x0
// (or shift by 0), as the spec allows. C.FLD/C.FSD/C.FLDSP/C.FSDSP expand to FLD/FSD so that the
// F/D unit (src/riscv/fp) sees them like any other FP load/store.

const OP_LOAD = 0x03, OP_LOADFP = 0x07, OP_IMM = 0x13, OP_IMM32 = 0x1b, OP_STORE = 0x23, OP_STOREFP = 0x27;
const OP = 0x33, OP_LUI = 0x37, OP32 = 0x3b, OP_BRANCH = 0x63, OP_JALR = 0x67, OP_JAL = 0x6f;

function iType(op: number, rd: number, f3: number, rs1: number, imm: number): number {
  return ((imm & 0xfff) << 20) | (rs1 << 15) | (f3 << 12) | (rd << 7) | op;
}
function sType(op: number, f3: number, rs1: number, rs2: number, imm: number): number {
  return (((imm >> 5) & 0x7f) << 25) | (rs2 << 20) | (rs1 << 15) | (f3 << 12) | ((imm & 31) << 7) | op;
}
function rType(op: number, rd: number, f3: number, rs1: number, rs2: number, f7: number): number {
  return (f7 << 25) | (rs2 << 20) | (rs1 << 15) | (f3 << 12) | (rd << 7) | op;
}
function bType(f3: number, rs1: number, rs2: number, imm: number): number {
  return (((imm >> 12) & 1) << 31) | (((imm >> 5) & 0x3f) << 25) | (rs2 << 20) | (rs1 << 15) | (f3 << 12) |
    (((imm >> 1) & 15) << 8) | (((imm >> 11) & 1) << 7) | OP_BRANCH;
}
function jType(rd: number, imm: number): number {
  return (((imm >> 20) & 1) << 31) | (((imm >> 1) & 0x3ff) << 21) | (((imm >> 11) & 1) << 20) |
    (((imm >> 12) & 0xff) << 12) | (rd << 7) | OP_JAL;
}
const bit = (x: number, n: number): number => (x >>> n) & 1;
const sext = (v: number, bits: number): number => (v << (32 - bits)) >> (32 - bits);

/** Expansion of one 16-bit instruction (low two bits != 3); 0 = illegal/reserved. */
export function expandCompressed(c: number): number {
  const q = c & 3, f3 = (c >>> 13) & 7;
  const rdp = ((c >>> 2) & 7) + 8;   // rd'/rs2' (bits 4:2)
  const rs1p = ((c >>> 7) & 7) + 8;  // rs1'/rd' (bits 9:7)
  const rd = (c >>> 7) & 31, rs2 = (c >>> 2) & 31;
  const imm6 = sext((bit(c, 12) << 5) | ((c >>> 2) & 31), 6);
  if (q === 0) {
    switch (f3) {
      case 0: { // C.ADDI4SPN
        const imm = (((c >>> 11) & 3) << 4) | (((c >>> 7) & 15) << 6) | (bit(c, 6) << 2) | (bit(c, 5) << 3);
        return imm === 0 ? 0 : iType(OP_IMM, rdp, 0, 2, imm);
      }
      case 1: return iType(OP_LOADFP, rdp, 3, rs1p, (((c >>> 10) & 7) << 3) | (((c >>> 5) & 3) << 6)); // C.FLD
      case 2: return iType(OP_LOAD, rdp, 2, rs1p, (((c >>> 10) & 7) << 3) | (bit(c, 6) << 2) | (bit(c, 5) << 6)); // C.LW
      case 3: return iType(OP_LOAD, rdp, 3, rs1p, (((c >>> 10) & 7) << 3) | (((c >>> 5) & 3) << 6)); // C.LD
      case 4: return 0;
      case 5: return sType(OP_STOREFP, 3, rs1p, rdp, (((c >>> 10) & 7) << 3) | (((c >>> 5) & 3) << 6)); // C.FSD
      case 6: return sType(OP_STORE, 2, rs1p, rdp, (((c >>> 10) & 7) << 3) | (bit(c, 6) << 2) | (bit(c, 5) << 6)); // C.SW
      default: return sType(OP_STORE, 3, rs1p, rdp, (((c >>> 10) & 7) << 3) | (((c >>> 5) & 3) << 6)); // C.SD
    }
  }
  if (q === 1) {
    switch (f3) {
      case 0: return iType(OP_IMM, rd, 0, rd, imm6); // C.ADDI / C.NOP (+HINTs)
      case 1: return rd === 0 ? 0 : iType(OP_IMM32, rd, 0, rd, imm6); // C.ADDIW
      case 2: return iType(OP_IMM, rd, 0, 0, imm6); // C.LI (rd=0: HINT)
      case 3: {
        if (rd === 2) { // C.ADDI16SP
          const imm = sext((bit(c, 12) << 9) | (bit(c, 6) << 4) | (bit(c, 5) << 6) | (((c >>> 3) & 3) << 7) | (bit(c, 2) << 5), 10);
          return imm === 0 ? 0 : iType(OP_IMM, 2, 0, 2, imm);
        }
        if (imm6 === 0) return 0; // C.LUI with nzimm = 0 is reserved
        return ((imm6 << 12) & 0xfffff000) | (rd << 7) | OP_LUI; // C.LUI (rd=0: HINT)
      }
      case 4: {
        const f2 = (c >>> 10) & 3;
        const sh = (bit(c, 12) << 5) | ((c >>> 2) & 31);
        if (f2 === 0) return iType(OP_IMM, rs1p, 5, rs1p, sh); // C.SRLI
        if (f2 === 1) return iType(OP_IMM, rs1p, 5, rs1p, sh | 0x400); // C.SRAI
        if (f2 === 2) return iType(OP_IMM, rs1p, 7, rs1p, imm6); // C.ANDI
        const f = (c >>> 5) & 3;
        if (bit(c, 12) === 0) {
          switch (f) {
            case 0: return rType(OP, rs1p, 0, rs1p, rdp, 0x20); // C.SUB
            case 1: return rType(OP, rs1p, 4, rs1p, rdp, 0); // C.XOR
            case 2: return rType(OP, rs1p, 6, rs1p, rdp, 0); // C.OR
            default: return rType(OP, rs1p, 7, rs1p, rdp, 0); // C.AND
          }
        }
        if (f === 0) return rType(OP32, rs1p, 0, rs1p, rdp, 0x20); // C.SUBW
        if (f === 1) return rType(OP32, rs1p, 0, rs1p, rdp, 0); // C.ADDW
        return 0;
      }
      case 5: { // C.J
        const imm = sext((bit(c, 12) << 11) | (bit(c, 11) << 4) | (((c >>> 9) & 3) << 8) | (bit(c, 8) << 10) |
          (bit(c, 7) << 6) | (bit(c, 6) << 7) | (((c >>> 3) & 7) << 1) | (bit(c, 2) << 5), 12);
        return jType(0, imm);
      }
      default: { // C.BEQZ / C.BNEZ
        const imm = sext((bit(c, 12) << 8) | (((c >>> 10) & 3) << 3) | (((c >>> 5) & 3) << 6) |
          (((c >>> 3) & 3) << 1) | (bit(c, 2) << 5), 9);
        return bType(f3 === 6 ? 0 : 1, rs1p, 0, imm);
      }
    }
  }
  if (q === 2) {
    switch (f3) {
      case 0: return iType(OP_IMM, rd, 1, rd, (bit(c, 12) << 5) | ((c >>> 2) & 31)); // C.SLLI (rd=0 / shamt=0: HINT)
      case 1: return iType(OP_LOADFP, rd, 3, 2, (bit(c, 12) << 5) | (((c >>> 5) & 3) << 3) | (((c >>> 2) & 7) << 6)); // C.FLDSP
      case 2: // C.LWSP
        return rd === 0 ? 0 : iType(OP_LOAD, rd, 2, 2, (bit(c, 12) << 5) | (((c >>> 4) & 7) << 2) | (((c >>> 2) & 3) << 6));
      case 3: // C.LDSP
        return rd === 0 ? 0 : iType(OP_LOAD, rd, 3, 2, (bit(c, 12) << 5) | (((c >>> 5) & 3) << 3) | (((c >>> 2) & 7) << 6));
      case 4:
        if (bit(c, 12) === 0) {
          if (rs2 === 0) return rd === 0 ? 0 : iType(OP_JALR, 0, 0, rd, 0); // C.JR
          return rType(OP, rd, 0, 0, rs2, 0); // C.MV (rd=0: HINT)
        }
        if (rs2 === 0) return rd === 0 ? 0x00100073 : iType(OP_JALR, 1, 0, rd, 0); // C.EBREAK / C.JALR
        return rType(OP, rd, 0, rd, rs2, 0); // C.ADD (rd=0: HINT)
      case 5: return sType(OP_STOREFP, 3, 2, rs2, (((c >>> 10) & 7) << 3) | (((c >>> 7) & 7) << 6)); // C.FSDSP
      case 6: return sType(OP_STORE, 2, 2, rs2, (((c >>> 9) & 15) << 2) | (((c >>> 7) & 3) << 6)); // C.SWSP
      default: return sType(OP_STORE, 3, 2, rs2, (((c >>> 10) & 7) << 3) | (((c >>> 7) & 7) << 6)); // C.SDSP
    }
  }
  return 0;
}

/** CEXP[h] = expansion of halfword h (for h with low bits != 3); built once at load. */
export const CEXP: Int32Array = (() => {
  const t = new Int32Array(65536);
  for (let h = 0; h < 65536; h++) if ((h & 3) !== 3) t[h] = expandCompressed(h);
  return t;
})();
