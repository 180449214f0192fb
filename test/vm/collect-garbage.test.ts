// A VM thread's heap is collected when it grew and its guest waits (src/vm/collect-garbage.ts,
// the run loop's onIdle): the garbage a boot leaves in the old space goes back to the system.
import { describe, expect, it } from 'vitest';
import { getHeapStatistics } from 'node:v8';
import { collectGarbage, collectIfGrown } from '../../src/vm/collect-garbage.js';
import { ConsoleBatcher, RunLoop, type RunnableMachine } from '../../src/vm/run-loop.js';

const used = (): number => getHeapStatistics().used_heap_size;

describe('collectIfGrown', () => {
  it('collects only after the heap in use grew by 4 MiB since the last collection, and frees that garbage', () => {
    collectGarbage();
    expect(collectIfGrown()).toBe(false);
    // A little garbage (about 1 MiB) is not enough.
    let small: { a: number; b: string }[] | null = [];
    for (let i = 0; i < 20_000; i++) small.push({ a: i, b: `s${i}` });
    small = null;
    expect(collectIfGrown()).toBe(false);
    // 8 MiB or more of objects, alive while the growth is measured (so that a collection V8 starts
    // by itself meanwhile cannot free them: only the small garbage above), then dropped.
    const before = used();
    let more: { a: number; b: string }[] | null = [];
    for (let i = 0; i < 200_000; i++) more.push({ a: i, b: `t${i}` });
    const grown = used();
    expect(grown - before).toBeGreaterThan(4 << 20);
    more = null;
    expect(collectIfGrown()).toBe(true);
    expect(used()).toBeLessThan(grown - (4 << 20));
    expect(collectIfGrown()).toBe(false);
    expect(small).toBeNull();
    expect(more).toBeNull();
  });
});

describe('collectGarbage', () => {
  it('gives the pages it emptied back to the system (V8 13 pools them after a plain gc())', () => {
    const rss = (): number => process.memoryUsage.rss();
    collectGarbage();
    const base = rss();
    // Some 100 MiB of small objects, in heap pages that all become empty once they are dropped.
    let keep: { a: number; b: number[]; c: string }[] | null = [];
    for (let i = 0; i < 400_000; i++) keep.push({ a: i, b: [i, i + 1, i + 2], c: `x${i}` });
    const peak = rss();
    expect(peak - base).toBeGreaterThan(50 << 20);
    keep = null;
    collectGarbage();
    expect(keep).toBeNull();
    expect(rss() - base).toBeLessThan((peak - base) / 2);
  });
});

/** A machine whose harts always wait (or always run), counting its slices. */
function machine(state: 'idle' | 'running'): RunnableMachine & { slices: number } {
  const m = {
    slices: 0,
    onWake: () => {},
    run: () => { m.slices++; return state; },
    idleTimeoutMs: () => 1,
    instructionsRetired: () => 0,
    hartInstructions: () => [0],
    jitStats: () => ({ describe: () => '' }),
    memoryFigures: () => ({ residentBytes: 0, chunksAllocated: 0, chunksReleased: 0, balloon: null, sentAt: 0 }),
    diskIo: () => [],
    close: () => {},
  };
  return m as unknown as RunnableMachine & { slices: number };
}

async function idleCalls(state: 'idle' | 'running', ms: number): Promise<{ calls: number; slices: number }> {
  const m = machine(state);
  let calls = 0;
  const loop = new RunLoop(m, new ConsoleBatcher(() => {}), () => {}, () => {}, '', () => {}, () => ({}), () => { calls++; });
  loop.start();
  await new Promise((r) => setTimeout(r, ms));
  loop.handle({ type: 'stop' });
  return { calls, slices: m.slices };
}

describe('RunLoop onIdle', () => {
  it('is called while the guest waits, at most once a second, and never while it runs', async () => {
    const idle = await idleCalls('idle', 2500);
    expect(idle.slices).toBeGreaterThan(idle.calls);
    expect(idle.calls).toBeGreaterThanOrEqual(1);
    expect(idle.calls).toBeLessThanOrEqual(3);
    const busy = await idleCalls('running', 1200);
    expect(busy.slices).toBeGreaterThan(0);
    expect(busy.calls).toBe(0);
  }, 20_000);
});
