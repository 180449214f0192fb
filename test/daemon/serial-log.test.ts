// serial.log and its boot/time index: positions survive rotation, boots and times select the
// right bytes, and an index that does not match the files is never trusted.

import { appendFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  readSerialLayout, readSerialRange, selectRange, SelectionError, SerialLog, SERIAL_INDEX, tailStart, TIME_MARK_MAX_SPAN_MS,
  type LogSelection, type SerialLayout,
} from '../../src/daemon/serial-log.js';

const dirs: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'vmctl-serial-'));
  dirs.push(d);
  return d;
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const T0 = Date.parse('2025-01-01T00:00:00Z');

function kept(layout: SerialLayout): Buffer {
  return readSerialRange(layout, layout.start, layout.end);
}

function select(dir: string, sel: LogSelection): string {
  const layout = readSerialLayout(dir);
  const r = selectRange(layout, sel);
  const from = sel.tail !== undefined ? tailStart(layout, r.from, r.to, sel.tail) : r.from;
  return readSerialRange(layout, from, r.to).toString();
}

describe('serial log index', () => {
  it('keeps stream positions across rotations and selects whole boots', () => {
    const dir = tempDir();
    const stream: Buffer[] = [];
    const starts: number[] = [];
    let log = new SerialLog(dir, 4096);
    for (let boot = 1; boot <= 4; boot++) {
      if (boot === 3) {
        // The daemon closes the log when a VM stops and opens it again at the next start.
        log.close();
        log = new SerialLog(dir, 4096);
      }
      starts.push(Buffer.concat(stream).length);
      log.beginBoot(boot, T0 + boot * 60_000);
      for (let i = 0; i < 80; i++) {
        const b = Buffer.from(`boot ${boot} line ${String(i).padStart(3, '0')}\n`);
        log.append(b, T0 + boot * 60_000 + i * 100);
        stream.push(b);
      }
    }
    log.close();
    const all = Buffer.concat(stream);
    const layout = readSerialLayout(dir);
    expect(layout.indexed).toBe(true);
    expect(layout.end).toBe(all.length);
    // 4 boots x 80 lines x 21 bytes: rotated at least once.
    expect(layout.files.length).toBe(2);
    expect(kept(layout)).toEqual(all.subarray(layout.start));
    expect(layout.boots.map((b) => [b.bootId, b.offset])).toEqual(
      layout.boots.map((b) => [b.bootId, starts[b.bootId - 1]]),
    );
    // The newest boot, by id and by position from the end.
    const boot4 = all.subarray(starts[3]).toString();
    expect(select(dir, { boot: 4 })).toBe(boot4);
    expect(select(dir, { boot: -1 })).toBe(boot4);
    expect(select(dir, { boot: -2 })).toBe(all.subarray(Math.max(starts[2], layout.start), starts[3]).toString());
    expect(select(dir, { boot: 4, tail: 2 })).toBe('boot 4 line 078\nboot 4 line 079\n');
    expect(select(dir, { tail: 1 })).toBe('boot 4 line 079\n');
  });

  it('says which boots it holds when asked for one it does not', () => {
    const dir = tempDir();
    const log = new SerialLog(dir, 4096);
    for (let boot = 1; boot <= 12; boot++) {
      log.beginBoot(boot, T0 + boot * 1000);
      log.append(Buffer.from(`${'x'.repeat(900)}\n`), T0 + boot * 1000 + 1);
    }
    log.close();
    const layout = readSerialLayout(dir);
    expect(layout.start).toBeGreaterThan(0);
    // The boot the kept output begins in is still selectable, from where the output is kept.
    const first = [...layout.boots].reverse().find((b) => b.offset <= layout.start)!;
    expect(selectRange(layout, { boot: first.bootId }).from).toBe(layout.start);
    expect(() => selectRange(layout, { boot: 1 })).toThrow(SelectionError);
    expect(() => selectRange(layout, { boot: 1 })).toThrow(new RegExp(`^no boot 1 in the serial log; it holds boots ${first.bootId} to 12 \\(older output was rotated away\\)$`));
    expect(() => selectRange(layout, { boot: 99 })).toThrow(/^no boot 99 in the serial log/);
    expect(() => selectRange(layout, { boot: -20 })).toThrow(/^no boot -20 \(19 before the newest\) in the serial log/);
    // Compaction: records of output no longer kept are gone, the index stays small.
    const lines = readFileSync(join(dir, SERIAL_INDEX), 'utf8').trim().split('\n');
    expect(lines.length).toBeLessThan(20);
  });

  it('selects by time: output of a mark at or after --since, erring toward more', () => {
    const dir = tempDir();
    const log = new SerialLog(dir, 1 << 20);
    log.beginBoot(1, T0);
    log.append(Buffer.from('early\n'), T0 + 10);
    log.append(Buffer.from('still early\n'), T0 + 20);
    // Quiet for a minute: the next output gets a mark of its own.
    log.append(Buffer.from('a minute later\n'), T0 + 60_000);
    log.append(Buffer.from('right after\n'), T0 + 60_500);
    log.append(Buffer.from('two minutes\n'), T0 + 120_000);
    log.close();
    expect(select(dir, { since: T0 - 5000 })).toBe('early\nstill early\na minute later\nright after\ntwo minutes\n');
    expect(select(dir, { since: T0 + 30_000 })).toBe('a minute later\nright after\ntwo minutes\n');
    expect(select(dir, { since: T0 + 60_000 })).toBe('a minute later\nright after\ntwo minutes\n');
    expect(select(dir, { since: T0 + 60_000 + TIME_MARK_MAX_SPAN_MS + 1 })).toBe('two minutes\n');
    expect(select(dir, { since: T0 + 10 * 60_000 })).toBe('');
    expect(select(dir, { since: T0 + 30_000, tail: 1 })).toBe('two minutes\n');
  });

  it('marks a busy stream at most about once a second, and at least every 10 s', () => {
    const dir = tempDir();
    const log = new SerialLog(dir, 64 << 20);
    log.beginBoot(1, T0);
    for (let t = 0; t < 60_000; t += 10) log.append(Buffer.alloc(200, 0x61), T0 + t); // 20 KB/s for a minute
    log.close();
    const marks = readSerialLayout(dir).marks;
    expect(marks.length).toBeGreaterThanOrEqual(50);
    expect(marks.length).toBeLessThanOrEqual(61);
  });

  it('a rotation whose index line was lost is recovered from serial.log.1', () => {
    const dir = tempDir();
    const log = new SerialLog(dir, 4096);
    log.beginBoot(1, T0);
    const all: Buffer[] = [];
    for (let i = 0; i < 900; i++) {
      const b = Buffer.from(`line ${i}\n`);
      all.push(b);
      log.append(b, T0 + i);
    }
    log.close();
    // Drop the record for the current serial.log, as if the daemon died right after renaming.
    const index = readFileSync(join(dir, SERIAL_INDEX), 'utf8').trim().split('\n');
    expect(readSerialLayout(dir).files.length).toBe(2);
    const lastFile = index.map((x) => x.startsWith('{"file"')).lastIndexOf(true);
    const withoutLast = index.filter((_, i) => i !== lastFile);
    writeFileSync(join(dir, SERIAL_INDEX), `${withoutLast.join('\n')}\n`);
    const layout = readSerialLayout(dir);
    expect(layout.indexed).toBe(true);
    expect(layout.end).toBe(Buffer.concat(all).length);
    expect(kept(layout)).toEqual(Buffer.concat(all).subarray(layout.start));
  });

  it('skips a torn index line', () => {
    const dir = tempDir();
    const log = new SerialLog(dir, 1 << 20);
    log.beginBoot(1, T0);
    log.append(Buffer.from('one\n'), T0);
    log.beginBoot(2, T0 + 1000);
    log.append(Buffer.from('two\n'), T0 + 1001);
    log.close();
    appendFileSync(join(dir, SERIAL_INDEX), '{"boot":3,"time":"2025-01-0');
    expect(select(dir, { boot: -1 })).toBe('two\n');
    expect(select(dir, { boot: 1 })).toBe('one\n');
  });

  it('a serial.log without an index (an older vmctl) is shown whole, and indexed from the next boot on', () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'serial.log'), 'from before the index\n');
    let layout = readSerialLayout(dir);
    expect(layout.indexed).toBe(false);
    expect(kept(layout).toString()).toBe('from before the index\n');
    expect(() => selectRange(layout, { boot: -1 })).toThrow(/it holds no recorded boot/);
    const log = new SerialLog(dir, 1 << 20);
    log.beginBoot(5, T0);
    log.append(Buffer.from('boot five\n'), T0 + 1);
    log.close();
    layout = readSerialLayout(dir);
    expect(layout.indexed).toBe(true);
    expect(kept(layout).toString()).toBe('from before the index\nboot five\n');
    expect(select(dir, { boot: 5 })).toBe('boot five\n');
  });

  it('an index whose files were removed by hand is started again', () => {
    const dir = tempDir();
    let log = new SerialLog(dir, 1 << 20);
    log.beginBoot(1, T0);
    log.append(Buffer.from('gone soon\n'), T0 + 1);
    log.close();
    unlinkSync(join(dir, 'serial.log'));
    log = new SerialLog(dir, 1 << 20);
    log.beginBoot(2, T0 + 5000);
    log.append(Buffer.from('fresh\n'), T0 + 5001);
    log.close();
    const layout = readSerialLayout(dir);
    expect(layout.boots.map((b) => b.bootId)).toEqual([2]);
    expect(select(dir, { boot: -1 })).toBe('fresh\n');
  });

  it('an index that cannot be written is reported, and the guest\'s bytes are still recorded', () => {
    const dir = tempDir();
    mkdirSync(join(dir, SERIAL_INDEX)); // appending to a folder fails
    const errors: string[] = [];
    const log = new SerialLog(dir, 4096, (e) => errors.push(e.message));
    log.beginBoot(1, T0);
    const data = Buffer.alloc(10_000, 0x41);
    log.append(data, T0 + 1);
    log.close();
    expect(errors.length).toBeGreaterThan(0);
    expect(Buffer.concat([readFileSync(join(dir, 'serial.log.1')), readFileSync(join(dir, 'serial.log'))]).length).toBe(10_000 - 4096);
  });
});
