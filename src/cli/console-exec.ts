// `vmctl exec` over a serial console: the line typed to the guest's shell, and reading the command's
// output and exit status back out of everything the console shows.
//
// The console is one stream: the shell's prompt and its echo of the typed line (redrawn and wrapped
// by its line editor), the command's output, kernel messages. The typed line makes the shell itself
// print a begin marker, run the command, then print an end marker with `$?`:
//
//   ^U printf 'VMCTL%s-begin\n' NONCE; (eval "$(printf %b 'COMMAND')") </dev/null; printf '\nVMCTL%s-end %d\n' NONCE $?
//
// - The markers are assembled by printf from two words, so the echo of the typed line never
//   contains them: only a shell that ran the line prints them.
// - COMMAND travels inside a single-quoted printf %b argument with `\`, `'`, controls and non-ASCII
//   bytes as octal escapes: the typed line is always valid shell, whatever COMMAND holds (quotes,
//   comments, newlines, tabs that a line editor would take as completion), and a syntax error in
//   COMMAND is the command's failure (status 2), not a shell left waiting for a closing quote.
// - A subshell keeps `cd`, `exit` and variables from touching the console's shell; stdin is
//   /dev/null (as `ssh -n`), so a command that reads input ends instead of waiting for the console.
// - ^U (kill line) first clears anything typed on the shell's line before.
// - Output: the terminal's output processing turns "\n" into "\r\n" (termios ONLCR). How the begin
//   marker's "\n" arrives says whether it is on; if so "\r\n" is turned back into "\n" (a program's
//   own "\r\n" became "\r\r\n", so it comes back as "\r\n"). The "\n" before the end marker is
//   removed, so output without a final newline comes back without one.

export const MARKER = 'VMCTL';
/** Busybox ash's line editor takes lines of up to 1023 bytes (CONFIG_FEATURE_EDITING_MAX_LEN); a
 *  canonical-mode tty 4095. A longer line would be cut, so a longer command is refused. */
export const MAX_TYPED_LINE = 1000;

/** Printable ASCII except `\` and `'` stays readable in the typed line; the rest is escaped. */
function escapeForPrintfB(command: string): string {
  let s = '';
  for (const b of Buffer.from(command, 'utf8')) {
    if (b >= 0x20 && b < 0x7f && b !== 0x5c && b !== 0x27) s += String.fromCharCode(b);
    else s += `\\0${b.toString(8).padStart(3, '0')}`;
  }
  return s;
}

/** The line typed on the console (with its Enter). */
export function typedLine(command: string, nonce: string): string {
  return `\x15 printf '${MARKER}%s-begin\\n' ${nonce}; (eval "$(printf %b '${escapeForPrintfB(command)}')") </dev/null; printf '\\n${MARKER}%s-end %d\\n' ${nonce} $?\n`;
}

/** A nonce for one exec: the markers of two execs never match each other. */
export function newNonce(): string {
  return `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 10)}`;
}

const CR = 0x0d;
const LF = 0x0a;

/**
 * Reads the console stream of one exec: nothing until the begin marker, then the command's output
 * (given back as it arrives, less what could still be the start of the end marker), then the exit
 * status from the end marker.
 */
export class ExecOutput {
  private readonly begin: Buffer;
  private readonly end: Buffer;
  private stage: 'waiting' | 'output' | 'done' = 'waiting';
  private buf = Buffer.alloc(0);
  private crlf = false;
  /** The last console text seen before the shell answered (for the error when it never does). */
  private before = Buffer.alloc(0);
  /** The command's exit status once done (null: the end marker carried none that could be read). */
  status: number | null = null;

  constructor(nonce: string) {
    this.begin = Buffer.from(`${MARKER}${nonce}-begin`);
    this.end = Buffer.from(`${MARKER}${nonce}-end `);
  }

  get started(): boolean {
    return this.stage !== 'waiting';
  }

  get done(): boolean {
    return this.stage === 'done';
  }

  /** What the console showed before the shell answered, its end (for error messages). */
  consoleBefore(): string {
    return this.before.toString('utf8');
  }

  /** Feeds console bytes; returns the command output they complete. */
  push(bytes: Uint8Array): Buffer {
    if (this.stage === 'done') return Buffer.alloc(0);
    this.buf = this.buf.length === 0 ? Buffer.from(bytes) : Buffer.concat([this.buf, bytes]);
    if (this.stage === 'waiting') {
      const i = this.buf.indexOf(this.begin);
      if (i < 0) {
        this.remember(this.buf.subarray(0, Math.max(0, this.buf.length - this.begin.length)));
        this.buf = this.buf.subarray(Math.max(0, this.buf.length - this.begin.length));
        return Buffer.alloc(0);
      }
      const after = i + this.begin.length;
      // The marker's own line end tells whether the tty turns "\n" into "\r\n".
      if (after >= this.buf.length || (this.buf[after] === CR && after + 1 >= this.buf.length)) return Buffer.alloc(0);
      this.remember(this.buf.subarray(0, i));
      this.crlf = this.buf[after] === CR && this.buf[after + 1] === LF;
      const skip = this.crlf ? 2 : this.buf[after] === LF ? 1 : 0;
      this.buf = this.buf.subarray(after + skip);
      this.stage = 'output';
    }
    return this.output();
  }

  private output(): Buffer {
    const i = this.buf.indexOf(this.end);
    // Hold back what could be the start of the end marker and the line end before it.
    if (i < 0) return this.emit(this.buf.length - this.end.length - 2, false);
    const nl = this.buf.indexOf(LF, i + this.end.length);
    if (nl < 0) return this.emit(i - this.lineEndBefore(i), false); // the status is on its way
    const m = /^(\d{1,3})\r?$/.exec(this.buf.subarray(i + this.end.length, nl).toString('latin1'));
    const out = this.emit(i - this.lineEndBefore(i), true);
    this.status = m ? Number.parseInt(m[1], 10) : null;
    this.stage = 'done';
    return out;
  }

  /** The length of the line end printed before the end marker, when it is there. */
  private lineEndBefore(i: number): number {
    if (this.crlf && i >= 2 && this.buf[i - 2] === CR && this.buf[i - 1] === LF) return 2;
    if (i >= 1 && this.buf[i - 1] === LF) return 1;
    return 0;
  }

  /** Gives back buf[0, n) (translated) and keeps the rest; `final` drops the rest. */
  private emit(n: number, final: boolean): Buffer {
    let cut = Math.max(0, n);
    // Never split "\r\n" between two pieces (it would not be translated).
    if (!final && cut > 0 && this.crlf && this.buf[cut - 1] === CR) cut--;
    const piece = this.buf.subarray(0, cut);
    this.buf = final ? Buffer.alloc(0) : this.buf.subarray(cut);
    return this.crlf ? crlfToLf(piece) : Buffer.from(piece);
  }

  private remember(b: Buffer): void {
    if (b.length === 0) return;
    const keep = 2048;
    this.before = Buffer.concat([this.before, b]);
    if (this.before.length > keep) this.before = this.before.subarray(this.before.length - keep);
  }
}

function crlfToLf(b: Buffer): Buffer {
  if (b.indexOf(CR) < 0) return Buffer.from(b);
  const out = Buffer.alloc(b.length);
  let n = 0;
  for (let i = 0; i < b.length; i++) {
    if (b[i] === CR && i + 1 < b.length && b[i + 1] === LF) continue;
    out[n++] = b[i];
  }
  return out.subarray(0, n);
}
