// Harts in parallel (issue 12, docs/harts.md), through the real CLI and daemon: a VM with several
// harts runs harts 1..N-1 on threads of their own.
//  - the litmus guest (fixtures/firmware-tests/litmus.c) on 2, 4 and 8 harts never shows an outcome
//    RVWMO forbids (millions of iterations: `npm run bench:litmus`; here a few hundred);
//  - pause, resume and stop --force of a VM whose every hart is busy.
import { writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ROOT, VmctlHome } from './harness.js';

const LITMUS = resolve(ROOT, 'fixtures/firmware-tests/litmus.elf');
const h = new VmctlHome();
afterAll(() => h.cleanup());

function vmFile(name: string, cpus: number, cmdline: string, memory = '16GiB'): string {
  const f = join(h.home, `${name}.yaml`);
  writeFileSync(f, [`name: ${name}`, `cpus: ${cpus}`, `memory: ${memory}`, 'boot:', `  kernel: ${LITMUS}`, `  cmdline: "${cmdline}"`, ''].join('\n'));
  return f;
}

describe('litmus tests on harts in parallel', () => {
  for (const [cpus, iters] of [[2, 300], [4, 200], [8, 60]]) {
    it(`${cpus} harts: no outcome RVWMO forbids`, async () => {
      const r = await h.run(['run', '-f', vmFile(`litmus${cpus}`, cpus, `litmus.iters=${iters}`), '--timeout', '8m'], { timeoutMs: 500_000 });
      expect(r.stdout).toContain(`litmus: ${cpus} harts, ${iters} iterations\n`);
      // every line of the report, each with its count
      for (const line of ['mp+fences: ', 'sb+fences: ', 'sb: ', 'amoadd.w: ', 'amoadd.d: ', 'lr/sc lock: ', 'ld/sd: ', 'pte: ']) {
        expect(r.stdout).toContain(line);
      }
      expect(r.stdout).not.toContain('FORBIDDEN');
      expect(r.stdout).toContain('pte: odd pages above 16 GiB\n');
      expect(r.stdout).toContain('litmus: PASS\n');
      expect(r.code, r.stderr).toBe(0);
    }, 520_000);
  }
});

describe('a VM whose harts are all busy', () => {
  it('pauses (no instruction retires), resumes, and stops with --force within a second', async () => {
    // amo: every hart adds in a loop for a long time
    await h.run(['create', '-f', vmFile('busy', 4, 'litmus.iters=100000000 litmus.only=amo', '64MiB')]);
    const start = await h.run(['start', 'busy', '--wait-for', 'litmus: 4 harts', '--timeout', '2m'], { timeoutMs: 150_000 });
    expect(start.code, start.stderr).toBe(0);
    const instret = async () => JSON.parse((await h.run(['info', 'busy', '--json'])).stdout).instructionsRetired as number;
    expect((await h.run(['pause', 'busy'])).code).toBe(0);
    await new Promise((r) => setTimeout(r, 1500)); // the figure is published every second
    const a = await instret();
    await new Promise((r) => setTimeout(r, 2500));
    expect(await instret()).toBe(a);
    expect((await h.run(['resume', 'busy'])).code).toBe(0);
    let b = a;
    for (let i = 0; i < 40 && b === a; i++) { await new Promise((r) => setTimeout(r, 250)); b = await instret(); }
    expect(b).toBeGreaterThan(a);
    const stop = await h.run(['stop', 'busy', '--force']);
    expect(stop.code, stop.stderr).toBe(0);
    expect(JSON.parse((await h.run(['info', 'busy', '--json'])).stdout).state).toBe('stopped');
    expect(h.transitionMs('busy', 'running -> stopping', 'stopping -> stopped')).toBeLessThan(1000);
    expect((await h.run(['delete', 'busy'])).code).toBe(0);
  }, 240_000);
});
