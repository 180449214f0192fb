// The machine-state file (src/vm/machine-state.ts) and the save/load pair of the hart and every
// device: a guest runs N instructions, its machine is written to a file and read back into a
// fresh machine, and both then run the same M instructions: registers, CSRs, devices, RAM and
// console output must be the same. Clocks stand still (paused) so that runs repeat exactly.
// Also: damaged, truncated, foreign and ill-fitting files are refused before anything is applied.

import { copyFileSync, mkdtempSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { VirtMachine, MachineStateMismatch } from '../../src/board/virt.js';
import type { MachineConfig, PowerEvent } from '../../src/board/machine-types.js';
import { CHUNK_SIZE } from '../../src/memory/ram.js';
import { readMachineState, StateFileError, STATE_FORMAT_VERSION, writeMachineState } from '../../src/vm/machine-state.js';
import { createRawImage } from '../../src/disk/raw-image.js';
import { LINUX } from '../helpers/linux-guest.js';
import { elfPath } from '../isa/differential.js';

const dir = mkdtempSync(join(tmpdir(), 'vmctl-state-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let fileNo = 0;
const newPath = () => join(dir, `state-${++fileNo}.vmstate`);

interface Running { vm: VirtMachine; text: () => string; power: () => PowerEvent | null; cfg: MachineConfig }

function boot(cfg: MachineConfig, restoreFrom?: Awaited<ReturnType<typeof readMachineState>>['state']): Running {
  let text = '';
  let power: PowerEvent | null = null;
  const host = {
    consoleOutput: (b: Uint8Array) => { text += Buffer.from(b).toString('latin1'); },
    powerEvent: (e: PowerEvent) => { power ??= e; },
    log: () => {},
  };
  const vm = restoreFrom ? VirtMachine.restore(cfg, host, restoreFrom) : VirtMachine.create(cfg, host);
  if (!restoreFrom) vm.pauseClock(); // a restored machine starts paused at the saved mtime
  return { vm, text: () => text, power: () => power, cfg };
}

/** Runs exactly `n` instructions (fewer if every hart waits or the guest powers off). */
function step(r: Running, n: number): void {
  let left = n;
  while (left > 0) {
    const before = r.vm.instructionsRetired();
    const s = r.vm.run(Infinity, left);
    left -= r.vm.instructionsRetired() - before;
    if (s !== 'running') break;
  }
}

async function saveAndRestore(a: Running, cfg = a.cfg): Promise<{ b: Running; bytes: number }> {
  const path = newPath();
  const w = await writeMachineState(path, a.vm.saveState(false), 'test');
  expect(statSync(path).size).toBe(w.bytes);
  const { state } = await readMachineState(path);
  return { b: boot(cfg, state), bytes: w.bytes };
}

function ramOf(vm: VirtMachine, index: number): Uint8Array {
  return vm.ram.existing(index) ?? new Uint8Array(CHUNK_SIZE);
}

/** Harts, devices and RAM of two machines are the same. */
function expectSameMachine(a: VirtMachine, b: VirtMachine): void {
  const sa = a.saveState(false), sb = b.saveState(false);
  expect(sb.harts).toEqual(sa.harts);
  expect(sb.devices).toEqual(sa.devices);
  expect(sb.board).toEqual(sa.board);
  for (let i = 0; i < a.ram.chunkCount; i++) {
    if (!Buffer.from(ramOf(a, i)).equals(Buffer.from(ramOf(b, i)))) throw new Error(`RAM chunk ${i} differs`);
  }
}

const bare = (name: string, extra: Partial<MachineConfig> = {}): MachineConfig => ({
  memoryBytes: 128 * 1024 * 1024, cpus: 1, firmware: { kind: 'none' }, kernelPath: elfPath(name), cmdline: '', disks: [], ...extra,
});

describe('machine state: save, restore into a fresh machine, run on', () => {
  // traps and csr: trap handling and CSRs; modes: M/S/U and delegation; smp: two harts with
  // LR/SC, AMOs and IPIs; sv39: page tables and the TLB; htif_hello: the HTIF console.
  const cases: [string, MachineConfig, number][] = [
    ['traps', bare('traps'), 30_000],
    ['csr', bare('csr'), 100_000],
    ['modes', bare('modes'), 600_000],
    ['smp (2 harts)', bare('smp', { cpus: 2 }), 150_000],
    ['sv39', bare('sv39'), 200_000],
    ['htif_hello', bare('htif_hello'), 2_000],
  ];
  for (const [name, cfg, n] of cases) {
    it(`${name}: the restored machine runs exactly as the original`, async () => {
      const a = boot(cfg);
      step(a, n);
      expect(a.power()).toBeNull(); // still running at the save
      const before = a.text().length;
      const { b } = await saveAndRestore(a);
      expectSameMachine(a.vm, b.vm);
      // Then both run on: M instructions, and then to the end.
      for (const m of [1, 999, 50_000]) {
        step(a, m);
        step(b, m);
        expectSameMachine(a.vm, b.vm);
      }
      for (let k = 0; k < 400 && (!a.power() || !b.power()); k++) { step(a, 1_000_000); step(b, 1_000_000); }
      expect(a.text().length).toBeGreaterThan(before);
      expect(b.text()).toBe(a.text().slice(before));
      expect(b.power()).toEqual(a.power());
      expect(a.power()).not.toBeNull();
      a.vm.close();
      b.vm.close();
    });
  }

  it('fprand (F and D registers, fcsr) goes on identically', async () => {
    const cfg = bare('x', { kernelPath: join(elfPath('x'), '../../../fp/bin/fprand.elf') });
    const a = boot(cfg);
    step(a, 3_000_000);
    const { b } = await saveAndRestore(a);
    expect(b.vm.harts[0].saveState().fregs.some((v) => v !== 0)).toBe(true);
    step(a, 2_000_000);
    step(b, 2_000_000);
    expectSameMachine(a.vm, b.vm);
    a.vm.close();
    b.vm.close();
  });

  it('keeps every CSR: each one reads the same on the restored hart', async () => {
    const a = boot(bare('chaos'));
    step(a, 400_000);
    const { b } = await saveAndRestore(a);
    const [ha, hb] = [a.vm.harts[0], b.vm.harts[0]];
    let seen = 0;
    for (let csr = 0; csr < 4096; csr++) {
      const va = ha.readCsr(csr);
      expect(hb.readCsr(csr), `CSR 0x${csr.toString(16)}`).toBe(va);
      if (va !== null && va !== 0n) seen++;
    }
    expect(seen).toBeGreaterThan(10);
    a.vm.close();
    b.vm.close();
  });

  it('keeps an LR reservation, a hart waiting in WFI, pending console input and mtime', async () => {
    const a = boot(bare('chaos'));
    step(a, 50_000);
    // An LR reservation (as LR leaves it: the address and the value it loaded).
    a.vm.harts[0].loadState({ ...a.vm.harts[0].saveState(), reservation: 0x80001000, lrLo: 1234, lrHi: -1 });
    a.vm.consoleInput(new TextEncoder().encode('queued input that the guest has not read'));
    const { b } = await saveAndRestore(a);
    expect(b.vm.harts[0].reservations.holds(0)).toBe(true);
    expect(b.vm.harts[0].saveState()).toMatchObject({ reservation: 0x80001000, lrLo: 1234, lrHi: -1 });
    expect(b.vm.uart.pendingInput()).toBe(a.vm.uart.pendingInput());
    expect(b.vm.uart.pendingInput()).toBeGreaterThan(0);
    expect(b.vm.clock.mtime()).toBe(a.vm.clock.mtime());
    a.vm.close();
    b.vm.close();
  });

  it('Linux (builtin SBI): at the shell, saved, restored: the shell answers in both alike', async () => {
    if (!LINUX) return;
    const cfg: MachineConfig = {
      memoryBytes: 128 * 1024 * 1024, cpus: 1, firmware: { kind: 'builtin' },
      kernelPath: join(LINUX, 'Image'), initrdPath: join(LINUX, 'initramfs.cpio.gz'), cmdline: 'console=ttyS0 vmctl=shell', disks: [],
    };
    const a = boot(cfg);
    a.vm.resumeClock(); // Linux needs time to pass to boot
    const deadline = Date.now() + 240_000;
    while (!a.text().includes('shell on console')) {
      if (Date.now() > deadline) throw new Error(`no shell:\n${a.text().slice(-2000)}`);
      if (a.vm.run(50) === 'idle') await new Promise((r) => setTimeout(r, Math.min(10, a.vm.idleTimeoutMs())));
    }
    // Settle at the prompt, then stop the clock: both machines run the same instructions from here.
    for (let k = 0; k < 20; k++) { a.vm.run(50); await new Promise((r) => setTimeout(r, 10)); }
    a.vm.pauseClock();
    const { b, bytes } = await saveAndRestore(a);
    // Only touched RAM, compressed: far less than 128 MiB.
    expect(bytes).toBeLessThan(48 * 1024 * 1024);
    expectSameMachine(a.vm, b.vm);
    const before = a.text().length;
    for (const r of [a, b]) r.vm.consoleInput(new TextEncoder().encode('echo sum-$((40+2)); cat /proc/loadavg >/dev/null\n'));
    // Time moves on in both alike (the UART's character timeout and the kernel's timers need it).
    for (let k = 0; k < 300 && !b.text().includes('sum-42'); k++) {
      for (const r of [a, b]) {
        step(r, 100_000);
        r.vm.clock.setMtime(r.vm.clock.mtime() + 20_000);
      }
    }
    expect(a.text().slice(before)).toContain('sum-42');
    expect(b.text()).toBe(a.text().slice(before));
    expectSameMachine(a.vm, b.vm);
    // With its clock running, the restored machine goes on by itself.
    b.vm.resumeClock();
    b.vm.consoleInput(new TextEncoder().encode('echo again-$((6*7))\n'));
    const until = Date.now() + 60_000;
    while (!b.text().includes('again-42') && Date.now() < until) {
      if (b.vm.run(50) === 'idle') await new Promise((r) => setTimeout(r, Math.min(10, b.vm.idleTimeoutMs())));
    }
    expect(b.text()).toContain('again-42');
    a.vm.close();
    b.vm.close();
  }, 300_000);
});

describe('machine state: refused files', () => {
  let good = '';
  const cfg = bare('chaos');
  it('writes a state to damage', async () => {
    const a = boot(cfg);
    step(a, 100_000);
    good = newPath();
    await writeMachineState(good, a.vm.saveState(false), 'test');
    a.vm.close();
  });

  const damaged = (f: (b: Buffer) => Buffer): string => {
    const p = newPath();
    writeFileSync(p, f(readFileSync(good)));
    return p;
  };

  it('a truncated file, cut anywhere, is refused as truncated', async () => {
    const size = statSync(good).size;
    for (const at of [0, 10, 16, 40, 100, Math.floor(size / 2), size - 64, size - 1]) {
      const p = newPath();
      copyFileSync(good, p);
      truncateSync(p, at);
      await expect(readMachineState(p)).rejects.toThrow(at < 16 ? /not a vmctl machine-state file/ : /truncated/);
    }
  });

  it('a flipped byte anywhere in a section is refused by its checksum', async () => {
    const size = statSync(good).size;
    for (const at of [16 + 64 + 3, Math.floor(size / 3), size - 80]) {
      const p = damaged((b) => { b[at] ^= 0x40; return b; });
      await expect(readMachineState(p)).rejects.toThrow(StateFileError);
    }
    const p = damaged((b) => { b[Math.floor(size / 2)] ^= 1; return b; });
    await expect(readMachineState(p)).rejects.toThrow(/damaged: the checksum of section \d+ \(RAM chunk \d+/);
  });

  it('bytes after the end, another format version, another magic: refused', async () => {
    await expect(readMachineState(damaged((b) => Buffer.concat([b, Buffer.from('x')])))).rejects.toThrow(/1 bytes after the END section/);
    await expect(readMachineState(damaged((b) => { b.writeUInt32LE(STATE_FORMAT_VERSION + 1, 8); return b; })))
      .rejects.toThrow(`machine-state format version ${STATE_FORMAT_VERSION + 1}; this vmctl reads version ${STATE_FORMAT_VERSION} only`);
    await expect(readMachineState(damaged((b) => { b.write('QFI', 0); return b; }))).rejects.toThrow(/not a vmctl machine-state file/);
  });

  it('a state that does not fit the machine (memory, cpus, disks) is refused, naming the difference', async () => {
    const { state } = await readMachineState(good);
    const host = { consoleOutput() {}, powerEvent() {}, log() {} };
    expect(() => VirtMachine.restore({ ...cfg, memoryBytes: 256 * 1024 * 1024 }, host, state))
      .toThrow(new MachineStateMismatch('the saved state was taken with 128 MiB of memory (the VM has 256 MiB)'));
    expect(() => VirtMachine.restore({ ...cfg, cpus: 2 }, host, state)).toThrow(/taken with 1 cpus \(the VM has 2\)/);
    const disk = join(dir, 'disk.img');
    createRawImage(disk, 1024 * 1024);
    expect(() => VirtMachine.restore({ ...cfg, disks: [{ path: disk, readonly: false, name: 'disk0' }] }, host, state))
      .toThrow(/disks none \(the VM has disk0 \(1048576 bytes\)\)/);
  });

  it('never writes over an existing file, and leaves nothing behind when it cannot write', async () => {
    const a = boot(cfg);
    await expect(writeMachineState(good, a.vm.saveState(false), 'test')).rejects.toThrow(/EEXIST/);
    await expect(writeMachineState(join(dir, 'no-such-dir', 'x'), a.vm.saveState(false), 'test')).rejects.toThrow(/ENOENT/);
    a.vm.close();
  });
});
