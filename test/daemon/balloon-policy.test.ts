// The daemon's balloon policy, on VMs described by their figures: it inflates the balloons of the
// VMs with the most memory to give when the VMs' memory nears the limit (or one waits for
// memory), never below memory.min nor below what a guest uses, and deflates them when the
// pressure is gone or a guest runs short; every move is logged and announced.

import { describe, expect, it } from 'vitest';
import { BalloonPolicy, reclaimable } from '../../src/daemon/balloon-policy.js';
import type { HostMemory } from '../../src/daemon/host-memory.js';
import type { VmInstance } from '../../src/daemon/vm-instance.js';

const MiB = 1024 * 1024;

class Fake {
  active = true;
  state = 'running';
  waitingForMemory = false;
  def = { memoryBytes: 1024 * MiB, memoryMinBytes: 64 * MiB };
  userTarget: number | null = null;
  policyTarget: number | null = null;
  resident = 0;
  available = 0;
  balloon = 0;
  sent: number[] = [];
  events: Record<string, unknown>[] = [];
  constructor(readonly name: string, o: Partial<Fake>) { Object.assign(this, o); }
  get memoryFigures() {
    return {
      residentBytes: this.resident, chunksAllocated: 0, chunksReleased: 0, sentAt: 0,
      balloon: {
        targetBytes: 0, actualBytes: this.def.memoryBytes - this.balloon, balloonBytes: this.balloon, driverBalloonBytes: this.balloon, driverBound: true,
        chunksDropped: 0, reportedBytes: 0, stats: { values: { availableMemory: this.available, freeMemory: this.available }, updatedAt: 0 },
      },
    };
  }
  memoryInfo() { return { guestStatsAgeSeconds: 1 }; }
  get memoryTarget() { return Math.min(this.userTarget ?? this.def.memoryBytes, this.policyTarget ?? this.def.memoryBytes); }
  applyMemoryTarget() { this.sent.push(this.memoryTarget); }
  announce(d: Record<string, unknown>) { this.events.push(d); }
}

function vm(name: string, o: Partial<Fake> & { resident: number; available: number }): Fake & VmInstance {
  return new Fake(name, o) as unknown as Fake & VmInstance;
}

function policy(used: number, limit: number, vms: VmInstance[]): { p: BalloonPolicy; logs: string[]; set: (u: number) => void } {
  const mem = { usedBytes: used, limitBytes: limit };
  const logs: string[] = [];
  return { p: new BalloonPolicy(mem as unknown as HostMemory, () => vms, (m) => logs.push(m)), logs, set: (u) => { mem.usedBytes = u; } };
}

describe('balloon policy', () => {
  it('does nothing while the VMs hold well under the limit and no balloon is its doing', () => {
    // (A limit above the VM's 1GiB: not overcommitted, so no cap on its growth either.)
    const a = vm('a', { resident: 300 * MiB, available: 700 * MiB });
    const { p, logs } = policy(700 * MiB, 1100 * MiB, [a]);
    expect(p.step()).toEqual([]);
    expect(logs).toEqual([]);
  });

  it('near the limit, inflates the VM with the most to give, by what is needed, down to what it holds minus that', () => {
    // a holds 600MiB and has 800MiB available: it uses 224MiB, the rest of what it holds is
    // page cache, so it can give; b uses nearly all it holds.
    const a = vm('a', { resident: 600 * MiB, available: 800 * MiB });
    const b = vm('b', { resident: 350 * MiB, available: 60 * MiB });
    const { p, logs } = policy(950 * MiB, 1000 * MiB, [b, a]);
    const moves = p.step();
    // Needed: 950 - 0.8 * 1000 = 150MiB, taken from a: its target becomes 600 - 150 = 450MiB.
    expect(moves).toEqual([{ vm: 'a', fromBytes: 1024 * MiB, toBytes: 450 * MiB, reason: expect.stringContaining('the VMs hold 950MiB of the 1000MiB they may') }]);
    expect(a.sent).toEqual([450 * MiB]);
    expect(b.sent).toEqual([]);
    expect(logs[0]).toMatch(/^balloon policy: vm a: memory target 1GiB -> 450MiB: /);
    expect(a.events[0]).toMatchObject({ kind: 'balloon', by: 'policy', fromBytes: 1024 * MiB, targetBytes: 450 * MiB });
  });

  it('never below memory.min, nor below what the guest uses plus a margin', () => {
    // Uses 924MiB of its 1GiB (100MiB available): it holds 600MiB, less than it must keep.
    expect(reclaimable(vm('x', { resident: 600 * MiB, available: 100 * MiB }))).toBe(0);
    const small = vm('s', { resident: 200 * MiB, available: 1000 * MiB, def: { memoryBytes: 1024 * MiB, memoryMinBytes: 180 * MiB } });
    expect(reclaimable(small)).toBe(20 * MiB);
    const { p } = policy(990 * MiB, 1000 * MiB, [small]);
    p.step();
    expect(small.sent).toEqual([180 * MiB]);
  });

  it('a VM waiting for memory makes the others give, and is itself left alone', () => {
    const w = vm('w', { resident: 400 * MiB, available: 600 * MiB, waitingForMemory: true });
    const a = vm('a', { resident: 500 * MiB, available: 700 * MiB });
    const { p, logs } = policy(800 * MiB, 1000 * MiB, [w, a]);
    const moves = p.step();
    expect(moves.map((m) => m.vm)).toEqual(['a']);
    expect(w.sent).toEqual([]);
    expect(logs[0]).toContain('w waits for host memory');
  });

  it('deflates when the pressure is gone, in steps, up to the user\'s own target', () => {
    const a = vm('a', { resident: 200 * MiB, available: 300 * MiB, userTarget: 900 * MiB, policyTarget: 400 * MiB });
    const { p, logs, set } = policy(300 * MiB, 1100 * MiB, [a]);
    p.step();
    expect(a.sent).toEqual([656 * MiB]); // one step of 256MiB
    set(300 * MiB);
    p.step();
    expect(a.sent).toEqual([656 * MiB, 900 * MiB]);
    expect(a.policyTarget).toBeNull();
    expect(logs.every((l) => l.includes('host memory is free again'))).toBe(true);
    expect(p.step()).toEqual([]);
  });

  it('between the marks, gives memory back only to a guest that runs short', () => {
    const ok = vm('ok', { resident: 300 * MiB, available: 200 * MiB, balloon: 524 * MiB, policyTarget: 500 * MiB });
    const short = vm('short', { resident: 300 * MiB, available: 20 * MiB, balloon: 704 * MiB, policyTarget: 320 * MiB });
    const { p } = policy(1500 * MiB, 2100 * MiB, [ok, short]);
    const moves = p.step();
    expect(moves.map((m) => m.vm)).toEqual(['short']);
    expect(moves[0].reason).toContain('runs short');
    expect(short.sent).toEqual([500 * MiB]); // room: 0.8 * 2100 - 1500 = 180MiB
  });

  it('overcommitted, caps each guest\'s growth at what it holds plus its share of the room below the lower mark', () => {
    // Four 1GiB guests just booted on a 1600MiB limit: each holds 100MiB and has 900MiB free,
    // memory it has never touched. Room below 60%: 960 - 400 = 560MiB, 140MiB each.
    const vms = ['a', 'b', 'c', 'd'].map((n) => vm(n, { resident: 100 * MiB, available: 900 * MiB }));
    const { p, logs } = policy(400 * MiB, 1600 * MiB, vms);
    const moves = p.step();
    expect(moves.map((m) => [m.vm, m.toBytes])).toEqual(vms.map((v) => [v.name, 240 * MiB]));
    expect(logs[0]).toMatch(/^balloon policy: vm a: memory target 1GiB -> 240MiB: the VMs are configured with more memory than the host has for them; the guest may grow 140MiB beyond the 100MiB it holds$/);
    // The balloons took the untouched memory (actual 240MiB): nothing more to do.
    for (const v of vms) v.balloon = 784 * MiB;
    expect(p.step()).toEqual([]);
    // One guest filled its cap, the others grew to 160MiB: room below 60%, 960 - 720 = 240MiB,
    // is 60MiB each: a may hold 240 + 60MiB, the others 160 + 60MiB. The targets add up to the
    // mark, 300 + 3 * 220 = 960MiB.
    vms[0].resident = 240 * MiB;
    for (const v of vms.slice(1)) v.resident = 160 * MiB;
    const { p: p2 } = policy(720 * MiB, 1600 * MiB, vms);
    const grow = p2.step();
    expect(grow.map((m) => [m.vm, m.toBytes])).toEqual([['b', 220 * MiB], ['c', 220 * MiB], ['d', 220 * MiB], ['a', 300 * MiB]]);
    expect(grow[3].reason).toContain('room below the marks: the guest may grow 60MiB beyond the 240MiB it holds');
    // Nothing moved: nothing to do.
    expect(p2.step()).toEqual([]);
  });

  it('overcommitted at the mark, a capped guest that recycles its cache stays capped; one that runs short gets memory back', () => {
    const cached = vm('cached', { resident: 320 * MiB, available: 600 * MiB, balloon: 704 * MiB, policyTarget: 320 * MiB });
    const short = vm('short', { resident: 300 * MiB, available: 20 * MiB, balloon: 724 * MiB, policyTarget: 300 * MiB });
    const others = ['c', 'd'].map((n) => vm(n, { resident: 300 * MiB, available: 100 * MiB, balloon: 724 * MiB, policyTarget: 300 * MiB }));
    const { p } = policy(1220 * MiB, 1600 * MiB, [cached, short, ...others]);
    const moves = p.step();
    // Room: 1280 - 1220 = 60MiB, all of it to the guest that runs short.
    expect(moves.map((m) => [m.vm, m.toBytes])).toEqual([['short', 360 * MiB]]);
    expect(moves[0].reason).toContain('runs short');
    expect(cached.sent).toEqual([]);
  });

  it('overcommitted at the mark, a guest that runs short with no room left makes the others give, and gets the room a step later', () => {
    // o1 fills memory it cannot drop; the others hold 400MiB each, mostly page cache.
    const o1 = vm('o1', { resident: 410 * MiB, available: 20 * MiB, balloon: 614 * MiB, policyTarget: 410 * MiB });
    const others = ['o2', 'o3', 'o4'].map((n) => vm(n, { resident: 400 * MiB, available: 500 * MiB, balloon: 614 * MiB, policyTarget: 410 * MiB }));
    const { p, logs, set } = policy(1610 * MiB, 2048 * MiB, [o1, ...others]);
    // Room below 80%: 1638.4 - 1610 = 28.4MiB, less than the 64MiB a short guest is to find.
    const moves = p.step();
    // Needed: 64 - 28.4 = 35.6MiB, from the first of the three with the most to give (o2:
    // 400 - max(64, 410 - 500 + 48) = 336MiB), its target 400 - 35.6MiB; o1 gets the 28.4MiB there is.
    expect(moves.map((m) => m.vm)).toEqual(['o2', 'o1']);
    expect(logs[0]).toContain('o1 runs short of memory and the host has no room for it; inflating the balloon of the VM with the most memory to give (336MiB)');
    expect(others[0].sent).toEqual([Math.floor((400 * MiB - (64 * MiB - (0.8 * 2048 * MiB - 1610 * MiB))) / 4096) * 4096]);
    expect(moves[1].reason).toContain('runs short');
    expect(o1.sent).toEqual([Math.floor((410 * MiB + 0.8 * 2048 * MiB - 1610 * MiB) / 4096) * 4096]);
    // o2's balloon gave its memory back to the host: o1 gets it, and no other guest grows.
    set(1580 * MiB);
    const next = p.step();
    expect(next.map((m) => m.vm)).toEqual(['o1']);
    expect(others.map((v) => v.sent.length)).toEqual([1, 0, 0]);
  });

  it('a guest that runs short keeps what its driver took back on OOM: its target is not left below its balloon\'s actual size', () => {
    // o1's driver deflated its balloon on OOM: actual 439MiB, target still 224MiB; no room left.
    const o1 = vm('o1', { resident: 438 * MiB, available: 0, balloon: 585 * MiB, policyTarget: 224 * MiB });
    const o2 = vm('o2', { resident: 400 * MiB, available: 40 * MiB, balloon: 960 * MiB, policyTarget: 64 * MiB });
    const { p } = policy(1360 * MiB, 1696 * MiB, [o2, o1]);
    const moves = p.step();
    expect(moves.map((m) => [m.vm, m.fromBytes, m.toBytes])).toEqual([['o1', 224 * MiB, 439 * MiB]]);
    expect(moves[0].reason).toContain('runs short');
    // With room, it grows from there.
    const { p: p2 } = policy(1260 * MiB, 1696 * MiB, [o1]);
    expect(p2.step().map((m) => m.toBytes)).toEqual([Math.floor((439 * MiB + 0.8 * 1696 * MiB - 1260 * MiB) / 4096) * 4096]);
  });

  it('a guest without a balloon driver or recent statistics is never capped', () => {
    const mute = vm('mute', { resident: 100 * MiB, available: 900 * MiB });
    (mute as unknown as { memoryInfo: () => unknown }).memoryInfo = () => ({ guestStatsAgeSeconds: null });
    const { p } = policy(400 * MiB, 1000 * MiB, [mute, vm('b', { resident: 100 * MiB, available: 900 * MiB })]);
    expect(p.step().map((m) => m.vm)).toEqual(['b']);
    expect(mute.sent).toEqual([]);
  });
});
