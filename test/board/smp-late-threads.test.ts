// A fresh machine whose harts run on threads starts hart 0 at once, without waiting for its hart
// threads to come up (src/board/smp.ts SmpHost.tryStart): here every hart thread sleeps a while
// before it starts (test/helpers/late-hart-worker.mjs). Hart 0 runs meanwhile, but guest time
// starts only once they are all up; the guest's HSM start (builtin SBI) or IPI (OpenSBI) of a
// hart still starting waits until its thread is up; a snapshot taken while the threads start
// holds them once they are up. (test/board/board-selftest.test.ts: a guest that gives the other
// harts 200 ms of its time to check in still counts them all.) The guest is
// fixtures/firmware-tests/sbi-calls.c (as test/board/sbi.test.ts runs it). Needs the built
// dist/hart-worker.js (npm run build).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { setImmediate as tick } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { VirtMachine } from '../../src/board/virt.js';
import type { FirmwareSpec, MachineHost, PowerEvent } from '../../src/board/machine-types.js';
import type { HartThreadHandle, StartHartThread } from '../../src/board/smp.js';
import { HART_WORKER } from '../helpers/run-guest.js';

const PROGRAM = fileURLToPath(new URL('../../fixtures/firmware-tests/sbi-calls.bin', import.meta.url));
const FW_DYNAMIC = '/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_dynamic.bin';
const LATE = new URL('../helpers/late-hart-worker.mjs', import.meta.url);

/** Hart threads that each sleep `lateMs` before they start. */
function lateThreads(lateMs: number): StartHartThread {
  return (init): HartThreadHandle => {
    const w = new Worker(LATE, { workerData: { lateMs, hartWorker: HART_WORKER.href } });
    w.postMessage({ k: 'run', init }, [init.port]); // as src/vm/hart-threads.ts gives a hart thread its hart
    let error: Error | null = null;
    w.on('error', (e) => { error = e; });
    return { onExit(cb) { w.on('exit', () => cb(error)); }, terminate() { void w.terminate(); } };
  };
}

let vm: VirtMachine | null = null;
afterEach(() => { vm?.close(); vm = null; });

function create(firmware: FirmwareSpec, cpus: number, lateMs: number): { m: VirtMachine; out: () => string; power: () => PowerEvent | null } {
  let text = '';
  let power: PowerEvent | null = null;
  const host: MachineHost = {
    consoleOutput: (b) => { text += Buffer.from(b).toString('latin1'); },
    powerEvent: (ev) => { power ??= ev; },
    log: () => {},
  };
  vm = VirtMachine.create({ memoryBytes: 128 << 20, cpus, firmware, kernelPath: PROGRAM, cmdline: '', disks: [] }, host, lateThreads(lateMs));
  return { m: vm, out: () => text, power: () => power };
}

async function runToEnd(m: VirtMachine, power: () => PowerEvent | null): Promise<void> {
  const end = performance.now() + 60_000;
  while (power() === null) {
    if (performance.now() > end) throw new Error('timed out');
    if (m.run(20) === 'halted') break;
    await tick();
  }
}

describe('hart threads that come up late', () => {
  it('hart 0 runs while they start; HSM start of a hart still starting waits for it (builtin SBI)', async () => {
    const { m, out, power } = create({ kind: 'builtin' }, 2, 1500);
    // The first run executes hart 0 at once (before: 'idle', nothing executed until every hart
    // thread was up); the guest's "start hart 1" waits inside it until hart 1's thread is up.
    m.run(20);
    expect(m.hartInstructions()[0]).toBeGreaterThan(0);
    await runToEnd(m, power);
    const text = out().replace(/\r\n/g, '\n');
    expect(text).toContain('start hart 1: error 0 value 0\n');
    expect(text).toContain('hart 1 running: opaque 0x1234, SIE clear\n');
    expect(text).toContain('hart 1 took 2 IPIs\n');
    expect(text).toMatch(/sbi-calls: done\n$/);
    expect(power()).toEqual({ kind: 'poweroff', code: 0, source: 'sbi', failed: false });
  }, 90_000);

  it.skipIf(!existsSync(FW_DYNAMIC))('OpenSBI: the late harts join the boot (lottery lost, warm boot) and HSM-start as usual', async () => {
    const { m, out, power } = create({ kind: 'file', path: FW_DYNAMIC }, 4, 1000);
    m.run(20);
    expect(m.hartInstructions()[0]).toBeGreaterThan(0);
    await runToEnd(m, power);
    const text = out().replace(/\r\n/g, '\n');
    expect(text).toContain('Boot HART ID              : 0\n'); // hart 0 ran first: it won OpenSBI's lotteries
    expect(text).toContain('hart 1 running: opaque 0x1234, SIE clear\n');
    expect(text).toContain('hart 1 stopped\n');
    expect(text).toMatch(/sbi-calls: done\n$/);
  }, 90_000);

  it('guest time starts once every hart thread is up', async () => {
    const { m } = create({ kind: 'builtin' }, 3, 1000);
    m.run(20, 1000); // hart 0 runs 1000 instructions, harts 1 and 2 still starting
    expect(m.hartInstructions()[0]).toBe(1000);
    expect(m.clock.mtime()).toBe(0);
    const end = performance.now() + 30_000;
    while (m.clock.mtime() === 0 && performance.now() < end) { m.run(5, 1000); await tick(); }
    expect(m.clock.mtime()).toBeGreaterThan(0);
  }, 90_000);

  it('a snapshot taken while they start waits until they are up and holds them', () => {
    const { m } = create({ kind: 'builtin' }, 3, 1000);
    m.run(20, 1000); // starts the machine: hart 0 runs 1000 instructions, harts 1 and 2 still starting
    const s = m.saveState(true);
    expect(s.harts).toHaveLength(3);
    expect(s.harts[1].halted).toBe(true); // not started by the guest yet
  }, 90_000);
});

describe('waiting for a hart thread to come up', () => {
  /** A thread that sets hart 1's UP word after `ms` (as a hart thread does once it is built). */
  function upLater(buffer: SharedArrayBuffer, index: number, ms: number): Worker {
    return new Worker(`const { workerData: d } = require('node:worker_threads'); const w = new Int32Array(d.b);
      Atomics.wait(w, w.length - 1, 0, d.ms); Atomics.store(w, d.i, 1); Atomics.notify(w, d.i);`, { eval: true, workerData: { b: buffer, i: index, ms } });
  }

  it('an HSM start (builtin SBI) and an IPI (MSIP raised) return only once the hart is up; other lines do not wait', async () => {
    const { HartControl, UP, HSM, HSM_STOPPED, HSM_START_PENDING, REQ } = await import('../../src/board/hart-control.js');
    const { SharedHarts, SmpHost } = await import('../../src/board/smp.js');
    const { Hart } = await import('../../src/riscv/hart.js');
    const { GuestRam } = await import('../../src/memory/ram.js');
    const { PhysicalMemoryMap } = await import('../../src/memory/bus.js');
    const mem = new PhysicalMemoryMap(new GuestRam(0x80000000, 4 << 20));
    const host = new SmpHost({ harts: 2, regions: () => mem.listDevices(), mem, putchar: () => {}, power: () => {}, log: () => {}, wake: () => {} });
    const ctl = host.control;
    ctl.store(1, HSM, HSM_STOPPED);
    let served = 0;
    const harts = new SharedHarts(ctl, new Hart(0, mem, { mtime: () => 0 }), () => {}, () => { served++; });
    let w = upLater(ctl.buffer, ctl.at(1, UP), 300);
    expect(ctl.up(1)).toBe(false);
    expect(harts.start(1, 0x80200000, 7n)).toBe(true);
    expect(ctl.up(1)).toBe(true);
    expect(served).toBeGreaterThan(0); // it served this thread's requests while it waited
    expect(ctl.load(1, HSM)).toBe(HSM_START_PENDING);
    expect(ctl.load(1, REQ)).not.toBe(0);
    await w.terminate();

    const host2 = new SmpHost({ harts: 2, regions: () => mem.listDevices(), mem, putchar: () => {}, power: () => {}, log: () => {}, wake: () => {} });
    w = upLater(host2.control.buffer, host2.control.at(1, UP), 300);
    host2.setLine(1, 3, false); // lowering a line never waits
    host2.setLine(1, 7, true); // nor does MTIP (up from power-on: mtimecmp is 0), or a device's line
    host2.setLine(1, 11, true);
    expect(host2.control.up(1)).toBe(false);
    host2.setLine(1, 3, true);
    expect(host2.control.up(1)).toBe(true);
    await w.terminate();
    host.close(); host2.close();
  });
});
