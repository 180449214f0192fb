// The VM's log rate limit (src/vm/log-limiter.ts), with a clock of our own.
import { describe, expect, it } from 'vitest';
import { LogLimiter } from '../../src/vm/log-limiter.js';

function limiter(): { l: LogLimiter; out: string[]; clock: { t: number } } {
  const out: string[] = [];
  const clock = { t: 0 };
  return { l: new LogLimiter((m) => out.push(m), () => clock.t), out, clock };
}

describe('LogLimiter', () => {
  it('lets 10 lines per source through per 10 s, then counts, and reports the count when the window is over', () => {
    const { l, out, clock } = limiter();
    for (let i = 0; i < 50; i++) l.log(`dev A: error ${i}`);
    for (let i = 0; i < 3; i++) l.log(`dev B: other ${i}`);
    expect(out.filter((m) => m.startsWith('dev A'))).toEqual(Array.from({ length: 10 }, (_, i) => `dev A: error ${i}`));
    expect(out.filter((m) => m.startsWith('dev B'))).toHaveLength(3);
    clock.t = 9_999;
    l.flush();
    expect(out).toHaveLength(13); // the window is not over yet
    clock.t = 10_000;
    l.flush();
    expect(out.slice(13)).toEqual(['dev A: 40 more messages suppressed in 10 s (the last: error 49)']);
    // A new window: lines go through again.
    l.log('dev A: error 50');
    expect(out.at(-1)).toBe('dev A: error 50');
  });

  it('reports a finished window before the next line of its source, and everything at the end', () => {
    const { l, out, clock } = limiter();
    for (let i = 0; i < 11; i++) l.log(`dev: e${i}`);
    clock.t = 12_000;
    l.log('dev: e11');
    expect(out.slice(-2)).toEqual(['dev: 1 more message suppressed in 12 s (the last: e10)', 'dev: e11']);
    for (let i = 12; i < 30; i++) l.log(`dev: e${i}`);
    clock.t = 13_000;
    l.flush(true);
    expect(out.at(-1)).toBe('dev: 9 more messages suppressed in 1 s (the last: e29)');
  });
});
