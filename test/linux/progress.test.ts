// The Linux guest build is never silent: build.sh's progress lines (fixtures/linux/progress.sh)
// and the test suite's narration of them (test/helpers/narrated-build.ts), with stand-in builds.

import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runNarrated } from '../helpers/narrated-build.js';

const PROGRESS = join(__dirname, '..', '..', 'fixtures', 'linux', 'progress.sh');
const work = mkdtempSync(join(tmpdir(), 'vmctl-progress-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** Runs `script` in bash with progress.sh sourced (WORK and PROGRESS_EVERY set). */
function withProgress(script: string, every = 1): { status: number | null; stderr: string } {
  const r = spawnSync('bash', ['-c', `set -euo pipefail; . ${PROGRESS}; ${script}`], {
    env: { ...process.env, WORK: work, PROGRESS_EVERY: String(every) }, encoding: 'utf8', timeout: 60_000,
  });
  return { status: r.status, stderr: r.stderr };
}

/** A stand-in for make: kbuild-style step lines (some slowly), a warning from the sources. */
const FAKE_MAKE = `sh -c 'for i in 1 2 3; do echo "  CC      f$i.o"; sleep 0.8; done; echo "warning: unused variable" >&2; echo "  LD      vmlinux"'`;

describe('fixtures/linux/progress.sh', () => {
  it('log lines carry the time and the elapsed time', () => {
    const r = withProgress('log "unpacking"');
    expect(r.status).toBe(0);
    expect(r.stderr).toMatch(/^\[linux\/build\.sh \d\d:\d\d:\d\d, 0m0\ds\] unpacking\n$/);
  });

  it('quiet_make counts build steps while it runs and keeps make\'s whole output in WORK/PHASE-make.log', () => {
    const r = withProgress(`quiet_make kernel ${FAKE_MAKE}`);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/kernel: \d build steps so far\n/);
    expect(r.stderr).toContain(`kernel: 4 build steps (make's output: ${work}/kernel-make.log)`);
    expect(r.stderr).not.toContain('warning: unused variable'); // the sources' noise stays in the log
    expect(readFileSync(join(work, 'kernel-make.log'), 'utf8')).toContain('warning: unused variable');
  });

  it('a failing make ends the build with the end of its output and where the rest is', () => {
    const r = withProgress(`quiet_make busybox sh -c 'echo "  CC      a.o"; echo "a.c:1: error: boom" >&2; exit 2'; echo not reached`);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('a.c:1: error: boom');
    expect(r.stderr).toContain(`ERROR: busybox: make failed; its whole output is in ${work}/busybox-make.log`);
    expect(r.stderr).not.toContain('not reached');
  });
});

describe('the suite\'s narration of a build (global-setup)', () => {
  it('says nothing about a quick build', async () => {
    const said: string[] = [];
    const r = await runNarrated('bash', ['-c', 'echo "cached" >&2'], { quietMs: 2000, heartbeatMs: 10_000, announce: 'building', say: (l) => said.push(l) });
    expect(r.status).toBe(0);
    expect(said).toEqual([]);
    expect(r.tail).toEqual(['cached']);
  });

  it('shows a long build\'s lines (those held first) and a heartbeat when it goes quiet', async () => {
    const said: string[] = [];
    const r = await runNarrated('bash', ['-c', 'echo "phase 1" >&2; sleep 0.2; echo "phase 2" >&2; sleep 3.5; exit 3'],
      { quietMs: 500, heartbeatMs: 1000, announce: 'building the guest', say: (l) => said.push(l) });
    expect(r.status).toBe(3);
    expect(said.slice(0, 3)).toEqual(['building the guest', 'phase 1', 'phase 2']);
    expect(said.slice(3).length, said.join('\n')).toBeGreaterThan(0);
    for (const l of said.slice(3)) expect(l).toMatch(/^still building, \d+m\d\ds so far \(last: phase 2\)$/);
  });
});
