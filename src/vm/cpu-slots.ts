// The CPU allowance of every hart of every VM of a daemon, in one SharedArrayBuffer that the
// daemon's scheduler (src/daemon/scheduler.ts) and every hart's thread map (docs/harts.md).
//
// Each hart has a slot. Its thread charges the host CPU time the hart uses to USED (ns, growing
// forever) and may run while USED is below LIMIT; the scheduler raises LIMIT every period by
// what max-min fairness by weight and cap grants the hart, and wakes it (SEQ). So the daemon
// decides who gets how much, and the threads hold themselves to it without asking between
// slices. CPU time is the thread's own (Linux: /proc/thread-self/schedstat, read every
// MEASURE_MS of running); in between, wall time stands in for it.
//
// Per slot: f64 [LIMIT, USED, WAITED (ns throttled), IDLE_SINCE...], i32 [SEQ, FLAGS].
// FLAGS: HIT (the hart found its allowance used up this period), IDLE (it sleeps: WFI or stopped).

import { closeSync, openSync, readSync } from 'node:fs';
import { monotonicMs } from '../devices/clock.js';

export const MAX_SLOTS = 512;
const F = 4, I = 2;
/** f64 index after the slots: when (monotonicMs) the scheduler grants time next. */
const NEXT_GRANT = MAX_SLOTS * F;
const LIMIT = 0, USED = 1, WAITED = 2;
const SEQ = 0, FLAGS = 1;
export const FLAG_HIT = 1, FLAG_IDLE = 2;
/** How much running (ms of wall time) between two reads of the thread's CPU clock. */
const MEASURE_MS = 10;

export class CpuSlots {
  readonly f64: Float64Array;
  readonly i32: Int32Array;

  constructor(buffer?: SharedArrayBuffer) {
    const b = buffer ?? new SharedArrayBuffer(MAX_SLOTS * (8 * F + 4 * I) + 8);
    this.f64 = new Float64Array(b, 0, MAX_SLOTS * F + 1);
    this.i32 = new Int32Array(b, (MAX_SLOTS * F + 1) * 8, MAX_SLOTS * I);
  }

  get buffer(): SharedArrayBuffer { return this.f64.buffer as SharedArrayBuffer; }

  limit(s: number): number { return this.f64[s * F + LIMIT]; }
  used(s: number): number { return this.f64[s * F + USED]; }
  waited(s: number): number { return this.f64[s * F + WAITED]; }
  flags(s: number): number { return Atomics.load(this.i32, s * I + FLAGS); }

  /** A fresh slot for a hart: nothing used, `limitNs` allowed. */
  reset(s: number, limitNs: number): void {
    this.f64[s * F + USED] = 0;
    this.f64[s * F + WAITED] = 0;
    this.f64[s * F + LIMIT] = limitNs;
    Atomics.store(this.i32, s * I + FLAGS, 0);
  }

  /** When the scheduler grants time next (monotonicMs, src/devices/clock.ts). */
  get nextGrant(): number { return this.f64[NEXT_GRANT]; }
  set nextGrant(t: number) { this.f64[NEXT_GRANT] = t; }

  /** The scheduler grants a new limit; a hart waiting for it wakes. */
  setLimit(s: number, limitNs: number): void {
    this.f64[s * F + LIMIT] = limitNs;
    Atomics.add(this.i32, s * I + SEQ, 1);
    Atomics.notify(this.i32, s * I + SEQ);
  }

  /** Reads and clears the HIT flag (the hart wanted more than it got this period). */
  takeHit(s: number): boolean {
    return (Atomics.and(this.i32, s * I + FLAGS, ~FLAG_HIT) & FLAG_HIT) !== 0;
  }
}

/** The calling thread's CPU clock (Linux: the first field of /proc/thread-self/schedstat, ns
 *  on a CPU), kept open: a read is a pread of a few bytes (about 6 us; opening it each time
 *  costs ten times more). Must be made on the thread it measures. */
class ThreadCpuClock {
  private fd: number | null;
  private readonly buf = Buffer.alloc(64);
  constructor() {
    let fd: number | null = null;
    try { fd = openSync('/proc/thread-self/schedstat', 'r'); } catch { /* not Linux: wall time */ }
    this.fd = fd;
  }
  /** ns, or null when there is no such clock. */
  read(): number | null {
    if (this.fd === null) return null;
    const n = readSync(this.fd, this.buf, 0, 64, 0);
    let v = 0;
    for (let i = 0; i < n; i++) {
      const c = this.buf[i];
      if (c < 48 || c > 57) break;
      v = v * 10 + (c - 48);
    }
    return v;
  }
  /** Closes the file (a thread's fd is the process's: it outlives the thread). */
  close(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }
}

/**
 * One hart's side of its slot (src/board/smp.ts calls it around every slice; see CpuGate there).
 */
export class SlotGate {
  private pendingMs = 0;
  private readonly clock = new ThreadCpuClock();
  /** The thread's CPU clock at the last measurement; null until the hart first asks to run
   *  (building the machine and warming up the interpreter are not the guest's time). */
  private cpuAt: number | null = null;
  private readonly base: number;
  private readonly ibase: number;

  constructor(private readonly slots: CpuSlots, slot: number) {
    this.base = slot * F;
    this.ibase = slot * I;
  }

  /** 0 when the hart may run a slice now, else how long to wait at most (ms) before asking again. */
  wait(): number {
    if (this.cpuAt === null) this.cpuAt = this.clock.read() ?? 0;
    const f = this.slots.f64;
    if (f[this.base + USED] + this.pendingMs * 1e6 < f[this.base + LIMIT]) return 0;
    this.measure();
    if (f[this.base + USED] < f[this.base + LIMIT]) return 0;
    Atomics.or(this.slots.i32, this.ibase + FLAGS, FLAG_HIT);
    // Nothing more until the scheduler's next grant: asking again sooner would only spend the
    // little a held-back hart gets on asking.
    return Math.max(1, Math.min(200, this.slots.nextGrant - monotonicMs()));
  }

  /** Sleeps (at most `ms`) until the scheduler raises the limit. */
  sleep(ms: number): void {
    const i = this.slots.i32, at = this.ibase + SEQ;
    const seq = Atomics.load(i, at);
    const t0 = performance.now();
    if (this.slots.f64[this.base + USED] >= this.slots.f64[this.base + LIMIT]) Atomics.wait(i, at, seq, ms);
    this.slots.f64[this.base + WAITED] += (performance.now() - t0) * 1e6;
  }

  /** The hart ran a slice of `ms` wall time. */
  ran(ms: number): void {
    this.pendingMs += ms;
    if (this.pendingMs >= MEASURE_MS) this.measure();
  }

  /** The hart sleeps (WFI, stopped) or wants to run again (a flag for the scheduler; what it
   *  ran is charged at the next measurement). */
  idle(on: boolean): void {
    if (on) Atomics.or(this.slots.i32, this.ibase + FLAGS, FLAG_IDLE);
    else Atomics.and(this.slots.i32, this.ibase + FLAGS, ~FLAG_IDLE);
  }

  /** Done with the slot: the thread's CPU clock is closed (the gate must not be used after). */
  close(): void {
    this.clock.close();
  }

  /** Charges the CPU time used since the last measurement (wall time where the CPU clock
   *  cannot be read). */
  private measure(): void {
    const now = this.clock.read();
    const f = this.slots.f64;
    if (now !== null && this.cpuAt !== null && now > 0) {
      f[this.base + USED] += Math.max(0, now - this.cpuAt);
      this.cpuAt = now;
    } else f[this.base + USED] += this.pendingMs * 1e6;
    this.pendingMs = 0;
  }
}
