// The translators' figures of a machine whose harts run on threads of their own count every hart
// (VirtMachine.jitStats, `--verbose` and vmd.log's "translator:" line): each hart thread
// publishes its hart's JitStats after every slice (src/board/hart-control.ts JIT), as it does its
// instret. Before, only hart 0's were summed while instret counted every hart, so a 4-hart boot
// read "6% translated". The guest: fixtures/demo's touch walk run by hart 1 (hart 0 waits), a loop
// that is translated once hot. Needs the built dist/hart-worker.js (npm run build).
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { runGuest } from '../helpers/run-guest.js';

const TOUCH_HART1 = fileURLToPath(new URL('../../fixtures/demo/touch-hart1.elf', import.meta.url));

describe('translator figures with hart threads', () => {
  it('count the code hart 1 ran translated on its own thread', async () => {
    // 64 MiB: about 15 900 turns of the walk's loop, then "touched all" and a sleep
    const r = await runGuest({ kernelPath: TOUCH_HART1, cpus: 2, memoryBytes: 64 << 20 }, { timeoutMs: 4000, threads: true });
    expect(r.output).toContain('touched all');
    const hart1 = r.jit.translatedInsns;
    // what hart 0 (waiting in WFI) ran is a few thousand instructions at most: the walk's
    // translated turns are hart 1's
    expect(hart1).toBeGreaterThan(20_000);
    expect(hart1).toBeLessThanOrEqual(r.instret);
  }, 30_000);
});
