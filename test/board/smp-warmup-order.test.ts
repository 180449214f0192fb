// A machine whose harts run on threads spawns its hart threads before this thread's interpreter
// warm-up (src/board/virt.ts, hart.ts deferWarmUp/warmUpNow), so that the threads' start (a V8
// isolate and a warm-up each) and this one overlap: measured, the 4-hart Linux test guest's hart
// threads were all up 0.43 s sooner (median of 5, load 5-8). A fresh module graph per test file
// (vitest's isolation) makes this file's thread one that has not warmed up yet.
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { VirtMachine } from '../../src/board/virt.js';
import { Hart, hartWarmedUp } from '../../src/riscv/hart.js';
import type { HartThreadHandle, StartHartThread } from '../../src/board/smp.js';
import { GuestRam } from '../../src/memory/ram.js';
import { PhysicalMemoryMap } from '../../src/memory/bus.js';

const PROGRAM = fileURLToPath(new URL('../../fixtures/firmware-tests/sbi-calls.bin', import.meta.url));

describe('the warm-up of a machine with hart threads', () => {
  it('runs after its hart threads are spawned, once', () => {
    expect(hartWarmedUp()).toBe(false);
    const atSpawn: boolean[] = [];
    const spawn: StartHartThread = (): HartThreadHandle => {
      atSpawn.push(hartWarmedUp());
      return { onExit() {}, terminate() {} }; // (no thread: the machine never runs here)
    };
    const vm = VirtMachine.create({ memoryBytes: 16 << 20, cpus: 3, firmware: { kind: 'builtin' }, kernelPath: PROGRAM, cmdline: '', disks: [] },
      { consoleOutput: () => {}, powerEvent: () => {}, log: () => {} }, spawn);
    expect(atSpawn).toEqual([false, false]);
    expect(hartWarmedUp()).toBe(true);
    vm.close();
    // and a hart made later, on a machine without threads, does not run it again
    new Hart(0, new PhysicalMemoryMap(new GuestRam(0x80000000, 2 << 20)), { mtime: () => 0 });
    expect(hartWarmedUp()).toBe(true);
  });
});
