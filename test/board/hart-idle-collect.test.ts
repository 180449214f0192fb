// A hart thread never returns to its event loop, so V8's own idle-time collections never run in
// it: HartThread calls its `collectIdle` (in a VM: collectIfGrown) while its hart waits, at most
// once a second, and never while the hart runs. Guest: fixtures/firmware-tests/wfi-sleep.c
// (hart 1 sleeps in WFI for good). The hart thread is src/board/smp.ts's HartThread in a worker
// bundled here with esbuild, with a collectIdle that counts its calls.
import { build } from 'esbuild';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { VirtMachine } from '../../src/board/virt.js';
import type { MachineHost } from '../../src/board/machine-types.js';
import type { StartHartThread } from '../../src/board/smp.js';

const ELF = fileURLToPath(new URL('../../fixtures/firmware-tests/wfi-sleep.elf', import.meta.url));
const SMP = fileURLToPath(new URL('../../src/board/smp.ts', import.meta.url));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let dir = '';
let script = '';
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'vmctl-hart-idle-'));
  script = join(dir, 'counting-hart.mjs');
  await build({
    stdin: {
      contents: [
        `import { workerData } from 'node:worker_threads';`,
        `import { HartThread } from ${JSON.stringify(SMP)};`,
        `const calls = new Int32Array(workerData.calls);`,
        `new HartThread(workerData.init, null, null, () => { Atomics.add(calls, 0, 1); }).run();`,
        `workerData.init.port.close();`,
      ].join('\n'),
      resolveDir: dir, loader: 'ts',
    },
    outfile: script, bundle: true, platform: 'node', format: 'esm', logLevel: 'warning',
  });
});
afterAll(() => { if (dir) rmSync(dir, { recursive: true, force: true }); });

describe('a hart thread whose hart waits', () => {
  it('calls collectIdle about once a second, no more', async () => {
    const calls = new Int32Array(new SharedArrayBuffer(4));
    const start: StartHartThread = (init) => {
      const w = new Worker(script, { workerData: { init, calls: calls.buffer }, transferList: [init.port] });
      let error: Error | null = null;
      w.on('error', (e) => { error = e; });
      return { onExit: (cb) => { w.on('exit', () => cb(error)); }, terminate: () => { void w.terminate(); } };
    };
    const host: MachineHost = { consoleOutput: () => {}, powerEvent: () => {}, log: () => {} };
    const vm = VirtMachine.create({ memoryBytes: 64 << 20, cpus: 2, firmware: { kind: 'none' }, kernelPath: ELF, cmdline: '', disks: [] }, host, start);
    try {
      // Until the hart thread is up (idleTimeoutMs is Infinity before) and hart 0 sleeps in WFI;
      // then this thread runs hart 0 no more, while hart 1, on its thread, sleeps in WFI for good.
      for (let i = 0; i < 2000 && (vm.run(20) !== 'idle' || vm.idleTimeoutMs() === Infinity); i++) await sleep(5);
      expect(vm.idleTimeoutMs()).not.toBe(Infinity);
      const t0 = performance.now();
      await sleep(3500);
      const seconds = (performance.now() - t0) / 1000;
      const n = Atomics.load(calls, 0);
      expect(n).toBeGreaterThanOrEqual(2);
      expect(n).toBeLessThanOrEqual(Math.ceil(seconds) + 1);
    } finally {
      vm.close();
    }
  }, 60_000);
});
