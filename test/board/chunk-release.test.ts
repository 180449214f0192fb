// A RAM chunk dropped by the balloon really leaves the process: the board makes every hart forget
// its soft-TLB views of it (and the code translated from it) before the RAM lets it go, so the
// garbage collector can free it; the guest then reads zeros there. Also: where the balloon sits
// among the virtio slots.

import { fileURLToPath } from 'node:url';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { VirtMachine } from '../../src/board/virt.js';
import { defaultNicCount, planVirtioSlots } from '../../src/board/virtio-slots.js';
import type { MachineHost } from '../../src/board/machine-types.js';
import { CHUNK_SIZE } from '../../src/memory/ram.js';

const ELF = fileURLToPath(new URL('../../fixtures/firmware-tests/wfi-sleep.elf', import.meta.url));
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

function machine(): { vm: VirtMachine; released: () => number } {
  let released = 0;
  const host: MachineHost = { consoleOutput: () => {}, powerEvent: () => {}, log: () => {}, memoryReleased: () => { released++; } };
  const vm = VirtMachine.create({
    memoryBytes: 16 << 20, cpus: 2, firmware: { kind: 'none' }, kernelPath: ELF, cmdline: '', disks: [],
    balloon: { deflateOnOom: true, freePageReporting: true, statsIntervalMs: 0 },
  }, host);
  return { vm, released: () => released };
}

/** A store and a load by each hart through its soft TLB (M-mode: physical addresses). */
function touch(vm: VirtMachine, pa: number): void {
  for (const h of vm.harts) {
    expect(h.storeMem(pa | 0, 0, 3, 0x1234_5678, 0x9abc_def0)).toBe(true);
    expect(h.loadMem((pa + 8) | 0, 0, 3)).toBe(true);
  }
}

/** Whether the chunk's memory is still reachable after a full collection. */
async function collected(ref: WeakRef<object>): Promise<boolean> {
  for (let i = 0; i < 3; i++) {
    await new Promise((r) => setTimeout(r, 0)); // WeakRefs are cleared between tasks
    gc();
  }
  await new Promise((r) => setTimeout(r, 0));
  return ref.deref() === undefined;
}

describe('dropping a RAM chunk', () => {
  it('leaves nothing that keeps its memory alive, and the guest reads zeros there afterwards', async () => {
    const { vm, released } = machine();
    const pa = vm.ram.base + 5 * CHUNK_SIZE + 0x100;
    touch(vm, pa);
    const ref = new WeakRef(vm.ram.chunk(5).buffer);
    expect(vm.memoryFigures().residentBytes).toBeGreaterThanOrEqual(CHUNK_SIZE);
    const before = vm.memoryFigures().residentBytes;
    vm.releaseChunks([5]);
    expect(released()).toBe(1);
    expect(vm.memoryFigures().residentBytes).toBe(before - CHUNK_SIZE);
    expect(vm.memoryFigures().chunksReleased).toBe(1);
    expect(await collected(ref)).toBe(true);
    for (const h of vm.harts) {
      expect(h.loadMem(pa | 0, 0, 3)).toBe(true);
      expect([h.memLo, h.memHi]).toEqual([0, 0]);
    }
    vm.close();
  });

  it('(control) dropping it in the RAM alone is not enough: the harts\' soft TLBs still hold it', async () => {
    const { vm } = machine();
    const pa = vm.ram.base + 6 * CHUNK_SIZE;
    touch(vm, pa);
    const ref = new WeakRef(vm.ram.chunk(6).buffer);
    vm.ram.release(6);
    expect(await collected(ref)).toBe(false);
    vm.close();
  });
});

describe('virtio slots', () => {
  it('disks from slot 0 up, the balloon in the highest slot left; 8 devices at most', () => {
    expect(planVirtioSlots(0, 0, true)[7]).toEqual({ kind: 'balloon' });
    expect(planVirtioSlots(2, 0, true).map((u) => u?.kind ?? '-')).toEqual(['disk', 'disk', '-', '-', '-', '-', '-', 'balloon']);
    expect(planVirtioSlots(7, 0, true)[7]).toEqual({ kind: 'balloon' });
    expect(planVirtioSlots(8, 0, false).every((u) => u?.kind === 'disk')).toBe(true);
    expect(() => planVirtioSlots(8, 0, true)).toThrow(/do not fit/);
    // NICs from the top down (the first NIC is eth0), the balloon in the highest slot left.
    expect(planVirtioSlots(2, 1, true).map((u) => u?.kind ?? '-')).toEqual(['disk', 'disk', '-', '-', '-', '-', 'balloon', 'nic']);
    expect(planVirtioSlots(1, 2, false)[6]).toEqual({ kind: 'nic', index: 1 });
    expect(() => planVirtioSlots(7, 1, true)).toThrow(/do not fit/);
    expect([defaultNicCount(6, true), defaultNicCount(7, true), defaultNicCount(7, false), defaultNicCount(8, false)]).toEqual([1, 0, 1, 0]);
  });
});
