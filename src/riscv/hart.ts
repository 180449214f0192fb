// One RV64IMAC hart (+ Zicsr, Zifencei, Sstc; F/D through src/riscv/fp/execute.ts) with M/S/U
// privilege, Sv39 and PMP: the hot path of vmctl.
//
// Public interface (other layers build against it; keep it stable):
//   new Hart(hartId, mem: PhysicalMemoryMap, clock: { mtime(): number }, reservations?: ReservationSet)
//     clock.mtime() is the CLINT time base (10 MHz) as a JS number. The board creates ONE
//     ReservationSet per machine and passes it to every hart (LR/SC across harts, see reservations.ts).
//   run(maxInstructions): number   retired instructions; returns early when the hart waits in WFI
//                                  with nothing pending (`waiting`), is `halted`, or `stopRequested`
//                                  is set (the caller clears stopRequested); or when the guest polls
//                                  with WFI (`polling`: the caller may rest the host core a moment).
//   pc (number; Sv39 addresses are sign-extended, so kernel addresses are negative numbers),
//   setPc(pc), setX(i, v), getX(i) -> bigint (unsigned 64-bit), xlo/xhi (Int32Array halves, x0..x31),
//   mode (0 U, 1 S, 3 M), instret (number), flushTlb(),
//   setInterruptLevel(bit, level): device lines MSIP(3) MTIP(7) SEIP(9) MEIP(11) (also SSIP(1)/STIP(5)).
//     mip.SEIP reads as the line OR the software-writable bit (priv spec 3.1.9). A pending+enabled
//     interrupt wakes a hart in WFI.
//   nextTimerEvent(): mtime at which Sstc's stimecmp fires (Infinity when none) — for idle sleeping.
//   ecallHook: an ECALL from S-mode calls it first; true = handled (pc advances, no trap).
//   halted (HSM "stopped": run() returns 0), hsmStart(pc, opaque): start in S-mode, a0=hartid, a1=opaque.
//   flushCode(): drop translated code (jit.ts) — needed after code is written into RAM by anything
//     other than this hart's own stores (loaders after a reset, SBI remote_fence_i); FENCE.I does it too.
//     jitEnabled = false runs the pure interpreter.
//   saveState(): HartState / loadState(s): the architectural state as plain data (registers, CSRs,
//     privilege, interrupt sources, counters, LR reservation, WFI/HSM state), between runs.
//   readCsr(csr): bigint | null / writeCsr(csr, value): boolean — M-level CSR access for TypeScript
//     firmware (same WARL masks and side effects as CSRRW; mip writes set the software bits).
//   For the F/D unit (H4): fregs (Int32Array(64), register i = [2i] low word, [2i+1] high word, raw
//     bits; singles NaN-boxed), fregsF64 (Float64Array view of the same buffer), fflags, frm,
//     fpEnabled(), markFpDirty(), loadMem(lo, hi, f3) / storeMem(lo, hi, f3, vlo, vhi) (translation,
//     PMP, faults; load result in memLo/memHi), illegalInstruction(), rawInsn (bits of the current
//     instruction as fetched: 16-bit for compressed ones).
//
// Design (TinyEMU-like): registers are int32 hi/lo pairs; one loop with one switch on the opcode;
// compressed instructions are expanded through a precomputed table (compressed.ts); a soft TLB of
// 256 direct-mapped entries per access type maps a virtual page to a DataView of its RAM chunk and
// the page's offset in it (a fetch entry also the page's translated code); instructions are fetched
// straight from the current RAM page. Interrupts, Sstc and the budget are looked at between
// blocks: a block ends at SYSTEM instructions, traps, stores that make a device change an
// interrupt line, and after at most SLICE instructions.
// Hot loops and regions of a page run as translated JS functions (jit.ts), entered at taken
// backward branches, jumps, calls and returns into the page (runRegions).

import { CHUNK_SIZE, ChunkViews, D32, D64, FENCE_CELL, GuestRam } from '../memory/ram.js';
import { PhysicalMemoryMap } from '../memory/bus.js';
import { warmUpProgram, jitWarmUpProgram, WARMUP_HANDLER } from './warmup.js';
import { ReservationSet } from './reservations.js';
import { CEXP } from './compressed.js';
import { res, mul64, mulh64, mulhsu64, mulhu64, div64, divu64, div32 } from './alu.js';
import { execFp, FP_PRESENT } from './fp/execute.js';
import { compileRegion, HOT_THRESHOLD, JitStats, REGION_THRESHOLD, REGION_WINDOW, type RegionEntry } from './jit.js';
import { CHAIN, CHAIN_INVALID, CHAIN_SIZE, CHAINS, chainIndex, EXIT, EXIT_TRAP, FP_ON, FREGS, instantiateRegion, REGION_TABLE, SCRATCH, STATE_BYTES, type WasmImports, type WasmModule, T_OFF, T_SLOT, T_TAGHI, T_TAGLO, TLB_BYTES, TLB_R, TLB_W, translateModule, XH, XL } from './wasm/translate.js';
import { cachedRegion, cacheRegion } from './wasm/region-cache.js';
import { ACCESS_TABLE, ramAccess, WASM_TIER_SUPPORTED } from './wasm/access.js';
import {
  MS_SIE, MS_MIE, MS_SPIE, MS_MPIE, MS_SPP, MS_MPP_SHIFT, MS_MPP, MS_FS, MS_MPRV, MS_SUM, MS_MXR, MS_TVM, MS_TW, MS_TSR,
  MSTATUS_WMASK, SSTATUS_MASK, MSTATUS_HI, SSTATUS_HI, MIP_SSIP, MIP_STIP, MIP_SEIP, MIE_MASK, S_INTS, MEDELEG_MASK,
  EXC_INSN_ACCESS, EXC_ILLEGAL, EXC_BREAKPOINT, EXC_LOAD_MISALIGNED, EXC_LOAD_ACCESS, EXC_STORE_MISALIGNED,
  EXC_STORE_ACCESS, EXC_ECALL_U, EXC_INSN_PAGE, EXC_LOAD_PAGE, EXC_STORE_PAGE,
} from './csr-names.js';

export interface HartClock { mtime(): number }

type BlockSlot = RegionEntry | null | undefined;
/** Shared "no translated loops" table (never written). */
const NO_BLOCKS: BlockSlot[] = new Array(2048).fill(undefined);

/** Translated loops of one physical page (see jit.ts); created when its first loop is compiled. */
class PageCode {
  /** Translated loop whose head is at each halfword (null = not a translatable loop). */
  readonly blocks: BlockSlot[];
  /** Halfwords covered by translated loops: stores there drop the page's loops. */
  readonly covered = new Uint8Array(2048);
  live = 0;
  constructor(shared = false) { this.blocks = shared ? NO_BLOCKS : new Array(2048).fill(undefined); }
  clear(): void {
    this.blocks.fill(undefined);
    this.covered.fill(0);
    this.live = 0;
  }
}
/** A head where no region could be made: never entered, never counted again. */
const NO_REGION: RegionEntry = { fn: () => 0, size: Infinity, pc: 0, full: true, wasm: null, idx: 0, slot: -1 };
/** The "page without translated code". */
const NO_CODE = new PageCode(true);

const TWO32 = 4294967296;
const TLB_SIZE = 256;
const TLB_MASK = TLB_SIZE - 1;
/** An invalid TLB tag: real tags have the low 12 bits clear. */
const TLB_INVALID = 1;
/** Maximum instructions per block (interrupt/timer latency bound). */
const SLICE = 8192;
/** WFIs in a row that complete at once, with no interrupt taken in between, before run() reports
 *  the hart `polling`. One such WFI is ordinary (Linux's idle loop executes WFI with interrupts
 *  masked and takes the interrupt just after); a loop of them is a wait for memory. */
const WFI_POLLS = 16;
/** A hart whose slices keep ending within SPIN_SPAN bytes of code (see spinProbe) is stepped for
 *  at most SPIN_STEPS instructions to see whether it spins. */
const SPIN_SPAN = 64;
const SPIN_STEPS = 64;
/** A probe that finds work (not a spin) skips the next 1, 2, 4 … SPIN_BACKOFF_MAX suspect slices
 *  of the same stretch of code: probing every slice of a hot loop cost its hart 4-5% (bench,
 *  interp on a hart with `smp`). */
const SPIN_BACKOFF_MAX = 64;
/** The registers a spin probe started from. */
const SPIN_REGS = new Int32Array(64 + 64);

const ACC_READ = 0, ACC_WRITE = 1, ACC_FETCH = 2;
const PAGE_FAULT = [EXC_LOAD_PAGE, EXC_STORE_PAGE, EXC_INSN_PAGE];
const ACCESS_FAULT = [EXC_LOAD_ACCESS, EXC_STORE_ACCESS, EXC_INSN_ACCESS];

/** Interrupt priority order (priv spec 3.1.9): MEI, MSI, MTI, SEI, SSI, STI. */
const IRQ_ORDER = [11, 3, 7, 9, 1, 5];

const MISA_LO_BASE = (1 << 0) | (1 << 2) | (1 << 8) | (1 << 12) | (1 << 18) | (1 << 20); // A C I M S U
const MISA_FD = (1 << 3) | (1 << 5);

/** The WebAssembly tier on by default (VMCTL_WASM_TIER=0: off, for measuring against). */
const WASM_TIER = WASM_TIER_SUPPORTED && (typeof process === 'undefined' || process.env.VMCTL_WASM_TIER !== '0');
/** Reaches of a loop head, jump target or page entry that make a wasm region there (Hart.wasmHot).
 *  Measured (Node 24, Linux guest in one process, load 2-3; wall / CPU s): at 256 (jit.ts's
 *  HOT_THRESHOLD) the boot made 2 800 regions (11 MiB of wasm) and took 2.0-2.3 / 3.1-3.2 s against
 *  1.2-1.7 / 1.6-1.8 without the tier, mke2fs 2.8-3.4 s against 2.2; at 1024 the boot 2.3-2.4 /
 *  2.4; at 4096 1.3-1.4 / 1.8; at 8192 1.2 / 1.8 (as without the tier) with every busybox program
 *  as fast as or faster than at 256 or 4096 (the whole vmctl=bench run 17.1 s against 24.0 at 256,
 *  18.6 at 4096 and 28.3 without the tier); at 16384 the boot 1.8-1.9 s. */
const WASM_HOT = 8192;
/** VMCTL_WASM_HOT=N: another threshold (for measuring, and for running the ISA tests with the
 *  tier taking nearly all code). */
const WASM_HOT_ENV = typeof process === 'undefined' ? NaN : Number(process.env.VMCTL_WASM_HOT ?? NaN);
/** The translation cache (wasm/region-cache.ts) on by default (VMCTL_WASM_CACHE=0: off, for
 *  measuring against). */
const WASM_CACHE = typeof process === 'undefined' || process.env.VMCTL_WASM_CACHE !== '0';
/** Reaches at which the translation cache is asked for a region there (Hart.wasmProbe), once:
 *  a hit costs an instantiation, not a translation, so code a machine before this one made a
 *  region of gets it long before wasmHot. */
const WASM_PROBE = 64;
const WASM_PROBE_ENV = typeof process === 'undefined' ? NaN : Number(process.env.VMCTL_WASM_PROBE ?? NaN);
/** The access module is made again at most once per this many instructions (a guest touching
 *  new RAM chunks one after the other would otherwise have it made for each). */
const WASM_REFRESH = 1 << 20;


/** Views of no chunk: what an invalid TLB entry points at (never read: its tag never matches). */
const DUMMY = new ChunkViews(new WebAssembly.Memory({ initial: 1, maximum: 1, shared: true }));
const DUMMY_16 = DUMMY.u16;

function filled<T>(v: T): T[] {
  const a: T[] = new Array(TLB_SIZE);
  for (let i = 0; i < TLB_SIZE; i++) a[i] = v;
  return a;
}

/** Soft TLB for one access type: per entry, the views of the page's chunk (one array per width,
 *  so the hot path indexes a typed array directly) and the page's byte offset in it. */
export class Tlb {
  readonly tagLo: Int32Array;
  readonly tagHi: Int32Array;
  /** Byte offset of the page inside its chunk. */
  readonly off: Int32Array;
  /** The chunk's slot in the hart's RAM access module (the WebAssembly tier: wasm/access.ts). */
  readonly slot: Int32Array;
  /** Physical address of the page. */
  readonly pa = new Float64Array(TLB_SIZE);
  readonly u8: Uint8Array[] = filled(DUMMY.u8);
  readonly u16: Uint16Array[] = filled(DUMMY.u16);
  readonly i32: Int32Array[] = filled(DUMMY.i32);
  readonly f64: Float64Array[] = filled(DUMMY.f64);
  /** The page's chunk, for doublewords whose bits are a NaN (ChunkViews.load64/store64). */
  readonly chunk: ChunkViews[] = filled(DUMMY);
  /** Fetch TLB only: the page's translated code (NO_CODE: none yet), so that entering a page
   *  needs no lookup in Hart.pageCode (a Map: 4% of the busybox programs' CPU time). */
  readonly code: PageCode[] = new Array<PageCode>(TLB_SIZE).fill(NO_CODE);
  /** The int32 arrays are views on `buffer` from byte `at` (the hart's state memory, which
   *  translated wasm code reads: wasm/translate.ts), or on a buffer of their own. */
  constructor(buffer: ArrayBuffer = new ArrayBuffer(TLB_BYTES), at = 0) {
    this.tagLo = new Int32Array(buffer, at + T_TAGLO, TLB_SIZE).fill(TLB_INVALID);
    this.tagHi = new Int32Array(buffer, at + T_TAGHI, TLB_SIZE);
    this.off = new Int32Array(buffer, at + T_OFF, TLB_SIZE);
    this.slot = new Int32Array(buffer, at + T_SLOT, TLB_SIZE);
  }
  flush(): void { this.tagLo.fill(TLB_INVALID); }
}

export class Hart {
  // ---- architectural state ----
  /** x registers as int32 halves; index 32 is a write sink so that writes to x0 vanish. */
  readonly xlo: Int32Array;
  readonly xhi: Int32Array;
  pc = 0;
  mode = 3;
  /** Views on the state memory (wasm/translate.ts FREGS), where wasm code loads and stores them. */
  readonly fregs: Int32Array;
  readonly fregsF64: Float64Array;
  fflags = 0;
  frm = 0;

  /** mstatus low word (the high word is constant apart from SD, computed on read). */
  mstatus = 0;
  mie = 0;
  /** Effective mip (recomputed whenever a source changes). */
  mip = 0;
  private mipSw = 0;      // SSIP, STIP, SEIP written by software
  private mipLines = 0;   // levels driven by devices
  private stipTimer = 0;  // Sstc comparator output (MIP_STIP or 0)
  medeleg = 0;
  mideleg = 0;
  mcounteren = 0;
  scounteren = 0;
  menvcfgLo = 0;
  menvcfgHi = 0;
  senvcfg = 0;
  mcountinhibit = 0;
  /** Plain 64-bit CSRs (mtvec, mepc, mscratch, satp, stimecmp, ...) as lo/hi by CSR number. */
  private readonly cLo = new Int32Array(4096);
  private readonly cHi = new Int32Array(4096);
  private satpSv39 = false;
  private satpRoot = 0;    // physical address of the root page table
  private stimecmp = Infinity;
  readonly pmpcfg = new Uint8Array(16);
  private readonly pmpAddrLo = new Int32Array(16);
  private readonly pmpAddrHi = new Int32Array(16);
  private readonly pmpStart = new Float64Array(16);
  private readonly pmpEnd = new Float64Array(16);
  private pmpActive = 0;

  // counters: value = base + offset (numbers: exact below 2^53)
  instret = 0;
  private blockN = 0;       // instructions retired so far in the current block
  private cycleOff = 0;
  private instretOff = 0;
  private cycleFrozen = 0;
  private instretFrozen = 0;

  /** Exact pc while `pc` is NaN (see exactPc). */
  private farLo = 0;
  private farHi = 0;

  // ---- run control ----
  /** @internal set when a device changed an interrupt line (read by translated loops too). */
  linesChanged = false;
  waiting = false;
  /**
   * Set by run() when it returned because the guest polls, waiting for another hart (or a device)
   * to change memory or raise an interrupt:
   * - WFI keeps completing at once (an interrupt is pending in mip & mie that the hart does not
   *   take, being masked by mstatus, so WFI may not wait: priv spec 3.3.3), WFI_POLLS times in a
   *   row with no interrupt taken between. OpenSBI 1.1's secondary harts do that until Linux
   *   starts them: they wait in sbi_hsm_hart_wait with the coldboot IPI (MSIP) still pending.
   * - or, on a hart of a machine whose harts run on several threads (`smp`), the hart spins: a
   *   loop that comes back to the same pc with every register unchanged, writing neither memory
   *   nor a CSR on the way (spinProbe), for at least two slices of the caller, e.g. OpenSBI's
   *   _wait_for_boot_hart or a spinlock whose holder is not running.
   * A hart on a thread of its own would spin a host core there, taking it from the hart it waits
   * for on a host with fewer free cores than harts. The caller may rest the host core a moment
   * (as a hypervisor does on a pause-loop exit), ending the rest early when something is sent to
   * the hart (a store by another hart does not end it: the rest must be short); run() clears it.
   * Architecturally nothing changes: the hart runs its loop later, and a loop that reads a device
   * register or the time goes on after each rest.
   */
  polling = false;
  /** WFIs in a row that completed at once (see polling). */
  private wfiPolls = 0;
  /** pc at the end of the last run() (a spin shows as slices that end in the same few bytes). */
  private spinPc = NaN;
  private spinMode = -1;
  /** The last two runs of a whole budget ended within SPIN_SPAN bytes: probe at the next one. */
  private spinSuspect = false;
  /** Suspect slices still to skip, and the next skip (see SPIN_BACKOFF_MAX). */
  private spinSkip = 0;
  private spinGap = 1;
  halted = false;
  stopRequested = false;
  ecallHook: ((hart: Hart) => boolean) | null = null;
  /** Bits of the current instruction (as fetched; 16-bit for compressed) for illegal-instruction mtval. */
  rawInsn = 0;
  /** Results of loadMem/physical reads. */
  memLo = 0;
  memHi = 0;
  private csrLo = 0;
  private csrHi = 0;

  // ---- soft TLB and fetch page ----
  private readonly tlbR: Tlb;
  private readonly tlbW: Tlb;
  private readonly tlbX = new Tlb();
  private fVa = NaN;          // virtual address of the current fetch page (NaN = none)
  private fView: Uint16Array = DUMMY_16;
  private fOff = 0;       // index (in halfwords) of the fetch page inside fView
  private fCode: PageCode = NO_CODE;
  private fPn = 0;        // physical page number of the fetch page
  /** Hotness of loop heads (backward-branch targets), hashed by physical address. */
  private readonly hot = new Uint16Array(1 << 14);
  /** Second-tier hotness (see REGION_THRESHOLD), counted over windows of REGION_WINDOW instructions:
   *  only code that stays hot is worth a region. A head's count is the instructions interpreted
   *  since the previous loop head or jump target was reached (what a region there would run
   *  instead), so a long body reached less often counts as much as a short one reached often. */
  private readonly hot2 = new Uint32Array(1 << 14);
  /** Block starts the interpreter has run (taken and not-taken branch outcomes, jump targets, exits
   *  of translated code), hashed as `hot` is: a region takes in only code that has run
   *  (compileRegion's `seen`). A collision only lets in a block that has not run. */
  private readonly seen = new Uint8Array(1 << 14);
  private hotWindowEnd = 0;
  /** Other harts run on other threads over the same RAM: aligned doublewords are then read and
   *  written in one 64-bit access (the Float64Array views), so that no hart sees one torn (RVWMO
   *  single-copy atomicity). A hart alone uses two 32-bit accesses, which measured faster
   *  (docs/guest-ram.md); devices' DMA does not race with the hart's own doublewords. */
  smp = false;
  /** Loop translation on/off (jit.ts); off = pure interpreter. */
  jitEnabled = true;
  /** The WebAssembly tier (wasm/translate.ts) for warm code, instead of jit.ts's first tier.
   *  VMCTL_WASM_TIER=0 turns it off. */
  wasmTier = WASM_TIER;
  /** Reaches that make a wasm region (WASM_HOT; tests lower it). */
  wasmHot = WASM_HOT_ENV >= 1 ? WASM_HOT_ENV : WASM_HOT;
  /** Reaches at which the translation cache is asked (WASM_PROBE; -1: never, only at wasmHot). */
  wasmProbe = !WASM_CACHE ? -1 : WASM_PROBE_ENV >= 1 ? WASM_PROBE_ENV : WASM_PROBE;
  /** The translation cache (wasm/region-cache.ts) used (VMCTL_WASM_CACHE=0: not; tests). */
  wasmCache = WASM_CACHE;
  /** Instructions interpreted on behalf of a head that make a full region there (REGION_THRESHOLD;
   *  the warm-up lowers it). */
  regionHot = REGION_THRESHOLD;
  /** Registers and the read/write soft TLBs live here, where translated wasm code reads them. */
  private readonly wasmState = new WebAssembly.Memory({ initial: STATE_BYTES / 65536, maximum: STATE_BYTES / 65536 });
  /** The pc translated wasm code left with (low, high word), and why (EXIT_*). */
  private readonly exitPc: Int32Array;
  /** What wasm regions import (wasm/translate.ts). */
  private readonly wasmImports: WasmImports;
  /** RAM access functions for wasm code (wasm/access.ts): the table regions call them through,
   *  the chunk of each slot (null: a slot no longer used) and the slot of each chunk. */
  private readonly wasmTable = new WebAssembly.Table({ element: 'anyfunc', initial: ACCESS_TABLE, maximum: ACCESS_TABLE });
  private wasmChunks: (ChunkViews | null)[] = [];
  private wasmSlots = new Map<ChunkViews, number>();
  /** A soft-TLB entry holds a chunk the access module lacks (slot -1: wasm code leaves before
   *  accesses to it); the module is made again at the next region entry at least
   *  WASM_REFRESH instructions after the last time (instret then). */
  private wasmStale = true;
  private wasmRefreshed = -Infinity;
  /** The region table (wasm/translate.ts, REGION_TABLE): every wasm region function made since
   *  the last drop of all translated code, by slot (RegionEntry.slot); regions chain through it. */
  private readonly regionTable = new WebAssembly.Table({ element: 'anyfunc', initial: REGION_TABLE, maximum: REGION_TABLE });
  private regionSlots = 0;
  /** The chain cache (translate.ts, CHAIN): entry e at [4e, 4e + 4). */
  private readonly chain: Int32Array;
  /** The chain cache entries (index × 4) filled since it was last emptied, chainCount of them. */
  private readonly chainFilled = new Int32Array(CHAIN_SIZE);
  private chainCount = 0;
  /** Chained calls so far (translate.ts CHAINS; jitStats.wasmChains). */
  private readonly chains: Uint32Array;
  /** translate.ts FP_ON, FP_DIRTY, FP_FLAGS, FP_FRM: the FP unit is on; wasm code wrote an f
   *  register; fflags bits wasm code raised; frm. */
  private readonly fpState: Int32Array;
  /** Full regions translated so far (statistics; tests check that a path was translated). */
  regionsCompiled = 0;
  /** The translator's figures for this hart (bench --verbose, the VM's log). */
  readonly jitStats = new JitStats();
  /** Set by a translated loop whose instruction trapped. */
  jitTrap = false;
  /** Set when a store dropped translated code (a running loop then stops after that store). */
  codeDirty = false;
  /** runRegions stopped at translated code for want of budget: execBlock ends there, rather than
   *  interpret what is left of its budget (up to a region's size: 1.5-3.5% of the bare-metal
   *  guests' instructions, a fifth of their time), and the next block enters it at once. */
  private budgetOut = false;
  private pageCode = new Map<number, PageCode>();
  private readonly bytePa = new Float64Array(8);
  /** The last LR: physical address and the value it loaded (SC compares against it). */
  private lrPa = -1;
  private lrLo = 0;
  private lrHi = 0;
  /** Offset in its chunk of the RAM operand found by ramChunk. */
  private amoOff = 0;

  readonly reservations: ReservationSet;

  constructor(readonly hartId: number, readonly mem: PhysicalMemoryMap, readonly clock: HartClock, reservations?: ReservationSet) {
    this.reservations = reservations ?? new ReservationSet();
    const st = this.wasmState.buffer;
    this.xlo = new Int32Array(st, XL, 33);
    this.xhi = new Int32Array(st, XH, 33);
    this.tlbR = new Tlb(st, TLB_R);
    this.tlbW = new Tlb(st, TLB_W);
    this.exitPc = new Int32Array(st, EXIT, 3);
    this.chains = new Uint32Array(st, CHAINS, 1);
    this.fpState = new Int32Array(st, FP_ON, 4);
    this.fregs = new Int32Array(st, FREGS, 64);
    this.fregsF64 = new Float64Array(st, FREGS, 32);
    this.chain = new Int32Array(st, CHAIN, 4 * CHAIN_SIZE);
    for (let i = 0; i < this.chain.length; i += 4) this.chain[i] = CHAIN_INVALID;
    const scratch = new Int32Array(st, SCRATCH, 2);
    this.wasmImports = {
      s: this.wasmState, t: this.wasmTable, c: this.regionTable, r: this.reservations.memory,
      ld: (pc, lo, hi, f3) => {
        this.pc = pc;
        this.jitStats.wasmSlow++;
        if (!this.loadSlow(lo, hi, f3)) return 0;
        scratch[0] = this.memLo; scratch[1] = this.memHi;
        return 1;
      },
      st: (pc, lo, hi, f3, vlo, vhi) => {
        this.pc = pc;
        this.jitStats.wasmSlow++;
        if (!this.storeSlow(lo, hi, f3, vlo, vhi)) return 0;
        if (this.codeDirty || this.linesChanged) { this.codeDirty = false; return 2; }
        return 1;
      },
      fp: (pc, insn) => {
        this.pc = pc;
        this.rawInsn = insn;
        this.jitStats.wasmFp++;
        return execFp(this, insn) ? 1 : 0;
      },
      x: (pc, insn) => {
        this.pc = pc;
        this.jitStats.wasmHartExec++;
        const rd0 = (insn >>> 7) & 31;
        if (!this.execAmo(insn, insn >>> 0, rd0 === 0 ? 32 : rd0)) return 0;
        if (this.codeDirty || this.linesChanged) { this.codeDirty = false; return 2; }
        return 1;
      },
    };
    this.xlo[10] = hartId;
    if (!warmedUp) { warmedUp = true; warmUp(); }
  }

  // ================= public helpers (not hot) =================

  setPc(pc: number | bigint): void {
    if (typeof pc === 'bigint') {
      const v = BigInt.asUintN(64, pc);
      this.pc = this.exactPc(Number(BigInt.asIntN(32, v)), Number(BigInt.asIntN(32, v >> 32n)));
    } else this.pc = pc;
  }

  /** A pc from a 64-bit value. pc is a JS number, exact for |pc| < 2^53, which covers every
   *  address that can hold code (Sv39 addresses and physical addresses are far smaller). Any other
   *  target can only fault on fetch: it is kept exactly in farLo/farHi (pc = NaN) so that the fault
   *  reports it exactly in xepc/xtval (priv spec 3.1.14, 3.1.16). */
  private exactPc(lo: number, hi: number): number {
    if (((hi + 0x200000) >>> 0) < 0x400000) return hi * TWO32 + (lo >>> 0);
    this.farLo = lo; this.farHi = hi;
    return NaN;
  }

  setX(i: number, v: bigint | number): void {
    if (i === 0) return;
    const b = BigInt.asUintN(64, BigInt(v));
    this.xlo[i] = Number(BigInt.asIntN(32, b));
    this.xhi[i] = Number(BigInt.asIntN(32, b >> 32n));
  }

  /** Register value as an unsigned 64-bit BigInt. */
  getX(i: number): bigint {
    return (BigInt(this.xhi[i] >>> 0) << 32n) | BigInt(this.xlo[i] >>> 0);
  }

  setInterruptLevel(bit: number, level: boolean): void {
    const m = 1 << bit;
    this.mipLines = level ? this.mipLines | m : this.mipLines & ~m;
    this.polling = false; // a device or another hart drove a line (an IPI, even to a line already up): look again
    this.updateMip();
    // A device store of this hart (CLINT msip/mtimecmp, PLIC) may have raised it: end the block
    // after that store so that the interrupt is taken at once, as on hardware.
    this.linesChanged = true;
  }

  /** HSM hart_start (SBI spec): S-mode at `pc`, satp = 0, SIE = 0, a0 = hartid, a1 = opaque. */
  hsmStart(pc: number, opaque: bigint | number): void {
    this.mode = 1;
    this.setPc(pc);
    this.cLo[0x180] = 0; this.cHi[0x180] = 0; this.satpSv39 = false;
    this.mstatus &= ~MS_SIE;
    this.setX(10, this.hartId);
    this.setX(11, opaque);
    this.halted = false;
    this.waiting = false;
    this.wfiPolls = 0;
    this.flushTlb();
  }

  /** mtime value at which stimecmp raises STIP (Infinity if Sstc is off or already pending). */
  nextTimerEvent(): number {
    if (!this.stce() || this.stipTimer !== 0) return Infinity;
    return this.stimecmp;
  }

  flushTlb(): void {
    this.tlbR.flush();
    this.tlbW.flush();
    this.tlbX.flush();
    this.fVa = NaN;
    this.chainClear();
  }

  /** Empties the chain cache (wasm regions then chain only through runRegions until the hart
   *  enters the regions again): whenever translated code is dropped or the fetch translation
   *  (satp, SFENCE.VMA, privilege mode, MPRV …: flushTlb) may have changed. */
  private chainClear(): void {
    // only the entries filled since the last time: flushTlb runs at every trap and xRET that
    // changes the privilege mode, where clearing all 2048 made a stream of interrupts outrun the
    // guest (irqstress)
    const c = this.chain, f = this.chainFilled;
    for (let i = 0; i < this.chainCount; i++) c[f[i]] = CHAIN_INVALID;
    this.chainCount = 0;
  }

  /** A RAM chunk at physical [pa, pa+len) was dropped (balloon): forgets every reference to its
   *  memory (soft-TLB views, the fetch page), so that the host can free it, and the code
   *  translated from it. Not hot: called between instructions, by a device or the board. */
  dropRam(pa: number, len: number): void {
    this.flushTlb();
    for (const t of [this.tlbR, this.tlbW, this.tlbX]) {
      t.u8.fill(DUMMY.u8);
      t.u16.fill(DUMMY.u16);
      t.i32.fill(DUMMY.i32);
      t.f64.fill(DUMMY.f64);
      t.chunk.fill(DUMMY);
    }
    this.tlbX.code.fill(NO_CODE);
    this.fView = DUMMY_16;
    this.fCode = NO_CODE;
    // the RAM access module imports the chunk
    this.wasmForget();
    const first = Math.floor(pa / 4096);
    const end = first + Math.ceil(len / 4096);
    if (this.pageCode.size !== 0) for (const pn of [...this.pageCode.keys()]) if (pn >= first && pn < end) this.pageCode.delete(pn);
  }

  /** Drops all translated code (FENCE.I; the board calls it after writing code into RAM by other
   *  means than this hart's stores, e.g. loading images into a machine that has run, or for SBI
   *  remote_fence_i). */
  flushCode(): void {
    if (this.pageCode.size === 0) return;
    this.chainClear();
    this.pageCode = new Map();
    this.tlbX.code.fill(NO_CODE);
    this.fCode = NO_CODE;
    this.fVa = NaN; // the next fetch looks its page up again
  }

  /** Translates code at `off` of the fetch page (first tier: a single-block loop, or a region of
   *  the WebAssembly tier when that is on; `full`: a region of jit.ts). */
  private compileAt(va: number, pn: number, slot: number, view: Uint16Array, base: number, off: number, full: boolean, probe = false): PageCode {
    // the translation cache: a region made before from the same code (`probe`: only that)
    const wasm = !full && this.wasmTier;
    let cached: WasmModule | null = null;
    if (wasm && this.wasmCache && va === va) {
      const t0 = performance.now();
      cached = cachedRegion(va + off, view, base, this.smp);
      if (cached === null) {
        this.jitStats.wasmCacheMisses++;
        if (probe) { this.jitStats.wasmMs += performance.now() - t0; return this.pageCode.get(pn) ?? NO_CODE; }
      }
    } else if (probe) return this.pageCode.get(pn) ?? NO_CODE;
    let code = this.pageCode.get(pn);
    if (code === undefined) {
      code = new PageCode();
      this.pageCode.set(pn, code);
      const x = this.tlbX;
      for (let e = 0; e < TLB_SIZE; e++) if (x.pa[e] === pn * 4096) x.code[e] = code;
    }
    this.fCode = code;
    // the region table full: no wasm region until execBlock has dropped all translated code
    if (wasm && this.regionSlots >= REGION_TABLE) { code.blocks[slot] = undefined; return code; }
    if (wasm) this.wasmFresh();
    const t0 = performance.now();
    const seen = this.seen, hash = (pn & 7) << 11;
    let r;
    if (wasm) {
      let m = cached;
      if (m === null) {
        m = translateModule(view, base, off, this.smp);
        if (m !== null && this.wasmCache && va === va) cacheRegion(va + off, view, base, this.smp, m);
      } else this.jitStats.wasmCached++;
      r = m === null ? null : instantiateRegion(m, this.wasmImports);
    } else r = compileRegion(view, base, off, full, this.smp, (o) => seen[hash | (o >> 1)] !== 0);
    if (wasm) this.jitStats.wasmMs += performance.now() - t0; else this.jitStats.compileMs += performance.now() - t0;
    if (r === null) {
      const old = code.blocks[slot];
      // A first-tier loop stays when no region could be made from its head.
      if (!full) code.blocks[slot] = null; else if (old === undefined || old === null || old.full) code.blocks[slot] = NO_REGION;
      return code;
    }
    if ('bytes' in r) {
      this.jitStats.wasmRegions++;
      this.jitStats.wasmBytes += r.bytes;
      const tix = this.regionSlots++;
      this.regionTable.set(tix, r.body);
      // Entries of jit.ts's regions stay (made for hot code before the tier was switched on).
      r.entries.forEach((o, idx) => {
        const old = code.blocks[o >> 1];
        if (old === undefined || old === null || !old.full) code.blocks[o >> 1] = { fn: NO_REGION.fn, size: r.size, pc: o, full: false, wasm: r.fn, idx, slot: tix };
      });
    } else {
      if (full) { this.regionsCompiled++; this.jitStats.regions++; } else this.jitStats.loops++;
      // A dry run through its exit sequence (no case at -1): a function first optimized while it
      // runs (on-stack replacement) then has type feedback for the way out too.
      const pc = this.pc;
      r.fn(this, 0, -1, 0, this.xlo, this.xhi, this.tlbR, this.tlbW, this.reservations);
      this.pc = pc;
      for (const o of r.entries) code.blocks[o >> 1] = { fn: r.fn, size: r.size, pc: o, full, wasm: null, idx: 0, slot: -1 };
    }
    const cv = r.covered;
    for (let i = 0; i < cv.length; i += 2) {
      code.covered[cv[i] >> 1] = 1;
      if (cv[i + 1] === 4) code.covered[(cv[i] >> 1) + 1] = 1;
    }
    if (code.live++ === 0) {
      // The page now holds translated code: it is no longer writable through the soft TLB.
      const w = this.tlbW;
      for (let e = 0; e < TLB_SIZE; e++) if (w.tagLo[e] !== TLB_INVALID && w.pa[e] === pn * 4096) w.tagLo[e] = TLB_INVALID;
    }
    return code;
  }

  /** Makes the RAM access module again when it is stale, at most once per WASM_REFRESH. */
  private wasmFresh(): void {
    if (this.wasmStale && this.instret - this.wasmRefreshed >= WASM_REFRESH) this.wasmRefresh();
  }

  /** Makes the RAM access module again with every chunk allocated now (new ones get new slots)
   *  and gives the soft TLB entries their chunks' slots. */
  private wasmRefresh(): void {
    const ram = this.mem.ram;
    for (let i = 0; i < ram.chunkCount; i++) {
      if (!ram.isAllocated(i)) continue;
      const v = ram.views(i);
      if (!this.wasmSlots.has(v)) { this.wasmSlots.set(v, this.wasmChunks.length); this.wasmChunks.push(v); }
    }
    ramAccess(this.wasmChunks, this.wasmTable);
    for (const t of [this.tlbR, this.tlbW]) for (let e = 0; e < TLB_SIZE; e++) t.slot[e] = this.wasmSlots.get(t.chunk[e]) ?? -1;
    this.wasmStale = false;
    this.wasmRefreshed = this.instret;
    this.jitStats.wasmResets++;
  }

  /** Forgets the RAM access module's chunks (the balloon dropped some): every slot is given up,
   *  so that the chunks' memories can be freed; the module is made again before wasm code next
   *  reaches RAM. The soft TLB has been flushed (no entry holds a slot). */
  private wasmForget(): void {
    this.wasmChunks = [];
    this.wasmSlots = new Map();
    ramAccess([], this.wasmTable);
    this.wasmStale = true;
    this.wasmRefreshed = -Infinity;
  }

  /** @internal The RAM chunks the wasm tier's access module holds now (tests: none after dropRam). */
  wasmRamChunks(): number { return this.wasmSlots.size; }

  /** A TLB entry's slot for chunk `v` in the RAM access module (-1: none yet, which makes it
   *  stale: see wasmStale). */
  private slotOf(v: ChunkViews): number {
    const s = this.wasmSlots.get(v);
    if (s !== undefined) return s;
    this.wasmStale = true;
    return -1;
  }

  /** Runs the wasm region of `blk` (see runRegions); 0 without running it when the tier was
   *  switched off, or, for harts sharing a thread, a hart holds an LR reservation (their wasm
   *  stores do not look at reservations: no other hart runs meanwhile to take one). */
  private runWasm(blk: RegionEntry, fVa: number, budget: number): number {
    if ((!this.smp && this.reservations.active[0] !== 0) || !this.wasmTier) { this.pc = fVa + blk.pc; return 0; }
    this.wasmFresh();
    // the chain cache maps this pc to the region from now on (regions leaving for it go on there)
    const pc = fVa + blk.pc, lo = pc | 0, c = this.chain, e = chainIndex(lo) << 2;
    if (c[e] === CHAIN_INVALID) this.chainFilled[this.chainCount++] = e;
    c[e] = lo; c[e + 1] = Math.floor(pc / TWO32) | 0; c[e + 2] = blk.slot; c[e + 3] = blk.idx;
    const fp = this.fpState;
    fp[0] = this.fpEnabled() ? 1 : 0; // mstatus and frm do not change while wasm code runs
    fp[3] = this.frm;
    const n = blk.wasm!(fVa, blk.idx, blk.pc, budget, 0);
    // an f register written or flags raised: FS = Dirty; without a branch, whose first taking
    // by a guest long after the warm-up would throw V8's optimized code of the loop away
    const fl = fp[2], dirty = fp[1] | fl;
    this.fflags |= fl;
    this.mstatus |= ((dirty | -dirty) >> 31) & MS_FS;
    fp[1] = 0; fp[2] = 0;
    const x = this.exitPc;
    if (x[2] === EXIT_TRAP) this.jitTrap = true; // the pc is the trap vector
    else this.pc = this.exactPc(x[0], x[1]);
    this.jitStats.wasmInsns += n;
    this.jitStats.wasmExits[x[2]]++;
    this.jitStats.wasmChains += this.chains[0]; this.chains[0] = 0;
    return n;
  }

  /** Runs translated regions (jit.ts) from `blk`, on while the next pc heads a region of the same
   *  page and the budget allows; returns the instructions retired (h.pc = next pc). The one call
   *  site of region functions: its feedback turns megamorphic in the warm-up, so that V8 does not
   *  deoptimize the interpreter each time a new region runs. */
  private runRegions(blk: RegionEntry, fVa: number, budget: number, blocks: BlockSlot[]): number {
    const xl = this.xlo, xh = this.xhi, r = this.tlbR, w = this.tlbW;
    const fVa0 = fVa, blocks0 = blocks;
    let n = 0, hash = (this.fPn & 7) << 11;
    // (execBlock's call sites only read jitTrap: a store there would be code V8 has no feedback
    // for until a region first traps at that site, and its optimized execBlock deoptimizes then)
    this.budgetOut = false; this.jitTrap = false;
    for (;;) {
      const m = blk.wasm !== null ? this.runWasm(blk, fVa, budget - n) : blk.fn(this, fVa, blk.pc, budget - n, xl, xh, r, w, this.reservations);
      n += m;
      if (this.jitTrap || this.linesChanged) break;
      const d = this.pc - fVa;
      if (!(d >= 0 && d <= 4092)) {
        // Another page: wasm regions chain on into its wasm region, if the fetch TLB maps it
        // (a call, a return, a jump to another page; else the interpreter fetches it).
        if (blk.wasm === null || m === 0) break;
        const t = this.pc, lo = t | 0, hi = Math.floor(t / TWO32) | 0;
        const x = this.tlbX, e = (lo >>> 12) & TLB_MASK, o = lo & 4095;
        if (x.tagLo[e] !== (lo & -4096) || x.tagHi[e] !== hi || o > 4092) break;
        const nb = x.code[e].blocks[o >> 1];
        hash = ((x.pa[e] / 4096) & 7) << 11;
        this.seen[hash | (o >> 1)] = 1;
        if (nb === undefined || nb === null || nb.wasm === null) break;
        if (n + nb.size > budget) { this.budgetOut = true; break; }
        fVa = t - o; blocks = x.code[e].blocks; blk = nb;
        continue;
      }
      this.seen[hash | (d >> 1)] = 1;
      // m = 0: it left before its first instruction (a load or store the interpreter must do)
      if (m === 0) break;
      const next = blocks[d >> 1];
      if (next === undefined || next === null) break;
      if (n + next.size > budget) { this.budgetOut = true; break; }
      blk = next;
    }
    this.jitStats.translatedInsns += n;
    // Left for code of the fetch page where no translated code starts: see exitedTo.
    if (this.wasmTier && !this.jitTrap) {
      const d = this.pc - fVa0;
      if (d >= 0 && d <= 4092 && blocks0[d >> 1] === undefined) this.exitedTo(d);
    }
    return n;
  }

  /** Translated code left for offset `off` of the fetch page, where no translated code starts
   *  (a JALR's target: a function called through a pointer, a return point; a branch out of a
   *  region cut at its size limit; the way out of a jit.ts region). The interpreter counts only
   *  the loop heads, jump targets and page entries it reaches itself, so code reached this way
   *  stayed interpreted (md5sum: 16% of its instructions, mostly md5's block function, called
   *  through a pointer; measured with an opcode and exit histogram): the exit counts as a reach
   *  of `off`, which makes a wasm region there at wasmHot as those do. */
  private exitedTo(off: number): void {
    const slot = off >> 1, h = ((this.fPn & 7) << 11) | slot;
    const c = ++this.hot[h];
    if (c < this.wasmHot) { if (c === this.wasmProbe) this.compileAt(this.fVa, this.fPn, slot, this.fView, this.fOff, off, false, true); return; }
    this.hot[h] = 0;
    this.compileAt(this.fVa, this.fPn, slot, this.fView, this.fOff, off, false);
  }

  /** A store to RAM at `pa`: drops the page's translated loops if the bytes were part of one. */
  private storeToCode(pa: number, size: number): void {
    const pn = Math.floor(pa / 4096);
    const o = pa - pn * 4096;
    const c = this.pageCode.get(pn);
    if (c !== undefined && c.live !== 0) {
      for (let i = o >> 1; i <= Math.min(2047, (o + size - 1) >> 1); i++) {
        if (c.covered[i]) { c.clear(); this.chainClear(); this.codeDirty = true; break; }
      }
    }
    if (o + size > 4096) this.storeToCode((pn + 1) * 4096, o + size - 4096);
  }

  /** @internal A jump to (lo, hi) from translated code (jit.ts): pc as the interpreter sets it. */
  jumpFar(lo: number, hi: number): void { this.pc = this.exactPc(lo, hi); }

  fpEnabled(): boolean { return FP_PRESENT && (this.mstatus & MS_FS) !== 0; }
  markFpDirty(): void { this.mstatus |= MS_FS; }

  /** Raises illegal-instruction for the current instruction (mtval = its bits). */
  illegalInstruction(): void {
    this.trap(EXC_ILLEGAL, false, this.rawInsn, 0);
  }

  /** Reads a CSR with M-level access (for firmware written in TypeScript; not the hot path).
   *  null = no such CSR. */
  readCsr(csr: number): bigint | null {
    const mode = this.mode;
    this.mode = 3;
    const ok = this.csrRead(csr);
    this.mode = mode;
    if (!ok) return null;
    return (BigInt(this.csrHi >>> 0) << 32n) | BigInt(this.csrLo >>> 0);
  }

  /** Writes a CSR with M-level access and the same WARL masks and side effects as CSRRW.
   *  false = no such CSR or read-only. */
  writeCsr(csr: number, value: bigint): boolean {
    const mode = this.mode;
    this.mode = 3;
    const v = BigInt.asUintN(64, value);
    const ok = (csr >>> 10) !== 3 && this.csrRead(csr) &&
      this.csrWrite(csr, Number(BigInt.asIntN(32, v)), Number(BigInt.asIntN(32, v >> 32n)));
    this.mode = mode;
    return ok;
  }

  // ================= saved state (vmctl save, snapshots) =================

  /** The hart's architectural state as plain data (JSON-safe, and structured-cloneable so a hart
   *  on another thread can hand it over): every register and CSR (the fields CSRs are read from,
   *  so derived ones — satp's root, PMP ranges, mip — are recomputed on load), the privilege mode,
   *  the interrupt sources (device lines, software bits, the Sstc comparator), the counters, the
   *  LR reservation and the WFI/HSM run state. Taken between blocks (never inside run()).
   *  Translated code, soft TLBs and hotness counters are caches: not saved, rebuilt after load. */
  saveState(): HartState {
    const csrs: [number, number, number][] = [];
    for (let c = 0; c < 4096; c++) if (this.cLo[c] !== 0 || this.cHi[c] !== 0) csrs.push([c, this.cLo[c], this.cHi[c]]);
    const pcKnown = this.pc === this.pc;
    return {
      pc: pcKnown ? this.pc : null, farLo: this.farLo, farHi: this.farHi, mode: this.mode,
      xlo: Array.from(this.xlo.subarray(0, 32)), xhi: Array.from(this.xhi.subarray(0, 32)),
      fregs: Array.from(this.fregs), fflags: this.fflags, frm: this.frm,
      mstatus: this.mstatus, mie: this.mie, mipSw: this.mipSw, mipLines: this.mipLines, stipTimer: this.stipTimer,
      medeleg: this.medeleg, mideleg: this.mideleg, mcounteren: this.mcounteren, scounteren: this.scounteren,
      menvcfgLo: this.menvcfgLo, menvcfgHi: this.menvcfgHi, senvcfg: this.senvcfg, mcountinhibit: this.mcountinhibit,
      csrs, stimecmp: this.stimecmp === Infinity ? null : this.stimecmp,
      pmpcfg: Array.from(this.pmpcfg), pmpAddrLo: Array.from(this.pmpAddrLo), pmpAddrHi: Array.from(this.pmpAddrHi),
      instret: this.instret, cycleOff: this.cycleOff, instretOff: this.instretOff,
      cycleFrozen: this.cycleFrozen, instretFrozen: this.instretFrozen,
      reservation: this.reservations.holds(this.hartId) ? this.lrPa : -1, lrLo: this.lrLo, lrHi: this.lrHi,
      waiting: this.waiting, halted: this.halted,
    };
  }

  /** Puts the hart into a state saveState() returned (on any thread, between runs). */
  loadState(s: HartState): void {
    if (s.xlo.length !== 32 || s.xhi.length !== 32 || s.fregs.length !== 64 || s.pmpcfg.length !== 16) {
      throw new RangeError(`hart ${this.hartId}: saved state has the wrong number of registers`);
    }
    this.xlo.set(s.xlo); this.xhi.set(s.xhi); this.xlo[32] = 0; this.xhi[32] = 0;
    this.farLo = s.farLo; this.farHi = s.farHi;
    this.pc = s.pc === null ? NaN : s.pc;
    this.mode = s.mode;
    this.fregs.set(s.fregs); this.fflags = s.fflags; this.frm = s.frm;
    this.mstatus = s.mstatus; this.mie = s.mie;
    this.mipSw = s.mipSw; this.mipLines = s.mipLines; this.stipTimer = s.stipTimer;
    this.mip = this.mipLines | this.mipSw | this.stipTimer;
    this.medeleg = s.medeleg; this.mideleg = s.mideleg; this.mcounteren = s.mcounteren; this.scounteren = s.scounteren;
    this.menvcfgLo = s.menvcfgLo; this.menvcfgHi = s.menvcfgHi; this.senvcfg = s.senvcfg; this.mcountinhibit = s.mcountinhibit;
    this.cLo.fill(0); this.cHi.fill(0);
    for (const [c, lo, hi] of s.csrs) { this.cLo[c] = lo; this.cHi[c] = hi; }
    const satpHi = this.cHi[0x180];
    this.satpSv39 = (satpHi >>> 28) === 8;
    this.satpRoot = ((satpHi & 0xfff) * TWO32 + (this.cLo[0x180] >>> 0)) * 4096;
    this.stimecmp = s.stimecmp === null ? Infinity : s.stimecmp;
    this.pmpcfg.set(s.pmpcfg); this.pmpAddrLo.set(s.pmpAddrLo); this.pmpAddrHi.set(s.pmpAddrHi);
    this.pmpUpdate();
    this.instret = s.instret; this.blockN = 0;
    this.cycleOff = s.cycleOff; this.instretOff = s.instretOff;
    this.cycleFrozen = s.cycleFrozen; this.instretFrozen = s.instretFrozen;
    this.lrPa = s.reservation; this.lrLo = s.lrLo; this.lrHi = s.lrHi;
    if (s.reservation >= 0) this.reservations.set(this.hartId, s.reservation); else this.reservations.clear(this.hartId);
    this.waiting = s.waiting; this.halted = s.halted;
    this.stopRequested = false; this.linesChanged = false; this.jitTrap = false; this.codeDirty = false;
    this.flushTlb();
    this.flushCode();
  }

  private stce(): boolean { return this.menvcfgHi < 0; }

  private updateMip(): void {
    this.mip = this.mipLines | this.mipSw | this.stipTimer;
    if ((this.mip & this.mie) !== 0) this.waiting = false;
  }

  private updateTimer(): void {
    const t = this.clock.mtime() >= this.stimecmp ? MIP_STIP : 0;
    if (t !== this.stipTimer) { this.stipTimer = t; this.updateMip(); }
  }

  // ================= run loop =================

  run(maxInstructions: number): number {
    let left = maxInstructions, retired = 0;
    this.polling = false;
    let spun = false, probed = false;
    if (this.spinSuspect && left > 2 * SPIN_STEPS) {
      this.spinSuspect = false;
      probed = true;
      retired = this.spinProbe();
      left -= retired;
      spun = this.polling;
    }
    while (left > 0 && !spun) {
      if (this.halted || this.stopRequested) break;
      this.linesChanged = false;
      if (this.stce()) this.updateTimer();
      if ((this.mip & this.mie) !== 0) {
        this.waiting = false;
        this.checkInterrupts();
      }
      if (this.waiting) break;
      const n = this.execBlock(left < SLICE ? left : SLICE);
      this.instret += n;
      this.blockN = 0; // (set by a CSR access inside the block; readCsr from outside counts none)
      retired += n;
      left -= n === 0 ? 1 : n;
      if (this.polling) break;
    }
    if (this.smp) this.noteSliceEnd(left <= 0, probed, spun);
    if (this.instret >= this.hotWindowEnd) { this.hotWindowEnd = this.instret + REGION_WINDOW; this.hot2.fill(0); }
    return retired;
  }

  /** After a run of a hart with `smp`: decides whether the next run starts with a spin probe.
   *  `whole`: the run used its whole budget; `probed`/`spun`: it began with a probe, which found a
   *  spin. */
  private noteSliceEnd(whole: boolean, probed: boolean, spun: boolean): void {
    const pc = this.pc, d = pc - this.spinPc;
    const near = whole && d > -SPIN_SPAN && d < SPIN_SPAN && this.mode === this.spinMode;
    this.spinPc = pc; this.spinMode = this.mode;
    if (spun) { this.spinSuspect = true; this.spinGap = 1; return; } // still spinning after a rest: probe again at once
    this.spinSuspect = false;
    if (!near) { this.spinSkip = 0; this.spinGap = 1; return; }
    if (probed) { // the loop works: probe it again less and less often
      this.spinSkip = this.spinGap;
      if (this.spinGap < SPIN_BACKOFF_MAX) this.spinGap *= 2;
      return;
    }
    if (this.spinSkip > 0) this.spinSkip--;
    else this.spinSuspect = true;
  }

  /** Steps the hart (at most SPIN_STEPS instructions, one block each) until it comes back to the
   *  pc it started at: when every integer and FP register is as it was then, and nothing on the
   *  way wrote memory or a CSR or called the firmware (writesState), the loop only waits for
   *  memory to change, and the hart is `polling`. Returns the instructions retired. */
  private spinProbe(): number {
    const xl = this.xlo, xh = this.xhi, f = this.fregs, r = SPIN_REGS;
    const pc = this.pc, mode = this.mode;
    for (let i = 0; i < 32; i++) { r[i] = xl[i]; r[32 + i] = xh[i]; }
    r.set(f, 64);
    let retired = 0;
    for (let k = 0; k < SPIN_STEPS; k++) {
      if (this.halted || this.stopRequested || this.waiting) return retired;
      if ((this.mip & this.mie) !== 0 && this.checkInterrupts()) return retired;
      const at = this.pc;
      const n = this.execBlock(1);
      this.instret += n;
      this.blockN = 0;
      retired += n;
      if (n === 0 || this.mode !== mode || this.writesState(at)) return retired;
      if (this.pc !== pc) continue;
      for (let i = 1; i < 32; i++) if (xl[i] !== r[i] || xh[i] !== r[32 + i]) return retired;
      for (let i = 0; i < 64; i++) if (f[i] !== r[64 + i]) return retired;
      this.polling = true;
      return retired;
    }
    return retired;
  }

  /** Does the instruction just executed at `at` (in the current fetch page, where the step fetched
   *  it) change state outside the registers: a store, an AMO or SC, a CSR write, an ECALL/EBREAK,
   *  an xRET? Such a loop may be working (an AMOADD counter with rd = x0), not waiting. Anything
   *  it cannot read back counts as a write. */
  private writesState(at: number): boolean {
    const d = at - this.fVa;
    if (!(d >= 0 && d <= 4092)) return true;
    const i = this.fOff + (d >> 1), v = this.fView;
    let raw = v[i];
    if ((raw & 3) === 3) raw |= v[i + 1] << 16; else raw = CEXP[raw];
    switch (raw & 0x7f) {
      case 0x23: case 0x27: return true; // STORE, STORE-FP
      case 0x2f: return (raw >>> 27) !== 2; // AMO: all but LR write
      case 0x73: {
        const f3 = (raw >>> 12) & 7;
        if (f3 === 0) return raw !== 0x10500073; // WFI only; ECALL, EBREAK, xRET, SFENCE.VMA
        return (f3 & 3) === 1 || ((raw >>> 15) & 31) !== 0; // CSRRW[I], or CSRRS/C[I] with rs1/uimm != 0
      }
      default: return false;
    }
  }

  /** Takes the highest-priority pending and enabled interrupt, if any (priv spec 3.1.9). */
  private checkInterrupts(): boolean {
    const pend = this.mip & this.mie;
    const mPend = pend & ~this.mideleg;
    const mEnabled = this.mode < 3 || (this.mstatus & MS_MIE) !== 0;
    let take = 0;
    if (mPend !== 0 && mEnabled) take = mPend;
    else {
      const sPend = pend & this.mideleg;
      const sEnabled = this.mode < 1 || (this.mode === 1 && (this.mstatus & MS_SIE) !== 0);
      if (sPend !== 0 && sEnabled) take = sPend;
    }
    if (take === 0) return false;
    this.wfiPolls = 0;
    for (const irq of IRQ_ORDER) {
      if ((take >>> irq) & 1) { this.trap(irq, true, 0, 0); return true; }
    }
    return false;
  }

  /** Executes up to `budget` instructions; returns how many retired. */
  private execBlock(budget: number): number {
    // The region table is full (compileAt): all translated code is dropped and the slots are used
    // again (only here, where no region entry is held: entries held by a running execBlock after
    // a FENCE.I would fill the chain cache with slots of other regions).
    if (this.regionSlots >= REGION_TABLE) { this.flushCode(); this.regionSlots = 0; }
    const xl = this.xlo, xh = this.xhi;
    const tr = this.tlbR, tw = this.tlbW;
    const rTag = tr.tagLo, rTagH = tr.tagHi, rOff = tr.off, r8 = tr.u8, r16 = tr.u16, r32 = tr.i32, r64 = tr.f64, rCh = tr.chunk;
    const wTag = tw.tagLo, wTagH = tw.tagHi, wOff = tw.off, wPa = tw.pa, w8 = tw.u8, w16 = tw.u16, w32 = tw.i32, w64 = tw.f64, wCh = tw.chunk;
    const d64 = D64, d32 = D32, smp = this.smp;
    const resv = this.reservations;
    const cexp = CEXP;
    // pc = fVa + pcOff: fVa is the virtual address of the current fetch page (a double), pcOff an
    // int offset in it, so sequential code and short branches do int arithmetic only. fLim = -1
    // marks "no fetch page" (fVa then holds the exact pc and pcOff = 0).
    let fVa = this.fVa, fView = this.fView, fOff = this.fOff;
    let fBlocks = this.fCode.blocks, fPn = this.fPn, fHash = (fPn & 7) << 11;
    const jit = this.jitEnabled, hot = this.hot, hot2 = this.hot2, seen = this.seen;
    const wasm = jit && this.wasmTier;
    const hotAt = wasm ? this.wasmHot : HOT_THRESHOLD, regionAt = this.regionHot;
    // a reach count at which only the translation cache is asked (compileAt's probe)
    const probeAt = wasm ? this.wasmProbe : -1;
    let c = 0;
    let pcOff = 0, fLim = -1;
    {
      const d = this.pc - fVa;
      if (d >= 0 && d < 4096) { pcOff = d | 0; fLim = 4092; } else { fVa = this.pc; }
    }
    let n = 0;
    let mark = 0; // n when the last loop head or jump target was reached, or translated code left
    if (jit && fLim >= 0) {
      // Translated code starts here (most often: the last block ended where translated code ran
      // out of budget, see budgetOut): on in it at once, not interpreted up to the next branch.
      const blk = fBlocks[pcOff >> 1];
      if (blk !== undefined && blk !== null && blk.size <= budget) {
        n = this.runRegions(blk, fVa, budget, fBlocks);
        mark = n;
        if (this.jitTrap) return n;
        const t = this.pc, d = t - fVa;
        if (d >= 0 && d < 4096) pcOff = d | 0; else { fVa = t; pcOff = 0; fLim = -1; }
        if (this.linesChanged || this.budgetOut || n >= budget) { this.linesChanged = false; this.pc = fVa + pcOff; return n; }
      } else if (wasm && blk === undefined && ((c = ++hot[fHash | (pcOff >> 1)]) >= hotAt || c === probeAt)) {
        // Code where a block starts: after a SYSTEM instruction (a CSR write of sstatus
        // re-enabling interrupts, an SRET, an ECALL's return), a trap or interrupt, the end of a
        // slice. It counts as a reach, as a page entry does: code after a CSR access, which no
        // region can take in, ran interpreted up to the next branch (mke2fs: 12% of what it
        // interpreted).
        if (c >= hotAt) hot[fHash | (pcOff >> 1)] = 0;
        fBlocks = this.compileAt(fVa, fPn, pcOff >> 1, fView, fOff, pcOff, false, c < hotAt).blocks;
      }
    }
    loop: for (;;) {
      // ---- fetch ----
      let raw: number;
      if (pcOff >= 0 && pcOff <= fLim) {
        const i = fOff + (pcOff >> 1);
        raw = fView[i];
        if ((raw & 3) === 3) raw |= fView[i + 1] << 16;
      } else {
        const pc = fVa + pcOff;
        this.pc = fVa + pcOff;
        const r = this.fetchSlow(pc);
        if (r < 0) break;
        raw = r | 0;
        fView = this.fView; fOff = this.fOff;
        fBlocks = this.fCode.blocks; fPn = this.fPn; fHash = (fPn & 7) << 11;
        const nb = this.fVa;
        if (nb === nb) { fVa = nb; pcOff = (pc - nb) | 0; fLim = 4092; } else { fVa = pc; pcOff = 0; fLim = -1; }
        if (wasm && fLim >= 0) {
          // Code entered from another page (a call, a return, a jump, a trap, falling through):
          // with the WebAssembly tier, translated code may start here too, so that functions
          // without loops are translated.
          const slot = pcOff >> 1;
          const blk = fBlocks[slot];
          if (blk !== undefined && blk !== null) {
            if (n + blk.size <= budget) {
              n += this.runRegions(blk, fVa, budget - n, fBlocks);
              mark = n;
              if (this.jitTrap) return n;
              const t = this.pc, d = t - fVa;
              if (d >= 0 && d < 4096) pcOff = d | 0; else { fVa = t; pcOff = 0; fLim = -1; }
              if (this.linesChanged || this.budgetOut || n >= budget) { this.linesChanged = false; this.pc = fVa + pcOff; return n; }
              continue;
            }
          } else if (blk === undefined && ((c = ++hot[fHash | slot]) >= hotAt || c === probeAt)) {
            if (c >= hotAt) hot[fHash | slot] = 0;
            fBlocks = this.compileAt(fVa, fPn, slot, fView, fOff, pcOff, false, c < hotAt).blocks;
          }
        }
      }
      let insn: number, ilen: number;
      if ((raw & 3) === 3) { insn = raw; ilen = 4; } else {
        insn = cexp[raw]; ilen = 2;
        if (insn === 0) { this.pc = fVa + pcOff; this.trap(EXC_ILLEGAL, false, raw, 0); break; }
      }
      n++;
      const rd0 = (insn >>> 7) & 31;
      const rd = rd0 === 0 ? 32 : rd0;
      const rs1 = (insn >>> 15) & 31, rs2 = (insn >>> 20) & 31;
      switch (insn & 0x7f) {
        case 0x13: { // OP-IMM
          const imm = insn >> 20;
          const al = xl[rs1], ah = xh[rs1];
          switch ((insn >>> 12) & 7) {
            case 0: { const l = (al + imm) | 0; xh[rd] = (ah + (imm >> 31) + ((l >>> 0) < (al >>> 0) ? 1 : 0)) | 0; xl[rd] = l; break; }
            case 1: {
              if ((insn >>> 26) !== 0) { n--; this.pc = fVa + pcOff; this.trap(EXC_ILLEGAL, false, raw, 0); break loop; }
              const s = imm & 63;
              if (s & 32) { xh[rd] = al << (s & 31); xl[rd] = 0; } else if (s !== 0) { xh[rd] = (ah << s) | (al >>> (32 - s)); xl[rd] = al << s; } else { xh[rd] = ah; xl[rd] = al; }
              break;
            }
            case 2: { const lt = ah < (imm >> 31) || (ah === (imm >> 31) && (al >>> 0) < (imm >>> 0)); xl[rd] = lt ? 1 : 0; xh[rd] = 0; break; }
            case 3: { const ih = imm >> 31; const lt = (ah >>> 0) < (ih >>> 0) || (ah === ih && (al >>> 0) < (imm >>> 0)); xl[rd] = lt ? 1 : 0; xh[rd] = 0; break; }
            case 4: xl[rd] = al ^ imm; xh[rd] = ah ^ (imm >> 31); break;
            case 5: {
              const top = insn >>> 26;
              const s = imm & 63;
              if (top === 0) {
                if (s & 32) { xl[rd] = ah >>> (s & 31); xh[rd] = 0; } else if (s !== 0) { xl[rd] = (al >>> s) | (ah << (32 - s)); xh[rd] = ah >>> s; } else { xl[rd] = al; xh[rd] = ah; }
              } else if (top === 0x10) {
                if (s & 32) { xl[rd] = ah >> (s & 31); xh[rd] = ah >> 31; } else if (s !== 0) { xl[rd] = (al >>> s) | (ah << (32 - s)); xh[rd] = ah >> s; } else { xl[rd] = al; xh[rd] = ah; }
              } else { n--; this.pc = fVa + pcOff; this.trap(EXC_ILLEGAL, false, raw, 0); break loop; }
              break;
            }
            case 6: xl[rd] = al | imm; xh[rd] = ah | (imm >> 31); break;
            default: xl[rd] = al & imm; xh[rd] = ah & (imm >> 31); break;
          }
          pcOff += ilen;
          break;
        }
        case 0x33: { // OP
          const al = xl[rs1], ah = xh[rs1], bl = xl[rs2], bh = xh[rs2];
          const f7 = insn >>> 25, f3 = (insn >>> 12) & 7;
          if (f7 === 0) {
            switch (f3) {
              case 0: { const l = (al + bl) | 0; xh[rd] = (ah + bh + ((l >>> 0) < (al >>> 0) ? 1 : 0)) | 0; xl[rd] = l; break; }
              case 1: {
                const s = bl & 63;
                if (s & 32) { xh[rd] = al << (s & 31); xl[rd] = 0; } else if (s !== 0) { xh[rd] = (ah << s) | (al >>> (32 - s)); xl[rd] = al << s; } else { xh[rd] = ah; xl[rd] = al; }
                break;
              }
              case 2: { const lt = ah < bh || (ah === bh && (al >>> 0) < (bl >>> 0)); xl[rd] = lt ? 1 : 0; xh[rd] = 0; break; }
              case 3: { const lt = (ah >>> 0) < (bh >>> 0) || (ah === bh && (al >>> 0) < (bl >>> 0)); xl[rd] = lt ? 1 : 0; xh[rd] = 0; break; }
              case 4: xl[rd] = al ^ bl; xh[rd] = ah ^ bh; break;
              case 5: {
                const s = bl & 63;
                if (s & 32) { xl[rd] = ah >>> (s & 31); xh[rd] = 0; } else if (s !== 0) { xl[rd] = (al >>> s) | (ah << (32 - s)); xh[rd] = ah >>> s; } else { xl[rd] = al; xh[rd] = ah; }
                break;
              }
              case 6: xl[rd] = al | bl; xh[rd] = ah | bh; break;
              default: xl[rd] = al & bl; xh[rd] = ah & bh; break;
            }
          } else if (f7 === 0x20 && f3 === 0) {
            const l = (al - bl) | 0; xh[rd] = (ah - bh - ((al >>> 0) < (bl >>> 0) ? 1 : 0)) | 0; xl[rd] = l;
          } else if (f7 === 0x20 && f3 === 5) {
            const s = bl & 63;
            if (s & 32) { xl[rd] = ah >> (s & 31); xh[rd] = ah >> 31; } else if (s !== 0) { xl[rd] = (al >>> s) | (ah << (32 - s)); xh[rd] = ah >> s; } else { xl[rd] = al; xh[rd] = ah; }
          } else if (f7 === 1) {
            switch (f3) {
              case 0: mul64(al, ah, bl, bh); break;
              case 1: mulh64(al, ah, bl, bh); break;
              case 2: mulhsu64(al, ah, bl, bh); break;
              case 3: mulhu64(al, ah, bl, bh); break;
              case 4: div64(al, ah, bl, bh, false); break;
              case 5: divu64(al, ah, bl, bh, false); break;
              case 6: div64(al, ah, bl, bh, true); break;
              default: divu64(al, ah, bl, bh, true); break;
            }
            xl[rd] = res[0]; xh[rd] = res[1];
          } else { n--; this.pc = fVa + pcOff; this.trap(EXC_ILLEGAL, false, raw, 0); break loop; }
          pcOff += ilen;
          break;
        }
        case 0x03: { // LOAD
          const imm = insn >> 20;
          const bl = xl[rs1];
          const lo = (bl + imm) | 0;
          const hi = (xh[rs1] + (imm >> 31) + ((lo >>> 0) < (bl >>> 0) ? 1 : 0)) | 0;
          const f3 = (insn >>> 12) & 7;
          const e = (lo >>> 12) & TLB_MASK, po = lo & 4095;
          // Aligned accesses only (a misaligned one takes the slow path, byte by byte).
          if (rTag[e] === (lo & -4096) && rTagH[e] === hi && (po & ((1 << (f3 & 3)) - 1)) === 0 && f3 !== 7) {
            const a = rOff[e] + po;
            switch (f3) {
              case 0: { const v = (r8[e][a] << 24) >> 24; xl[rd] = v; xh[rd] = v >> 31; break; }
              case 1: { const v = (r16[e][a >> 1] << 16) >> 16; xl[rd] = v; xh[rd] = v >> 31; break; }
              case 2: { const v = r32[e][a >> 2]; xl[rd] = v; xh[rd] = v >> 31; break; }
              case 3: if (smp) { const x = r64[e][a >> 3]; if (x === x) d64[0] = x; else rCh[e].loadNaN64(a); xl[rd] = d32[0]; xh[rd] = d32[1]; } else { const w = r32[e]; xl[rd] = w[a >> 2]; xh[rd] = w[(a >> 2) + 1]; } break;
              case 4: xl[rd] = r8[e][a]; xh[rd] = 0; break;
              case 5: xl[rd] = r16[e][a >> 1]; xh[rd] = 0; break;
              default: xl[rd] = r32[e][a >> 2]; xh[rd] = 0; break;
            }
          } else {
            this.pc = fVa + pcOff;
            if (f3 === 7) { n--; this.trap(EXC_ILLEGAL, false, raw, 0); break loop; }
            if (!this.loadSlow(lo, hi, f3)) { n--; break loop; }
            xl[rd] = this.memLo; xh[rd] = this.memHi;
          }
          pcOff += ilen;
          break;
        }
        case 0x23: { // STORE
          const imm = ((insn >> 25) << 5) | ((insn >>> 7) & 31);
          const bl = xl[rs1];
          const lo = (bl + imm) | 0;
          const hi = (xh[rs1] + (imm >> 31) + ((lo >>> 0) < (bl >>> 0) ? 1 : 0)) | 0;
          const f3 = (insn >>> 12) & 7;
          const e = (lo >>> 12) & TLB_MASK, po = lo & 4095;
          if (wTag[e] === (lo & -4096) && wTagH[e] === hi && (po & ((1 << f3) - 1)) === 0 && f3 < 4) {
            const a = wOff[e] + po;
            switch (f3) {
              case 0: w8[e][a] = xl[rs2]; break;
              case 1: w16[e][a >> 1] = xl[rs2]; break;
              case 2: w32[e][a >> 2] = xl[rs2]; break;
              default: if (smp) { d32[0] = xl[rs2]; d32[1] = xh[rs2]; const x = d64[0]; if (x === x) w64[e][a >> 3] = x; else wCh[e].store64(a, xl[rs2], xh[rs2]); } else { const w = w32[e]; w[a >> 2] = xl[rs2]; w[(a >> 2) + 1] = xh[rs2]; } break;
            }
            if (resv.active[0] !== 0) resv.storeBy(this.hartId, wPa[e] + po, 1 << f3);
          } else {
            this.pc = fVa + pcOff;
            if (f3 >= 4) { n--; this.trap(EXC_ILLEGAL, false, raw, 0); break loop; }
            if (!this.storeSlow(lo, hi, f3, xl[rs2], xh[rs2])) { n--; break loop; }
            this.codeDirty = false;
            if (this.linesChanged) { this.linesChanged = false; this.pc = fVa + pcOff + ilen; return n; }
          }
          pcOff += ilen;
          break;
        }
        case 0x63: { // BRANCH
          const al = xl[rs1], ah = xh[rs1], bl = xl[rs2], bh = xh[rs2];
          let taken: boolean;
          switch ((insn >>> 12) & 7) {
            case 0: taken = ((al ^ bl) | (ah ^ bh)) === 0; break; // (no short-circuit: no path first run late)
            case 1: taken = ((al ^ bl) | (ah ^ bh)) !== 0; break;
            case 4: taken = ah < bh || (ah === bh && (al >>> 0) < (bl >>> 0)); break;
            case 5: taken = !(ah < bh || (ah === bh && (al >>> 0) < (bl >>> 0))); break;
            case 6: taken = (ah >>> 0) < (bh >>> 0) || (ah === bh && (al >>> 0) < (bl >>> 0)); break;
            case 7: taken = !((ah >>> 0) < (bh >>> 0) || (ah === bh && (al >>> 0) < (bl >>> 0))); break;
            default: n--; this.pc = fVa + pcOff; this.trap(EXC_ILLEGAL, false, raw, 0); break loop;
          }
          if (taken) {
            const imm = ((insn >> 31) << 12) | (((insn >>> 7) & 1) << 11) | (((insn >>> 25) & 63) << 5) | (((insn >>> 8) & 15) << 1);
            pcOff += imm;
            seen[fHash | ((pcOff >>> 1) & 2047)] = 1;
            if (imm < 0 && jit && pcOff >= 0 && pcOff <= fLim) {
              // A backward branch inside the page: its target may head a loop worth translating.
              const slot = pcOff >> 1;
              const w = n - mark; mark = n;
              let blk = fBlocks[slot];
              if (blk !== undefined && blk !== null && !blk.full && (hot2[fHash | slot] += w) >= regionAt) {
                // A first-tier loop entered this often: the code around it is hot too.
                hot2[fHash | slot] = 0;
                fBlocks = this.compileAt(fVa, fPn, slot, fView, fOff, pcOff, true).blocks;
                blk = fBlocks[slot];
              }
              if (blk !== undefined && blk !== null && n + blk.size <= budget) {
                n += this.runRegions(blk, fVa, budget - n, fBlocks);
                mark = n;
                if (this.jitTrap) return n;
                const t = this.pc, d = t - fVa;
                if (d >= 0 && d < 4096) pcOff = d | 0; else { fVa = t; pcOff = 0; fLim = -1; }
                if (this.linesChanged || this.budgetOut) { this.linesChanged = false; this.pc = fVa + pcOff; return n; }
              } else if (blk === undefined ? (c = ++hot[fHash | slot]) >= hotAt || c === probeAt : (blk === null || !blk.full) && (hot2[fHash | slot] += w) >= regionAt) {
                if (blk === undefined && c < hotAt) fBlocks = this.compileAt(fVa, fPn, slot, fView, fOff, pcOff, false, true).blocks;
                else {
                  hot[fHash | slot] = 0; hot2[fHash | slot] = 0;
                  fBlocks = this.compileAt(fVa, fPn, slot, fView, fOff, pcOff, blk !== undefined).blocks;
                }
              }
            }
          } else { pcOff += ilen; seen[fHash | ((pcOff >>> 1) & 2047)] = 1; }
          break;
        }
        case 0x3b: { // OP-32
          const a = xl[rs1], b = xl[rs2];
          const f7 = insn >>> 25, f3 = (insn >>> 12) & 7;
          let v: number;
          if (f7 === 0) {
            if (f3 === 0) v = (a + b) | 0;
            else if (f3 === 1) v = a << (b & 31);
            else if (f3 === 5) v = a >>> (b & 31);
            else { n--; this.pc = fVa + pcOff; this.trap(EXC_ILLEGAL, false, raw, 0); break loop; }
          } else if (f7 === 0x20) {
            if (f3 === 0) v = (a - b) | 0;
            else if (f3 === 5) v = a >> (b & 31);
            else { n--; this.pc = fVa + pcOff; this.trap(EXC_ILLEGAL, false, raw, 0); break loop; }
          } else if (f7 === 1) {
            switch (f3) {
              case 0: v = Math.imul(a, b); break;
              case 4: v = div32(a, b, false, false); break;
              case 5: v = div32(a, b, false, true); break;
              case 6: v = div32(a, b, true, false); break;
              case 7: v = div32(a, b, true, true); break;
              default: n--; this.pc = fVa + pcOff; this.trap(EXC_ILLEGAL, false, raw, 0); break loop;
            }
          } else { n--; this.pc = fVa + pcOff; this.trap(EXC_ILLEGAL, false, raw, 0); break loop; }
          v |= 0;
          xl[rd] = v; xh[rd] = v >> 31;
          pcOff += ilen;
          break;
        }
        case 0x1b: { // OP-IMM-32
          const a = xl[rs1];
          const f3 = (insn >>> 12) & 7;
          let v: number;
          if (f3 === 0) v = (a + (insn >> 20)) | 0;
          else if (f3 === 1 && (insn >>> 25) === 0) v = a << rs2;
          else if (f3 === 5 && (insn >>> 25) === 0) v = (a >>> rs2) | 0;
          else if (f3 === 5 && (insn >>> 25) === 0x20) v = a >> rs2;
          else { n--; this.pc = fVa + pcOff; this.trap(EXC_ILLEGAL, false, raw, 0); break loop; }
          xl[rd] = v; xh[rd] = v >> 31;
          pcOff += ilen;
          break;
        }
        case 0x37: { // LUI
          const v = insn & 0xfffff000;
          xl[rd] = v; xh[rd] = v >> 31;
          pcOff += ilen;
          break;
        }
        case 0x17: { // AUIPC
          const v = fVa + pcOff + (insn & 0xfffff000);
          xl[rd] = v | 0; xh[rd] = Math.floor(v / TWO32) | 0;
          pcOff += ilen;
          break;
        }
        case 0x6f: { // JAL
          const link = fVa + pcOff + ilen;
          pcOff += ((insn >> 31) << 20) | (insn & 0xff000) | (((insn >>> 20) & 1) << 11) | (((insn >>> 21) & 1023) << 1);
          xl[rd] = link | 0; xh[rd] = Math.floor(link / TWO32) | 0;
          seen[fHash | ((pcOff >>> 1) & 2047)] = 1;
          if (jit && pcOff >= 0 && pcOff <= fLim) {
            // A jump or call inside the page: a translated region may start there.
            const slot = pcOff >> 1;
            const w = n - mark; mark = n;
            const blk = fBlocks[slot];
            if (blk !== undefined && blk !== null && n + blk.size <= budget) {
              n += this.runRegions(blk, fVa, budget - n, fBlocks);
              mark = n;
              if (this.jitTrap) return n;
              const t = this.pc, d = t - fVa;
              if (d >= 0 && d < 4096) pcOff = d | 0; else { fVa = t; pcOff = 0; fLim = -1; }
              if (this.linesChanged || this.budgetOut) { this.linesChanged = false; this.pc = fVa + pcOff; return n; }
            } else if (blk === undefined ? (c = ++hot[fHash | slot]) >= hotAt || c === probeAt : (blk === null || !blk.full) && (hot2[fHash | slot] += w) >= regionAt) {
              if (blk === undefined && c < hotAt) fBlocks = this.compileAt(fVa, fPn, slot, fView, fOff, pcOff, false, true).blocks;
              else {
                hot[fHash | slot] = 0; hot2[fHash | slot] = 0;
                fBlocks = this.compileAt(fVa, fPn, slot, fView, fOff, pcOff, blk !== undefined).blocks;
              }
            }
          }
          break;
        }
        case 0x67: { // JALR
          if (((insn >>> 12) & 7) !== 0) { n--; this.pc = fVa + pcOff; this.trap(EXC_ILLEGAL, false, raw, 0); break loop; }
          const imm = insn >> 20;
          const bl = xl[rs1];
          const lo = (bl + imm) & -2;
          const hi = (xh[rs1] + (imm >> 31) + (((bl + imm) >>> 0) < (bl >>> 0) ? 1 : 0)) | 0;
          const link = fVa + pcOff + ilen;
          const t = ((hi + 0x200000) >>> 0) < 0x400000 ? hi * TWO32 + (lo >>> 0) : this.exactPc(lo, hi);
          const d = t - fVa;
          xl[rd] = link | 0; xh[rd] = Math.floor(link / TWO32) | 0;
          if (d >= 0 && d <= 4092) {
            pcOff = d | 0;
            seen[fHash | (pcOff >> 1)] = 1;
            // A return or indirect jump inside the page: enter the translated region there, if any.
            const blk = jit && fLim >= 0 ? fBlocks[pcOff >> 1] : undefined;
            if (blk !== undefined && blk !== null && n + blk.size <= budget) {
              n += this.runRegions(blk, fVa, budget - n, fBlocks);
              mark = n;
              if (this.jitTrap) return n;
              const t2 = this.pc, d2 = t2 - fVa;
              if (d2 >= 0 && d2 < 4096) pcOff = d2 | 0; else { fVa = t2; pcOff = 0; fLim = -1; }
              if (this.linesChanged || this.budgetOut) { this.linesChanged = false; this.pc = fVa + pcOff; return n; }
            } else if (wasm && fLim >= 0 && blk === undefined && ((c = ++hot[fHash | (pcOff >> 1)]) >= hotAt || c === probeAt)) {
              // A target reached only through JALRs (a function called through a pointer, a
              // switch case) is counted as jump targets are: the WebAssembly tier translates
              // code without loops too (fnptr's tree visitors ran interpreted: 21% of it).
              if (c >= hotAt) hot[fHash | (pcOff >> 1)] = 0;
              fBlocks = this.compileAt(fVa, fPn, pcOff >> 1, fView, fOff, pcOff, false, c < hotAt).blocks;
            }
          } else { fVa = t; pcOff = 0; fLim = -1; }
          break;
        }
        case 0x0f: { // MISC-MEM: FENCE (all variants, incl. PAUSE and TSO), FENCE.I
          const f3 = (insn >>> 12) & 7;
          if (f3 > 1) { n--; this.pc = fVa + pcOff; this.trap(EXC_ILLEGAL, false, raw, 0); break loop; }
          // With harts on other threads, a full barrier from a JS Atomics read-modify-write (a
          // superset of every FENCE's predecessor/successor sets; docs/guest-ram.md). Alone, a
          // hart has nobody to order against.
          if (smp) Atomics.add(FENCE_CELL, 0, 0);
          pcOff += ilen;
          if (f3 === 1) { this.flushCode(); this.pc = fVa + pcOff; return n; } // Zifencei
          break;
        }
        case 0x2f: { // AMO
          this.pc = fVa + pcOff;
          if (!this.execAmo(insn, raw, rd)) { n--; break loop; }
          pcOff += ilen;
          break;
        }
        case 0x73: { // SYSTEM: always ends the block (may change mode, translation or interrupt state)
          this.pc = fVa + pcOff;
          this.blockN = n - 1;
          const r = this.execSystem(insn, raw, ilen);
          if (r === 2) n--;
          break loop;
        }
        case 0x07: case 0x27: case 0x43: case 0x47: case 0x4b: case 0x4f: case 0x53: { // F/D
          this.pc = fVa + pcOff;
          this.rawInsn = raw;
          if (!execFp(this, insn)) { n--; break loop; }
          pcOff += ilen;
          break;
        }
        default:
          n--; this.pc = fVa + pcOff; this.trap(EXC_ILLEGAL, false, raw, 0); break loop;
      }
      if (n >= budget) { this.pc = fVa + pcOff; return n; }
    }
    // Left through a trap or a SYSTEM instruction: this.pc is already current.
    return n;
  }

  // ================= traps =================

  /** Takes a trap at this.pc (priv spec 3.1.6.1, 3.3.1, 4.1.1). tval given as lo/hi words. */
  trap(cause: number, interrupt: boolean, tvalLo: number, tvalHi: number): void {
    const mode = this.mode;
    const deleg = interrupt ? this.mideleg : this.medeleg;
    const epc = this.pc;
    const epcLo = epc === epc ? epc | 0 : this.farLo, epcHi = epc === epc ? Math.floor(epc / TWO32) | 0 : this.farHi;
    const causeHi = interrupt ? 0x80000000 | 0 : 0;
    this.waiting = false;
    if (mode <= 1 && ((deleg >>> cause) & 1) !== 0) {
      this.cLo[0x141] = epcLo; this.cHi[0x141] = epcHi;
      this.cLo[0x142] = cause; this.cHi[0x142] = causeHi;
      this.cLo[0x143] = tvalLo; this.cHi[0x143] = tvalHi;
      let s = this.mstatus;
      s = (s & MS_SIE) ? s | MS_SPIE : s & ~MS_SPIE;
      s = mode === 1 ? s | MS_SPP : s & ~MS_SPP;
      this.mstatus = s & ~MS_SIE;
      this.setMode(1);
      this.pc = this.vector(0x105, cause, interrupt);
    } else {
      this.cLo[0x341] = epcLo; this.cHi[0x341] = epcHi;
      this.cLo[0x342] = cause; this.cHi[0x342] = causeHi;
      this.cLo[0x343] = tvalLo; this.cHi[0x343] = tvalHi;
      let s = this.mstatus;
      s = (s & MS_MIE) ? s | MS_MPIE : s & ~MS_MPIE;
      s = (s & ~MS_MPP) | (mode << MS_MPP_SHIFT);
      this.mstatus = s & ~MS_MIE;
      this.setMode(3);
      this.pc = this.vector(0x305, cause, interrupt);
    }
  }

  private vector(csr: number, cause: number, interrupt: boolean): number {
    const lo = this.cLo[csr], hi = this.cHi[csr];
    let bl = lo & ~3, bh = hi;
    if (interrupt && (lo & 3) === 1) {
      const l = (bl + 4 * cause) | 0;
      bh = (bh + ((l >>> 0) < (bl >>> 0) ? 1 : 0)) | 0;
      bl = l;
    }
    return this.exactPc(bl, bh);
  }

  private setMode(m: number): void {
    if (m !== this.mode) { this.mode = m; this.flushTlb(); }
  }

  private trapAddr(cause: number, lo: number, hi: number): void {
    this.trap(cause, false, lo, hi);
  }

  // ================= SYSTEM =================

  /** Returns 0/1 when the instruction retired (pc advanced), 2 when it trapped. */
  private execSystem(insn: number, raw: number, ilen: number): number {
    const f3 = (insn >>> 12) & 7;
    if (f3 === 0) {
      if (insn === 0x00000073) { // ECALL
        if (this.mode === 1 && this.ecallHook !== null && this.ecallHook(this)) { this.pc += 4; return 1; }
        this.trap(EXC_ECALL_U + this.mode, false, 0, 0);
        return 2;
      }
      if (insn === 0x00100073) { // EBREAK: mtval = 0 (priv spec 1.12, 3.1.16: only hardware breakpoints write an address)
        this.trap(EXC_BREAKPOINT, false, 0, 0);
        return 2;
      }
      if (insn === 0x30200073) { // MRET (priv spec 3.3.2)
        if (this.mode !== 3) return this.illegal(raw);
        let s = this.mstatus;
        const mpp = (s >>> MS_MPP_SHIFT) & 3;
        s = (s & MS_MPIE) ? s | MS_MIE : s & ~MS_MIE;
        s |= MS_MPIE;
        s &= ~MS_MPP;
        if (mpp !== 3) s &= ~MS_MPRV;
        // With MPRV set (before or after), M-mode data accesses translate as MPP: a change of
        // MPRV or MPP changes the translation context.
        const old = this.mstatus;
        const ctxChanged = ((old | s) & MS_MPRV) !== 0 && ((old ^ s) & (MS_MPRV | MS_MPP)) !== 0;
        this.mstatus = s;
        this.pc = this.readEpc(0x341);
        this.setMode(mpp);
        if (ctxChanged) this.flushTlb();
        return 1;
      }
      if (insn === 0x10200073) { // SRET
        if (this.mode === 0 || (this.mode === 1 && (this.mstatus & MS_TSR) !== 0)) return this.illegal(raw);
        let s = this.mstatus;
        const spp = (s & MS_SPP) ? 1 : 0;
        s = (s & MS_SPIE) ? s | MS_SIE : s & ~MS_SIE;
        s |= MS_SPIE;
        s &= ~MS_SPP;
        s &= ~MS_MPRV;
        const mprvCleared = ((this.mstatus ^ s) & MS_MPRV) !== 0;
        this.mstatus = s;
        this.pc = this.readEpc(0x141);
        this.setMode(spp);
        if (mprvCleared) this.flushTlb();
        return 1;
      }
      if (insn === 0x10500073) { // WFI (priv spec 3.3.3; TW)
        if (this.mode === 0 || (this.mode === 1 && (this.mstatus & MS_TW) !== 0)) return this.illegal(raw);
        this.pc += ilen;
        if ((this.mip & this.mie) === 0) { this.waiting = true; this.wfiPolls = 0; }
        else if (++this.wfiPolls >= WFI_POLLS) this.polling = true;
        return 1;
      }
      if ((insn & 0xfe007fff) === 0x12000073) { // SFENCE.VMA
        if (this.mode === 0 || (this.mode === 1 && (this.mstatus & MS_TVM) !== 0)) return this.illegal(raw);
        this.flushTlb();
        this.pc += ilen;
        return 1;
      }
      return this.illegal(raw);
    }
    if (f3 === 4) return this.illegal(raw);
    // Zicsr
    const csr = insn >>> 20;
    const rs1 = (insn >>> 15) & 31, rd = (insn >>> 7) & 31;
    const op = f3 & 3;
    const writes = op === 1 || rs1 !== 0;
    if (((csr >>> 8) & 3) > this.mode) return this.illegal(raw);
    if (writes && (csr >>> 10) === 3) return this.illegal(raw);
    if (!this.csrRead(csr)) return this.illegal(raw);
    const oldLo = this.csrLo, oldHi = this.csrHi;
    if (writes) {
      let sl: number, sh: number;
      if (f3 & 4) { sl = rs1; sh = 0; } else { sl = this.xlo[rs1]; sh = this.xhi[rs1]; }
      let bl = oldLo;
      // mip/sip read-modify-write uses the software-writable SEIP bit, not the line (priv spec 3.1.9).
      if (csr === 0x344) bl = (bl & ~MIP_SEIP) | (this.mipSw & MIP_SEIP);
      let nl: number, nh: number;
      if (op === 1) { nl = sl; nh = sh; } else if (op === 2) { nl = bl | sl; nh = oldHi | sh; } else { nl = bl & ~sl; nh = oldHi & ~sh; }
      if (!this.csrWrite(csr, nl, nh)) return this.illegal(raw);
    }
    if (rd !== 0) { this.xlo[rd] = oldLo; this.xhi[rd] = oldHi; }
    this.pc += ilen;
    return writes ? 1 : 0;
  }

  private illegal(raw: number): number {
    this.trap(EXC_ILLEGAL, false, raw, 0);
    return 2;
  }

  private readEpc(csr: number): number {
    return this.exactPc(this.cLo[csr], this.cHi[csr]);
  }

  // ================= CSRs =================

  private setCsr(lo: number, hi: number): true { this.csrLo = lo; this.csrHi = hi; return true; }
  private setCsrNum(v: number): true { this.csrLo = v | 0; this.csrHi = Math.floor(v / TWO32) | 0; return true; }

  private counterAllowed(bit: number): boolean {
    if (this.mode < 3 && ((this.mcounteren >>> bit) & 1) === 0) return false;
    if (this.mode === 0 && ((this.scounteren >>> bit) & 1) === 0) return false;
    return true;
  }

  private cycleValue(): number {
    return (this.mcountinhibit & 1) ? this.cycleFrozen : this.instret + this.blockN + this.cycleOff;
  }
  private instretValue(): number {
    return (this.mcountinhibit & 4) ? this.instretFrozen : this.instret + this.blockN + this.instretOff;
  }

  /** Reads a CSR into csrLo/csrHi; false = does not exist / not accessible (illegal instruction). */
  private csrRead(csr: number): boolean {
    switch (csr) {
      case 0x001: if (!this.fpEnabled()) return false; return this.setCsr(this.fflags, 0);
      case 0x002: if (!this.fpEnabled()) return false; return this.setCsr(this.frm, 0);
      case 0x003: if (!this.fpEnabled()) return false; return this.setCsr((this.frm << 5) | this.fflags, 0);
      case 0xc00: if (!this.counterAllowed(0)) return false; return this.setCsrNum(this.cycleValue());
      case 0xc01: if (!this.counterAllowed(1)) return false; return this.setCsrNum(this.clock.mtime());
      case 0xc02: if (!this.counterAllowed(2)) return false; return this.setCsrNum(this.instretValue());
      case 0x100: {
        const v = this.mstatus & SSTATUS_MASK;
        return this.setCsr(v, SSTATUS_HI | (((v & MS_FS) === MS_FS) ? 0x80000000 | 0 : 0));
      }
      case 0x104: return this.setCsr(this.mie & this.mideleg, 0);
      case 0x144: return this.setCsr(this.mip & this.mideleg, 0);
      case 0x105: case 0x140: case 0x141: case 0x142: case 0x143:
      case 0x305: case 0x340: case 0x341: case 0x342: case 0x343:
        return this.setCsr(this.cLo[csr], this.cHi[csr]);
      case 0x106: return this.setCsr(this.scounteren, 0);
      case 0x10a: return this.setCsr(this.senvcfg, 0);
      case 0x14d:
        if (this.mode === 1 && (!this.stce() || (this.mcounteren & 2) === 0)) return false;
        return this.setCsr(this.cLo[csr], this.cHi[csr]);
      case 0x180:
        if (this.mode === 1 && (this.mstatus & MS_TVM) !== 0) return false;
        return this.setCsr(this.cLo[csr], this.cHi[csr]);
      case 0xf11: case 0xf12: case 0xf13: case 0xf15: return this.setCsr(0, 0);
      case 0xf14: return this.setCsrNum(this.hartId);
      case 0x300: {
        const v = this.mstatus;
        return this.setCsr(v, MSTATUS_HI | (((v & MS_FS) === MS_FS) ? 0x80000000 | 0 : 0));
      }
      case 0x301: return this.setCsr(MISA_LO_BASE | (FP_PRESENT ? MISA_FD : 0), 0x80000000 | 0);
      case 0x302: return this.setCsr(this.medeleg, 0);
      case 0x303: return this.setCsr(this.mideleg, 0);
      case 0x304: return this.setCsr(this.mie, 0);
      case 0x306: return this.setCsr(this.mcounteren, 0);
      case 0x30a: return this.setCsr(this.menvcfgLo, this.menvcfgHi);
      case 0x320: return this.setCsr(this.mcountinhibit, 0);
      case 0x344: return this.setCsr(this.mip, 0);
      case 0x3a0: case 0x3a2: {
        const b = (csr - 0x3a0) * 4;
        const c = this.pmpcfg;
        return this.setCsr(c[b] | (c[b + 1] << 8) | (c[b + 2] << 16) | (c[b + 3] << 24),
          c[b + 4] | (c[b + 5] << 8) | (c[b + 6] << 16) | (c[b + 7] << 24));
      }
      case 0xb00: return this.setCsrNum(this.cycleValue());
      case 0xb02: return this.setCsrNum(this.instretValue());
      // Debug triggers (Sdtrig): tselect reads 0 whatever is written, tdata1 reads 0 ("no trigger"),
      // so software that probes triggers sees none.
      case 0x7a0: case 0x7a1: case 0x7a2: case 0x7a3: return this.setCsr(0, 0);
      default:
        if (csr >= 0x3b0 && csr <= 0x3bf) return this.setCsr(this.pmpAddrLo[csr - 0x3b0], this.pmpAddrHi[csr - 0x3b0]);
        // hpmcounter3..31 / mhpmcounter3..31 / mhpmevent3..31: implemented as read-only zero (priv spec 3.1.10).
        if (csr >= 0xc03 && csr <= 0xc1f) return this.counterAllowed(csr & 31) ? this.setCsr(0, 0) : false;
        if ((csr >= 0xb03 && csr <= 0xb1f) || (csr >= 0x323 && csr <= 0x33f)) return this.setCsr(0, 0);
        return false;
    }
  }

  /** Writes a CSR (already known to exist and be writable at this privilege). */
  private csrWrite(csr: number, lo: number, hi: number): boolean {
    switch (csr) {
      case 0x001: this.fflags = lo & 31; this.markFpDirty(); return true;
      case 0x002: this.frm = lo & 7; this.markFpDirty(); return true;
      case 0x003: this.fflags = lo & 31; this.frm = (lo >>> 5) & 7; this.markFpDirty(); return true;
      case 0x100: this.writeMstatus((this.mstatus & ~SSTATUS_MASK) | (lo & SSTATUS_MASK)); return true;
      case 0x300: this.writeMstatus(lo); return true;
      case 0x104: this.mie = (this.mie & ~this.mideleg) | (lo & this.mideleg & S_INTS); this.updateMip(); return true;
      case 0x304: this.mie = lo & MIE_MASK; this.updateMip(); return true;
      case 0x144: { // sip: only SSIP is writable, and only when delegated
        const m = MIP_SSIP & this.mideleg;
        this.mipSw = (this.mipSw & ~m) | (lo & m);
        this.updateMip();
        return true;
      }
      case 0x344: {
        const m = MIP_SSIP | MIP_SEIP | (this.stce() ? 0 : MIP_STIP);
        this.mipSw = (this.mipSw & ~m) | (lo & m);
        this.updateMip();
        return true;
      }
      case 0x105: case 0x305: // xtvec: modes 0 (direct) and 1 (vectored); other modes are reserved: keep old value
        if ((lo & 3) < 2) { this.cLo[csr] = lo; this.cHi[csr] = hi; }
        return true;
      case 0x141: case 0x341: this.cLo[csr] = lo & ~1; this.cHi[csr] = hi; return true; // IALIGN=16
      case 0x140: case 0x142: case 0x143: case 0x340: case 0x342: case 0x343:
        this.cLo[csr] = lo; this.cHi[csr] = hi; return true;
      case 0x106: this.scounteren = lo; return true;
      case 0x306: this.mcounteren = lo; return true;
      case 0x10a: this.senvcfg = lo & 1; return true;                    // FIOM
      case 0x30a: this.menvcfgLo = lo & 1; this.menvcfgHi = hi & (0x80000000 | 0); // FIOM, STCE
        if (!this.stce()) { this.stipTimer = 0; this.updateMip(); }
        return true;
      case 0x14d:
        this.cLo[csr] = lo; this.cHi[csr] = hi;
        this.stimecmp = (hi >>> 0) * TWO32 + (lo >>> 0);
        if (this.stce()) this.updateTimer();
        return true;
      case 0x180: { // satp: Bare or Sv39; other modes leave satp unchanged (priv spec 4.1.11)
        const m = hi >>> 28;
        if (m !== 0 && m !== 8) return true;
        this.cLo[csr] = lo; this.cHi[csr] = hi;
        this.satpSv39 = m === 8;
        this.satpRoot = ((hi & 0xfff) * TWO32 + (lo >>> 0)) * 4096;
        this.flushTlb();
        return true;
      }
      case 0x302: this.medeleg = lo & MEDELEG_MASK; return true;
      case 0x303: this.mideleg = lo & S_INTS; this.updateMip(); return true;
      case 0x320: {
        const v = lo & 5;
        const cyc = this.cycleValue(), ir = this.instretValue();
        if (v & 1) this.cycleFrozen = cyc; else this.cycleOff = cyc - (this.instret + this.blockN);
        if (v & 4) this.instretFrozen = ir; else this.instretOff = ir - (this.instret + this.blockN);
        this.mcountinhibit = v;
        return true;
      }
      case 0xb00: { // the write replaces this instruction's increment (priv spec 2.1 / Zicsr)
        const v = (hi >>> 0) * TWO32 + (lo >>> 0);
        if (this.mcountinhibit & 1) this.cycleFrozen = v; else this.cycleOff = v - (this.instret + this.blockN + 1);
        return true;
      }
      case 0xb02: {
        const v = (hi >>> 0) * TWO32 + (lo >>> 0);
        if (this.mcountinhibit & 4) this.instretFrozen = v; else this.instretOff = v - (this.instret + this.blockN + 1);
        return true;
      }
      case 0x3a0: case 0x3a2: {
        const b = (csr - 0x3a0) * 4;
        for (let i = 0; i < 8; i++) {
          if (this.pmpcfg[b + i] & 0x80) continue; // locked
          this.pmpcfg[b + i] = ((i < 4 ? lo >>> (8 * i) : hi >>> (8 * (i - 4))) & 0x9f);
        }
        this.pmpUpdate();
        return true;
      }
      case 0x301: case 0x7a0: case 0x7a1: case 0x7a2: case 0x7a3: return true; // WARL, read-only values
      default:
        if (csr >= 0x3b0 && csr <= 0x3bf) {
          const i = csr - 0x3b0;
          if (this.pmpcfg[i] & 0x80) return true;
          if (i < 15 && (this.pmpcfg[i + 1] & 0x98) === 0x88) return true; // locked TOR above uses it
          this.pmpAddrLo[i] = lo; this.pmpAddrHi[i] = hi & 0x3fffff;    // 54 bits
          this.pmpUpdate();
          return true;
        }
        if ((csr >= 0xb03 && csr <= 0xb1f) || (csr >= 0x323 && csr <= 0x33f)) return true;
        return false;
    }
  }

  private writeMstatus(v: number): void {
    const old = this.mstatus;
    let s = (old & ~MSTATUS_WMASK) | (v & MSTATUS_WMASK);
    // MPP is WARL over {U, S, M}: 2 (reserved) keeps the previous value.
    if (((s >>> MS_MPP_SHIFT) & 3) === 2) s = (s & ~MS_MPP) | (old & MS_MPP);
    this.mstatus = s;
    if (((old ^ s) & (MS_MPRV | MS_MPP | MS_SUM | MS_MXR)) !== 0) this.flushTlb();
  }

  // ================= PMP (priv spec 3.7) =================

  private pmpUpdate(): void {
    let prev = 0;
    this.pmpActive = 0;
    for (let i = 0; i < 16; i++) {
      const a = (this.pmpcfg[i] >>> 3) & 3;
      const addr = (this.pmpAddrHi[i] >>> 0) * TWO32 + (this.pmpAddrLo[i] >>> 0); // pmpaddr = PA >> 2
      if (a === 1) { this.pmpStart[i] = prev * 4; this.pmpEnd[i] = addr * 4; }
      else if (a === 2) { this.pmpStart[i] = addr * 4; this.pmpEnd[i] = addr * 4 + 4; }
      else if (a === 3) {
        // NAPOT: trailing ones t -> size 2^(t+3)
        let t = 0;
        let lo = this.pmpAddrLo[i], hi = this.pmpAddrHi[i];
        while (t < 54 && (t < 32 ? (lo >>> t) & 1 : (hi >>> (t - 32)) & 1)) t++;
        const size = Math.pow(2, t + 3);
        const base = Math.floor(addr * 4 / size) * size;
        this.pmpStart[i] = base; this.pmpEnd[i] = base + size;
        lo = hi = 0;
      }
      if (a !== 0) this.pmpActive++;
      prev = addr;
    }
    this.flushTlb();
  }

  /** Is [pa, pa+len) accessible for `acc` at privilege `mode`? */
  private pmpOk(pa: number, len: number, acc: number, mode: number): boolean {
    if (this.pmpActive === 0) return mode === 3;
    for (let i = 0; i < 16; i++) {
      const cfg = this.pmpcfg[i];
      if ((cfg & 0x18) === 0) continue;
      const s = this.pmpStart[i], e = this.pmpEnd[i];
      if (pa >= s && pa + len <= e) {
        if (mode === 3 && (cfg & 0x80) === 0) return true;
        return ((cfg >>> acc) & 1) !== 0;
      }
      if (pa < e && pa + len > s) return false; // partial match fails (priv spec 3.7.1.3)
    }
    return mode === 3;
  }

  // ================= address translation (priv spec 4.3, 4.4) =================

  private dataMode(): number {
    return (this.mode === 3 && (this.mstatus & MS_MPRV) !== 0) ? (this.mstatus >>> MS_MPP_SHIFT) & 3 : this.mode;
  }

  /** Translates a virtual address; returns the physical address or -1 after raising the fault. */
  private translate(lo: number, hi: number, acc: number): number {
    const mode = acc === ACC_FETCH ? this.mode : this.dataMode();
    if (mode === 3 || !this.satpSv39) {
      // Bare: physical addresses beyond what RAM/devices decode end as access faults later.
      return (hi >>> 0) * TWO32 + (lo >>> 0);
    }
    // Sv39: bits 63..39 must equal bit 38.
    if (((hi << 25) >> 25) !== hi) { this.trapAddr(PAGE_FAULT[acc], lo, hi); return -1; }
    const ram = this.mem.ram;
    walk: for (;;) {
    let a = this.satpRoot;
    let level = 2;
    let pteLo = 0, pteHi = 0, pteAddr = 0;
    let pteChunk: ChunkViews = DUMMY, pteOff = 0;
    for (;;) {
      const vpn = level === 2 ? (((hi & 0x7f) << 2) | (lo >>> 30)) : level === 1 ? (lo >>> 21) & 511 : (lo >>> 12) & 511;
      pteAddr = a + vpn * 8;
      if (!ram.contains(pteAddr, 8) || !this.pmpOk(pteAddr, 8, ACC_READ, 1)) {
        this.trapAddr(ACCESS_FAULT[acc], lo, hi); return -1;
      }
      const ro = pteAddr - ram.base;
      const ci = Math.floor(ro / CHUNK_SIZE);
      pteChunk = ram.views(ci);
      pteOff = ro - ci * CHUNK_SIZE;
      // One 64-bit access: a PTE another hart rewrites is never seen torn (RVWMO, priv spec 4.3.2).
      pteChunk.load64(pteOff);
      pteLo = D32[0]; pteHi = D32[1];
      if ((pteLo & 1) === 0 || (pteLo & 6) === 4 || (pteHi >>> 22) !== 0) { this.trapAddr(PAGE_FAULT[acc], lo, hi); return -1; }
      if ((pteLo & 0xa) !== 0) break; // leaf (R or X)
      if (level === 0) { this.trapAddr(PAGE_FAULT[acc], lo, hi); return -1; }
      level--;
      a = ((pteHi & 0x3fffff) * 4194304 + (pteLo >>> 10)) * 4096;
    }
    // Leaf checks.
    const ppn = (pteHi & 0x3fffff) * 4194304 + (pteLo >>> 10);
    if ((level === 2 && (ppn % 262144) !== 0) || (level === 1 && (ppn % 512) !== 0)) { this.trapAddr(PAGE_FAULT[acc], lo, hi); return -1; }
    const u = (pteLo & 16) !== 0;
    if (mode === 0 ? !u : (u && (acc === ACC_FETCH || (this.mstatus & MS_SUM) === 0))) { this.trapAddr(PAGE_FAULT[acc], lo, hi); return -1; }
    let ok: boolean;
    if (acc === ACC_READ) ok = (pteLo & 2) !== 0 || ((this.mstatus & MS_MXR) !== 0 && (pteLo & 8) !== 0);
    else if (acc === ACC_WRITE) ok = (pteLo & 4) !== 0;
    else ok = (pteLo & 8) !== 0;
    if (!ok) { this.trapAddr(PAGE_FAULT[acc], lo, hi); return -1; }
    // Hardware A/D update (priv spec 4.3.1, Svadu behaviour): set A, and D on writes, atomically
    // with the check that the PTE is still what the walk read; if another hart changed it in
    // between, the walk starts again (priv spec 4.3.2 step 7).
    const need = acc === ACC_WRITE ? 0xc0 : 0x40;
    if ((pteLo & need) !== need) {
      if (!this.pmpOk(pteAddr, 8, ACC_WRITE, 1)) { this.trapAddr(ACCESS_FAULT[acc], lo, hi); return -1; }
      const at = pteChunk.atomic64();
      const oldLo = at.cas(pteOff, pteLo, pteHi, pteLo | need, pteHi);
      if (oldLo !== pteLo || at.hi() !== pteHi) continue walk;
      if (this.pageCode.size !== 0) this.storeToCode(pteAddr, 8);
    }
    let pageNum = ppn;
    if (level >= 1) pageNum += (lo >>> 12) & 511;
    if (level === 2) pageNum += ((lo >>> 21) & 511) * 512;
    return pageNum * 4096 + (lo & 4095);
    }
  }

  /** Fills the TLB entry of `tlb` for the page of (lo, hi) -> pa when the page is RAM and PMP
   *  grants the whole page (otherwise every access keeps taking the slow path, which checks). */
  private fill(tlb: Tlb, lo: number, hi: number, pa: number, acc: number, mode: number): void {
    const ram = this.mem.ram;
    const pagePa = pa - (lo & 4095);
    if (!ram.contains(pagePa, 4096)) return;
    if (!this.pmpOk(pagePa, 4096, acc, mode)) return;
    if (acc === ACC_WRITE && this.mem.isPageWatched(pagePa / 4096)) return;
    if (acc === ACC_WRITE) { const c = this.pageCode.get(pagePa / 4096); if (c !== undefined && c.live !== 0) return; }
    const ro = pagePa - ram.base;
    const ci = Math.floor(ro / CHUNK_SIZE);
    const e = (lo >>> 12) & TLB_MASK;
    tlb.tagLo[e] = lo & -4096;
    tlb.tagHi[e] = hi;
    const v = ram.views(ci);
    tlb.u8[e] = v.u8;
    tlb.u16[e] = v.u16;
    tlb.i32[e] = v.i32;
    tlb.f64[e] = v.f64;
    tlb.chunk[e] = v;
    tlb.slot[e] = this.slotOf(v);
    tlb.off[e] = ro - ci * CHUNK_SIZE;
    tlb.pa[e] = pagePa;
    if (acc === ACC_FETCH) tlb.code[e] = this.pageCode.get(pagePa / 4096) ?? NO_CODE;
  }

  // ================= physical access =================

  /** Reads `size` bytes (1/2/4/8) at physical `pa` into memLo/memHi (zero-extended). False = nothing there. */
  private physRead(pa: number, size: number): boolean {
    const ram = this.mem.ram;
    if (ram.contains(pa, size)) {
      const ro = pa - ram.base;
      const ci = Math.floor(ro / CHUNK_SIZE);
      const co = ro - ci * CHUNK_SIZE;
      if ((co & (size - 1)) !== 0) { // misaligned (RVWMO: no atomicity asked): byte by byte
        let l = 0, h = 0;
        for (let i = 0; i < size; i++) {
          const b = ram.readU8(pa + i);
          if (i < 4) l |= b << (8 * i); else h |= b << (8 * (i - 4));
        }
        this.memLo = l; this.memHi = h;
        return true;
      }
      const v = ram.views(ci);
      switch (size) {
        case 1: this.memLo = v.u8[co]; this.memHi = 0; break;
        case 2: this.memLo = v.u16[co >> 1]; this.memHi = 0; break;
        case 4: this.memLo = v.i32[co >> 2]; this.memHi = 0; break;
        default: v.load64(co); this.memLo = D32[0]; this.memHi = D32[1]; break;
      }
      return true;
    }
    const r = this.mem.findDevice(pa);
    if (r === null || pa + size > r.base + r.size) return false;
    this.memLo = this.mem.readDevice(r, pa - r.base, size) | 0;
    this.memHi = size === 8 ? this.mem.readHi | 0 : 0;
    return true;
  }

  /** Writes `size` bytes at physical `pa`. False = nothing there. */
  private physWrite(pa: number, size: number, lo: number, hi: number): boolean {
    const ram = this.mem.ram;
    if (ram.contains(pa, size)) {
      const ro = pa - ram.base;
      const ci = Math.floor(ro / CHUNK_SIZE);
      const co = ro - ci * CHUNK_SIZE;
      if ((co & (size - 1)) !== 0) {
        for (let i = 0; i < size; i++) ram.writeU8(pa + i, (i < 4 ? lo >>> (8 * i) : hi >>> (8 * (i - 4))) & 0xff);
      } else {
        const v = ram.views(ci);
        switch (size) {
          case 1: v.u8[co] = lo; break;
          case 2: v.u16[co >> 1] = lo; break;
          case 4: v.i32[co >> 2] = lo; break;
          default: v.store64(co, lo, hi); break;
        }
      }
      this.stored(pa, size);
      return true;
    }
    const r = this.mem.findDevice(pa);
    if (r === null || pa + size > r.base + r.size) return false;
    this.mem.writeDevice(r, pa - r.base, size, lo, hi);
    return true;
  }

  /** After a store to RAM at [pa, pa+size) outside the TLB fast path: other harts' reservations
   *  on it break, translated code compiled from it is dropped, write watchers (HTIF) run. */
  private stored(pa: number, size: number): void {
    if (this.reservations.active[0] !== 0) this.reservations.storeBy(this.hartId, pa, size);
    if (this.pageCode.size !== 0) this.storeToCode(pa, size);
    if (this.mem.isPageWatched(Math.floor(pa / 4096)) || this.mem.isPageWatched(Math.floor((pa + size - 1) / 4096))) {
      this.mem.notifyWrite(pa, size);
    }
  }

  // ================= loads / stores (slow paths; also used by the F/D unit) =================

  /** Load with funct3 semantics (0 lb .. 6 lwu) at virtual (lo, hi); result in memLo/memHi. False = trapped. */
  loadMem(lo: number, hi: number, f3: number): boolean {
    const e = (lo >>> 12) & TLB_MASK, po = lo & 4095;
    const t = this.tlbR;
    if (t.tagLo[e] === (lo & -4096) && t.tagHi[e] === hi && (po & ((1 << (f3 & 3)) - 1)) === 0) {
      const a = t.off[e] + po;
      switch (f3) {
        case 2: { const v = t.i32[e][a >> 2]; this.memLo = v; this.memHi = v >> 31; return true; }
        case 3: t.chunk[e].load64(a); this.memLo = D32[0]; this.memHi = D32[1]; return true;
        case 6: this.memLo = t.i32[e][a >> 2]; this.memHi = 0; return true;
        default: break;
      }
    }
    return this.loadSlow(lo, hi, f3);
  }

  /** Store of 1 << (f3 & 3) bytes; false = trapped. */
  storeMem(lo: number, hi: number, f3: number, vlo: number, vhi: number): boolean {
    const e = (lo >>> 12) & TLB_MASK, po = lo & 4095;
    const t = this.tlbW;
    if ((f3 === 2 || f3 === 3) && t.tagLo[e] === (lo & -4096) && t.tagHi[e] === hi && (po & ((1 << f3) - 1)) === 0) {
      const a = t.off[e] + po;
      if (f3 === 2) t.i32[e][a >> 2] = vlo;
      else t.chunk[e].store64(a, vlo, vhi);
      if (this.reservations.active[0] !== 0) this.reservations.storeBy(this.hartId, t.pa[e] + po, 1 << f3);
      return true;
    }
    return this.storeSlow(lo, hi, f3, vlo, vhi);
  }

  /** @internal also called by translated loops (jit.ts). */
  loadSlow(lo: number, hi: number, f3: number): boolean {
    const size = 1 << (f3 & 3);
    let vl: number, vh: number;
    if ((lo & 4095) + size > 4096) {
      // Misaligned access crossing a page: byte by byte (mtval = address of the faulting byte).
      vl = 0; vh = 0;
      for (let i = 0; i < size; i++) {
        const bl = (lo + i) | 0;
        const bh = (hi + (((bl >>> 0) < (lo >>> 0)) ? 1 : 0)) | 0;
        const pa = this.translate(bl, bh, ACC_READ);
        if (pa < 0) return false;
        if (!this.pmpOk(pa, 1, ACC_READ, this.dataMode()) || !this.physRead(pa, 1)) { this.trapAddr(EXC_LOAD_ACCESS, bl, bh); return false; }
        if (i < 4) vl |= this.memLo << (8 * i); else vh |= this.memLo << (8 * (i - 4));
      }
    } else {
      const pa = this.translate(lo, hi, ACC_READ);
      if (pa < 0) return false;
      const mode = this.dataMode();
      if (!this.pmpOk(pa, size, ACC_READ, mode) || !this.physRead(pa, size)) { this.trapAddr(EXC_LOAD_ACCESS, lo, hi); return false; }
      this.fill(this.tlbR, lo, hi, pa, ACC_READ, mode);
      vl = this.memLo; vh = this.memHi;
    }
    switch (f3) {
      case 0: vl = (vl << 24) >> 24; vh = vl >> 31; break;
      case 1: vl = (vl << 16) >> 16; vh = vl >> 31; break;
      case 2: vh = vl >> 31; break;
      case 3: break;
      default: vh = 0; break;
    }
    this.memLo = vl; this.memHi = vh;
    return true;
  }

  /** @internal also called by translated loops (jit.ts). */
  storeSlow(lo: number, hi: number, f3: number, vlo: number, vhi: number): boolean {
    const size = 1 << (f3 & 3);
    if ((lo & 4095) + size > 4096) {
      // Crossing a page: translate every byte first so that a fault leaves memory unchanged.
      const mode = this.dataMode();
      for (let i = 0; i < size; i++) {
        const bl = (lo + i) | 0;
        const bh = (hi + (((bl >>> 0) < (lo >>> 0)) ? 1 : 0)) | 0;
        const pa = this.translate(bl, bh, ACC_WRITE);
        if (pa < 0) return false;
        if (!this.pmpOk(pa, 1, ACC_WRITE, mode) || !(this.mem.ram.contains(pa, 1) || this.mem.findDevice(pa) !== null)) {
          this.trapAddr(EXC_STORE_ACCESS, bl, bh); return false;
        }
        this.bytePa[i] = pa;
      }
      for (let i = 0; i < size; i++) this.physWrite(this.bytePa[i], 1, (i < 4 ? vlo >>> (8 * i) : vhi >>> (8 * (i - 4))) & 0xff, 0);
      return true;
    }
    const pa = this.translate(lo, hi, ACC_WRITE);
    if (pa < 0) return false;
    const mode = this.dataMode();
    if (!this.pmpOk(pa, size, ACC_WRITE, mode) || !this.physWrite(pa, size, vlo, vhi)) { this.trapAddr(EXC_STORE_ACCESS, lo, hi); return false; }
    this.fill(this.tlbW, lo, hi, pa, ACC_WRITE, mode);
    return true;
  }

  // ================= fetch slow path =================

  /** Fetches the instruction at pc (raw bits, >= 0) and sets up the fetch page; -1 = trapped. */
  private fetchSlow(pc: number): number {
    if (pc !== pc) {
      // An address beyond 2^53 (see exactPc): no memory there, so this always faults, exactly.
      this.fVa = NaN;
      return this.fetchHalf(this.farLo, this.farHi, false) < 0 ? -1 : this.fetchFarImpossible();
    }
    const lo = pc | 0, hi = Math.floor(pc / TWO32) | 0;
    const h0 = this.fetchHalf(lo, hi, true);
    if (h0 < 0) return -1;
    if ((h0 & 3) !== 3) return h0;
    const lo2 = (lo + 2) | 0, hi2 = (hi + ((lo2 >>> 0) < (lo >>> 0) ? 1 : 0)) | 0;
    const h1 = this.fetchHalf(lo2, hi2, false);
    if (h1 < 0) return -1;
    return (h0 | (h1 << 16)) >>> 0;
  }

  /** Not reachable: nothing is mapped at a far address (bare: beyond every device; Sv39: not canonical). */
  private fetchFarImpossible(): number {
    this.trapAddr(EXC_INSN_ACCESS, this.farLo, this.farHi);
    return -1;
  }

  /** One 16-bit parcel of an instruction; `setPage` makes its page the current fetch page. */
  private fetchHalf(lo: number, hi: number, setPage: boolean): number {
    const t = this.tlbX;
    const e = (lo >>> 12) & TLB_MASK;
    let pa: number;
    if (t.tagLo[e] === (lo & -4096) && t.tagHi[e] === hi) {
      pa = t.pa[e] + (lo & 4095);
    } else {
      pa = this.translate(lo, hi, ACC_FETCH);
      if (pa < 0) return -1;
      if (!this.pmpOk(pa, 2, ACC_FETCH, this.mode)) { this.trapAddr(EXC_INSN_ACCESS, lo, hi); return -1; }
      this.fill(t, lo, hi, pa, ACC_FETCH, this.mode);
    }
    if (t.tagLo[e] === (lo & -4096) && t.tagHi[e] === hi) {
      if (setPage) {
        this.fVa = hi * TWO32 + ((lo & -4096) >>> 0);
        this.fView = t.u16[e];
        this.fOff = t.off[e] >>> 1;
        this.fCode = t.code[e];
        this.fPn = t.pa[e] / 4096;
      }
      return t.u16[e][(t.off[e] + (lo & 4095)) >> 1];
    }
    // Not cacheable (MMIO, or PMP granularity finer than a page): read through the bus.
    if (!this.pmpOk(pa, 2, ACC_FETCH, this.mode) || !this.physRead(pa, 2)) { this.trapAddr(EXC_INSN_ACCESS, lo, hi); return -1; }
    if (setPage) this.fVa = NaN;
    return this.memLo & 0xffff;
  }

  // ================= A extension =================

  /** The chunk holding RAM bytes [pa, pa+size) (amoOff = pa's offset in it); null when not RAM. */
  private ramChunk(pa: number, size: number): ChunkViews | null {
    const ram = this.mem.ram;
    if (!ram.contains(pa, size)) return null;
    const ro = pa - ram.base;
    const ci = Math.floor(ro / CHUNK_SIZE);
    this.amoOff = ro - ci * CHUNK_SIZE;
    return ram.views(ci);
  }

  /** LR, SC and AMOs (A extension). On RAM they are atomic across threads: word operations with
   *  JS Atomics, doubleword ones with the wasm helper (docs/guest-ram.md); SC is a compare-and-swap
   *  against the value LR loaded, and fails when another hart stored to the granule since. */
  private execAmo(insn: number, raw: number, rd: number): boolean {
    const f3 = (insn >>> 12) & 7;
    if (f3 !== 2 && f3 !== 3) { this.trap(EXC_ILLEGAL, false, raw, 0); return false; }
    const size = f3 === 2 ? 4 : 8;
    const f5 = insn >>> 27;
    const rs1 = (insn >>> 15) & 31, rs2 = (insn >>> 20) & 31;
    const lo = this.xlo[rs1], hi = this.xhi[rs1];
    const xl = this.xlo, xh = this.xhi;
    switch (f5) {
      case 0x02: case 0x03: case 0x01: case 0x00: case 0x04: case 0x0c: case 0x08:
      case 0x10: case 0x14: case 0x18: case 0x1c: break;
      default: this.trap(EXC_ILLEGAL, false, raw, 0); return false;
    }
    if (f5 === 0x02 && rs2 !== 0) { this.trap(EXC_ILLEGAL, false, raw, 0); return false; }
    // Misaligned LR/SC/AMOs fault (we do not support misaligned atomics).
    if ((lo & (size - 1)) !== 0) { this.trapAddr(f5 === 0x02 ? EXC_LOAD_MISALIGNED : EXC_STORE_MISALIGNED, lo, hi); return false; }
    const mode = this.dataMode();
    if (f5 === 0x02) { // LR
      const pa = this.translate(lo, hi, ACC_READ);
      if (pa < 0) return false;
      if (!this.pmpOk(pa, size, ACC_READ, mode)) { this.trapAddr(EXC_LOAD_ACCESS, lo, hi); return false; }
      const c = this.ramChunk(pa, size);
      let vl: number, vh: number;
      if (c !== null) {
        if (size === 4) { vl = Atomics.load(c.i32, this.amoOff >> 2); vh = 0; } else { c.load64(this.amoOff); vl = D32[0]; vh = D32[1]; }
      } else {
        if (!this.physRead(pa, size)) { this.trapAddr(EXC_LOAD_ACCESS, lo, hi); return false; }
        vl = this.memLo; vh = this.memHi;
      }
      this.lrPa = pa; this.lrLo = vl; this.lrHi = vh;
      this.reservations.set(this.hartId, pa);
      if (size === 4) { xl[rd] = vl; xh[rd] = vl >> 31; } else { xl[rd] = vl; xh[rd] = vh; }
      return true;
    }
    if (f5 === 0x03) { // SC
      if (!this.reservations.holds(this.hartId)) { xl[rd] = 1; xh[rd] = 0; return true; }
      const pa = this.translate(lo, hi, ACC_WRITE);
      if (pa < 0) return false;
      if (!this.reservations.take(this.hartId, pa) || pa !== this.lrPa) { xl[rd] = 1; xh[rd] = 0; return true; }
      if (!this.pmpOk(pa, size, ACC_WRITE, mode)) { this.trapAddr(EXC_STORE_ACCESS, lo, hi); return false; }
      const c = this.ramChunk(pa, size);
      let ok = true;
      if (c !== null) {
        const o = this.amoOff;
        if (size === 4) ok = Atomics.compareExchange(c.i32, o >> 2, this.lrLo, xl[rs2]) === this.lrLo;
        else { const at = c.atomic64(); ok = at.cas(o, this.lrLo, this.lrHi, xl[rs2], xh[rs2]) === this.lrLo && at.hi() === this.lrHi; }
        if (ok) this.stored(pa, size);
      } else if (!this.physWrite(pa, size, xl[rs2], xh[rs2])) { this.trapAddr(EXC_STORE_ACCESS, lo, hi); return false; }
      xl[rd] = ok ? 0 : 1; xh[rd] = 0;
      return true;
    }
    const pa = this.translate(lo, hi, ACC_WRITE);
    if (pa < 0) return false;
    if (!this.pmpOk(pa, size, ACC_WRITE, mode) || !this.pmpOk(pa, size, ACC_READ, mode)) { this.trapAddr(EXC_STORE_ACCESS, lo, hi); return false; }
    const bl = xl[rs2], bh = size === 4 ? xl[rs2] >> 31 : xh[rs2];
    const c = this.ramChunk(pa, size);
    let al: number, ah: number;
    if (c === null) {
      // A device register: read, compute, write (atomicity towards other harts is not promised
      // for I/O regions, PMA "AMOs" in the privileged spec).
      if (!this.physRead(pa, size)) { this.trapAddr(EXC_STORE_ACCESS, lo, hi); return false; }
      al = this.memLo; ah = size === 4 ? al >> 31 : this.memHi;
      amoResult(f5, al, ah, bl, bh);
      if (!this.physWrite(pa, size, AMO[0], AMO[1])) { this.trapAddr(EXC_STORE_ACCESS, lo, hi); return false; }
    } else if (size === 4) {
      const w = c.i32, i = this.amoOff >> 2;
      switch (f5) {
        case 0x01: al = Atomics.exchange(w, i, bl); break;
        case 0x00: al = Atomics.add(w, i, bl); break;
        case 0x04: al = Atomics.xor(w, i, bl); break;
        case 0x0c: al = Atomics.and(w, i, bl); break;
        case 0x08: al = Atomics.or(w, i, bl); break;
        default: // MIN/MAX/MINU/MAXU: compare-and-swap until nobody stored in between
          for (;;) {
            al = Atomics.load(w, i);
            amoResult(f5, al, al >> 31, bl, bh);
            if (Atomics.compareExchange(w, i, al, AMO[0]) === al) break;
          }
      }
      ah = al >> 31;
      this.stored(pa, 4);
    } else {
      const at = c.atomic64(), o = this.amoOff;
      switch (f5) {
        case 0x01: al = at.xchg(o, bl, bh); ah = at.hi(); break;
        case 0x00: al = at.add(o, bl, bh); ah = at.hi(); break;
        case 0x04: al = at.xor(o, bl, bh); ah = at.hi(); break;
        case 0x0c: al = at.and(o, bl, bh); ah = at.hi(); break;
        case 0x08: al = at.or(o, bl, bh); ah = at.hi(); break;
        default:
          for (;;) {
            c.load64(o);
            al = D32[0]; ah = D32[1];
            amoResult(f5, al, ah, bl, bh);
            if (at.cas(o, al, ah, AMO[0], AMO[1]) === al && at.hi() === ah) break;
          }
      }
      this.stored(pa, 8);
    }
    xl[rd] = al; xh[rd] = ah;
    return true;
  }
}

/** Result of the AMO `f5` on old value (al, ah) and operand (bl, bh), in AMO[0..1]. */
const AMO = new Int32Array(2);
function amoResult(f5: number, al: number, ah: number, bl: number, bh: number): void {
  let nl: number, nh: number;
  switch (f5) {
    case 0x01: nl = bl; nh = bh; break;                                    // AMOSWAP
    case 0x00: nl = (al + bl) | 0; nh = (ah + bh + (((nl >>> 0) < (al >>> 0)) ? 1 : 0)) | 0; break; // AMOADD
    case 0x04: nl = al ^ bl; nh = ah ^ bh; break;
    case 0x0c: nl = al & bl; nh = ah & bh; break;
    case 0x08: nl = al | bl; nh = ah | bh; break;
    default: {
      const lt = f5 === 0x10 || f5 === 0x14
        ? ah < bh || (ah === bh && (al >>> 0) < (bl >>> 0))
        : (ah >>> 0) < (bh >>> 0) || (ah === bh && (al >>> 0) < (bl >>> 0));
      const takeA = (f5 === 0x10 || f5 === 0x18) ? lt : !lt; // MIN/MINU keep the smaller, MAX/MAXU the larger
      if (takeA) { nl = al; nh = ah; } else { nl = bl; nh = bh; }
    }
  }
  AMO[0] = nl; AMO[1] = nh;
}

/** A hart's saved state (Hart.saveState): 64-bit values as int32 lo/hi halves, JSON-safe. */
export interface HartState {
  /** null: a pc beyond 2^53 (only reachable as a fetch fault), exact in farLo/farHi. */
  pc: number | null; farLo: number; farHi: number;
  mode: number;
  xlo: number[]; xhi: number[];
  /** f0..f31 as raw bits, [2i] low word, [2i+1] high word. */
  fregs: number[]; fflags: number; frm: number;
  mstatus: number; mie: number; mipSw: number; mipLines: number; stipTimer: number;
  medeleg: number; mideleg: number; mcounteren: number; scounteren: number;
  menvcfgLo: number; menvcfgHi: number; senvcfg: number; mcountinhibit: number;
  /** The plain 64-bit CSRs (xtvec, xepc, xscratch, xcause, xtval, satp, stimecmp) that are not 0. */
  csrs: [number, number, number][];
  /** Sstc comparator (null: never written). */
  stimecmp: number | null;
  pmpcfg: number[]; pmpAddrLo: number[]; pmpAddrHi: number[];
  instret: number; cycleOff: number; instretOff: number; cycleFrozen: number; instretFrozen: number;
  /** Physical address of the LR reservation (-1 = none) and the value LR loaded (SC compares it). */
  reservation: number; lrLo: number; lrHi: number;
  /** In WFI with nothing pending. */
  waiting: boolean;
  /** HSM stopped (builtin SBI). */
  halted: boolean;
}

// ================= warm-up (see warmup.ts) =================

let warmedUp = false;

function warmUp(): void {
  const base = 0x80000000;
  const ram = new GuestRam(base, CHUNK_SIZE);
  const mem = new PhysicalMemoryMap(ram);
  const h = new Hart(0, mem, { mtime: () => 0 });
  // A device whose stores change an interrupt line of the hart (MSIP; never enabled here).
  mem.addDevice(0x2000000, 0x1000, 'warm-up', { read: () => 0, write: (_o, _s, v) => h.setInterruptLevel(3, (v & 1) !== 0) });
  // A device whose stores end the translated harts' regions (linesChanged; the interrupt is never enabled).
  mem.addDevice(0x2001000, 0x1000, 'warm-up-jit', {
    read: () => 0, write: (_o, _s, v) => { j.setInterruptLevel(3, (v & 1) !== 0); j2.setInterruptLevel(3, (v & 1) !== 0); },
  });
  h.jitEnabled = false;
  const { words, halves } = warmUpProgram(300);
  WARMUP_HANDLER.forEach((w, i) => ram.writeU32(base + 4 * i, w));
  // The program starts on the page after the trap handler's: every trap changes the fetch page.
  const start = base + 0x1000;
  h.writeCsr(0x300, BigInt(0x2000)); // mstatus.FS = Initial
  words.forEach((w, i) => ram.writeU32(start + 4 * i, w));
  const tail = start + 4 * words.length;
  halves.forEach((hw, i) => ram.writeU16(tail + 2 * i, hw));
  ram.writeU32(tail + 2 * halves.length, 0x10500073); // wfi: the end
  h.writeCsr(0x305, BigInt(base));
  h.setX(8, base + 0x10000);
  h.setX(9, base + 0x11000 - 3 - 8);
  h.setPc(start);
  // The second hart runs translated code (jitWarmUpProgram) in the same rounds, so that V8's first
  // optimization of the interpreter loop has feedback for its paths into translated code too.
  const j = new Hart(0, mem, { mtime: () => 0 });
  const jStart = base + 0x9000;
  jitWarmUpProgram(HOT_THRESHOLD + 64).forEach((w, i) => ram.writeU32(jStart + 4 * i, w));
  j.setPc(jStart);
  j.wasmHot = HOT_THRESHOLD; // the program is sized for it: the wasm tier's paths get feedback too
  // and a third the same program with jit.ts's first tier, in place of the WebAssembly tier
  const j2 = new Hart(0, mem, { mtime: () => 0 });
  j2.wasmTier = false;
  j2.regionHot = 1; // and its first-tier loops are made full regions (the interpreter's promotion path)
  j2.setPc(jStart);
  // Counters that grow without bound hold values past V8's small integers (2^31 on Node's 64-bit
  // builds) from the start. V8 keeps a field that has only held small integers in that form, and the
  // first larger value changes its representation: a new Hart (or JitStats) map, which throws
  // away the optimized code of every function that uses one while the guest runs (execBlock, run,
  // runRegions, the slow paths, the machine's run loop: 35 "wrong map" deoptimizations in one
  // programs run).
  // instret passes 2^31 about 2.1 G instructions into a VM's life (during sort in the bench
  // programs run); the warm-up harts' own counters take such values here instead.
  for (const x of [h, j, j2]) {
    x.instret = 2 ** 32;
    const st = x.jitStats as unknown as Record<string, unknown>;
    for (const k of Object.keys(st)) if (typeof st[k] === 'number') st[k] = 2 ** 32;
  }
  let hDone = false;
  for (let k = 0; k < 2000 && !(hDone && j.waiting && j2.waiting); k++) {
    // small budgets first: blocks that end on the budget run before V8 optimizes the loop
    if (!hDone) h.run(k % 2 === 0 ? 57 : 10_000);
    // the compressed tail may wander (c.j, branches); keep it inside RAM
    hDone = h.waiting || !(h.pc >= base && h.pc < base + 0x8000);
    if (!j.waiting) j.run(k % 2 === 0 ? 57 : 1000);
    if (!j2.waiting) j2.run(k % 2 === 0 ? 57 : 1000);
  }
  // an instruction fetch that faults (nothing at 0)
  h.waiting = false;
  h.setPc(0);
  h.run(1);
  // Every CSR written twice with different values and the code caches dropped: V8 tracks a
  // field never written since construction as a constant, and optimized code that relies on it is
  // thrown away when a guest first writes it (mie, frm, stimecmp, ...: "field constness changed").
  for (let csr = 0; csr < 4096; csr++) { h.writeCsr(csr, 0n); h.writeCsr(csr, -1n); }
  j.flushCode(); j2.flushCode();
}
