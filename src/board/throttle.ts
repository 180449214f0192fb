// A rate limit shared by the loops that run guests: the VM thread's run loop (src/vm/run-loop.ts)
// and the hart threads' loop (src/board/smp.ts) each collect their heap at most this often.

/** A thread that dropped RAM chunks, or whose guest waits, collects its heap at most this often (a full collection takes 20-40 ms). */
export const COLLECT_EVERY_MS = 1000;

/** Lets something happen at most once every `ms` milliseconds (performance.now()'s clock). */
export class Throttle {
  private last = 0;
  constructor(private readonly ms: number) {}
  /** Whether it may happen now (never in the thread's first `ms`: performance.now() counts from the thread's start); if so, the next time is `ms` from now. */
  take(): boolean {
    const now = performance.now();
    if (now - this.last < this.ms) return false;
    this.last = now;
    return true;
  }
}
