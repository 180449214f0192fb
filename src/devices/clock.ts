// The machine's timebase: `mtime`, 10 MHz (QEMU virt's timebase-frequency, 0x989680),
// following host time while the machine runs and standing still while it is paused.
// The CLINT exposes it at mtime; the harts read it through the `time` CSR and compare
// it with `stimecmp` (Sstc). Values are JS numbers: exact for 2^53 ticks (28 years).

export const TIMEBASE_HZ = 10_000_000;
const TICKS_PER_MS = TIMEBASE_HZ / 1000;

export class VirtClock {
  /** mtime at `hostStartMs` (or the frozen value while paused). */
  private base = 0;
  private hostStartMs = 0;
  private running = false;
  /** Never go backwards, even if the host clock is adjusted. */
  private last = 0;

  constructor(private readonly hostNowMs: () => number = () => performance.now()) {}

  /** Current mtime in ticks. */
  mtime(): number {
    if (!this.running) return this.base;
    const t = this.base + Math.floor((this.hostNowMs() - this.hostStartMs) * TICKS_PER_MS);
    if (t > this.last) this.last = t;
    return this.last;
  }

  /** A guest write to mtime (Priv spec 3.2.1: mtime is writable). */
  setMtime(ticks: number): void {
    this.base = ticks;
    this.last = ticks;
    this.hostStartMs = this.hostNowMs();
  }

  get isRunning(): boolean { return this.running; }

  resume(): void {
    if (this.running) return;
    this.hostStartMs = this.hostNowMs();
    this.running = true;
  }

  pause(): void {
    if (!this.running) return;
    this.base = this.mtime();
    this.last = this.base;
    this.running = false;
  }

  /** Milliseconds of running host time until mtime reaches `ticks` (0 if already there). */
  msUntil(ticks: number): number {
    const d = ticks - this.mtime();
    return d <= 0 ? 0 : d / TICKS_PER_MS;
  }
}
