// vmctl exec's console protocol: the typed line is valid shell whatever the command holds, and the
// output comes back alone, translated, with the exit status, however the console stream is cut.

import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { ExecOutput, typedLine } from '../../src/cli/console-exec.js';

const N = 'n0nce';

function parse(stream: Buffer, chunks: number[] | 'bytes' = []): { out: string; status: number | null; done: boolean } {
  const p = new ExecOutput(N);
  const parts: Buffer[] = [];
  if (chunks === 'bytes') {
    for (const b of stream) parts.push(p.push(Uint8Array.of(b)));
  } else {
    let at = 0;
    for (const c of [...chunks, stream.length]) {
      parts.push(p.push(stream.subarray(at, c)));
      at = c;
    }
  }
  return { out: Buffer.concat(parts).toString('utf8'), status: p.status, done: p.done };
}

/** Same result for the whole stream, byte by byte, and every two-way split. */
function parseAllWays(stream: string): { out: string; status: number | null; done: boolean } {
  const b = Buffer.from(stream, 'utf8');
  const whole = parse(b);
  expect(parse(b, 'bytes')).toEqual(whole);
  for (let i = 1; i < b.length; i++) expect(parse(b, [i]), `split at ${i}`).toEqual(whole);
  return whole;
}

// What the Linux test guest's busybox ash showed for `echo hi; printf nonl` (its line editor
// wraps the echo at 80 columns; the prompt ends with a cursor position query).
const ASH = ' printf \'VMCTL%s-begin\\n\' n0nce; (eval "$(printf %b \'echo hi; print\r\r\nf nonl\')") </dev/null; printf \'\\nVMCTL%s-end %d\\n\' n0nce $?\r\n' +
  'VMCTLn0nce-begin\r\nhi\r\nnonl\r\nVMCTLn0nce-end 0\r\nvmctl-guest:/# \x1b[6n';

describe('exec over the console', () => {
  it('returns the output alone, without the echo, with LF line ends, and the status', () => {
    expect(parseAllWays(ASH)).toEqual({ out: 'hi\nnonl', status: 0, done: true });
  });

  it('keeps a final newline, a bare CR, and a program\'s own CRLF (sent as CR CR LF)', () => {
    expect(parseAllWays('VMCTLn0nce-begin\r\nline\r\n\r\nVMCTLn0nce-end 3\r\n').out).toBe('line\n');
    expect(parseAllWays('VMCTLn0nce-begin\r\n50%\r100%\r\r\n\r\nVMCTLn0nce-end 0\r\n').out).toBe('50%\r100%\r\n');
  });

  it('takes output as it is when the tty does not add CRs', () => {
    expect(parseAllWays('VMCTLn0nce-begin\na\r\nb\nVMCTLn0nce-end 1\n')).toEqual({ out: 'a\r\nb', status: 1, done: true });
  });

  it('empty output and a large status', () => {
    expect(parseAllWays('echo\r\nVMCTLn0nce-begin\r\n\r\nVMCTLn0nce-end 127\r\n')).toEqual({ out: '', status: 127, done: true });
  });

  it('gives output back before the command ends', () => {
    const p = new ExecOutput(N);
    expect(p.push(Buffer.from('VMCTLn0nce-begin\r\n')).toString()).toBe('');
    expect(p.started).toBe(true);
    const first = p.push(Buffer.from(`${'x'.repeat(100)}\r\n`)).toString();
    expect(first.length).toBeGreaterThan(50);
    expect(p.done).toBe(false);
    const rest = p.push(Buffer.from('\r\nVMCTLn0nce-end 0\r\n')).toString();
    expect(first + rest).toBe(`${'x'.repeat(100)}\n`);
  });

  it('waits for the shell: the echo of the typed line is not an answer', () => {
    const p = new ExecOutput(N);
    p.push(Buffer.from(typedLine('true', N).replace('\n', '\r\n')));
    expect(p.started).toBe(false);
    expect(p.consoleBefore()).toContain('printf');
  });

  it('an end marker without a readable status is reported as such', () => {
    expect(parseAllWays('VMCTLn0nce-begin\r\nout\r\nVMCTLn0nce-end \r\n')).toEqual({ out: 'out', status: null, done: true });
  });

  it('types a line a POSIX shell runs as intended, whatever the command holds', () => {
    const cmds: [string, string, number][] = [
      ['printf "%s " "double" \'single\' \\\\back; echo', 'double single \\back \n', 0],
      ['echo a # a comment; exit 3', 'a\n', 0],
      ['printf "%s|" a\tb; echo', 'a|b|\n', 0],
      ['echo h\u00e9llo \u2713', 'h\u00e9llo \u2713\n', 0],
      ['x=1\necho two lines $x', 'two lines 1\n', 0],
      ['echo "unclosed', '', 2],
      ['cd /; exit 7', '', 7],
      ['read x; echo "read gave $?"', 'read gave 1\n', 0],
    ];
    for (const [cmd, out, status] of cmds) {
      const line = typedLine(cmd, N);
      expect(line.length).toBeLessThan(400);
      expect(line.slice(1, -1)).not.toMatch(/[\x00-\x1f\x7f-\uffff]/); // one line of printable ASCII
      // A pipe is not a tty: no CRs, the shell's own error messages go to stderr here.
      const r = spawnSync('sh', [], { input: line.slice(1) });
      const res = parse(r.stdout);
      expect({ cmd, out: res.out, status: res.status }).toEqual({ cmd, out, status });
    }
  });
});
