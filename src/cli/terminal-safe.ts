// Guest output made safe for the user's terminal (`vmctl logs` on a TTY).
//
// A serial log is a recording of what a guest sent to *its* terminal. Replayed on ours, some of it
// makes our terminal answer — the answer lands in our shell as if typed (device status report
// ESC[6n, device attributes ESC[c, window reports ESC[21t, DECRQSS, ENQ) — or changes its state
// (modes ESC[?1049h, title OSC 0, clipboard OSC 52, character sets ESC(0 / SO, reset ESC c,
// scroll regions, cursor keys). Everything of that kind is written out visibly instead, in caret
// notation as `cat -v` does (ESC[6n becomes "^[[6n"), so it is inert and still readable.
//
// Kept as they are: text (UTF-8), TAB, LF, CR, BS; SGR (colours and attributes: CSI with numeric
// parameters ending in "m"); and the line-local edits that line editors use to redraw the current
// line (EL "CSI n K", cursor forward/back "CSI n C/D", column "CSI n G"). None of these can make the
// terminal answer, change a mode, or reach beyond the current line.
//
// Syntax after ECMA-48 (5th ed.) 5.3-5.6: ESC Fe / C1 introducers (CSI, OSC, DCS, SOS, PM, APC),
// control sequences (parameter bytes 0x30-0x3F, intermediates 0x20-0x2F, final 0x40-0x7E),
// control strings ended by ST (ESC \) — or, as xterm also accepts for OSC, by BEL. C1 controls
// (U+0080-U+009F) are treated as their 7-bit ESC equivalents. Bytes that are not UTF-8 are shown
// as U+FFFD, as a UTF-8 terminal would show them (a lone byte 0x9B is CSI to an 8-bit terminal).
// Sequences may be split across chunks: the state carries over between push() calls.

const ESC = 0x1b;
const BEL = 0x07;
const CAN = 0x18;
const SUB = 0x1a;
const DEL = 0x7f;
/** A control sequence longer than this is not one a terminal would act on: shown as text. */
const MAX_SEQUENCE = 256;

const enum State { Ground, Escape, EscapeIntermediate, Csi, String, StringEscape }

/** Text, and the C0 controls passed through with it (TAB, LF, CR, BS). */
function isPlain(c: number): boolean {
  return (c >= 0x20 && c < DEL) || c > 0x9f || c === 0x09 || c === 0x0a || c === 0x0d || c === 0x08;
}

/** Control sequences (after CSI) kept: SGR and line-local edits, numeric parameters only. */
const KEPT_CSI = /^[0-9;:]*[mKCDG]$/;

/** Caret notation: ESC -> ^[, BEL -> ^G, DEL -> ^?; a C1 control -> ^[ and its 7-bit final. */
function caret(text: string): string {
  let s = '';
  for (const ch of text) {
    const c = ch.codePointAt(0)!;
    if (c < 0x20 || c === DEL) s += `^${String.fromCharCode(c ^ 0x40)}`;
    else if (c >= 0x80 && c <= 0x9f) s += `^[${String.fromCharCode(c - 0x40)}`;
    else s += ch;
  }
  return s;
}

export class TerminalSafeFilter {
  private decoder = new TextDecoder('utf-8');
  private state = State.Ground;
  /** The sequence being read (Escape, EscapeIntermediate, Csi), as received. */
  private seq = '';
  /** An SGR other than a full reset was the last to go through: reset the attributes at the end,
   *  so the user's prompt is not left coloured. */
  private attributesSet = false;

  /** Filters the next chunk of the stream; returns what to write to the terminal. */
  push(bytes: Uint8Array): Buffer {
    return Buffer.from(this.filter(this.decoder.decode(bytes, { stream: true })), 'utf8');
  }

  /** The end of the stream (or of a boot): an unfinished sequence is shown as text, attributes reset. */
  flush(): Buffer {
    let s = this.filter(this.decoder.decode());
    if (this.state === State.Escape || this.state === State.EscapeIntermediate || this.state === State.Csi) s += caret(this.seq);
    else if (this.state === State.StringEscape) s += '^[';
    if (this.attributesSet) s += '\x1b[0m';
    this.decoder = new TextDecoder('utf-8');
    this.state = State.Ground;
    this.seq = '';
    this.attributesSet = false;
    return Buffer.from(s, 'utf8');
  }

  private filter(text: string): string {
    let out = '';
    let plainFrom = 0;
    // Runs of plain text are copied in one slice; only controls go through the state machine.
    for (let i = 0; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (this.state === State.Ground && isPlain(c)) continue;
      out += text.slice(plainFrom, i);
      out += this.state === State.Ground ? this.ground(c) : this.sequenceChar(c);
      plainFrom = i + 1;
    }
    return out + text.slice(plainFrom);
  }

  /** A control met in text: ESC or a C1 introducer opens a sequence; others are shown. */
  private ground(c: number): string {
    if (c === ESC) {
      this.state = State.Escape;
      this.seq = '\x1b';
      return '';
    }
    if (c >= 0x80 && c <= 0x9f) return this.introducer(c - 0x40, String.fromCharCode(c));
    return caret(String.fromCharCode(c));
  }

  /** ESC F (7-bit) or its C1 form: CSI and the string introducers open a sequence; others are shown. */
  private introducer(f: number, seq: string): string {
    if (f === 0x5b) { // [ CSI
      this.state = State.Csi;
      this.seq = seq;
      return '';
    }
    this.seq = '';
    // ] OSC, P DCS, X SOS, ^ PM, _ APC: a control string follows, shown as it comes.
    this.state = f === 0x5d || f === 0x50 || f === 0x58 || f === 0x5e || f === 0x5f ? State.String : State.Ground;
    return caret(seq);
  }

  /** One character while inside an escape sequence, control sequence or control string. */
  private sequenceChar(c: number): string {
    const ch = String.fromCharCode(c);
    switch (this.state) {
      case State.Escape:
        if (c >= 0x40 && c <= 0x5f) return this.introducer(c, this.seq + ch);
        if (c >= 0x20 && c <= 0x2f) {
          this.seq += ch;
          this.state = State.EscapeIntermediate;
          return '';
        }
        if (c >= 0x30 && c <= 0x7e) return this.shown(this.seq + ch); // ESC 7, ESC c, ESC =, ...
        return this.interrupted(c);
      case State.EscapeIntermediate:
        if (c >= 0x20 && c <= 0x2f && this.seq.length < MAX_SEQUENCE) {
          this.seq += ch;
          return '';
        }
        if (c >= 0x30 && c <= 0x7e) return this.shown(this.seq + ch); // ESC ( 0, ESC # 8, ...
        return this.interrupted(c);
      case State.Csi: {
        if (c >= 0x20 && c <= 0x3f && this.seq.length < MAX_SEQUENCE) {
          this.seq += ch;
          return '';
        }
        if (c >= 0x40 && c <= 0x7e) {
          const body = this.seq.slice(this.seq.charCodeAt(0) === ESC ? 2 : 1) + ch;
          this.state = State.Ground;
          this.seq = '';
          if (KEPT_CSI.test(body)) {
            if (ch === 'm') this.attributesSet = body !== 'm' && body !== '0m';
            return `\x1b[${body}`; // the 7-bit form, which every terminal reads
          }
          return caret(`\x1b[${body}`);
        }
        return this.interrupted(c);
      }
      case State.String:
        if (c === BEL) {
          this.state = State.Ground;
          return '^G';
        }
        if (c === ESC) {
          this.state = State.StringEscape;
          return '';
        }
        if (c === 0x9c) { // ST
          this.state = State.Ground;
          return '^[\\';
        }
        if (c === CAN || c === SUB) {
          this.state = State.Ground;
          return caret(ch);
        }
        if (c >= 0x80 && c <= 0x9f) {
          // Another C1 control ends the string and is handled on its own.
          this.state = State.Ground;
          return this.ground(c);
        }
        return caret(ch);
      case State.StringEscape:
        if (c === 0x5c) { // ESC \ = ST
          this.state = State.Ground;
          return '^[\\';
        }
        // ESC followed by anything else ends the string and starts a new escape sequence.
        this.state = State.Escape;
        this.seq = '\x1b';
        return this.sequenceChar(c);
      default:
        return '';
    }
  }

  /** A complete sequence that is not kept: shown as text. */
  private shown(seq: string): string {
    this.state = State.Ground;
    this.seq = '';
    return caret(seq);
  }

  /** A sequence cut short by a character that cannot continue it: show what was read, then the
   *  character on its own (a control in it is handled like any other; text is text). */
  private interrupted(c: number): string {
    const s = caret(this.seq);
    this.state = State.Ground;
    this.seq = '';
    return s + (isPlain(c) ? String.fromCharCode(c) : this.ground(c));
  }
}
