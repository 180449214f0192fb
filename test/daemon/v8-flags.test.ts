// The daemon's V8 flags (src/daemon/v8-flags.ts) hold for threads started after they are set: a
// worker's hot function is then optimized on the worker's own thread ("mode:
// ConcurrencyMode::kSynchronous" in V8's --trace-opt output), not handed to V8's compiler threads.
// Each case runs in a child Node process (flags are process-wide) with the module under test.
import { spawnSync } from 'node:child_process';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';

const MODULE = pathToFileURL(resolve('src/daemon/v8-flags.ts')).href;

/** --trace-opt's "compiling method" lines of a worker's hot function `hot`, with or without the daemon's flags set first. */
function compiles(apply: boolean): string[] {
  const worker = 'function hot(n){let s=0;for(let i=0;i<n;i++)s+=i*i%7;return s} let t=0; for(let i=0;i<20000;i++) t+=hot(1000); console.log("sum", t);';
  const script = [
    `import { Worker } from 'node:worker_threads';`,
    apply ? `import { applyDaemonV8Flags } from ${JSON.stringify(MODULE)}; applyDaemonV8Flags();` : '',
    `new Worker(${JSON.stringify(worker)}, { eval: true });`,
  ].join('\n');
  const r = spawnSync(process.execPath, ['--trace-opt', '--input-type=module', '-e', script], { encoding: 'utf8', timeout: 120_000 });
  expect(r.status, r.stderr).toBe(0);
  expect(r.stdout).toContain('sum ');
  return r.stdout.split('\n').filter((l) => l.startsWith('[compiling method') && l.includes('<JSFunction hot '));
}

describe('daemon V8 flags', () => {
  it('without them, a worker\'s hot function is compiled on V8\'s compiler threads', () => {
    const lines = compiles(false);
    expect(lines.length).toBeGreaterThan(0);
    expect(lines.some((l) => l.includes('mode: ConcurrencyMode::kConcurrent'))).toBe(true);
  }, 130_000);

  it('with them, it is compiled on the worker\'s own thread', () => {
    const lines = compiles(true);
    expect(lines.length).toBeGreaterThan(0);
    for (const l of lines) expect(l).toContain('mode: ConcurrencyMode::kSynchronous');
  }, 130_000);
});
