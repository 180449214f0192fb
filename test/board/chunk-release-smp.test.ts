// RAM chunks dropped under harts that run on threads of their own (docs/guest-ram.md (b)): the
// machine's thread drops a chunk while harts 1 and 2 store to it, load from it and read a device
// in a loop (fixtures/firmware-tests/chunk-toucher.S); afterwards the two harts, touching it again
// at once, get one fresh chunk which the machine's thread holds too: each sees the other's stores
// made after the drop, and a write by the machine's thread (as DMA) into the dropped chunk reaches
// both; a device may drop chunks from inside a hart thread's own access. Needs the built
// dist/hart-worker.js (npm run build).

import { fileURLToPath } from 'node:url';
import { setImmediate as tick } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { VirtMachine } from '../../src/board/virt.js';
import type { MachineHost } from '../../src/board/machine-types.js';
import { hartThreads } from '../../src/vm/hart-threads.js';
import { CHUNK_SIZE } from '../../src/memory/ram.js';
import { HART_WORKER } from '../helpers/run-guest.js';

const ELF = fileURLToPath(new URL('../../fixtures/firmware-tests/chunk-toucher.elf', import.meta.url));
const CHUNK = 4;
const TWO32 = 2 ** 32;

let vm: VirtMachine | null = null;
afterEach(() => { vm?.close(); vm = null; });

function start(): { vm: VirtMachine; logs: string[] } {
  const logs: string[] = [];
  const host: MachineHost = { consoleOutput: () => {}, powerEvent: () => {}, log: (m) => logs.push(m) };
  vm = VirtMachine.create({ memoryBytes: 16 << 20, cpus: 3, firmware: { kind: 'none' }, kernelPath: ELF, cmdline: '', disks: [] },
    host, hartThreads(HART_WORKER));
  return { vm, logs };
}

/** Runs the machine (hart 0 sleeps; it serves the hart threads) until `done`. */
async function runMachineUntil(m: VirtMachine, done: () => boolean, what: string): Promise<void> {
  const end = performance.now() + 30_000;
  while (!done()) {
    if (performance.now() > end) throw new Error(`timed out waiting until ${what}`);
    m.run(2);
    await tick();
  }
}

describe('dropping a RAM chunk while harts on threads use it', () => {
  it('every thread lets it go; the harts touching it again share one fresh chunk with the machine\'s thread', async () => {
    const { vm: m } = start();
    const X = m.ram.base + CHUNK * CHUNK_SIZE;
    const slot = (h: number) => m.ram.readU64(X + 8 * h);
    const seen = (h: number) => m.ram.readU64(X + 0x200 + 8 * h);
    const token = (v: number) => Math.floor(v / TWO32);
    const counter = (v: number) => v % TWO32;
    const runUntil = (done: () => boolean, what: string) => runMachineUntil(m, done, what);
    await runUntil(() => counter(slot(1)) > 0 && counter(slot(2)) > 0, 'both harts run');
    m.ram.writeU64(X + 0x100, 1000);
    await runUntil(() => token(seen(1)) === 1000 && token(seen(2)) === 1000, 'both harts see the first token');

    for (let round = 1; round <= 16; round++) {
      const allocated = m.ram.chunksAllocated;
      const released = m.ram.chunksReleased;
      m.releaseChunks([CHUNK]);
      expect(m.ram.chunksReleased).toBe(released + 1);
      if (round % 2 === 1) {
        // The harts touch it first (each asks the machine's thread for it): they read token 0
        // from the fresh chunk and each sees the other's stores; a hart left on the old chunk
        // would never store into this one.
        await runUntil(() => [slot(1), slot(2), seen(1), seen(2)].every((v) => counter(v) > 0 && token(v) === 0),
          `round ${round}: both harts store into the fresh chunk and see each other's stores`);
        m.ram.writeU64(X + 0x100, 1000);
        await runUntil(() => token(seen(1)) === 1000 && token(seen(2)) === 1000, `round ${round}: both see the token again`);
      } else {
        // DMA into the dropped chunk (the machine's thread makes it, unless a hart asked first):
        // both harts read the token and each sees the other's store made after reading it.
        m.ram.writeU64(X + 0x100, round);
        await runUntil(() => token(slot(1)) === round && token(slot(2)) === round && token(seen(1)) === round && token(seen(2)) === round,
          `round ${round}: the token written after the drop reaches both harts, and each sees the other's next store`);
      }
      // One new chunk for the machine's thread and both harts, and the AMOs of both land in it.
      expect(m.ram.chunksAllocated).toBe(allocated + 1);
      expect(m.ram.readU64(X + 0x400)).toBeGreaterThan(0);
    }
    expect(m.memoryFigures().residentBytes).toBeLessThanOrEqual(m.ram.size);
  }, 120_000);

  it('a device dropping chunks inside a hart thread\'s own access (as a balloon notify) does not wait for that hart forever', async () => {
    const { vm: m } = start();
    const X = m.ram.base + CHUNK * CHUNK_SIZE;
    // The harts' stores to `tohost` are forwarded to this thread (a watched range), where this
    // wrapper plays a device that drops the chunk while the storing hart waits for it.
    const notify = m.mem.notifyWrite.bind(m.mem);
    let drops = 0;
    let dropping = false;
    m.mem.notifyWrite = (pa, size) => {
      if (dropping && drops < 20) { drops++; m.releaseChunks([CHUNK]); }
      notify(pa, size);
    };
    const runUntil = (done: () => boolean, what: string) => runMachineUntil(m, done, what);
    await runUntil(() => m.ram.readU64(X + 8) !== 0 && m.ram.readU64(X + 16) !== 0, 'both harts run');
    const released = m.ram.chunksReleased;
    dropping = true;
    await runUntil(() => drops === 20, '20 drops from inside the harts\' accesses');
    dropping = false;
    expect(m.ram.chunksReleased - released).toBeGreaterThanOrEqual(1); // a drop of a chunk already dropped does nothing
    m.ram.writeU64(X + 0x100, 77);
    await runUntil(() => [m.ram.readU64(X + 0x208), m.ram.readU64(X + 0x210)].every((v) => Math.floor(v / TWO32) === 77),
      'both harts see the token and each other\'s stores afterwards');
  }, 60_000);

  it('a chunk nobody touches again stays dropped: resident memory falls and stays down', async () => {
    const { vm: m } = start();
    const X = m.ram.base + CHUNK * CHUNK_SIZE;
    // Another chunk the harts never touch, filled by the machine's thread.
    const other = 6;
    m.ram.write(m.ram.base + other * CHUNK_SIZE, new Uint8Array(4096).fill(7));
    await runMachineUntil(m, () => m.ram.readU64(X + 8) !== 0 && m.ram.readU64(X + 16) !== 0, 'both harts run'); // SLOT(1), SLOT(2)
    const before = m.memoryFigures().residentBytes;
    m.releaseChunks([other]);
    for (let i = 0; i < 20; i++) { m.run(2); await tick(); }
    expect(m.ram.isAllocated(other)).toBe(false);
    expect(m.memoryFigures().residentBytes).toBe(before - CHUNK_SIZE);
    expect(m.ram.readU8(m.ram.base + other * CHUNK_SIZE)).toBe(0);
  }, 60_000);
});
