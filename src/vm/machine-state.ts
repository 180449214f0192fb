// The machine-state file: a whole machine (VirtMachine.saveState, src/board) written to disk and
// read back, for `vmctl save` and snapshots. Versioned, checksummed, only touched RAM, compressed
// where that pays. The layout (little-endian):
//
//   file     = "VMCTLSAV" (8)  format version u32  flags u32 (0)  section*  END section
//   section  = tag (4 ASCII)  flags u32 (bit 0: deflate-raw)  arg u32  reserved u32 (0)
//              raw length u64  stored length u64  SHA-256 of the stored bytes (32)  stored bytes
//   HEAD     JSON {vmctlVersion, createdAt, shape}: what the state was taken from and must fit
//   MACH     JSON {board, harts, devices, host} (deflated): every hart and device (see
//            board/machine-types.ts); host: what the VM's host side must tell the restored guest
//            (its TCP connections through the user-mode NAT, which are gone: networks.ts)
//   RAM      one per touched, non-zero RAM chunk; arg = chunk index, raw length = CHUNK_SIZE
//   END      arg = number of sections before it; nothing may follow
//
// Any damage is found before anything is applied: a wrong magic or version, a section whose
// checksum fails, a missing END (a truncated file) or bytes after it. This module only writes a
// new file (never over an existing one) and fsyncs it; the caller renames it into place, so a
// state is never replaced by a half-written one.

import { createHash } from 'node:crypto';
import { open, readFile, unlink } from 'node:fs/promises';
import { promisify } from 'node:util';
import { deflateRaw, inflateRawSync } from 'node:zlib';
import type { BoardShape, MachineState } from '../board/machine-types.js';
import { holdAt } from '../host/test-hold.js';
import type { NatConnections } from './networks.js';
import { CHUNK_SIZE } from '../memory/ram.js';

export const STATE_MAGIC = 'VMCTLSAV';
export const STATE_FORMAT_VERSION = 1;
const FILE_HEADER_BYTES = 16;
const SECTION_HEADER_BYTES = 64;
const FLAG_DEFLATE = 1;
/** A chunk is stored compressed only when that saves at least this fraction. */
const MIN_SAVING = 1 / 8;
/** Chunks being compressed at once (zlib runs them on libuv's thread pool). */
const COMPRESS_AHEAD = 4;
/** Fast compression: a save is on the user's clock (the guest waits), and level 1 gets most of
 *  what deflate can get out of RAM (zero pages, text). */
const DEFLATE_LEVEL = 1;

const deflateRawAsync = promisify(deflateRaw);

/** What the HEAD section holds. */
export interface StateMeta {
  readonly vmctlVersion: string;
  readonly createdAt: string;
  readonly shape: BoardShape;
}

/** A state file that cannot be used: damaged, truncated, or of another format version. */
export class StateFileError extends Error {
  constructor(readonly path: string, message: string) {
    super(`${path}: ${message}`);
    this.name = 'StateFileError';
  }
}

/** The VM's host side at the instant of the state, beyond the machine itself (absent in a file
 *  written before it was recorded: nothing to do). */
export interface HostSideState {
  readonly nat?: NatConnections;
}

export interface WrittenState {
  readonly bytes: number;
  /** RAM chunks written (touched and not all zeros). */
  readonly ramChunks: number;
}

function sectionHeader(tag: string, flags: number, arg: number, raw: number, stored: Uint8Array): Buffer {
  const h = Buffer.alloc(SECTION_HEADER_BYTES);
  h.write(tag.padEnd(4, ' '), 0, 'latin1');
  h.writeUInt32LE(flags, 4);
  h.writeUInt32LE(arg, 8);
  h.writeBigUInt64LE(BigInt(raw), 16);
  h.writeBigUInt64LE(BigInt(stored.length), 24);
  createHash('sha256').update(stored).digest().copy(h, 32);
  return h;
}

let zeroChunk: Buffer | null = null;
function isZero(b: Uint8Array): boolean {
  zeroChunk ??= Buffer.alloc(CHUNK_SIZE);
  return b.length === CHUNK_SIZE && Buffer.from(b.buffer, b.byteOffset, b.byteLength).equals(zeroChunk);
}

/**
 * Writes `state` to the new file `path` (created exclusively, fsynced; removed again if anything
 * fails). The state's RAM must not change until the promise settles (VirtMachine.saveState with
 * copyRam when the machine runs on meanwhile).
 */
export async function writeMachineState(path: string, state: MachineState, vmctlVersion: string, host: HostSideState = {}): Promise<WrittenState> {
  const fh = await open(path, 'wx', 0o600);
  let pos = 0;
  let sections = 0;
  const put = async (b: Uint8Array): Promise<void> => {
    let done = 0;
    while (done < b.length) done += (await fh.write(b, done, b.length - done, pos + done)).bytesWritten;
    pos += b.length;
  };
  const section = async (tag: string, flags: number, arg: number, raw: number, stored: Uint8Array): Promise<void> => {
    await put(sectionHeader(tag, flags, arg, raw, stored));
    await put(stored);
    sections++;
  };
  try {
    const fileHeader = Buffer.alloc(FILE_HEADER_BYTES);
    fileHeader.write(STATE_MAGIC, 0, 'latin1');
    fileHeader.writeUInt32LE(STATE_FORMAT_VERSION, 8);
    await put(fileHeader);
    const meta: StateMeta = { vmctlVersion, createdAt: new Date().toISOString(), shape: state.shape };
    const head = Buffer.from(JSON.stringify(meta));
    await section('HEAD', 0, 0, head.length, head);
    const mach = Buffer.from(JSON.stringify({ board: state.board, harts: state.harts, devices: state.devices, host }));
    await section('MACH', FLAG_DEFLATE, 0, mach.length, await deflateRawAsync(mach, { level: DEFLATE_LEVEL }));
    await holdAt('state-partly-written');

    // RAM: compressed a few chunks ahead, written in order.
    const chunks = state.ram.filter((c) => !isZero(c.bytes));
    const compress = (b: Uint8Array): Promise<Buffer> => deflateRawAsync(b, { level: DEFLATE_LEVEL });
    const pending: Promise<Buffer>[] = [];
    for (let i = 0; i < Math.min(COMPRESS_AHEAD, chunks.length); i++) pending.push(compress(chunks[i].bytes));
    for (let i = 0; i < chunks.length; i++) {
      const packed = await pending[i];
      if (i + COMPRESS_AHEAD < chunks.length) pending.push(compress(chunks[i + COMPRESS_AHEAD].bytes));
      const { index, bytes } = chunks[i];
      if (packed.length <= bytes.length * (1 - MIN_SAVING)) await section('RAM', FLAG_DEFLATE, index, bytes.length, packed);
      else await section('RAM', 0, index, bytes.length, bytes);
    }
    await section('END', 0, sections, 0, new Uint8Array(0));
    await fh.sync();
    await fh.close();
    return { bytes: pos, ramChunks: chunks.length };
  } catch (e) {
    await fh.close().catch(() => {});
    await unlink(path).catch(() => {});
    throw e;
  }
}

/** One RAM chunk as stored: inflated when the board copies it into RAM (one at a time). */
class StoredChunk {
  constructor(readonly index: number, private readonly stored: Uint8Array, private readonly deflated: boolean, private readonly path: string) {}
  get bytes(): Uint8Array {
    if (!this.deflated) return this.stored;
    let b: Buffer;
    try {
      b = inflateRawSync(this.stored, { maxOutputLength: CHUNK_SIZE });
    } catch (e) {
      throw new StateFileError(this.path, `RAM chunk ${this.index} does not decompress: ${(e as Error).message}`);
    }
    if (b.length !== CHUNK_SIZE) throw new StateFileError(this.path, `RAM chunk ${this.index} holds ${b.length} bytes, not ${CHUNK_SIZE}`);
    return b;
  }
}

interface Section { tag: string; flags: number; arg: number; raw: number; data: Buffer }

/** Reads and checks the file's sections (magic, version, every checksum, END); throws StateFileError. */
function parseSections(path: string, file: Buffer): Section[] {
  if (file.length < FILE_HEADER_BYTES || file.toString('latin1', 0, 8) !== STATE_MAGIC) {
    throw new StateFileError(path, 'not a vmctl machine-state file (no "VMCTLSAV" magic)');
  }
  const version = file.readUInt32LE(8);
  if (version !== STATE_FORMAT_VERSION) {
    throw new StateFileError(path, `machine-state format version ${version}; this vmctl reads version ${STATE_FORMAT_VERSION} only`);
  }
  const out: Section[] = [];
  let pos = FILE_HEADER_BYTES;
  for (;;) {
    if (pos + SECTION_HEADER_BYTES > file.length) throw new StateFileError(path, `truncated: the file ends at byte ${file.length}, inside section ${out.length + 1}'s header (no END section)`);
    const tag = file.toString('latin1', pos, pos + 4).trimEnd();
    const flags = file.readUInt32LE(pos + 4);
    const arg = file.readUInt32LE(pos + 8);
    const raw = Number(file.readBigUInt64LE(pos + 16));
    const storedLen = Number(file.readBigUInt64LE(pos + 24));
    const sum = file.subarray(pos + 32, pos + 64);
    const start = pos + SECTION_HEADER_BYTES;
    if (start + storedLen > file.length) throw new StateFileError(path, `truncated: section ${out.length + 1} (${tag}) needs ${storedLen} bytes from byte ${start}, the file has ${file.length}`);
    const data = file.subarray(start, start + storedLen);
    if (!createHash('sha256').update(data).digest().equals(sum)) {
      throw new StateFileError(path, `damaged: the checksum of section ${out.length + 1} (${tag}${tag === 'RAM' ? ` chunk ${arg}` : ''}, at byte ${pos}) does not match`);
    }
    pos = start + storedLen;
    if (tag === 'END') {
      if (arg !== out.length) throw new StateFileError(path, `damaged: END counts ${arg} sections, the file has ${out.length}`);
      if (pos !== file.length) throw new StateFileError(path, `damaged: ${file.length - pos} bytes after the END section`);
      return out;
    }
    out.push({ tag, flags, arg, raw, data });
  }
}

function json<T>(path: string, s: Section): T {
  try {
    const text = (s.flags & FLAG_DEFLATE) ? inflateRawSync(s.data) : s.data;
    return JSON.parse(text.toString('utf8')) as T;
  } catch (e) {
    throw new StateFileError(path, `damaged: section ${s.tag} cannot be read: ${(e as Error).message}`);
  }
}

/** Reads a state file, checking all of it before returning anything; throws StateFileError. */
export async function readMachineState(path: string): Promise<{ meta: StateMeta; state: MachineState; host: HostSideState }> {
  let file: Buffer;
  try {
    file = await readFile(path);
  } catch (e) {
    throw new StateFileError(path, `cannot read the machine state: ${(e as Error).message}`);
  }
  const sections = parseSections(path, file);
  const head = sections[0];
  const mach = sections[1];
  if (head?.tag !== 'HEAD' || mach?.tag !== 'MACH') throw new StateFileError(path, 'damaged: the HEAD and MACH sections are not where they belong');
  const meta = json<StateMeta>(path, head);
  const { host, ...m } = json<Pick<MachineState, 'board' | 'harts' | 'devices'> & { host?: HostSideState }>(path, mach);
  const ram: StoredChunk[] = [];
  for (const s of sections.slice(2)) {
    if (s.tag !== 'RAM' || s.raw !== CHUNK_SIZE) throw new StateFileError(path, `damaged: unexpected section ${s.tag} of ${s.raw} bytes`);
    ram.push(new StoredChunk(s.arg, s.data, (s.flags & FLAG_DEFLATE) !== 0, path));
  }
  return { meta, state: { shape: meta.shape, ...m, ram }, host: host ?? {} };
}
