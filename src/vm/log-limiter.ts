// The VM's messages (device errors, malformed virtqueues, unexpected traps) on their way to the
// daemon's log, rate-limited per source: a guest that makes a device fail on every request (a full
// host disk: ENOSPC thousands of times a second) must neither flood vmd.log nor fall silent. Each
// source (the text before the first ": ", e.g. "virtio-blk disk0 @0x10001000") may log BURST lines
// per WINDOW_MS; what is held back beyond that is counted and reported once the window is over,
// with the last message held back, so the log always says that errors went on and how many.

/** Lines a source may log per window. */
const BURST = 10;
const WINDOW_MS = 10_000;
/** Sources tracked at once (a message without a ": " is its own source). */
const MAX_SOURCES = 64;

interface Source {
  windowStart: number;
  logged: number;
  suppressed: number;
  last: string;
}

export class LogLimiter {
  private readonly sources = new Map<string, Source>();

  constructor(private readonly out: (message: string) => void, private readonly now: () => number = Date.now) {}

  log(message: string): void {
    const colon = message.indexOf(': ');
    const key = colon > 0 ? message.slice(0, colon) : message;
    const t = this.now();
    let s = this.sources.get(key);
    if (s && t - s.windowStart >= WINDOW_MS) {
      this.report(key, s);
      s = undefined;
    }
    if (!s) {
      if (this.sources.size >= MAX_SOURCES) this.flush(true);
      s = { windowStart: t, logged: 0, suppressed: 0, last: '' };
      this.sources.set(key, s);
    }
    if (s.logged < BURST) {
      s.logged++;
      this.out(message);
    } else {
      s.suppressed++;
      s.last = message;
    }
  }

  /** Reports what was held back in windows that are over (or in all of them, `all`: at the end). */
  flush(all = false): void {
    const t = this.now();
    for (const [key, s] of this.sources) {
      if (all || t - s.windowStart >= WINDOW_MS) {
        this.report(key, s);
        this.sources.delete(key);
      }
    }
  }

  private report(key: string, s: Source): void {
    if (s.suppressed === 0) return;
    const secs = Math.max(1, Math.round((this.now() - s.windowStart) / 1000));
    const last = s.last.startsWith(`${key}: `) ? s.last.slice(key.length + 2) : s.last;
    this.out(`${key}: ${s.suppressed} more message${s.suppressed === 1 ? '' : 's'} suppressed in ${secs} s (the last: ${last})`);
    s.suppressed = 0;
  }
}
