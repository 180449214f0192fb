// CSR numbers and mstatus/mip field masks (privileged spec, chapter 2 "CSR listing" and 3.1.6).

export const CSR = {
  fflags: 0x001, frm: 0x002, fcsr: 0x003,
  cycle: 0xc00, time: 0xc01, instret: 0xc02,
  sstatus: 0x100, sie: 0x104, stvec: 0x105, scounteren: 0x106, senvcfg: 0x10a,
  sscratch: 0x140, sepc: 0x141, scause: 0x142, stval: 0x143, sip: 0x144, stimecmp: 0x14d, satp: 0x180,
  mvendorid: 0xf11, marchid: 0xf12, mimpid: 0xf13, mhartid: 0xf14, mconfigptr: 0xf15,
  mstatus: 0x300, misa: 0x301, medeleg: 0x302, mideleg: 0x303, mie: 0x304, mtvec: 0x305,
  mcounteren: 0x306, menvcfg: 0x30a, mcountinhibit: 0x320,
  mscratch: 0x340, mepc: 0x341, mcause: 0x342, mtval: 0x343, mip: 0x344,
  pmpcfg0: 0x3a0, pmpcfg2: 0x3a2, pmpaddr0: 0x3b0,
  mcycle: 0xb00, minstret: 0xb02,
  tselect: 0x7a0, tdata1: 0x7a1, tdata2: 0x7a2, tdata3: 0x7a3,
} as const;

// mstatus bits (RV64, priv spec 3.1.6). Everything writable lives in the low word.
export const MS_SIE = 1 << 1, MS_MIE = 1 << 3, MS_SPIE = 1 << 5, MS_MPIE = 1 << 7, MS_SPP = 1 << 8;
export const MS_MPP_SHIFT = 11, MS_MPP = 3 << 11, MS_FS = 3 << 13, MS_MPRV = 1 << 17, MS_SUM = 1 << 18;
export const MS_MXR = 1 << 19, MS_TVM = 1 << 20, MS_TW = 1 << 21, MS_TSR = 1 << 22;
export const MSTATUS_WMASK = MS_SIE | MS_MIE | MS_SPIE | MS_MPIE | MS_SPP | MS_MPP | MS_FS | MS_MPRV | MS_SUM |
  MS_MXR | MS_TVM | MS_TW | MS_TSR;
/** sstatus is a restricted view of mstatus (priv spec 4.1.1). */
export const SSTATUS_MASK = MS_SIE | MS_SPIE | MS_SPP | MS_FS | MS_SUM | MS_MXR;
/** High word of mstatus: UXL = SXL = 2 (XLEN 64), read-only. SD (bit 63) is computed from FS. */
export const MSTATUS_HI = 0x2 | (0x2 << 2);
export const SSTATUS_HI = 0x2;

// Interrupt numbers / mip bits (priv spec 3.1.9).
export const IRQ_SSI = 1, IRQ_MSI = 3, IRQ_STI = 5, IRQ_MTI = 7, IRQ_SEI = 9, IRQ_MEI = 11;
export const MIP_SSIP = 1 << 1, MIP_MSIP = 1 << 3, MIP_STIP = 1 << 5, MIP_MTIP = 1 << 7, MIP_SEIP = 1 << 9, MIP_MEIP = 1 << 11;
/** Interrupts that exist here (mie is writable on these). */
export const MIE_MASK = MIP_SSIP | MIP_MSIP | MIP_STIP | MIP_MTIP | MIP_SEIP | MIP_MEIP;
/** S-level interrupts: the only ones mideleg can delegate. */
export const S_INTS = MIP_SSIP | MIP_STIP | MIP_SEIP;
/** medeleg: every defined synchronous exception except ecall-from-M (bit 11, read-only 0). */
export const MEDELEG_MASK = 0xb3ff;

// Exception causes (priv spec table 3.6).
export const EXC_INSN_MISALIGNED = 0, EXC_INSN_ACCESS = 1, EXC_ILLEGAL = 2, EXC_BREAKPOINT = 3;
export const EXC_LOAD_MISALIGNED = 4, EXC_LOAD_ACCESS = 5, EXC_STORE_MISALIGNED = 6, EXC_STORE_ACCESS = 7;
export const EXC_ECALL_U = 8, EXC_ECALL_S = 9, EXC_ECALL_M = 11;
export const EXC_INSN_PAGE = 12, EXC_LOAD_PAGE = 13, EXC_STORE_PAGE = 15;
