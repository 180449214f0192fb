// The one way vmctl opens and reads files it does not control (src/host/regular-file.ts): regular
// files only, never blocking, reads bounded before anything is read.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { appendRegular, FileRefused, openRegular, readRegular, readRegularTail, regularFileSize } from '../../src/host/regular-file.js';
import { quote, quotePath } from '../../src/config/quote.js';

const dir = mkdtempSync(join(tmpdir(), 'vmctl-regular-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function refused(f: () => unknown): FileRefused {
  try {
    f();
  } catch (e) {
    if (e instanceof FileRefused) return e;
    throw e;
  }
  throw new Error('not refused');
}

describe('regular files', () => {
  it('reads a regular file whole, or its tail', () => {
    const f = join(dir, 'a.txt');
    writeFileSync(f, 'hello world');
    expect(readRegular(f, { maxBytes: 100 }).toString()).toBe('hello world');
    expect(readRegularTail(f, 5).toString()).toBe('world');
    expect(regularFileSize(f)).toBe(11);
  });

  it('refuses a file larger than the bound before reading it, saying how large', () => {
    const f = join(dir, 'big.bin');
    writeFileSync(f, Buffer.alloc(4096));
    const e = refused(() => readRegular(f, { maxBytes: 4095, tooLarge: (n) => `is ${n} bytes, too many` }));
    expect(e).toMatchObject({ code: 'TOO_LARGE', size: 4096, message: `${f}: is 4096 bytes, too many` });
  });

  it('refuses a FIFO at once, for reading, writing and appending (nobody at the other end)', () => {
    const f = join(dir, 'fifo');
    execFileSync('mkfifo', [f]);
    for (const op of [() => readRegular(f, { maxBytes: 10 }), () => openRegular(f, 'readwrite'), () => appendRegular(f, 'x')]) {
      // (a blocking open would hang here until the test times out)
      const e = refused(op);
      expect(e).toMatchObject({ code: 'NOT_REGULAR', reason: 'is a FIFO (named pipe); expected a regular file' });
    }
  });

  it('refuses a symlink to a character device, naming where it points', () => {
    const f = join(dir, 'zero');
    symlinkSync('/dev/zero', f);
    expect(refused(() => readRegular(f, { maxBytes: 1 << 30 })).reason).toBe('is a character device (a symlink to /dev/zero); expected a regular file');
    expect(refused(() => regularFileSize(dir)).reason).toBe('is a folder; expected a regular file');
  });

  it('says a missing file does not exist; appends create the file', () => {
    const f = join(dir, 'missing');
    expect(refused(() => readRegular(f, { maxBytes: 1 })).code).toBe('NOT_FOUND');
    appendRegular(f, 'one\n');
    appendRegular(f, 'two\n');
    expect(readFileSync(f, 'utf8')).toBe('one\ntwo\n');
  });
});

describe('quoting values in messages', () => {
  it('quotes short values whole and cuts long ones with their length, never splitting a character', () => {
    expect(quote('abc')).toBe('"abc"');
    expect(quote('x'.repeat(1000))).toBe(`"${'x'.repeat(80)}"… (1000 bytes)`);
    const pair = '\u{1F600}'; // two UTF-16 units, 4 bytes
    expect(quote(`${'a'.repeat(79)}${pair}b`)).toBe(`"${'a'.repeat(79)}"… (84 bytes)`);
    expect(quotePath(`/${'d'.repeat(200)}`)).toBe(JSON.stringify(`/${'d'.repeat(200)}`));
  });
});
