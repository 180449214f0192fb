// Shared constants and the accrued-exception accumulator for the FP unit.
//
// Bit positions of fflags (RISC-V unprivileged spec, "F" chapter, "Floating-Point Control and
// Status Register"): NV=4 DZ=3 OF=2 UF=1 NX=0.
export const NX = 1;
export const UF = 2;
export const OF = 4;
export const DZ = 8;
export const NV = 16;

// Rounding-mode encodings of the rm field and of frm (same table in the spec).
export const RNE = 0;
export const RTZ = 1;
export const RDN = 2;
export const RUP = 3;
export const RMM = 4;
export const DYN = 7; // only legal in the instruction's rm field

// Every operation ORs its exception flags into fx.flags; the caller (execute.ts) clears it before an
// instruction and merges it into fcsr afterwards. One monomorphic object, never reallocated.
export const fx = { flags: 0 };

// Canonical quiet NaNs (spec: "Canonical NaN" — positive, quiet bit set, rest zero).
export const F32_CANON_NAN = 0x7fc00000;
export const F64_CANON_NAN_HI = 0x7ff80000;
