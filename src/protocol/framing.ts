// Newline-delimited JSON framing. Lines are bounded so a peer cannot make us buffer without limit.

/** Longest request line the daemon accepts (a VM file in vm.create, console input). A longer one
 *  is discarded as it arrives (never buffered whole) and answered with a ProtocolError. */
export const MAX_LINE_BYTES = 1024 * 1024;

function tooLong(max: number): string {
  return `message longer than ${max} bytes, the protocol's limit for one line; it was discarded`;
}

export type FrameResult = { ok: true; value: unknown } | { ok: false; reason: 'too-long' | 'bad-json' | 'bad-utf8'; detail: string };

/** Splits a byte stream into lines and parses each as JSON. */
export class LineDecoder {
  private parts: Buffer[] = [];
  private size = 0;
  /** True while discarding the rest of an over-long line. */
  private skipping = false;
  private readonly utf8 = new TextDecoder('utf-8', { fatal: true });

  constructor(private readonly maxLine: number, private readonly onFrame: (f: FrameResult) => void) {}

  push(chunk: Buffer): void {
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(10, start);
      if (nl < 0) {
        const rest = chunk.subarray(start);
        if (this.skipping) return;
        if (this.size + rest.length > this.maxLine) {
          this.parts = [];
          this.size = 0;
          this.skipping = true;
          this.onFrame({ ok: false, reason: 'too-long', detail: tooLong(this.maxLine) });
          return;
        }
        if (rest.length > 0) {
          this.parts.push(rest);
          this.size += rest.length;
        }
        return;
      }
      const piece = chunk.subarray(start, nl);
      start = nl + 1;
      if (this.skipping) {
        this.skipping = false;
        continue;
      }
      if (this.size + piece.length > this.maxLine) {
        this.parts = [];
        this.size = 0;
        this.onFrame({ ok: false, reason: 'too-long', detail: tooLong(this.maxLine) });
        continue;
      }
      const line = this.parts.length === 0 ? piece : Buffer.concat([...this.parts, piece]);
      this.parts = [];
      this.size = 0;
      this.emit(line);
    }
  }

  private emit(line: Buffer): void {
    let text: string;
    try {
      text = this.utf8.decode(line);
    } catch {
      this.onFrame({ ok: false, reason: 'bad-utf8', detail: 'line is not valid UTF-8' });
      return;
    }
    if (text.trim() === '') return;
    try {
      this.onFrame({ ok: true, value: JSON.parse(text) });
    } catch (e) {
      this.onFrame({ ok: false, reason: 'bad-json', detail: `malformed JSON: ${(e as Error).message}` });
    }
  }
}

export function encodeFrame(msg: unknown): string {
  return `${JSON.stringify(msg)}\n`;
}
