// A VM's worker thread that crashes while the guest runs: the VM shows `aborted` (as VirtualBox
// does), its disk lock is released, the daemon keeps serving and other VMs keep running. The same
// for a VM whose hart thread (a further hart running in parallel, src/board/smp.ts) crashes.
// The daemon runs in this process with workers that wrap the real ones (fixtures/crashing-*.mjs).

import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { runDaemon } from '../../src/daemon/daemon.js';
import { clientSocketPath, homePaths } from '../../src/daemon/paths.js';
import { ProtocolClient } from '../../src/protocol/client.js';
import { DEMO, ROOT, sleep } from './harness.js';

const home = mkdtempSync(join(tmpdir(), 'vmctl-crash-'));
const crashingWorker = fileURLToPath(new URL('./fixtures/crashing-worker.mjs', import.meta.url));
const crashingHart = fileURLToPath(new URL('./fixtures/crashing-hart.mjs', import.meta.url));
let client: ProtocolClient | null = null;
let daemonDone: Promise<void> | null = null;

afterAll(async () => {
  if (client) await client.request('daemon.shutdown', {}).catch(() => {});
  await daemonDone?.catch(() => {});
  rmSync(home, { recursive: true, force: true });
});

describe('a crashing VM worker', () => {
  it('marks the VM aborted, releases its disk, and leaves the daemon and other VMs running', async () => {
    daemonDone = runDaemon({ home, workerPath: crashingWorker, hartWorkerPath: crashingHart, definitionWorkerPath: join(ROOT, 'dist', 'definition-worker.js'), version: 'test', echoToStderr: false });
    const sockPath = clientSocketPath(homePaths(home));
    for (let i = 0; i < 100 && !existsSync(sockPath); i++) await sleep(50);
    client = await ProtocolClient.connect(sockPath);

    // Two guests that print forever; the victim has a disk (so that there is a lock to release).
    const file = join(home, 'bystander.yaml');
    writeFileSync(file, `name: bystander\nmemory: 16MiB\nboot:\n  kernel: ${join(DEMO, 'loop.elf')}\n`);
    const withDisk = join(home, 'victim.yaml');
    writeFileSync(withDisk, `name: victim\nmemory: 16MiB\nboot:\n  kernel: ${join(DEMO, 'loop.elf')}\ndisks:\n  - path: ${join(home, 'victim.img')}\n    size: 1MiB\n`);
    const text = readFileSync(file, 'utf8');
    await client.request('vm.create', { file: withDisk, text: readFileSync(withDisk, 'utf8') });
    await client.request('vm.create', { file, text });
    await client.request('vm.start', { name: 'bystander' });
    await client.request('vm.start', { name: 'victim' });
    expect(existsSync(join(home, 'victim.img.lock'))).toBe(true);

    let info: { state: string; lastError?: string } = { state: '' };
    for (let i = 0; i < 100; i++) {
      info = await client.request('vm.info', { name: 'victim' });
      if (info.state === 'aborted') break;
      await sleep(50);
    }
    expect(info.state).toBe('aborted');
    expect(info.lastError).toMatch(/injected crash/);
    expect(existsSync(join(home, 'victim.img.lock'))).toBe(false);

    // The daemon still answers, and an aborted VM can be started again (and crashes again).
    const list = await client.request<{ name: string; state: string }[]>('vm.list', {});
    expect(list.map((v) => [v.name, v.state]).sort()).toEqual([['bystander', 'running'], ['victim', 'aborted']]);
    await client.request('vm.start', { name: 'victim' });
    expect((await client.request<{ state: string }>('vm.info', { name: 'victim' })).state).toBe('running');

    // Two harts: hart 1 runs on a hart thread of its own, which crashes (crashing-hart.mjs).
    const twoHarts = join(home, 'hart-victim.yaml');
    writeFileSync(twoHarts, `name: hart-victim\ncpus: 2\nmemory: 16MiB\nboot:\n  kernel: ${join(DEMO, 'loop.elf')}\n`);
    await client.request('vm.create', { file: twoHarts, text: readFileSync(twoHarts, 'utf8') });
    await client.request('vm.start', { name: 'hart-victim' });
    for (let i = 0; i < 200; i++) {
      info = await client.request('vm.info', { name: 'hart-victim' });
      if (info.state === 'aborted') break;
      await sleep(50);
    }
    expect(info.state).toBe('aborted');
    expect(info.lastError).toMatch(/hart 1 thread crashed: .*injected crash inside a hart thread/s);
    const after = await client.request<{ name: string; state: string }[]>('vm.list', {});
    expect(after.find((v) => v.name === 'bystander')?.state).toBe('running');
  }, 60_000);
});
