// The newest console output of a VM's current boot, kept in memory for `vmctl wait --for-console`
// and `start --wait-for` (vm.subscribe with history): the last `limit` bytes (config.yaml
// consoleHistorySize), in one buffer written round as a ring.
//
// One buffer rather than the chunks as they came from the worker: a guest that prints a few bytes
// at a time (a ticker: "tick N" every 50 ms) sends tens of chunks a second, and each chunk kept as
// a Buffer of its own costs about 200 bytes of JavaScript heap (the Buffer and its ArrayBuffer)
// beside its few bytes of data. A 1 MiB history of 10-byte chunks held some 20 MB of heap per VM,
// and filled for hours (the daemon's heap grew 4 MB a minute with 18 tickers, issue 11). Here the
// heap holds one object per VM whatever the guest prints; the buffer grows by doubling up to the
// limit, so a quiet VM does not take the whole limit.

/** The first buffer's size (a boot banner fits). */
const INITIAL_BYTES = 4096;

export class ConsoleHistory {
  private buf = Buffer.alloc(0);
  /** Where the next byte goes. */
  private end = 0;
  /** Bytes held: the `size` bytes before `end`, wrapping round. */
  private size = 0;

  constructor(private readonly limit: number) {
    if (!Number.isSafeInteger(limit) || limit <= 0) throw new RangeError(`console history limit must be a positive number of bytes, not ${limit}`);
  }

  /** Bytes held (at most the limit). */
  get length(): number {
    return this.size;
  }

  /** Bytes of memory held (the buffer's size, at most the limit). */
  get capacity(): number {
    return this.buf.length;
  }

  /** Forgets everything (a new boot) and gives the buffer back. */
  clear(): void {
    this.buf = Buffer.alloc(0);
    this.end = 0;
    this.size = 0;
  }

  append(data: Uint8Array): void {
    let d = data;
    if (d.length === 0) return;
    // Only the newest `limit` bytes can be kept.
    if (d.length > this.limit) d = d.subarray(d.length - this.limit);
    if (this.size + d.length > this.buf.length && this.buf.length < this.limit) this.grow(this.size + d.length);
    const cap = this.buf.length;
    const first = Math.min(d.length, cap - this.end);
    this.buf.set(d.subarray(0, first), this.end);
    if (first < d.length) this.buf.set(d.subarray(first), 0);
    this.end = (this.end + d.length) % cap;
    this.size = Math.min(cap, this.size + d.length);
  }

  /** A copy of the bytes held, oldest first. */
  contents(): Buffer {
    const cap = this.buf.length;
    const start = (this.end - this.size + cap) % (cap || 1);
    if (start + this.size <= cap) return Buffer.from(this.buf.subarray(start, start + this.size));
    return Buffer.concat([this.buf.subarray(start), this.buf.subarray(0, this.end)], this.size);
  }

  /** A larger buffer (at least `need` bytes, at most the limit), holding the bytes from offset 0. */
  private grow(need: number): void {
    const cap = Math.min(this.limit, Math.max(need, INITIAL_BYTES, this.buf.length * 2));
    const next = Buffer.alloc(cap);
    this.contents().copy(next, 0);
    this.buf = next;
    this.end = this.size % cap;
  }
}
