// The machine's timebase: `mtime`, 10 MHz (QEMU virt's timebase-frequency, 0x989680),
// following host time while the machine runs and standing still while it is paused.
// The CLINT exposes it at mtime; the harts read it through the `time` CSR and compare
// it with `stimecmp` (Sstc). Values are JS numbers: exact for 2^53 ticks (28 years).
//
// One clock for all harts, also when they run on several threads: its state lives in a
// SharedArrayBuffer that every thread's VirtClock reads, and host time comes from the process's
// monotonic clock, which every thread reads alike (see monotonicMs). Only the machine's own
// thread changes the state (resume, pause, a guest write to mtime), and only while the other
// harts are held (pause) or as a CLINT write (setMtime).

export const TIMEBASE_HZ = 10_000_000;
const TICKS_PER_MS = TIMEBASE_HZ / 1000;
const BASE = 0, HOST_START = 1, RUNNING = 2, LAST = 3;

/** Milliseconds on the process-wide monotonic clock (the same in every thread). performance.now()
 *  counts from each thread's own start, so the offset to process.hrtime is measured once per
 *  thread (the smallest of several samples: exact to well under a microsecond). */
const monoOffsetMs = ((): number => {
  let best = Infinity, off = 0;
  for (let i = 0; i < 16; i++) {
    const a = performance.now();
    const h = Number(process.hrtime.bigint()) / 1e6;
    const b = performance.now();
    if (b - a < best) { best = b - a; off = h - (a + b) / 2; }
  }
  return off;
})();
export function monotonicMs(): number { return performance.now() + monoOffsetMs; }

export interface ClockState { mtime: number }

export class VirtClock {
  /** [BASE] mtime at [HOST_START] (or the frozen value while paused), [RUNNING] 0/1,
   *  [LAST] the largest value handed out (mtime never goes backwards). */
  private readonly s: Float64Array;

  /** `shared`: the state of the same clock in another thread (`sharedState`). */
  constructor(private readonly hostNowMs: () => number = monotonicMs, shared?: SharedArrayBuffer) {
    this.s = new Float64Array(shared ?? new SharedArrayBuffer(4 * 8));
  }

  /** The state to hand to another thread's VirtClock. */
  get sharedState(): SharedArrayBuffer { return this.s.buffer as SharedArrayBuffer; }

  /** Current mtime in ticks. */
  mtime(): number {
    const s = this.s;
    if (s[RUNNING] === 0) return s[BASE];
    const t = s[BASE] + Math.floor((this.hostNowMs() - s[HOST_START]) * TICKS_PER_MS);
    // Racing threads may both raise LAST; each still returns a value no smaller than it read.
    const last = s[LAST];
    if (t > last) { s[LAST] = t; return t; }
    return last;
  }

  /** A guest write to mtime (Priv spec 3.2.1: mtime is writable). */
  setMtime(ticks: number): void {
    const s = this.s;
    s[HOST_START] = this.hostNowMs();
    s[BASE] = ticks;
    s[LAST] = ticks;
  }

  get isRunning(): boolean { return this.s[RUNNING] !== 0; }

  /** Saved state: mtime alone (host time is not part of the machine). */
  saveState(): ClockState {
    return { mtime: this.mtime() };
  }

  /** Continues from a saved mtime, running or paused as this clock is: the guest sees no jump
   *  in its monotonic clock, however long the state was kept (QEMU's loadvm does the same). */
  loadState(s: ClockState): void {
    this.setMtime(s.mtime);
  }

  resume(): void {
    const s = this.s;
    if (s[RUNNING] !== 0) return;
    s[HOST_START] = this.hostNowMs();
    s[RUNNING] = 1;
  }

  pause(): void {
    const s = this.s;
    if (s[RUNNING] === 0) return;
    const t = this.mtime();
    s[BASE] = t;
    s[LAST] = t;
    s[RUNNING] = 0;
  }

  /** Milliseconds of running host time until mtime reaches `ticks` (0 if already there). */
  msUntil(ticks: number): number {
    const d = ticks - this.mtime();
    return d <= 0 ? 0 : d / TICKS_PER_MS;
  }
}
