// `firmware: builtin`: a RISC-V Supervisor Binary Interface implementation in TypeScript, so a
// Linux kernel boots in S-mode with nothing but vmctl. It answers ECALLs from S-mode through the
// hart's ecallHook (no M-mode code runs at all). RISC-V SBI specification v1.0.0:
//   Base (EID 0x10, ch. 4), TIME (0x54494D45, ch. 6), IPI (0x735049, ch. 7),
//   RFENCE (0x52464E43, ch. 8), HSM (0x48534D, ch. 9), SRST (0x53525354, ch. 10),
//   legacy v0.1 set_timer/console_putchar/console_getchar/clear_ipi/send_ipi/remote_fence_i/
//   remote_sfence_vma(_asid)/shutdown (ch. 5).
// Calling convention (ch. 3): a7 = EID, a6 = FID, a0..a5 = arguments; returns a0 = error,
// a1 = value (legacy calls: a0 only).
//
// M-mode state is set up as OpenSBI leaves it for the kernel: PMP entry 0 = all memory RWX,
// menvcfg.STCE (Sstc: the kernel programs stimecmp itself), mcounteren = all, scounteren =
// CY|TM|IR, mideleg = the
// S-level interrupts, medeleg = every exception S-mode can handle. OpenSBI delegates fewer
// exceptions and re-injects the rest into S-mode (sbi_trap_redirect); with no M-mode code we
// delegate them directly, which S-mode cannot tell apart. Misaligned accesses never trap on our hart.

import type { Hart } from '../../riscv/hart.js';
import type { PowerEvent } from '../machine-types.js';

export const SBI_EXT_BASE = 0x10;
export const SBI_EXT_TIME = 0x54494d45;
export const SBI_EXT_IPI = 0x735049;
export const SBI_EXT_RFENCE = 0x52464e43;
export const SBI_EXT_HSM = 0x48534d;
export const SBI_EXT_SRST = 0x53525354;

const SBI_SUCCESS = 0n;
const SBI_ERR_NOT_SUPPORTED = -2n;
const SBI_ERR_INVALID_PARAM = -3n;
const SBI_ERR_INVALID_ADDRESS = -5n;
const SBI_ERR_ALREADY_AVAILABLE = -6n;

/** SBI spec 1.0.0: (major << 24) | minor. */
const SPEC_VERSION = 1n << 24n;
/** Implementation ID: not one of the registered ones (0..8 are BBL, OpenSBI, Xvisor, KVM, ...). */
export const SBI_IMPL_ID_VMCTL = 0x766d6374n; // "vmct"
const IMPL_VERSION = 1n;

const NO_RETURN = Symbol('no return');

const CSR_SCOUNTEREN = 0x106, CSR_SIP = 0x144, CSR_STIMECMP = 0x14d;
const CSR_MEDELEG = 0x302, CSR_MIDELEG = 0x303, CSR_MCOUNTEREN = 0x306, CSR_MENVCFG = 0x30a, CSR_MTVEC = 0x305;
const CSR_PMPCFG0 = 0x3a0, CSR_PMPADDR0 = 0x3b0;
const MIP_SSIP = 1n << 1n;

/** Every synchronous exception except ECALL from S/M-mode (priv spec 3.1.8 table): 0-8, 12, 13, 15. */
const MEDELEG = 0xb1ffn;
/** SSI, STI, SEI. */
const MIDELEG = 0x222n;

const U64 = (v: bigint) => BigInt.asUintN(64, v);

/** The harts as the SBI sees them, by hart ID. On a machine whose harts share one thread they
 *  are Hart objects (LocalHarts); with harts on several threads, shared control words
 *  (src/board/smp.ts). `self` is the calling hart, always of the calling thread. */
export interface SbiHarts {
  readonly count: number;
  /** SBI HSM status (spec 9.1): 0 started, 1 stopped, 2 start pending. */
  status(id: number): number;
  /** hart_start of a stopped hart; false when it is not stopped (anymore). */
  start(id: number, pc: number, opaque: bigint): boolean;
  /** hart_stop of the calling hart. */
  stop(self: Hart): void;
  /** Sets sip.SSIP of the hart (an IPI). */
  raiseSsip(id: number): void;
  /** Remote FENCE.I (`fenceI`) or SFENCE.VMA on these harts: done when this returns, as far as
   *  any guest instruction can tell. */
  fence(self: Hart, ids: readonly number[], fenceI: boolean): void;
}

export const HSM_STATUS_STARTED = 0, HSM_STATUS_STOPPED = 1;

/** The harts of a machine that runs them all on one thread. */
export class LocalHarts implements SbiHarts {
  constructor(private readonly harts: readonly Hart[]) {}
  get count(): number { return this.harts.length; }
  status(id: number): number { return this.harts[id].halted ? HSM_STATUS_STOPPED : HSM_STATUS_STARTED; }
  start(id: number, pc: number, opaque: bigint): boolean {
    const t = this.harts[id];
    if (!t.halted) return false;
    t.hsmStart(pc, opaque);
    return true;
  }
  stop(self: Hart): void { self.halted = true; }
  raiseSsip(id: number): void { raiseSsip(this.harts[id]); }
  /**
   * FENCE.I: harts fetch straight from RAM, but each keeps loops it translated to JS
   * (src/riscv/jit.ts), which only its own stores and FENCE.I drop: drop them on the targets.
   * SFENCE.VMA (any range or ASID): drop the remote soft TLBs, a superset of what was asked.
   */
  fence(_self: Hart, ids: readonly number[], fenceI: boolean): void {
    for (const id of ids) remoteFence(this.harts[id], fenceI);
  }
}

/** What a remote fence does on the hart it reaches. */
export function remoteFence(t: Hart, fenceI: boolean): void {
  if (fenceI) t.flushCode(); else t.flushTlb();
}

/** An IPI as the SBI delivers it: sip.SSIP. */
export function raiseSsip(t: Hart): void {
  t.writeCsr(CSR_SIP, (t.readCsr(CSR_SIP) ?? 0n) | MIP_SSIP);
}

export interface SbiPlatform {
  /** Every hart of the machine; as Hart objects, they are also the harts of this thread. */
  readonly harts: readonly Hart[] | SbiHarts;
  /** A byte for the console. */
  putchar(b: number): void;
  /** The next console input byte, or -1. */
  getchar(): number;
  power(ev: PowerEvent): void;
  /** Where an unexpected M-mode trap lands (a spin loop the board watches for). */
  readonly trapSink: number;
  readonly ramBase: number;
  readonly ramSize: number;
}

export class BuiltinSbi {
  private readonly harts: SbiHarts;

  /** With `harts` as Hart objects, every one of them is attached at once. */
  constructor(private readonly p: SbiPlatform) {
    if (Array.isArray(p.harts)) {
      this.harts = new LocalHarts(p.harts);
      for (const h of p.harts as readonly Hart[]) this.attach(h);
    } else this.harts = p.harts as SbiHarts;
  }

  /** Takes a hart of this thread: its ECALLs from S-mode come here, and it is put in the state
   *  OpenSBI hands over in, HSM-stopped until hart 0 is booted or the kernel starts it (SBI spec
   *  9: only the boot hart runs). */
  attach(h: Hart): void {
    h.ecallHook = (hart) => this.ecall(hart);
    this.csr(h, CSR_PMPADDR0, (1n << 54n) - 1n);    // NAPOT covering the whole address space
    this.csr(h, CSR_PMPCFG0, 0x1fn);                 // A=NAPOT, X, W, R
    this.csr(h, CSR_MEDELEG, MEDELEG);
    this.csr(h, CSR_MIDELEG, MIDELEG);
    this.csr(h, CSR_MCOUNTEREN, 0xffffffffn);
    // OpenSBI also opens cycle/time/instret to U-mode (scounteren = CY|TM|IR); Linux relies on
    // it for the vDSO's rdtime and never sets scounteren itself.
    this.csr(h, CSR_SCOUNTEREN, 7n);
    this.csr(h, CSR_MENVCFG, 1n << 63n);              // STCE
    this.csr(h, CSR_MTVEC, BigInt(this.p.trapSink));
    h.halted = true;
  }

  /** Hart 0 starts the kernel in S-mode (a0 = 0, a1 = the device tree). */
  boot(kernelEntry: number, fdtAddr: number): void {
    this.harts.start(0, kernelEntry, BigInt(fdtAddr));
  }

  private csr(h: Hart, n: number, v: bigint): void {
    if (!h.writeCsr(n, v)) throw new Error(`builtin SBI: hart ${h.hartId} has no CSR 0x${n.toString(16)}`);
  }

  /** ECALL from S-mode. Always handled (unknown calls answer SBI_ERR_NOT_SUPPORTED). */
  ecall(h: Hart): boolean {
    const eid = Number(h.getX(17));
    const fid = Number(h.getX(16));
    const a = (i: number) => h.getX(10 + i);
    let err = SBI_SUCCESS;
    let val: bigint | null = 0n;
    switch (eid) {
      // ---- legacy extensions (v0.1): result in a0 only ----
      case 0x00: this.setTimer(h, a(0)); h.setX(10, 0n); return true;
      case 0x01: this.putchar(Number(a(0) & 0xffn)); h.setX(10, 0n); return true;
      case 0x02: h.setX(10, U64(BigInt(this.p.getchar()))); return true;
      case 0x03: this.clearSsip(h); h.setX(10, 0n); return true;
      case 0x08: this.p.power({ kind: 'poweroff', code: 0, source: 'sbi', failed: false }); h.setX(10, 0n); return true;
      case 0x04: case 0x05: case 0x06: case 0x07: {
        // send_ipi(hart_mask), remote_fence_i(hart_mask), remote_sfence_vma(hart_mask, start,
        // size), remote_sfence_vma_asid(hart_mask, start, size, asid): a0 is the address of the
        // mask (an unsigned long) in S-mode virtual memory, 0 = all harts (SBI spec ch. 5).
        const targets = this.legacyTargets(h, a(0));
        if (targets === null) {
          // Reading the mask faulted, and the fault was taken as a trap of the ECALL (sepc = its
          // address, stval = the mask's), which is what OpenSBI does (sbi_trap_redirect): the
          // caller sees a load fault, not an error code. The hook's caller adds 4 to pc.
          h.setPc(h.pc - 4);
          return true;
        }
        if (eid === 0x04) this.sendIpi(targets);
        else this.harts.fence(h, targets, eid === 0x05);
        h.setX(10, 0n);
        return true;
      }

      case SBI_EXT_BASE:
        switch (fid) {
          case 0: val = SPEC_VERSION; break;
          case 1: val = SBI_IMPL_ID_VMCTL; break;
          case 2: val = IMPL_VERSION; break;
          case 3: val = this.probe(Number(a(0))) ? 1n : 0n; break;
          case 4: val = h.readCsr(0xf11) ?? 0n; break;
          case 5: val = h.readCsr(0xf12) ?? 0n; break;
          case 6: val = h.readCsr(0xf13) ?? 0n; break;
          default: err = SBI_ERR_NOT_SUPPORTED;
        }
        break;

      case SBI_EXT_TIME:
        if (fid === 0) this.setTimer(h, a(0)); else err = SBI_ERR_NOT_SUPPORTED;
        break;

      case SBI_EXT_IPI:
        if (fid === 0) {
          const targets = this.targets(a(0), a(1));
          if (targets === null) err = SBI_ERR_INVALID_PARAM;
          else this.sendIpi(targets);
        } else err = SBI_ERR_NOT_SUPPORTED;
        break;

      case SBI_EXT_RFENCE: {
        if (fid > 2) { err = SBI_ERR_NOT_SUPPORTED; break; } // hypervisor fences: no H extension
        const targets = this.targets(a(0), a(1));
        if (targets === null) { err = SBI_ERR_INVALID_PARAM; break; }
        this.harts.fence(h, targets, fid === 0);
        break;
      }

      case SBI_EXT_HSM: {
        const r = this.hsm(h, fid, a(0), a(1), a(2));
        if (r === NO_RETURN) return true; // the hart's registers now belong to its new start
        [err, val] = r;
        break;
      }

      case SBI_EXT_SRST:
        if (fid === 0) {
          const type = a(0), reason = a(1);
          if (type > 2n && type < 0xf0000000n) { err = SBI_ERR_INVALID_PARAM; break; }
          if (type === 0n) this.p.power({ kind: 'poweroff', code: reason === 1n ? 1 : 0, source: 'sbi', failed: reason === 1n });
          else if (type === 1n || type === 2n) this.p.power({ kind: 'reset', source: 'sbi' });
          else err = SBI_ERR_NOT_SUPPORTED;
        } else err = SBI_ERR_NOT_SUPPORTED;
        break;

      default:
        err = SBI_ERR_NOT_SUPPORTED;
    }
    h.setX(10, U64(err));
    // a1 is unspecified on error (SBI spec 3); like OpenSBI we return 0 there.
    h.setX(11, err === SBI_SUCCESS && val !== null ? U64(val) : 0n);
    return true;
  }

  /** Console output as OpenSBI's sbi_putc does it: LF goes out as CR LF. */
  private putchar(b: number): void {
    if (b === 0x0a) this.p.putchar(0x0d);
    this.p.putchar(b);
  }

  private probe(eid: number): boolean {
    // Every legacy EID 0x00..0x08 (as OpenSBI, whose legacy extension spans exactly that range).
    return [SBI_EXT_BASE, SBI_EXT_TIME, SBI_EXT_IPI, SBI_EXT_RFENCE, SBI_EXT_HSM, SBI_EXT_SRST].includes(eid) ||
      (eid >= 0x00 && eid <= 0x08);
  }

  /** TIME set_timer: program the hart's stimecmp (Sstc); this also clears a pending STIP. */
  private setTimer(h: Hart, t: bigint): void {
    h.writeCsr(CSR_STIMECMP, t);
  }

  private sendIpi(targets: readonly number[]): void {
    for (const t of targets) this.harts.raiseSsip(t);
  }

  /**
   * Harts named by a legacy call's hart-mask pointer: the mask is read as an S-mode load of the
   * calling hart would (its translation, SUM/MXR, PMP); null when that load faulted (the hart
   * has taken the trap). As in OpenSBI, only started harts are targets: bits of stopped or
   * nonexistent harts are ignored, and a null pointer means every started hart.
   */
  private legacyTargets(h: Hart, ptr: bigint): number[] | null {
    const all = [...Array(this.harts.count).keys()];
    const started = (i: number) => this.harts.status(i) === HSM_STATUS_STARTED;
    if (ptr === 0n) return all.filter(started);
    if (!h.loadMem(Number(BigInt.asIntN(32, ptr)), Number(BigInt.asIntN(32, ptr >> 32n)), 3)) return null;
    const mask = (BigInt(h.memHi >>> 0) << 32n) | BigInt(h.memLo >>> 0);
    return all.filter((i) => i < 64 && ((mask >> BigInt(i)) & 1n) !== 0n && started(i));
  }

  private clearSsip(h: Hart): void {
    h.writeCsr(CSR_SIP, (h.readCsr(CSR_SIP) ?? 0n) & ~MIP_SSIP);
  }

  /** Harts named by (hart_mask, hart_mask_base) (SBI spec 3.1); null = an invalid hart ID. */
  private targets(mask: bigint, base: bigint): number[] | null {
    const n = this.harts.count;
    if (base === U64(-1n)) return [...Array(n).keys()];
    const out: number[] = [];
    for (let i = 0n; i < 64n; i++) {
      if (((mask >> i) & 1n) === 0n) continue;
      const id = base + i;
      if (id >= BigInt(n)) return null;
      out.push(Number(id));
    }
    return out;
  }

  private hsm(h: Hart, fid: number, a0: bigint, a1: bigint, a2: bigint): [bigint, bigint | null] | typeof NO_RETURN {
    const harts = this.harts;
    switch (fid) {
      case 0: { // hart_start(hartid, start_addr, opaque)
        if (a0 >= BigInt(harts.count)) return [SBI_ERR_INVALID_PARAM, null];
        const id = Number(a0);
        if (harts.status(id) !== HSM_STATUS_STOPPED) return [SBI_ERR_ALREADY_AVAILABLE, null];
        if (!this.inRam(a1)) return [SBI_ERR_INVALID_ADDRESS, null];
        if (!harts.start(id, Number(a1), a2)) return [SBI_ERR_ALREADY_AVAILABLE, null];
        return [SBI_SUCCESS, 0n];
      }
      case 1: // hart_stop(): does not return; the hart waits for a hart_start
        harts.stop(h);
        return NO_RETURN;
      case 2: { // hart_get_status(hartid)
        if (a0 >= BigInt(harts.count)) return [SBI_ERR_INVALID_PARAM, null];
        return [SBI_SUCCESS, BigInt(harts.status(Number(a0)))];
      }
      case 3: { // hart_suspend(suspend_type, resume_addr, opaque)
        const type = a0;
        if (type === 0n) {
          // default retentive suspend: like WFI, returns SUCCESS once an interrupt is pending
          h.waiting = true;
          return [SBI_SUCCESS, 0n];
        }
        if (type === 0x80000000n) {
          // default non-retentive suspend: resumes at resume_addr in S-mode (SBI spec 9.4) as if
          // started by hart_start. The hook's caller adds 4 to pc, hence the - 4.
          if (!this.inRam(a1)) return [SBI_ERR_INVALID_ADDRESS, null];
          h.hsmStart(Number(a1) - 4, a2);
          h.waiting = true;
          return NO_RETURN;
        }
        return [SBI_ERR_INVALID_PARAM, null];
      }
      default:
        return [SBI_ERR_NOT_SUPPORTED, null];
    }
  }

  private inRam(addr: bigint): boolean {
    return addr >= BigInt(this.p.ramBase) && addr < BigInt(this.p.ramBase + this.p.ramSize);
  }
}
