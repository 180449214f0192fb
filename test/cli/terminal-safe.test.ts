// The filter `vmctl logs` puts between guest output and a terminal: a corpus of sequences that
// make terminals answer or change state, each fed whole, byte by byte and split at every point.

import { describe, expect, it } from 'vitest';
import { TerminalSafeFilter } from '../../src/cli/terminal-safe.js';

const E = '\x1b';

function run(chunks: (string | Uint8Array)[]): string {
  const f = new TerminalSafeFilter();
  const parts = chunks.map((c) => f.push(typeof c === 'string' ? Buffer.from(c, 'utf8') : c));
  parts.push(f.flush());
  return Buffer.concat(parts).toString('utf8');
}

/** The same result whatever the chunking: whole, one byte at a time, and every two-way split. */
function filtered(input: string | Uint8Array): string {
  const bytes = typeof input === 'string' ? Buffer.from(input, 'utf8') : Buffer.from(input);
  const whole = run([bytes]);
  expect(run([...bytes].map((b) => Uint8Array.of(b))), 'byte by byte').toBe(whole);
  for (let i = 1; i < bytes.length; i++) expect(run([bytes.subarray(0, i), bytes.subarray(i)]), `split at ${i}`).toBe(whole);
  return whole;
}

/** What may reach the terminal: no ESC except in kept sequences, no other controls. */
function assertInert(out: string): void {
  const rest = out.replace(/\x1b\[[0-9;:]*[mKCDG]/g, '');
  expect(rest).not.toMatch(/[\x00-\x07\x0b\x0c\x0e-\x1f\x7f\x80-\x9f]/);
}

// Sequences that make a terminal answer (their reply would be typed into the user's shell).
const ANSWERING: [string, string, string][] = [
  ['DSR cursor position', `${E}[6n`, '^[[6n'],
  ['DSR status', `${E}[5n`, '^[[5n'],
  ['DECXCPR', `${E}[?6n`, '^[[?6n'],
  ['primary DA', `${E}[c`, '^[[c'],
  ['secondary DA', `${E}[>c`, '^[[>c'],
  ['tertiary DA', `${E}[=c`, '^[[=c'],
  ['DA with parameter', `${E}[0c`, '^[[0c'],
  ['report window title', `${E}[21t`, '^[[21t'],
  ['report window size', `${E}[14t`, '^[[14t'],
  ['DECRQSS (DCS)', `${E}P$qm${E}\\`, '^[P$qm^[\\'],
  ['XTGETTCAP (DCS)', `${E}P+q544e${E}\\`, '^[P+q544e^[\\'],
  ['OSC colour query', `${E}]11;?\x07`, '^[]11;?^G'],
  ['DECREQTPARM', `${E}[x`, '^[[x'],
  ['DECRQM', `${E}[?2004$p`, '^[[?2004$p'],
  ['ENQ (answerback)', '\x05', '^E'],
  ['DECID', `${E}Z`, '^[Z'],
  ['C1 CSI DSR', '\u009b6n', '^[[6n'],
];

// Sequences that change the terminal's state.
const STATEFUL: [string, string, string][] = [
  ['alternate screen', `${E}[?1049h`, '^[[?1049h'],
  ['hide cursor', `${E}[?25l`, '^[[?25l'],
  ['bracketed paste', `${E}[?2004h`, '^[[?2004h'],
  ['mouse reporting', `${E}[?1000h`, '^[[?1000h'],
  ['insert mode', `${E}[4h`, '^[[4h'],
  ['title (OSC 0, BEL)', `${E}]0;pwned\x07`, '^[]0;pwned^G'],
  ['title (OSC 2, ST)', `${E}]2;pwned${E}\\`, '^[]2;pwned^[\\'],
  ['clipboard (OSC 52)', `${E}]52;c;cm0gLXJmIH4=\x07`, '^[]52;c;cm0gLXJmIH4=^G'],
  ['hyperlink (OSC 8)', `${E}]8;;http://x/${E}\\`, '^[]8;;http://x/^[\\'],
  ['C1 OSC with C1 ST', '\u009d0;t\u009c', '^[]0;t^[\\'],
  ['APC', `${E}_payload${E}\\`, '^[_payload^[\\'],
  ['PM', `${E}^payload${E}\\`, '^[^payload^[\\'],
  ['SOS', `${E}Xpayload${E}\\`, '^[Xpayload^[\\'],
  ['full reset', `${E}c`, '^[c'],
  ['soft reset', `${E}[!p`, '^[[!p'],
  ['save cursor', `${E}7`, '^[7'],
  ['line drawing charset', `${E}(0`, '^[(0'],
  ['DEC alignment test', `${E}#8`, '^[#8'],
  ['shift out', '\x0e', '^N'],
  ['shift in', '\x0f', '^O'],
  ['keypad application mode', `${E}=`, '^[='],
  ['scroll region', `${E}[1;5r`, '^[[1;5r'],
  ['clear screen', `${E}[2J`, '^[[2J'],
  ['clear scrollback', `${E}[3J`, '^[[3J'],
  ['cursor home', `${E}[H`, '^[[H'],
  ['cursor up', `${E}[5A`, '^[[5A'],
  ['modifyOtherKeys (CSI > m)', `${E}[>4;1m`, '^[[>4;1m'],
  ['SGR with intermediate', `${E}[1 m`, '^[[1 m'],
  ['window move', `${E}[3;0;0t`, '^[[3;0;0t'],
  ['bell', '\x07', '^G'],
  ['C1 index', '\u0084', '^[D'],
  ['DEL', '\x7f', '^?'],
];

describe('TerminalSafeFilter', () => {
  for (const [what, seq, shown] of [...ANSWERING, ...STATEFUL]) {
    it(`shows ${what} as text`, () => {
      const out = filtered(`before${seq}after\n`);
      expect(out).toBe(`before${shown}after\n`);
      assertInert(out);
    });
  }

  it('keeps text, UTF-8, TAB/CR/LF/BS and colours as they are', () => {
    const text = `plain ascii\r\n\ttabbed h\u00e9llo \u2713 \u{1F600}\bX\n${E}[31mred${E}[0m ${E}[1;38;5;208morange${E}[m ${E}[38;2;1;2;3mrgb${E}[38:5:1mcolon${E}[0m\n`;
    expect(filtered(text)).toBe(text);
  });

  it('keeps the line-local edits of a line editor (erase line, cursor back/forward, column)', () => {
    const text = `# ls${E}[K\r# ls -l${E}[3D${E}[3C${E}[1G${E}[0K\n`;
    expect(filtered(text)).toBe(text);
  });

  it('writes a C1 SGR in its 7-bit form', () => {
    expect(filtered('\u009b31mred\u009b0m')).toBe(`${E}[31mred${E}[0m`);
  });

  it('resets attributes at the end when colours were passed', () => {
    expect(filtered(`${E}[31mstill red`)).toBe(`${E}[31mstill red${E}[0m`);
  });

  it('shows bytes that are not UTF-8 as U+FFFD (a lone 0x9b would be CSI to an 8-bit terminal)', () => {
    const out = filtered(Uint8Array.from([0x61, 0x9b, 0x36, 0x6e, 0xff, 0x62]));
    expect(out).toBe('a\ufffd6n\ufffdb');
  });

  it('a sequence cut short by a control or text shows what was read', () => {
    expect(filtered(`${E}[12\n3`)).toBe('^[[12\n3');
    expect(filtered(`${E}${E}[6n`)).toBe('^[^[[6n');
    expect(filtered(`${E}(\x07`)).toBe('^[(^G');
  });

  it('a control string ends at ESC followed by a new sequence', () => {
    const out = filtered(`${E}]0;t${E}[6nX`);
    expect(out).toBe('^[]0;t^[[6nX');
    assertInert(out);
  });

  it('CAN aborts a control string', () => {
    expect(filtered(`${E}]0;t\x18after`)).toBe('^[]0;t^Xafter');
  });

  it('an unfinished sequence at the end of the stream is shown', () => {
    expect(filtered(`tail${E}[?10`)).toBe('tail^[[?10');
    expect(filtered(`tail${E}]0;unterminated`)).toBe('tail^[]0;unterminated');
  });

  it('an overlong control sequence is shown as text', () => {
    const long = `${E}[${'1;'.repeat(300)}m`;
    const out = filtered(long);
    assertInert(out);
    expect(out.startsWith('^[[1;1;')).toBe(true);
    expect(out).toContain('m');
  });

  it('a long mixed stream split into random chunks stays inert and identical', () => {
    const all = [...ANSWERING, ...STATEFUL].map(([, s]) => s).join('text\n');
    const corpus = `${all}${E}[32mgreen${E}[0m\n`.repeat(20);
    const bytes = Buffer.from(corpus, 'utf8');
    const whole = run([bytes]);
    assertInert(whole);
    let seed = 12345;
    for (let round = 0; round < 20; round++) {
      const chunks: Uint8Array[] = [];
      for (let i = 0; i < bytes.length;) {
        seed = (seed * 1103515245 + 12345) & 0x7fffffff;
        const n = 1 + (seed % 17);
        chunks.push(bytes.subarray(i, i + n));
        i += n;
      }
      expect(run(chunks)).toBe(whole);
    }
  });
});
