// The ISA suite's guest programs (fixtures/isa/src) and, for each, where QEMU 7.2 departs
// from the ratified specifications. Each difference is a line QEMU prints and the line the
// spec requires; vmctl is held to the spec's line. References: "unpriv" = The RISC-V
// Instruction Set Manual Vol. I (20191213), "priv" = Vol. II Privileged Architecture (20211203,
// v1.12), Sstc 1.0.
import type { IsaProgram } from './differential.js';

export const PROGRAMS: Record<string, IsaProgram> = {
  hello: { name: 'hello' },
  rv64i: { name: 'rv64i' },
  rv64m: { name: 'rv64m' },
  rv64a: {
    name: 'rv64a',
    differences: [
      {
        qemu: /(amo\w+\.[wd]) (\+\d): trap M cause=4 (tval=base\+\d)/,
        spec: '$1 $2: trap M cause=6 $3',
        why: 'unpriv 8.4 / priv table 3.6: a misaligned AMO raises Store/AMO address misaligned (6); QEMU 7.2 reports load address misaligned (4)',
      },
      {
        qemu: /(sc\.[wd]) \+(\d): no trap/,
        spec: '$1 +$2: trap M cause=6 tval=base+$2',
        why: 'unpriv 8.2: a misaligned LR/SC address generates an address-misaligned exception; QEMU 7.2 checks the reservation first and fails the SC silently',
      },
    ],
  },
  rvc: { name: 'rvc' },
  csr: {
    name: 'csr',
    differences: [
      {
        qemu: 'csrrs mhartid, a1=0: no trap',
        spec: 'csrrs mhartid, a1=0: trap M cause=2 tval=f145a573 prev=3 n=1',
        why: 'unpriv 9.1: CSRRS with rs1 != x0 writes the CSR even when the register holds zero, so it is illegal on a read-only CSR; QEMU 7.2 looks at the value',
      },
      {
        qemu: /warl (mepc|sepc): ones -> ffffffffffffffff, zero -> 0/,
        spec: 'warl $1: ones -> fffffffffffffffe, zero -> 0',
        why: 'priv 3.1.14 / 4.1.7: mepc[0] and sepc[0] are always zero (IALIGN=16); QEMU 7.2 returns the bit as written',
      },
      {
        qemu: 'warl medeleg: ones -> f0bfff, zero -> 0',
        spec: 'warl medeleg: ones -> b3ff, zero -> 0',
        why: 'priv 3.1.8: medeleg[11] is read-only zero; causes 10 and 20-23 exist only with H (not implemented); QEMU 7.2 keeps them writable',
      },
      {
        qemu: 'warl mideleg: ones -> 2666, zero -> 0',
        spec: 'warl mideleg: ones -> 222, zero -> 0',
        why: 'priv 3.1.9: without H the VS* bits (2, 6, 10) and without Sscofpmf LCOFI (13) are read-only zero; QEMU 7.2 keeps them writable',
      },
      {
        qemu: 'warl mie: ones -> 2eee, zero -> 0',
        spec: 'warl mie: ones -> aaa, zero -> 0',
        why: 'priv 3.1.9: only MEIE/SEIE/MTIE/STIE/MSIE/SSIE exist without H and Sscofpmf',
      },
      {
        qemu: 'mip ones -> 0000000000002666',
        spec: 'mip ones -> 0000000000000222',
        why: 'priv 3.1.9: M can write only SSIP, STIP and SEIP in mip without H/Sscofpmf',
      },
      {
        qemu: /warl (306|106) ones: low3=7 high32=ffffffff/,
        spec: 'warl $1 ones: low3=7 high32=0',
        why: 'priv 3.1.11, 4.1.5: mcounteren and scounteren are 32-bit registers; QEMU 7.2 stores 64 bits',
      },
      {
        qemu: 'warl 320 ones: low3=7 high32=ffffffff',
        spec: 'warl 320 ones: low3=5 high32=0',
        why: 'priv 3.1.12: mcountinhibit is 32 bits and has no TM bit (bit 1 is read-only zero); QEMU 7.2 stores 64 bits',
      },
      {
        qemu: 'warl menvcfg: ones -> c0000000000000f1, zero -> 0',
        spec: 'warl menvcfg: ones -> 8000000000000001, zero -> 0',
        why: 'priv 3.1.18: PBMTE is read-only zero without Svpbmt, CBIE/CBCFE/CBZE without Zicbom/Zicboz (QEMU 7.2 keeps them writable even with those extensions off); STCE exists with Sstc',
      },
      {
        qemu: 'warl senvcfg: ones -> f1, zero -> 0',
        spec: 'warl senvcfg: ones -> 1, zero -> 0',
        why: 'priv 4.1.4: CBIE/CBCFE/CBZE are read-only zero without Zicbom/Zicboz',
      },
      {
        qemu: /warl (pmpaddr1|pmpaddr15): ones -> ffffffffffffffff, zero -> 0/,
        spec: 'warl $1: ones -> 3fffffffffffff, zero -> 0',
        why: 'priv 3.7.1 (figure 3.27): RV64 pmpaddr holds address bits 55:2; bits 63:54 are zero; QEMU 7.2 stores all 64 bits',
      },
      {
        qemu: 'pmpcfg2 with bits 6:5 set -> 6161616161616161',
        spec: 'pmpcfg2 with bits 6:5 set -> 0101010101010101',
        why: 'priv 3.7.1 (figure 3.28): bits 6:5 of a pmpcfg entry are reserved and read as zero; QEMU 7.2 stores them',
      },
      {
        qemu: 'mstatus ones -> 800000ca007c79a0',
        spec: 'mstatus ones -> 8000000a007c79a0',
        why: 'priv 8.2.1: MPV and GVA (mstatus bits 39, 38) exist only with H; QEMU 7.2 keeps them writable with h=false',
      },
      {
        qemu: 'mstatus.MPP after writing 2 is legal: 0',
        spec: 'mstatus.MPP after writing 2 is legal: 1',
        why: 'priv 3.1.6.1: MPP is WARL and 2 (H/reserved) is not a legal mode without H; QEMU 7.2 stores it',
      },
      {
        qemu: 'satp sv48 -> 9000000000080456',
        spec: 'satp sv48 -> 8000000000080123',
        why: 'priv 4.1.11: a satp write with an unsupported MODE has no effect. vmctl implements Sv39 only (issue 2); QEMU 7.2 implements Sv48 as well. Both conform; vmctl must ignore the write',
      },
      {
        qemu: 'satp sv57 -> a000000000080456',
        spec: 'satp sv57 -> 8000000000080123',
        why: 'as for Sv48: vmctl has no Sv57, so the write has no effect',
      },
      {
        qemu: 'instret inhibited: 0',
        spec: 'instret inhibited: 1',
        why: 'priv 3.1.12: with mcountinhibit.IR set minstret does not increment; QEMU 7.2 (no icount) ignores it',
      },
      {
        qemu: 'cycle inhibited: 0',
        spec: 'cycle inhibited: 1',
        why: 'priv 3.1.12: with mcountinhibit.CY set mcycle does not increment; QEMU 7.2 ignores it',
      },
    ],
  },
  csrmap: {
    name: 'csrmap',
    differences: [
      { qemu: /(M|S) 106 = ffffffffffffffff/, spec: '$1 106 = ffffffff', why: 'priv 4.1.5: scounteren is a 32-bit register; QEMU 7.2 stores 64 bits' },
      { qemu: 'M 306 = ffffffffffffffff', spec: 'M 306 = ffffffff', why: 'priv 3.1.11: mcounteren is a 32-bit register; QEMU 7.2 stores 64 bits' },
      { qemu: 'M 24d = 0', spec: null, why: 'vstimecmp (0x24d) belongs to the H extension (Sstc with H); QEMU 7.2 provides it with h=false' },
      { qemu: 'M 3b0 = ffffffffffffffff', spec: 'M 3b0 = 3fffffffffffff', why: 'priv 3.7.1: RV64 pmpaddr holds address bits 55:2 (bits 63:54 zero); QEMU 7.2 stores 64 bits' },
      { qemu: 'M 7a1 = 2000000000000000', spec: 'M 7a1 = 0', why: 'implementation-defined (Sdtrig is optional): vmctl has no triggers, so tdata1 reads 0 ("no trigger"); QEMU 7.2 offers two mcontrol triggers' },
      { qemu: 'M 7a4 = 44', spec: null, why: 'implementation-defined: tinfo exists on QEMU 7.2 with its triggers; vmctl has none' },
      { qemu: 'M b12 = *', spec: 'M b12 = *\nM b13 = *\nM b14 = *\nM b15 = *\nM b16 = *\nM b17 = *\nM b18 = *\nM b19 = *\nM b1a = *\nM b1b = *\nM b1c = *\nM b1d = *\nM b1e = *\nM b1f = *', why: 'priv 3.1.10: mhpmcounter3..31 all exist (they may be read-only zero); QEMU 7.2 (pmu-num=16) makes 19..31 illegal' },
      { qemu: /(M|S|U) c12 = \*/, spec: '$1 c12 = *\n$1 c13 = *\n$1 c14 = *\n$1 c15 = *\n$1 c16 = *\n$1 c17 = *\n$1 c18 = *\n$1 c19 = *\n$1 c1a = *\n$1 c1b = *\n$1 c1c = *\n$1 c1d = *\n$1 c1e = *\n$1 c1f = *', why: 'priv 3.1.10 / unpriv Zihpm: hpmcounter3..31 all exist; QEMU 7.2 (pmu-num=16) makes 19..31 illegal' },
      { qemu: /M (f12|f13) = 70216/, spec: 'M $1 = 0', why: 'implementation-defined: marchid/mimpid; QEMU 7.2 reports its version, vmctl 0 (not implemented)' },
      { qemu: 'M: 121 readable', spec: 'M: 145 readable', why: 'the count after the corrections above (-0x24d, -0x7a4, +13 mhpmcounter, +13 hpmcounter)' },
      { qemu: 'S: 30 readable', spec: 'S: 43 readable', why: '+13 hpmcounter19..31' },
      { qemu: 'U: 19 readable', spec: 'U: 32 readable', why: '+13 hpmcounter19..31' },
    ],
  },
  warlfuzz: { name: 'warlfuzz' },
  traps: { name: 'traps' },
  irq: {
    name: 'irq',
    differences: [
      {
        qemu: 'priority order: 5 taken: M1 M3 M5 M7 M9',
        spec: 'priority order: 5 taken: M3 M7 M9 M1 M5',
        why: 'priv 3.1.9: simultaneous M-mode interrupts are taken in the order MEI, MSI, MTI, SEI, SSI, STI; QEMU 7.2 without AIA takes the lowest-numbered pending one',
      },
      {
        qemu: 'S priority order: 3 taken: S1 S5 S9',
        spec: 'S priority order: 3 taken: S9 S1 S5',
        why: 'priv 4.1.3: simultaneous S-mode interrupts are taken in the order SEI, SSI, STI; QEMU 7.2 without AIA takes the lowest-numbered pending one',
      },
    ],
  },
  priv: {
    name: 'priv',
    differences: [
      {
        qemu: 'MPRV after mret to S: 1 (ret 2)',
        spec: 'MPRV after mret to S: 0 (ret 2)',
        why: 'priv 3.1.6.3 (v1.12): an MRET or SRET that changes the privilege mode to a mode less privileged than M also sets MPRV=0; QEMU 7.2 leaves it',
      },
    ],
  },
  sv39: {
    name: 'sv39',
    differences: [
      {
        qemu: /(page (?:8 URX|9 URWX): S r=d w=f x=c \| SUM r=\. w=[.f]) x=\. (\| MXR r=d \| MXR\+SUM r=\.)/,
        spec: '$1 x=c $2',
        why: 'priv 4.3.1 / 4.1.1.2: S-mode may never execute from a U page, whatever SUM says; QEMU 7.2 caches the page as executable in its TLB after a SUM=1 load and then lets S execute it',
      },
    ],
  },
  pmp: { name: 'pmp' },
  smp: {
    name: 'smp',
    cpus: 2,
    differences: [
      {
        qemu: 'sc after remote store of the same value fails: 0, x=5555',
        spec: 'sc after remote store of the same value fails: 1, x=3334',
        why: 'unpriv 8.3: an SC may succeed only if no store from another hart to the reservation set occurred between the LR and the SC; QEMU 7.2 implements SC as a compare-and-swap on the value and succeeds after a store of the same value (ABA)',
      },
    ],
  },
  precise: { name: 'precise' },
  irqstress: { name: 'irqstress' },
  smc: { name: 'smc' },
  jitloops: { name: 'jitloops' },
  tlb: {
    name: 'tlb',
    differences: [
      {
        qemu: 'walk through a PTE in a hole: load d store f fetch c',
        spec: 'walk through a PTE in a hole: load 5 store 7 fetch 1',
        why: 'priv 4.3.2 step 2: if accessing a PTE violates a PMA check (here: no memory at 0x90000000), raise an access fault of the original access type; QEMU 7.2 raises a page fault when the PTE read fails',
      },
    ],
  },
  extirq: {
    name: 'extirq',
    differences: [
      {
        qemu: 'MEI and MSI together: 2 taken, first M3 then Mb',
        spec: 'MEI and MSI together: 2 taken, first Mb then M3',
        why: 'priv 3.1.9: MEI has the highest priority; QEMU 7.2 without AIA takes the lowest-numbered pending interrupt (MSI, 3) first',
      },
    ],
  },
  rvcall: { name: 'rvcall' },
  rv32all: { name: 'rv32all' },
  fuzz: { name: 'fuzz' },
  fuzzmem: { name: 'fuzzmem' },
  fuzzbr: { name: 'fuzzbr' },
  fuzzloop: { name: 'fuzzloop' },
  chaos: {
    name: 'chaos',
    differences: [
      {
        qemu: /((?:bare|sv39) block \d+: words \w+\.\.: )cause=4( epc=\w+ tval=\w+ kind=amo .*)/,
        spec: '$1cause=6$2',
        why: 'priv table 3.6: a misaligned AMO raises Store/AMO address misaligned (6); QEMU 7.2 raises load address misaligned (4)',
      },
      {
        qemu: /((?:bare|sv39) block \d+: words \w+\.\.: )cause=5( epc=\w+ tval=\w+ kind=amo .*)/,
        spec: '$1cause=7$2',
        why: 'priv table 3.6: an AMO to a location without memory raises a Store/AMO access fault (7); QEMU 7.2 raises a load access fault (5)',
      },
      {
        qemu: /(sv39 block \d+: words \w+\.\.: )cause=d( epc=\w+ tval=\w+ kind=amo .*)/,
        spec: '$1cause=f$2',
        why: 'priv table 3.6: an AMO that faults in translation raises a Store/AMO page fault (15); QEMU 7.2 raises a load page fault (13) when the page is unmapped or not readable',
      },
    ],
  },
  highcode: { name: 'highcode' },
  chunks: {
    name: 'chunks',
    differences: [
      {
        qemu: /(misaligned l[hwd] at ([0-9a-f]{16}): cause=5) tval=[0-9a-f]{16}/,
        spec: '$1 tval=$2',
        why: 'priv 3.1.16: mtval holds the address of the portion of the access that faulted; a misaligned load starting in a hole faults on its first byte, i.e. its own address. QEMU 7.2 reports the address rounded down to the access size (not even a byte of the access); its stores are right',
      },
    ],
  },
  modes: { name: 'modes' },
  ptfuzz: {
    name: 'ptfuzz',
    differences: [
      {
        qemu: /(\d+: (?:S|MPRV-S|MPRV-U) amo va=\w+ sum=\d mxr=\d -> )cause=d( tval-va=\w+ pt=-)/,
        spec: '$1cause=f$2',
        why: 'priv table 3.6: an AMO that faults in translation raises a Store/AMO page fault (15); QEMU 7.2 raises a load page fault (13) when the leaf is missing or not readable. (QEMU also sets A on a PTE when an AMO faults for lack of W, against priv 4.3.2; the guest does not compare the tables after faulting AMOs.)',
      },
    ],
  },
  bigmem: { name: 'bigmem', memoryMiB: 4096 },
  bigmem16: { name: 'bigmem16', memoryMiB: 16384 },
  highaddr: {
    name: 'highaddr',
    differences: [
      {
        qemu: /  M amoadd\.d: cause=5 (epc!=addr tval=\w+)/,
        spec: '  M amoadd.d: cause=7 $1',
        why: 'priv table 3.6: an AMO to a location without memory raises a Store/AMO access fault (7); QEMU 7.2 raises a load access fault (5)',
      },
    ],
  },
  vmfaults: {
    name: 'vmfaults',
    differences: [
      {
        qemu: / (amoadd\.d|amoswap\.w): cause=d tval=va\+0/,
        spec: ' $1: cause=f tval=va+0',
        why: 'priv 3.1.15 (table 3.6): an AMO that faults in translation raises a Store/AMO page fault (15), as on an R-only page; QEMU 7.2 raises a load page fault (13) when the page is unmapped or not readable',
      },
    ],
  },
  htif_hello: { name: 'htif_hello', machine: 'spike' },
  htif_exit: { name: 'htif_exit', machine: 'spike', exitCode: 7 },
};
