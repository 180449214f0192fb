// Bytes waiting in the stack (received from a host socket, not yet acknowledged by the guest),
// kept as the chunks they arrived in, and the per-VM budget every such byte is counted against.

export class ByteQueue {
  private readonly chunks: Uint8Array[] = [];
  /** Bytes of chunks[0] already dropped. */
  private headOffset = 0;
  length = 0;

  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.length += chunk.length;
  }

  /** Drops the first n bytes. */
  drop(n: number): void {
    n = Math.min(n, this.length);
    this.length -= n;
    while (n > 0) {
      const c = this.chunks[0];
      const left = c.length - this.headOffset;
      if (n < left) {
        this.headOffset += n;
        return;
      }
      n -= left;
      this.chunks.shift();
      this.headOffset = 0;
    }
  }

  /** Copies bytes [from, from + len) of the queue into dst at `at`. */
  copyTo(dst: Uint8Array, at: number, from: number, len: number): void {
    let skip = from + this.headOffset;
    for (const c of this.chunks) {
      if (len === 0) return;
      if (skip >= c.length) { skip -= c.length; continue; }
      const n = Math.min(c.length - skip, len);
      dst.set(c.subarray(skip, skip + n), at);
      at += n;
      len -= n;
      skip = 0;
    }
    if (len > 0) throw new RangeError(`ByteQueue.copyTo past the end (from ${from}, ${len} left, length ${this.length})`);
  }

  clear(): void {
    this.chunks.length = 0;
    this.headOffset = 0;
    this.length = 0;
  }
}

/**
 * The bytes a VM's network may hold on the host at once (TCP data in either direction, queued
 * frames): above the limit, TCP windows close toward the guest and host sockets are paused (down
 * to a small floor per connection, tcp.ts FLOOR_BUF), so a guest or a host peer that stops reading
 * cannot make the daemon grow. Crossing the limit is logged once per episode.
 */
export class ByteBudget {
  used = 0;
  private reported = false;

  constructor(readonly limit: number, private readonly log: (m: string) => void, private readonly what: string) {}

  add(n: number): void {
    this.used += n;
    if (this.used >= this.limit && !this.reported) {
      this.reported = true;
      this.log(`${this.what}: ${this.used} bytes buffered, at the limit of ${this.limit}; holding senders back`);
    }
  }

  sub(n: number): void {
    this.used = Math.max(0, this.used - n);
    if (this.used < this.limit / 2) this.reported = false;
  }

  /** Bytes that may still be taken in. */
  free(): number {
    return Math.max(0, this.limit - this.used);
  }
}
