// A VM's console recording: serial.log, rotated to serial.log.1 at serialLogMaxSize (rotating-log.ts),
// holding the guest's bytes exactly as sent; and beside it serial.index, which says where each boot
// starts and when output was written, so that `vmctl logs --boot/--since` never has to mark the
// guest's bytes.
//
// Positions are offsets in the VM's console stream: every byte the VM has written to its console
// since its serial.log was first created. They do not change when a file is rotated; the index
// records at which stream offset each serial.log file starts. serial.index is newline-delimited
// JSON, appended to (a line torn by a crash is skipped when read):
//   {"file":INODE,"offset":N}                     the serial.log with this inode starts at N
//   {"boot":ID,"time":"ISO-8601","offset":N}      boot ID started at N, at that time
//   {"time":"ISO-8601","offset":N}                the byte at N was written at that time
// A time mark is written before output when TIME_MARK_MAX_SPAN has passed since the last mark (or
// boot), or TIME_MARK_MIN_SPAN and TIME_MARK_BYTES of output have: every byte between two marks
// was written less than TIME_MARK_MAX_SPAN after the first one, at a cost of at most one line per
// second (fewer for a quiet guest). At each rotation the index is rewritten without the records of
// output no longer kept.

import { closeSync, readSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { appendRegular, openRegular, readRegular } from '../host/regular-file.js';
import { writeFileAtomic } from './atomic.js';
import { RotatingLog } from './rotating-log.js';

export const SERIAL_LOG = 'serial.log';
export const SERIAL_INDEX = 'serial.index';

/** Every byte between two time marks was written within this long of the first. */
export const TIME_MARK_MAX_SPAN_MS = 10_000;
const TIME_MARK_MIN_SPAN_MS = 1000;
const TIME_MARK_BYTES = 1024;
/** serial.index is read whole; it is rewritten at each rotation of serial.log, so it stays small. */
const MAX_INDEX_BYTES = 16 * 1024 * 1024;

export interface BootRecord {
  readonly bootId: number;
  /** ms since the epoch */
  readonly time: number;
  readonly offset: number;
}

export interface TimeMark {
  readonly time: number;
  readonly offset: number;
}

type IndexRecord =
  | { readonly kind: 'file'; readonly ino: number; readonly offset: number }
  | { readonly kind: 'boot'; readonly bootId: number; readonly time: number; readonly offset: number }
  | { readonly kind: 'mark'; readonly time: number; readonly offset: number };

/** The kept output, where it sits in the stream, and what the index says about it. */
export interface SerialLayout {
  /** The files, oldest first, each with the stream offset of its first byte. */
  readonly files: readonly { readonly path: string; readonly start: number; readonly size: number }[];
  /** Stream offsets of the first kept byte and of the byte after the last one. */
  readonly start: number;
  readonly end: number;
  /** Boot starts, in stream order; one may lie before `start` (the boot the kept output begins in). */
  readonly boots: readonly BootRecord[];
  /** Time marks (boot starts included), in stream order. */
  readonly marks: readonly TimeMark[];
  /** False when serial.index does not describe serial.log (missing, written by an older vmctl):
   *  then serial.log.1 is taken to start at 0, and no boot or time is known. */
  readonly indexed: boolean;
}

function parseIndex(text: string): IndexRecord[] {
  const out: IndexRecord[] = [];
  for (const line of text.split('\n')) {
    if (line === '') continue;
    let v: Record<string, unknown>;
    try {
      v = JSON.parse(line) as Record<string, unknown>;
    } catch {
      continue; // torn by a crash
    }
    if (typeof v !== 'object' || v === null || !Number.isSafeInteger(v.offset) || (v.offset as number) < 0) continue;
    const offset = v.offset as number;
    const time = typeof v.time === 'string' ? Date.parse(v.time) : Number.NaN;
    if (Number.isSafeInteger(v.file)) out.push({ kind: 'file', ino: v.file as number, offset });
    else if (Number.isSafeInteger(v.boot) && !Number.isNaN(time)) out.push({ kind: 'boot', bootId: v.boot as number, time, offset });
    else if (!Number.isNaN(time)) out.push({ kind: 'mark', time, offset });
  }
  return out;
}

function formatRecord(r: IndexRecord): string {
  switch (r.kind) {
    case 'file': return `${JSON.stringify({ file: r.ino, offset: r.offset })}\n`;
    case 'boot': return `${JSON.stringify({ boot: r.bootId, time: new Date(r.time).toISOString(), offset: r.offset })}\n`;
    case 'mark': return `${JSON.stringify({ time: new Date(r.time).toISOString(), offset: r.offset })}\n`;
  }
}

function statFile(path: string): { size: number; ino: number } | null {
  try {
    const st = statSync(path);
    // Anything but a regular file (a FIFO put in its place) holds no kept output.
    if (!st.isFile()) return null;
    return { size: st.size, ino: st.ino };
  } catch {
    return null;
  }
}

function readRecords(dir: string): IndexRecord[] {
  try {
    // One short line per second of output at most; a larger (or non-regular) file is not ours.
    return parseIndex(readRegular(join(dir, SERIAL_INDEX), { maxBytes: MAX_INDEX_BYTES }).toString('utf8'));
  } catch {
    return [];
  }
}

/** Where the kept files sit in the stream, from the index's file records (the newest for an inode
 *  wins: a file system may give a new serial.log the inode of a deleted serial.log.1). */
function layoutOf(dir: string, records: readonly IndexRecord[]): SerialLayout {
  const curPath = join(dir, SERIAL_LOG);
  const oldPath = `${curPath}.1`;
  const cur = statFile(curPath);
  const old = statFile(oldPath);
  const fileStart = (ino: number): number | null => {
    for (let i = records.length - 1; i >= 0; i--) {
      const r = records[i];
      if (r.kind === 'file' && r.ino === ino) return r.offset;
    }
    return null;
  };
  const oldSize = old?.size ?? 0;
  let curStart = cur ? fileStart(cur.ino) : null;
  // A rotation whose record was not written (the daemon died in between): serial.log.1 is known.
  if (curStart === null && old) {
    const s = fileStart(old.ino);
    if (s !== null) curStart = s + oldSize;
  }
  const indexed = curStart !== null || (!cur && !old);
  if (curStart === null) curStart = oldSize;
  const files = [];
  if (old) files.push({ path: oldPath, start: curStart - oldSize, size: oldSize });
  if (cur) files.push({ path: curPath, start: curStart, size: cur.size });
  const start = curStart - oldSize;
  const end = curStart + (cur?.size ?? 0);
  const boots: BootRecord[] = [];
  const marks: TimeMark[] = [];
  if (indexed) {
    for (const r of records) {
      if (r.kind === 'boot') boots.push({ bootId: r.bootId, time: r.time, offset: r.offset });
      if (r.kind === 'boot' || r.kind === 'mark') marks.push({ time: r.time, offset: r.offset });
    }
  }
  // Appended in stream order; sorted anyway (stable) so that a search can rely on it.
  boots.sort((a, b) => a.offset - b.offset);
  marks.sort((a, b) => a.offset - b.offset);
  return { files, start, end, boots, marks, indexed };
}

export function readSerialLayout(dir: string): SerialLayout {
  return layoutOf(dir, readRecords(dir));
}

/** Reads stream bytes [from, to) from the kept files. */
export function readSerialRange(layout: SerialLayout, from: number, to: number): Buffer {
  const parts: Buffer[] = [];
  for (const f of layout.files) {
    const a = Math.max(from, f.start);
    const b = Math.min(to, f.start + f.size);
    if (a >= b) continue;
    const buf = Buffer.alloc(b - a);
    const fd = openRegular(f.path, 'read').fd;
    try {
      let got = 0;
      while (got < buf.length) {
        const n = readSync(fd, buf, got, buf.length - got, a - f.start + got);
        if (n === 0) break;
        got += n;
      }
      parts.push(got === buf.length ? buf : buf.subarray(0, got));
    } finally {
      closeSync(fd);
    }
  }
  return Buffer.concat(parts);
}

/** The stream offset where the last `lines` lines of [from, to) begin (a final line without a
 *  newline counts as a line). Reads backwards in blocks, so a short tail of a long log is cheap. */
export function tailStart(layout: SerialLayout, from: number, to: number, lines: number): number {
  if (lines <= 0) return to;
  const BLOCK = 64 * 1024;
  let newlines = 0;
  let pos = to;
  // A newline that ends the range ends its last line; it does not start one.
  let skipLast = true;
  while (pos > from) {
    const a = Math.max(from, pos - BLOCK);
    const buf = readSerialRange(layout, a, pos);
    for (let i = buf.length - 1; i >= 0; i--) {
      if (buf[i] !== 0x0a) {
        skipLast = false;
        continue;
      }
      if (skipLast) {
        skipLast = false;
        continue;
      }
      if (++newlines === lines) return a + i + 1;
    }
    pos = a;
  }
  return from;
}

/** Output is selected by boot, by time, or both; then its last lines. */
export interface LogSelection {
  /** A boot id (> 0), or counted from the newest boot in the log (-1 newest, -2 the one before). */
  readonly boot?: number;
  /** ms since the epoch: output written at or after this time. */
  readonly since?: number;
  readonly tail?: number;
}

export class SelectionError extends Error {}

/** The stream range [from, to) that a selection picks (before `tail`), and the boot it names. */
export function selectRange(layout: SerialLayout, sel: LogSelection): { from: number; to: number; boot?: BootRecord } {
  let from = layout.start;
  let to = layout.end;
  let boot: BootRecord | undefined;
  if (sel.boot !== undefined) {
    const boots = layout.boots;
    // Boots whose output is at least partly kept.
    const kept = boots.filter((b, i) => (i + 1 < boots.length ? boots[i + 1].offset : layout.end) > layout.start || i === boots.length - 1);
    const have = kept.length === 0 ? 'it holds no recorded boot' : kept.length === 1 ? `it holds boot ${kept[0].bootId}` : `it holds boots ${kept[0].bootId} to ${kept[kept.length - 1].bootId}`;
    const b = sel.boot < 0 ? kept[kept.length + sel.boot] : kept.find((x) => x.bootId === sel.boot);
    if (!b) {
      const what = sel.boot === -1 ? 'boot -1 (the newest)' : sel.boot < 0 ? `boot ${sel.boot} (${-sel.boot - 1} before the newest)` : `boot ${sel.boot}`;
      throw new SelectionError(`no ${what} in the serial log; ${have}${layout.start > 0 ? ' (older output was rotated away)' : ''}`);
    }
    const i = boots.indexOf(b);
    boot = b;
    from = Math.max(from, b.offset);
    to = i + 1 < boots.length ? boots[i + 1].offset : layout.end;
  }
  if (sel.since !== undefined) {
    from = Math.max(from, sinceOffset(layout, sel.since));
    if (from > to) from = to;
  }
  return { from, to, ...(boot ? { boot } : {}) };
}

/** The boots that output [from, to] belongs to: the one it begins in (which may have started
 *  earlier), and each that starts within it; with a boot named, only that one. */
export function bootsIn(layout: SerialLayout, from: number, to: number, named?: BootRecord): BootRecord[] {
  if (named) return [named];
  let firstIn = layout.boots.findIndex((b) => b.offset >= from);
  if (firstIn < 0) firstIn = layout.boots.length;
  const begins = firstIn > 0 && (firstIn === layout.boots.length || layout.boots[firstIn].offset > from) ? [layout.boots[firstIn - 1]] : [];
  return [...begins, ...layout.boots.slice(firstIn).filter((b) => b.offset <= to)];
}

/**
 * The first stream offset whose output may have been written at or after `since`. Output between
 * two marks was written from the first mark's time to less than TIME_MARK_MAX_SPAN_MS after it (and
 * before the next mark), so the answer errs only toward showing a little more.
 */
function sinceOffset(layout: SerialLayout, since: number): number {
  const marks = layout.marks;
  // Output before the first mark has no known time: kept unless the first mark is already later.
  if (marks.length === 0 || since <= marks[0].time) return layout.start;
  for (let i = 0; i < marks.length; i++) {
    const next = i + 1 < marks.length ? marks[i + 1] : null;
    const latest = Math.min(marks[i].time + TIME_MARK_MAX_SPAN_MS, next ? next.time : Number.POSITIVE_INFINITY);
    if (latest >= since) return Math.max(layout.start, marks[i].offset);
  }
  return layout.end;
}

/** Writes serial.log and its index for one VM (the daemon holds one while the VM's worker runs). */
export class SerialLog {
  private readonly log: RotatingLog;
  /** Stream offset of the current file's first byte. */
  private fileStart: number;
  private lastMark: TimeMark = { time: Number.NEGATIVE_INFINITY, offset: 0 };

  /** @param onIndexError serial.index could not be written: the guest's bytes still are. */
  constructor(private readonly dir: string, maxBytes: number, private readonly onIndexError: (e: Error) => void = () => {}) {
    const records = readRecords(dir);
    const before = layoutOf(dir, records);
    this.log = new RotatingLog(join(dir, SERIAL_LOG), maxBytes, (rotatedSize) => this.rotated(rotatedSize));
    const ino = this.log.current.ino;
    // A serial.log created just now starts where the kept output ends.
    this.fileStart = before.files.find((f) => f.path.endsWith(SERIAL_LOG))?.start ?? before.end;
    if (!before.indexed || before.files.length === 0) {
      // The index describes output that is not there (files removed by hand, or an index from an
      // older vmctl): start a new one rather than place boots and times where they do not belong.
      try {
        writeFileAtomic(join(dir, SERIAL_INDEX), formatRecord({ kind: 'file', ino, offset: this.fileStart }));
      } catch (e) {
        this.onIndexError(e as Error);
      }
    } else {
      if (!records.some((r) => r.kind === 'file' && r.ino === ino && r.offset === this.fileStart)) this.appendRecord({ kind: 'file', ino, offset: this.fileStart });
      const m = before.marks[before.marks.length - 1];
      if (m) this.lastMark = m;
    }
  }

  /** The stream offset of the next byte. */
  get offset(): number {
    return this.fileStart + this.log.current.size;
  }

  beginBoot(bootId: number, time: number): void {
    this.lastMark = { time, offset: this.offset };
    this.appendRecord({ kind: 'boot', bootId, time, offset: this.offset });
  }

  append(data: Uint8Array, now = Date.now()): void {
    const offset = this.offset;
    const age = now - this.lastMark.time;
    if (age >= TIME_MARK_MAX_SPAN_MS || (age >= TIME_MARK_MIN_SPAN_MS && offset - this.lastMark.offset >= TIME_MARK_BYTES)) {
      this.lastMark = { time: now, offset };
      this.appendRecord({ kind: 'mark', time: now, offset });
    }
    this.log.append(data);
  }

  close(): void {
    this.log.close();
  }

  private appendRecord(r: IndexRecord): void {
    try {
      appendRegular(join(this.dir, SERIAL_INDEX), formatRecord(r));
    } catch (e) {
      this.onIndexError(e as Error);
    }
  }

  /** serial.log became serial.log.1 (the older .1 is gone): the index keeps what still applies. */
  private rotated(rotatedSize: number): void {
    const keptFrom = this.fileStart; // where serial.log.1 now starts
    this.fileStart += rotatedSize;
    const records = readRecords(this.dir);
    const kept: IndexRecord[] = [];
    // The boot the kept output begins in, and the last time mark before it, still apply to it.
    let bootBefore: IndexRecord | null = null;
    let markBefore: IndexRecord | null = null;
    for (const r of records) {
      if (r.kind === 'file') continue;
      if (r.offset >= keptFrom) kept.push(r);
      else if (r.kind === 'boot') bootBefore = markBefore = r;
      else markBefore = r;
    }
    const oldIno = statFile(join(this.dir, `${SERIAL_LOG}.1`))?.ino;
    const head: IndexRecord[] = [];
    if (oldIno !== undefined) head.push({ kind: 'file', ino: oldIno, offset: keptFrom });
    head.push({ kind: 'file', ino: this.log.current.ino, offset: this.fileStart });
    if (bootBefore) head.push(bootBefore);
    if (markBefore && markBefore !== bootBefore) head.push(markBefore);
    try {
      writeFileAtomic(join(this.dir, SERIAL_INDEX), [...head, ...kept].map(formatRecord).join(''));
    } catch (e) {
      this.onIndexError(e as Error);
    }
  }
}
