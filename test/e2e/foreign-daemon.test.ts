// A daemon started by another vmctl install (another checkout, or one deleted since) keeps serving
// its VMCTL_HOME with its own code. The CLI says so on every command, and how to switch.

import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ROOT, VmctlHome } from './harness.js';

const h = new VmctlHome();
const other = mkdtempSync(join(tmpdir(), 'vmctl-other-install-'));
afterAll(async () => {
  await h.cleanup();
  rmSync(other, { recursive: true, force: true });
});

describe('a daemon from another vmctl install', () => {
  it('is named with its code folder on every command, also once that folder is gone; daemon stop switches to this one', async () => {
    // A second install: the same built code in another folder (its packages linked).
    cpSync(join(ROOT, 'bin'), join(other, 'bin'), { recursive: true });
    cpSync(join(ROOT, 'dist'), join(other, 'dist'), { recursive: true });
    cpSync(join(ROOT, 'package.json'), join(other, 'package.json'));
    symlinkSync(join(ROOT, 'node_modules'), join(other, 'node_modules'));
    const started = spawnSync(process.execPath, [join(other, 'bin', 'vmctl'), 'daemon', 'start'], { env: h.env(), encoding: 'utf8' });
    expect(started.status, started.stderr).toBe(0);
    const pid = h.pid();

    const list = await h.run(['list']);
    expect(list.code, list.stderr).toBe(0);
    expect(list.stderr).toContain(`warning: the daemon for ${h.home} (pid ${pid}, vmctl `);
    expect(list.stderr).toContain(`runs the code in ${join(other, 'dist')}, not this vmctl's (${join(ROOT, 'dist')})`);
    expect(list.stderr).not.toContain('no longer exists');
    expect(list.stderr).toContain('"vmctl daemon stop" ends it');

    const status = await h.run(['daemon', 'status']);
    expect(status.code).toBe(0);
    expect(status.stdout).toContain(`code ${join(other, 'dist')} (Node ${process.version})`);
    expect(JSON.parse((await h.run(['daemon', 'status', '--json'])).stdout)).toMatchObject({ install: join(other, 'dist'), node: process.version });

    // The install is deleted while its daemon runs.
    rmSync(other, { recursive: true, force: true });
    const after = await h.run(['list']);
    expect(after.stderr).toContain(`runs the code in ${join(other, 'dist')}, which no longer exists, not this vmctl's`);

    const stop = await h.run(['daemon', 'stop']);
    expect(stop.code, stop.stderr).toBe(0);
    // The next command starts this install's daemon, and nothing is said any more.
    const ours = await h.run(['list']);
    expect(ours.code, ours.stderr).toBe(0);
    expect(ours.stderr).toBe('');
    expect(h.pid()).not.toBe(pid);
    expect((await h.run(['daemon', 'status'])).stdout).toContain(`code ${join(ROOT, 'dist')} (Node `);
  });
});
