// Host memory: admission (`start` refused past host.memory × overcommit, with the figures), and
// the ledger VM threads take RAM chunks from: a VM that needs a chunk the host does not have
// waits (no CPU), is paused after a while, and goes on when another thread gives one back.

import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { DAEMON_OVERHEAD_BYTES, HART_THREAD_OVERHEAD_BYTES, HostMemory, VM_OVERHEAD_BYTES } from '../../src/daemon/host-memory.js';
import { DEFAULT_SETTINGS } from '../../src/config/daemon-settings.js';
import { CHUNK_SIZE, GuestRam } from '../../src/memory/ram.js';
import { ProtocolFailure } from '../../src/protocol/messages.js';
import { CONTROL_HELD, HostMemoryShort, LEDGER_USED, SharedChunkBudget } from '../../src/vm/memory-budget.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

function host(memory: number, overcommit = 1.5): { hm: HostMemory; logs: string[] } {
  const logs: string[] = [];
  const hm = new HostMemory({ ...DEFAULT_SETTINGS, hostMemoryBytes: memory, overcommit }, (m) => logs.push(m));
  return { hm, logs };
}

describe('admission', () => {
  it('refuses a start past host.memory × overcommit, naming what is asked, in use and the limit', () => {
    const { hm, logs } = host(2 * GiB, 2);
    expect(logs[0]).toContain('host memory 2GiB (host.memory in config.yaml), overcommit 2: VMs may be configured with 4GiB in all');
    const four = ['a', 'b', 'c', 'd'].map((name) => ({ name, bytes: GiB }));
    expect(() => hm.admit('d', GiB, four.slice(0, 3))).not.toThrow();
    let err: unknown;
    try { hm.admit('e', GiB, four); } catch (e) { err = e; }
    expect(err).toBeInstanceOf(ProtocolFailure);
    expect((err as ProtocolFailure).errorClass).toBe('InsufficientResources');
    expect((err as Error).message).toBe('not enough host memory to start VM e: it asks for 1GiB, the running VMs are configured with 4GiB '
      + '(a 1GiB, b 1GiB, c 1GiB, d 1GiB), and the limit is 4GiB (host.memory 2GiB from host.memory in config.yaml × host.overcommit 2); '
      + 'stop a VM, give this one less memory, or raise host.overcommit or host.memory in config.yaml');
    // A smaller VM still fits beside three.
    expect(() => hm.admit('small', 512 * MiB, four.slice(0, 3))).not.toThrow();
  });

  it('defaults to the memory this process may use', () => {
    const hm = new HostMemory(DEFAULT_SETTINGS, () => {});
    expect(hm.bytes).toBeGreaterThan(64 * MiB);
    expect(hm.source).toMatch(/cgroup memory limit|physical memory/);
    expect(hm.admissionBytes).toBe(Math.floor(hm.bytes * 1.5));
  });
});

describe('the ledger', () => {
  it('leaves host.memory minus the daemon and each VM thread for guest RAM, and takes back what a thread held', () => {
    const { hm } = host(1 * GiB);
    expect(hm.limitBytes).toBe(GiB - DAEMON_OVERHEAD_BYTES);
    const slot = hm.attach();
    expect(hm.limitBytes).toBe(GiB - DAEMON_OVERHEAD_BYTES - VM_OVERHEAD_BYTES);
    const ram = new GuestRam(0x8000_0000, 64 * MiB);
    ram.budget = new SharedChunkBudget(new Int32Array(slot.ledger), new Int32Array(slot.control));
    ram.writeU8(0x8000_0000, 1);
    ram.writeU8(0x8000_0000 + 3 * CHUNK_SIZE, 1);
    expect(hm.usedBytes).toBe(2 * CHUNK_SIZE);
    ram.release(3);
    expect(hm.usedBytes).toBe(CHUNK_SIZE);
    // The thread ends without giving its chunks back one by one: detach does.
    hm.detach(slot);
    expect(hm.usedBytes).toBe(0);
    expect(hm.limitBytes).toBe(GiB - DAEMON_OVERHEAD_BYTES);
  });

  it('takes one hart thread\'s overhead per hart past the first off the limit, and gives it back at detach', () => {
    const { hm } = host(1 * GiB);
    const one = hm.attach(1);
    const four = hm.attach(4);
    expect(four.overheadBytes).toBe(VM_OVERHEAD_BYTES + 3 * HART_THREAD_OVERHEAD_BYTES);
    expect(hm.limitBytes).toBe(GiB - DAEMON_OVERHEAD_BYTES - 2 * VM_OVERHEAD_BYTES - 3 * HART_THREAD_OVERHEAD_BYTES);
    hm.detach(four);
    expect(hm.limitBytes).toBe(GiB - DAEMON_OVERHEAD_BYTES - VM_OVERHEAD_BYTES);
    hm.detach(one);
    expect(hm.limitBytes).toBe(GiB - DAEMON_OVERHEAD_BYTES);
  });

  it('before the machine runs, a short host refuses the chunk (the start fails) instead of waiting', () => {
    const { hm } = host(DAEMON_OVERHEAD_BYTES + VM_OVERHEAD_BYTES + 2 * CHUNK_SIZE);
    const slot = hm.attach();
    const b = new SharedChunkBudget(new Int32Array(slot.ledger), new Int32Array(slot.control));
    b.acquire();
    b.acquire();
    expect(() => b.acquire()).toThrow(HostMemoryShort);
    expect(() => b.acquire()).toThrow('host memory is short: the running VMs hold 4 MiB of the 4 MiB vmctl may use for guests');
    expect(hm.usedBytes).toBe(2 * CHUNK_SIZE);
  });

  it('a running VM waits for a chunk, is paused after a while, and goes on when another thread gives one back', async () => {
    const { hm } = host(DAEMON_OVERHEAD_BYTES + VM_OVERHEAD_BYTES + CHUNK_SIZE);
    const slot = hm.attach();
    const b = new SharedChunkBudget(new Int32Array(slot.ledger), new Int32Array(slot.control), 100);
    b.acquire();
    // Another VM's thread: gives a chunk back after 400 ms (here: takes one from the count).
    const other = new Worker(`
      const { workerData } = require('node:worker_threads');
      const L = new Int32Array(workerData);
      setTimeout(() => { Atomics.sub(L, ${LEDGER_USED}, 1); Atomics.add(L, 2, 1); Atomics.notify(L, 2); }, 400);
    `, { eval: true, workerData: slot.ledger });
    const seen: string[] = [];
    b.blocking = true;
    b.events = {
      waiting: (held, used, limit) => seen.push(`waiting ${held} ${used} ${limit}`),
      paused: () => seen.push('paused'),
      resumed: (ms, wasPaused) => seen.push(`resumed ${ms >= 300} ${wasPaused}`),
    };
    b.acquire();
    expect(seen).toEqual(['waiting 1 1 1', 'paused', 'resumed true true']);
    expect(Atomics.load(new Int32Array(slot.control), CONTROL_HELD)).toBe(2);
    await other.terminate();
  });

  it('a VM being stopped while it waits takes its chunk over the limit and goes on (to see the stop)', () => {
    const { hm } = host(DAEMON_OVERHEAD_BYTES + VM_OVERHEAD_BYTES + CHUNK_SIZE);
    const slot = hm.attach();
    const b = new SharedChunkBudget(new Int32Array(slot.ledger), new Int32Array(slot.control));
    b.acquire();
    b.blocking = true;
    hm.cancel(slot);
    b.acquire();
    expect(hm.usedBytes).toBe(2 * CHUNK_SIZE);
    hm.detach(slot);
    expect(hm.usedBytes).toBe(0);
  });
});
