// WFI really waits: while every hart sleeps in WFI the board runs nothing, reports 'idle', and
// tells the runtime how long it may sleep (until the next CLINT / Sstc / RTC event). The clock
// stands still while paused. Guest: fixtures/firmware-tests/wfi-sleep.c (200 ms timer sleep).
import { describe, expect, it } from 'vitest';
import { fileURLToPath } from 'node:url';
import { VirtMachine } from '../../src/board/virt.js';
import type { MachineHost, PowerEvent } from '../../src/board/machine-types.js';

const ELF = fileURLToPath(new URL('../../fixtures/firmware-tests/wfi-sleep.elf', import.meta.url));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function machine(cpus: number) {
  let out = '';
  let power: PowerEvent | null = null;
  const host: MachineHost = {
    consoleOutput: (b) => { out += Buffer.from(b).toString('latin1'); },
    powerEvent: (ev) => { power = ev; },
    log: () => {},
  };
  const vm = VirtMachine.create({ memoryBytes: 64 << 20, cpus, firmware: { kind: 'none' }, kernelPath: ELF, cmdline: '', disks: [] }, host);
  return { vm, out: () => out, power: () => power };
}

/** Runs until the guest sleeps (all harts in WFI). */
function runUntilIdle(vm: VirtMachine): void {
  for (let i = 0; i < 100; i++) if (vm.run(20) === 'idle') return;
  throw new Error('guest never went idle');
}

describe('idle machine', () => {
  it('returns idle while all harts wait, with the time to the next timer event, and wakes on it', async () => {
    const { vm, out, power } = machine(2);
    runUntilIdle(vm);
    expect(out()).toBe('sleeping\n');
    const t = vm.idleTimeoutMs();
    expect(t).toBeGreaterThan(0);
    expect(t).toBeLessThanOrEqual(200);
    // Asleep means asleep: running it again retires nothing.
    const before = vm.instructionsRetired();
    expect(vm.run(20)).toBe('idle');
    expect(vm.instructionsRetired()).toBe(before);
    const start = performance.now();
    let state = 'idle';
    while (state !== 'halted' && performance.now() - start < 5000) {
      if (state === 'idle') await sleep(Math.max(1, Math.min(vm.idleTimeoutMs(), 50)));
      state = vm.run(20);
    }
    expect(state).toBe('halted');
    expect(performance.now() - start).toBeGreaterThan(t - 20);
    expect(out()).toBe('sleeping\nwoke up\n');
    expect(power()).toEqual({ kind: 'poweroff', code: 0, source: 'test-finisher', failed: false });
    // The whole run is a few hundred instructions: no busy waiting anywhere.
    expect(vm.instructionsRetired()).toBeLessThan(20_000);
    vm.close();
  });

  it('stands still while the clock is paused', async () => {
    const { vm } = machine(1);
    runUntilIdle(vm);
    vm.pauseClock();
    const left = vm.clock.msUntil(vm.clint.mtimecmp(0));
    expect(left).toBeGreaterThan(0);
    expect(vm.idleTimeoutMs()).toBe(Infinity); // nothing can wake a paused machine
    await sleep(250);
    vm.resumeClock();
    // the 250 ms spent paused did not count toward the guest's 200 ms
    expect(vm.run(5)).toBe('idle');
    expect(vm.idleTimeoutMs()).toBeGreaterThan(left - 30);
    vm.close();
  });
});
