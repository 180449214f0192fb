// `vmctl save` and resuming with `vmctl start`, through the real CLI and daemon, with the demo
// guest that prints "tick N" every 50 ms: the ticks go on from where they were, across a daemon
// restart; list/info show `saved` and the state's size; stop/start --discard-state; a damaged or
// ill-fitting state is refused and kept. (The Linux guest's processes: test/e2e/snapshot-linux.test.ts.)

import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DEMO, haveScript, onTty, ROOT, until, VmctlHome, type Result } from './harness.js';

const h = new VmctlHome();
afterAll(() => h.cleanup());
const stateFile = (vm: string) => join(h.home, 'vms', vm, 'saved.vmstate');

async function info(vm: string): Promise<Record<string, any>> {
  return JSON.parse(await h.expectExit(['info', vm, '--json']));
}

/** The tick numbers in the VM's serial log, in order. */
async function ticks(vm: string): Promise<number[]> {
  const log = await h.expectExit(['logs', vm]);
  return [...log.matchAll(/tick (\d+)/g)].map((m) => Number(m[1]));
}

function expectCode(r: Result, code: number): void {
  expect(r.code, `${r.stdout}${r.stderr}`).toBe(code);
}

describe('vmctl save / start (resume)', () => {
  it('saves a running VM, which then survives a daemon restart and resumes where it was', async () => {
    await h.expectExit(['create', '-f', join(DEMO, 'loop.yaml')]);
    await h.expectExit(['start', 'loop', '--wait-for', 'tick 8\\b', '--timeout', '60s']);
    const out = await h.expectExit(['save', 'loop']);
    expect(out).toMatch(/^Saved VM loop \([\d.]+\s?[KM]iB in [\d.]+ s\), state saved$/m);
    const i = await info('loop');
    expect(i.state).toBe('saved');
    expect(i.savedState.bytes).toBe(statSync(stateFile('loop')).size);
    expect(await h.expectExit(['list'])).toMatch(/^loop\s+saved \([\d.]+\s?KiB\)/m);
    expect(await h.expectExit(['info', 'loop'])).toMatch(/^Saved state:\s+[\d.]+\s?KiB \(\d+ bytes\), saved \d{4}-/m);
    const before = await ticks('loop');
    const last = before[before.length - 1];

    await h.expectExit(['daemon', 'stop']);
    expect((await info('loop')).state).toBe('saved'); // a new daemon, the VM still saved
    expect(await h.expectExit(['start', 'loop'])).toContain('Resumed VM loop, state running');
    await until(async () => (await ticks('loop')).length >= before.length + 5, 30_000, 'ticks after the resume');
    const after = await ticks('loop');
    // The ticks go on from the last one: no reboot (the banner is there once), no tick lost or repeated.
    expect(after.slice(before.length, before.length + 5)).toEqual([last + 1, last + 2, last + 3, last + 4, last + 5]);
    expect((await h.expectExit(['logs', 'loop'])).match(/ticking forever/g)).toHaveLength(1);
    const j = await info('loop');
    expect(j.bootId).toBe(1); // the same boot goes on
    expect(j.savedState).toBeNull();
    expect(existsSync(stateFile('loop'))).toBe(false); // a resumed state is dropped
  });

  it('saves a paused VM; wait --state saved sees it; stop needs --discard-state without a terminal', async () => {
    await h.expectExit(['pause', 'loop']);
    const waiting = h.run(['wait', 'loop', '--state', 'saved', '--timeout', '60s']);
    await h.expectExit(['save', 'loop']);
    expectCode(await waiting, 0);
    const bytes = statSync(stateFile('loop')).size;

    for (const args of [['stop', 'loop'], ['stop', 'loop', '--force']]) {
      const r = await h.run(args);
      expectCode(r, 5);
      expect(r.stderr).toContain(`VM loop is saved (its machine state is in ${stateFile('loop')}); vmctl start loop resumes it, vmctl stop --discard-state loop discards the state`);
    }
    expectCode(await h.run(['save', 'loop']), 5);
    expect(statSync(stateFile('loop')).size).toBe(bytes); // untouched
    expect((await info('loop')).state).toBe('saved');

    expect(await h.expectExit(['stop', 'loop', '--discard-state'])).toContain('Discarded the saved state of VM loop; it is stopped');
    expect(existsSync(stateFile('loop'))).toBe(false);
    expect((await info('loop')).state).toBe('stopped');
    expectCode(await h.run(['save', 'loop']), 5); // nothing to save
  });

  it('start --discard-state boots a saved VM afresh', async () => {
    await h.expectExit(['start', 'loop', '--wait-for', 'tick 2\\b', '--timeout', '60s']);
    await h.expectExit(['save', 'loop']);
    const boot = (await info('loop')).bootId;
    expect(await h.expectExit(['start', 'loop', '--discard-state', '--wait-for', 'ticking forever', '--timeout', '60s'])).toContain('is up');
    expect((await info('loop')).bootId).toBe(boot + 1);
    expect(existsSync(stateFile('loop'))).toBe(false);
  });

  it('start --wait-for after a resume matches new output', async () => {
    await h.expectExit(['save', 'loop']);
    const last = (await ticks('loop')).pop()!;
    const r = await h.run(['start', 'loop', '--wait-for', `tick ${last + 3}\\b`, '--timeout', '60s']);
    expectCode(r, 0);
    expect(r.stdout).toContain(`console matched /tick ${last + 3}\\b/`);
  });

  it('a damaged state file is refused: the VM stays saved with its file, --discard-state gets it going', async () => {
    await h.expectExit(['save', 'loop']);
    const f = stateFile('loop');
    const good = readFileSync(f);
    const bad = Buffer.from(good);
    bad[Math.floor(bad.length / 2)] ^= 0xff;
    writeFileSync(f, bad);
    const r = await h.run(['start', 'loop']);
    expectCode(r, 1);
    expect(r.stderr).toMatch(/VM loop failed to resume: cannot resume from the saved state: .*saved\.vmstate: damaged: the checksum of section \d+ .* does not match; vmctl start --discard-state loop boots it afresh/);
    expect((await info('loop')).state).toBe('saved');
    expect(readFileSync(f).equals(bad)).toBe(true);
    // A truncated one too.
    writeFileSync(f, good.subarray(0, good.length - 100));
    expect((await h.run(['start', 'loop'])).stderr).toMatch(/saved\.vmstate: truncated/);
    // The good one resumes.
    writeFileSync(f, good);
    await h.expectExit(['start', 'loop']);
  });

  it.skipIf(!haveScript)('stop of a saved VM on a terminal asks before it discards the state', async () => {
    await h.expectExit(['create', '-f', join(DEMO, 'loop.yaml'), '--name', 'ttyvm']);
    await h.expectExit(['start', 'ttyvm', '--wait-for', 'tick 2\\b', '--timeout', '60s']);
    await h.expectExit(['save', 'ttyvm']);
    const no = await onTty(h, ['stop', 'ttyvm'], ['n\r'], { NO_COLOR: '1' });
    expect(no.out).toMatch(/VM ttyvm is saved \([\d.]+\s?KiB, saved \d{4}-[^)]*\)\. Discard its saved state\? Its guest then boots afresh at the next start\. \[y\/N\]/);
    expect(no.code, no.out).toBe(5);
    expect(no.out).toContain('kept the saved state of VM ttyvm');
    expect(existsSync(stateFile('ttyvm'))).toBe(true);
    const yes = await onTty(h, ['stop', 'ttyvm'], ['y\r'], { NO_COLOR: '1' });
    expect(yes.code, yes.out).toBe(0);
    expect(yes.out).toContain('Discarded the saved state of VM ttyvm; it is stopped');
    expect(existsSync(stateFile('ttyvm'))).toBe(false);
  });

  it('a state that does not fit the definition any more (vmctl edit: memory) is refused, and resumes once it fits again', async () => {
    await h.expectExit(['save', 'loop']);
    const plan = join(h.home, 'plan.json');
    const EDITOR = `${process.execPath} ${join(ROOT, 'test', 'e2e', 'fixtures', 'scripted-editor.mjs')}`;
    const yaml = readFileSync(join(h.home, 'vms', 'loop', 'vm.yaml'), 'utf8');
    const mem = /^memory: (.+)$/m.exec(yaml)![0];
    writeFileSync(plan, JSON.stringify([{ replace: [[mem, 'memory: 32MiB']] }, { replace: [['memory: 32MiB', mem]] }]));
    expectCode(await h.run(['edit', 'loop'], { env: { EDITOR, VISUAL: '', EDIT_PLAN: plan } }), 0);
    const r = await h.run(['start', 'loop']);
    expectCode(r, 1);
    expect(r.stderr).toContain('cannot resume from the saved state: the saved state was taken with 16 MiB of memory (the VM has 32 MiB)');
    expect((await info('loop')).state).toBe('saved');
    expectCode(await h.run(['edit', 'loop'], { env: { EDITOR, VISUAL: '', EDIT_PLAN: plan } }), 0);
    await h.expectExit(['start', 'loop']);
    await h.expectExit(['stop', 'loop', '--force']);
  });
});
