// A VM whose worker thread is blocked in a system call that never returns (terminate() cannot end
// it): `stop --force` still returns, the VM shows aborted with the reason and its disk is free,
// the daemon keeps serving the other VMs, and `daemon stop` ends the daemon completely (pid file
// gone), rather than leaving one that closed its socket but lives on.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { alive, DEMO, ROOT, until, VmctlHome } from './harness.js';

const h = new VmctlHome(mkdtempSync(join(tmpdir(), 'vmctl-stuck-')));
let daemon: ChildProcess | null = null;
afterAll(async () => {
  if (daemon?.pid && alive(daemon.pid)) daemon.kill('SIGKILL');
  rmSync(h.home, { recursive: true, force: true });
});

async function ok(args: string[]): Promise<string> {
  const r = await h.run(args, { env: { VMCTL_NO_AUTOSTART: '1' } });
  if (r.code !== 0) throw new Error(`vmctl ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}

describe('a VM worker blocked in the host', () => {
  it('does not make the VM unkillable nor the daemon half-alive', async () => {
    const fifo = join(h.home, 'never-written.fifo');
    execFileSync('mkfifo', [fifo]);
    daemon = spawn(process.execPath, [join(ROOT, 'node_modules', '.bin', 'vite-node'), join(ROOT, 'test', 'e2e', 'fixtures', 'daemon-with-worker.ts'), '--', h.home, join(ROOT, 'test', 'e2e', 'fixtures', 'blocking-worker.mjs')],
      { env: { ...process.env, VMCTL_TEST_FIFO: fifo }, stdio: 'ignore' });
    const exited = new Promise<NodeJS.Signals | number | null>((r) => daemon!.on('exit', (code, signal) => r(signal ?? code)));
    await until(() => existsSync(join(h.home, 'vmd.sock')), 60_000, 'the daemon socket');

    const f = join(h.home, 'vm.yaml');
    writeFileSync(f, `name: stuck\nmemory: 16MiB\nboot:\n  kernel: ${join(DEMO, 'loop.elf')}\ndisks:\n  - path: stuck.img\n    size: 1MiB\n`);
    await ok(['create', '-f', f]);
    await ok(['create', '-f', join(DEMO, 'loop.yaml'), '--name', 'other']);
    await ok(['start', 'other']);
    await ok(['start', 'stuck']);
    expect(existsSync(join(h.home, 'stuck.img.lock'))).toBe(true);
    await until(() => existsSync(`${fifo}.blocked`), 60_000, 'the stuck VM\'s thread blocking');
    await new Promise((r) => setTimeout(r, 200)); // from the marker into the blocking open

    const stop = await h.run(['stop', 'stuck', '--force'], { timeoutMs: 30_000, env: { VMCTL_NO_AUTOSTART: '1' } });
    expect(stop.code, stop.stderr).toBe(0);
    const i = JSON.parse(await ok(['info', 'stuck', '--json']));
    expect(i.state).toBe('aborted');
    expect(i.lastError).toContain('did not end within 3 s of being terminated');
    expect(existsSync(join(h.home, 'stuck.img.lock'))).toBe(false);
    // The daemon serves on, and the other VM runs on.
    const ticks = async () => (await ok(['logs', 'other'])).split('\n').filter((l) => l.startsWith('tick')).length;
    const n = await ticks();
    await until(async () => (await ticks()) > n, 30_000, 'the other VM ticking');

    const pid = daemon.pid!;
    const s = await h.run(['daemon', 'stop'], { timeoutMs: 30_000, env: { VMCTL_NO_AUTOSTART: '1' } });
    expect(s.code, s.stderr).toBe(0);
    expect(await exited).toBe('SIGKILL'); // the one way out past a blocked thread
    expect(alive(pid)).toBe(false);
    expect(existsSync(join(h.home, 'vmd.pid'))).toBe(false);
    expect(existsSync(join(h.home, 'vmd.sock'))).toBe(false);
    const log = readFileSync(join(h.home, 'vmd.log'), 'utf8');
    expect(log).toContain('vm stuck: its worker thread did not end within 3 s of being terminated (blocked in the host); giving it up');
    expect(log).toContain('stopped (the worker threads of stuck could not be ended; killing the process)');
    expect(JSON.parse(readFileSync(join(h.home, 'vms', 'other', 'state.json'), 'utf8')).state).toBe('stopped');
  });
});
