// The WebAssembly-tier prototype (src/bench/wasm-tier.ts, `npm run bench:wasm`): its RV64 -> wasm
// translation of the SHA-256 loop must leave the same registers, memory and instruction count as
// jit.ts's region for the same code, or its speed figures compare different work. Runs the built
// dist/wasm-tier.js (npm run build), as `npm run bench:wasm -- check` does.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const BENCH = fileURLToPath(new URL('../../dist/wasm-tier.js', import.meta.url));

describe('bench:wasm prototype', () => {
  it('translates the SHA-256 loop to wasm with the same result as jit.ts', () => {
    const r = spawnSync(process.execPath, [BENCH, 'check'], { encoding: 'utf8', timeout: 60_000 });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/check: 1000 iterations \(54000 instructions\) give the same registers and memory in JS and wasm as in the hart's interpreter/);
  }, 90_000);

  it('rejects an unknown part with exit code 2', () => {
    const r = spawnSync(process.execPath, [BENCH, 'nonsense'], { encoding: 'utf8', timeout: 60_000 });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/unknown part 'nonsense'/);
  }, 90_000);
});
