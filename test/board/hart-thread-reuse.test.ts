// Hart threads are kept when their machine stops and given the harts of the next machine started
// in the same thread (src/vm/hart-threads.ts), as the daemon keeps VM threads: a new hart thread
// is a new V8 isolate with its own warm-up. The second machine here starts no thread and runs
// fixtures/firmware-tests/sbi-calls.c (HSM start/stop, IPIs, remote fences) as the first did.
// Needs the built dist/hart-worker.js (npm run build).
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { runGuest } from '../helpers/run-guest.js';
import { hartThreadsStarted, idleHartThreads } from '../../src/vm/hart-threads.js';

const PROGRAM = fileURLToPath(new URL('../../fixtures/firmware-tests/sbi-calls.bin', import.meta.url));

async function run(cpus: number): Promise<string> {
  const r = await runGuest({ firmware: { kind: 'builtin' }, kernelPath: PROGRAM, cpus, memoryBytes: 64 << 20 }, { timeoutMs: 60_000, threads: true });
  expect(r.timedOut, r.output).toBe(false);
  return r.output.slice(r.output.indexOf('sbi-calls: start')).replace(/\r\n/g, '\n');
}

async function idleAtLeast(n: number): Promise<void> {
  const end = performance.now() + 20_000;
  while (idleHartThreads() < n && performance.now() < end) await sleep(10);
  expect(idleHartThreads()).toBeGreaterThanOrEqual(n);
}

describe('hart threads of a stopped machine', () => {
  it('run the next machine\'s harts: no new thread, the same results', async () => {
    const first = await run(3);
    expect(first).toContain('hart 1 running: opaque 0x1234, SIE clear\n');
    expect(first).toMatch(/sbi-calls: done\n$/);
    await idleAtLeast(2);
    const before = hartThreadsStarted();
    const second = await run(3);
    expect(hartThreadsStarted()).toBe(before); // both hart threads were the first machine's
    expect(second).toBe(first);
    await idleAtLeast(2);
    // more harts than idle threads: the idle ones are used, the rest started
    const third = await run(4);
    expect(hartThreadsStarted()).toBe(before + 1);
    expect(third).toBe(first);
  }, 120_000);
});
