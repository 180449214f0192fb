// vmctl edit: the definition in a scripted $EDITOR, validated on save, re-opened with the problems
// on top when it does not validate; a running VM gets the new definition at its next start.

import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, DEMO, ROOT, until, VmctlHome } from './harness.js';

const h = new VmctlHome();
const EDITOR = `${process.execPath} ${join(ROOT, 'test', 'e2e', 'fixtures', 'scripted-editor.mjs')}`;
let planNo = 0;

/** Runs `vmctl edit NAME` with the scripted editor; returns the result and what the editor was shown each time. */
async function edit(name: string, steps: unknown[]): Promise<{ code: number | null; stdout: string; stderr: string; shown: string[] }> {
  const plan = join(h.home, `plan-${planNo++}.json`);
  writeFileSync(plan, JSON.stringify(steps));
  const r = await h.run(['edit', name], { env: { EDITOR, VISUAL: '', EDIT_PLAN: plan } });
  const log = existsSync(`${plan}.log`) ? readFileSync(`${plan}.log`, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { text: string }) : [];
  return { ...r, shown: log.map((l) => l.text) };
}
const info = async (name: string): Promise<{ memoryBytes: number; cpus: number; state: string; disks: { path: string; createdByVmctl: boolean }[] }> =>
  JSON.parse((await h.run(['info', name, '--json'])).stdout);
const stored = (name: string): string => readFileSync(join(h.home, 'vms', name, 'vm.yaml'), 'utf8');
const MiB = 1024 * 1024;

beforeAll(async () => {
  writeFileSync(join(h.home, 'ed.yaml'), `name: ed\nmemory: 16MiB\nboot:\n  kernel: ${join(DEMO, 'echo.elf')}\nshutdown:\n  console: "poweroff\\n"\n  timeout: 10s\n`);
  expect((await h.run(['create', '-f', join(h.home, 'ed.yaml')])).code).toBe(0);
});
afterAll(() => h.cleanup());

describe('vmctl edit', () => {
  it('saves a valid change; an unchanged file is a cancelled edit', async () => {
    const r = await edit('ed', [{ replace: [['memory: 16MiB', 'memory: 32MiB']] }]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('Saved the definition of VM ed\n');
    expect(r.shown[0]).toBe(readFileSync(join(h.home, 'vms', 'ed', 'vm.yaml'), 'utf8').replace('memory: 32MiB', 'memory: 16MiB'));
    expect((await info('ed')).memoryBytes).toBe(32 * MiB);
    expect(stored('ed')).toContain('memory: 32MiB');

    const c = await edit('ed', [{ keep: true }]);
    expect(c.code).toBe(0);
    expect(c.stdout).toBe('Edit cancelled, no changes made to VM ed\n');
  });

  it('re-opens an invalid definition with its problems on top, at the lines the editor shows', async () => {
    const before = stored('ed');
    const r = await edit('ed', [
      { replace: [['memory: 32MiB', 'memory: 12 parsecs'], ['cpus: 1', 'cpus: 1\nmemroy: 1GiB']] },
      { replace: [['memory: 12 parsecs', 'memory: 48MiB'], ['memroy: 1GiB\n', '']] },
    ]);
    expect(r.code).toBe(0);
    expect(r.shown.length).toBe(2);
    const lines = r.shown[1].split('\n');
    expect(lines.slice(0, 2)).toEqual(['# vmctl edit: this definition does not validate, so it was not saved.', '# Fix what is listed below and save, or quit without saving to cancel.']);
    // Each FILE:LINE:COL names the line of the re-opened file where the problem is.
    const problems = lines.filter((l) => /^# ed\.yaml:\d+:\d+: /.test(l));
    expect(problems.map((p) => p.replace(/^# ed\.yaml:\d+:\d+: /, ''))).toEqual([
      'unknown key "memroy"; did you mean "memory"? (expected one of name, cpus, memory, boot, disks, network, balloon, shutdown)',
      'memory: found "12 parsecs"; expected a size like 128MiB (units B, KiB, MiB, GiB)',
    ]);
    for (const p of problems) {
      const [, line, col] = /^# ed\.yaml:(\d+):(\d+): /.exec(p)!.map(Number);
      expect(lines[line - 1].slice(col - 1)).toMatch(/^(memroy: 1GiB|12 parsecs)$/);
    }
    expect(stored('ed')).not.toBe(before);
    expect((await info('ed')).memoryBytes).toBe(48 * MiB);
  });

  it('quitting without saving after problems saves nothing (exit 2); a rename and a failing editor are refused', async () => {
    const before = stored('ed');
    const q = await edit('ed', [{ replace: [['name: ed', 'name: other'], ['cpus: 1', 'cpus: 0']] }, { keep: true }]);
    expect(q.code).toBe(2);
    expect(q.stderr).toMatch(/^vmctl: edit cancelled: the edited definition of VM ed does not validate, so nothing was saved:\ned\.yaml:\d+:7: name: found "other", but this is VM "ed", and a VM cannot be renamed; expected "ed"\ned\.yaml:\d+:7: cpus: found 0; expected a whole number from 1 to 8\n$/);
    expect(stored('ed')).toBe(before);

    const f = await edit('ed', [{ exit: 3 }]);
    expect(f.code).toBe(1);
    expect(f.stderr).toMatch(/the editor \(.*scripted-editor\.mjs\) exited with code 3; nothing was saved/);
    expect(stored('ed')).toBe(before);
    expect((await h.run(['edit', 'ghost'], { env: { EDITOR } })).code).toBe(4);
  });

  it('refuses to save over a change made meanwhile by another edit, keeping the edited file (exit 5)', async () => {
    const inner = join(h.home, 'inner-plan.json');
    writeFileSync(inner, JSON.stringify([{ replace: [['cpus: 1', 'cpus: 2']] }]));
    const r = await edit('ed', [{ run: [process.execPath, BIN, 'edit', 'ed'], plan: inner, replace: [['memory: 48MiB', 'memory: 40MiB']] }]);
    expect(r.code).toBe(5);
    const kept = /your version is in (\S+)$/.exec(r.stderr.trim())![1];
    expect(r.stderr).toContain('vmctl: the definition of VM ed was changed by someone else while it was edited; nothing was saved');
    expect(readFileSync(kept, 'utf8')).toContain('memory: 40MiB');
    rmSync(dirname(kept), { recursive: true });
    expect(await info('ed')).toMatchObject({ cpus: 2, memoryBytes: 48 * MiB });
  });

  it('creates a new disk image on save, as create does', async () => {
    const img = join(h.home, 'added.img');
    const r = await edit('ed', [{ replace: [['boot:', `disks:\n  - path: ${img}\n    size: 2MiB\nboot:`]] }]);
    expect(r.code).toBe(0);
    expect(readFileSync(img).length).toBe(2 * MiB);
    expect((await info('ed')).disks).toEqual([expect.objectContaining({ path: img, createdByVmctl: true })]);
  });

  it('a running VM keeps its definition until it stops, and says so', async () => {
    expect((await h.run(['start', 'ed'])).code).toBe(0);
    const r = await edit('ed', [{ replace: [['memory: 48MiB', 'memory: 64MiB']] }]);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('Saved the definition of VM ed; it is running, so the changes apply at its next start (a guest reboot keeps the running definition)\n');
    expect(stored('ed')).toContain('memory: 64MiB');
    expect((await info('ed')).memoryBytes).toBe(48 * MiB);
    expect((await h.run(['stop', 'ed'])).code).toBe(0);
    await until(async () => (await info('ed')).memoryBytes === 64 * MiB, 20_000, 'the new definition after stop');
    expect((await h.run(['start', 'ed'])).code).toBe(0);
    expect(await info('ed')).toMatchObject({ state: 'running', memoryBytes: 64 * MiB });
    expect((await h.run(['stop', 'ed', '--force'])).code).toBe(0);
  });
});
