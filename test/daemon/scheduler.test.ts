// The daemon's CPU scheduler (src/daemon/scheduler.ts): max-min fairness by weight with caps,
// and its periods driven against simulated harts that use what they are granted.
import { describe, expect, it } from 'vitest';
import { maxMinFair, PERIOD_MS, Scheduler } from '../../src/daemon/scheduler.js';
import { FLAG_IDLE } from '../../src/vm/cpu-slots.js';

describe('maxMinFair', () => {
  it('splits by weight, gives no claim more than it asks, and passes the rest on', () => {
    expect(maxMinFair([{ weight: 2048, demand: 1 }, { weight: 1024, demand: 1 }], 1).map((x) => x.toFixed(3))).toEqual(['0.667', '0.333']);
    // each at most one core: two cores go one to each, whatever the weights
    expect(maxMinFair([{ weight: 2048, demand: 1 }, { weight: 1024, demand: 1 }], 2)).toEqual([1, 1]);
    expect(maxMinFair([1024, 1024, 512, 512].map((weight) => ({ weight, demand: 1 })), 1).map((x) => x.toFixed(3))).toEqual(['0.333', '0.333', '0.167', '0.167']);
    // a cap of 25 % next to an uncapped claim: the capped one takes its cap, the other the rest
    expect(maxMinFair([{ weight: 100, demand: 0.25 }, { weight: 100, demand: 1 }], 1)).toEqual([0.25, 0.75]);
    // an idle claim takes nothing
    expect(maxMinFair([{ weight: 100, demand: 0 }, { weight: 100, demand: 1 }], 1)).toEqual([0, 1]);
    expect(maxMinFair([], 2)).toEqual([]);
  });
});

/** Runs `periods` periods of harts that want `demand` of a core (0 = idle) and use what they get. */
function simulate(hostCpus: number, vms: { name: string; shares: number; cap: number; demand: number[] }[], periods: number, machineCpus = Infinity, hostGives = Infinity) {
  const events: unknown[] = [];
  const s = new Scheduler(hostCpus, (e) => events.push(e), machineCpus);
  s.stop(); // driven by hand below
  const slots = vms.map((v) => s.attach(v.name, v.demand.length, v.shares, v.cap));
  s.stop();
  const P = PERIOD_MS * 1e6;
  const used = vms.map((v) => v.demand.map(() => 0));
  // The host's own scheduler: `hostGives` cores in all, max-min fair among the harts that want
  // to run (what one cannot use, the others get).
  for (let p = 0; p < periods; p++) {
    const harts = vms.flatMap((v, i) => v.demand.map((d, h) => {
      const slot = slots[i][h];
      return { i, h, d, slot, room: Math.max(0, s.slots.limit(slot) - s.slots.used(slot)) };
    }));
    const host = maxMinFair(harts.map((x) => ({ weight: 1, demand: Math.min(x.d * P, x.room) })), Math.min(hostGives * P, Number.MAX_VALUE));
    harts.forEach((x, k) => {
      const f = s.slots.f64, ix = s.slots.i32;
      const take = host[k];
      f[x.slot * 4 + 1] += take; // USED
      if (p >= periods / 2) used[x.i][x.h] += take;
      if (x.d * P > x.room && take >= x.room) Atomics.or(ix, x.slot * 2 + 1, 1); // HIT: its limit stopped it
      if (x.d === 0) Atomics.or(ix, x.slot * 2 + 1, FLAG_IDLE);
    });
    s.tick();
  }
  const span = (periods / 2) * P;
  return { cores: used.map((u) => u.map((x) => x / span)), events, s };
}

describe('Scheduler', () => {
  it('shares the host cores by weight among busy harts (two VMs, one core)', () => {
    const { cores } = simulate(1, [{ name: 'a', shares: 2048, cap: 100, demand: [1] }, { name: 'b', shares: 1024, cap: 100, demand: [1] }], 60);
    expect(cores[0][0]).toBeCloseTo(2 / 3, 1);
    expect(cores[1][0]).toBeCloseTo(1 / 3, 1);
  });

  it('splits a VM\'s share among its busy harts; idle harts take nothing; work-conserving', () => {
    const { cores } = simulate(2, [{ name: 'a', shares: 100, cap: 100, demand: [1, 1, 0, 0] }, { name: 'b', shares: 100, cap: 100, demand: [1] }], 60);
    // a's two busy harts and b's one: 2 cores, a gets half (2 x 0.5), b half (1 core: its limit)
    expect(cores[0][0] + cores[0][1]).toBeCloseTo(1, 1);
    expect(cores[1][0]).toBeCloseTo(1, 1);
    expect(cores[0][2] + cores[0][3]).toBe(0);
  });

  it('leaves one busy VM to the host when host.cpus is all the host has (only its cap holds it)', () => {
    // host.cpus 2 on a 2-core host: the 4 harts are not throttled against each other (the host
    // shares its 2 cores among them); the simulated host here has room for all 4.
    const alone = simulate(2, [{ name: 'a', shares: 100, cap: 100, demand: [1, 1, 1, 1] }, { name: 'idle', shares: 100, cap: 100, demand: [0] }], 40, 2);
    for (const c of alone.cores[0]) expect(c).toBeCloseTo(1, 1);
    const capped = simulate(2, [{ name: 'a', shares: 100, cap: 30, demand: [1, 1, 1, 1] }], 40, 2);
    for (const c of capped.cores[0]) expect(c).toBeCloseTo(0.3, 1);
    // host.cpus below what the host has: vmctl itself holds the VM to it
    const limited = simulate(1, [{ name: 'a', shares: 100, cap: 100, demand: [1, 1, 1, 1] }], 40, 2);
    expect(limited.cores[0].reduce((x, y) => x + y, 0)).toBeCloseTo(1, 1);
    // two busy VMs: shares decide again
    const two = simulate(2, [{ name: 'a', shares: 300, cap: 100, demand: [1, 1, 1, 1] }, { name: 'b', shares: 100, cap: 100, demand: [1, 1] }], 60, 2);
    expect(two.cores[0].reduce((x, y) => x + y, 0)).toBeCloseTo(1.5, 1);
    expect(two.cores[1].reduce((x, y) => x + y, 0)).toBeCloseTo(0.5, 1);
  });

  it('splits by weight what a busy host really gives, when that is less than host.cpus', () => {
    // host.cpus 1, but the host gives the two harts only 0.3 of a core in all (evenly, as its
    // own scheduler would): the shares still decide how the 0.3 is split.
    const { cores } = simulate(1, [{ name: 'a', shares: 2048, cap: 100, demand: [1] }, { name: 'b', shares: 1024, cap: 100, demand: [1] }], 200, Infinity, 0.3);
    const total = cores[0][0] + cores[1][0];
    expect(total).toBeGreaterThan(0.2);
    expect(cores[0][0] / total).toBeCloseTo(2 / 3, 1);
  });

  it('holds a capped VM to its cap even on an idle host, and gives the rest to the others', () => {
    const alone = simulate(4, [{ name: 'c', shares: 100, cap: 25, demand: [1, 1] }], 40);
    expect(alone.cores[0][0]).toBeCloseTo(0.25, 2);
    expect(alone.cores[0][1]).toBeCloseTo(0.25, 2);
    const two = simulate(1, [{ name: 'c', shares: 100, cap: 25, demand: [1] }, { name: 'f', shares: 100, cap: 100, demand: [1] }], 60);
    expect(two.cores[0][0]).toBeCloseTo(0.25, 1);
    expect(two.cores[1][0]).toBeCloseTo(0.75, 1);
    // the capped VM is reported held back, by its cap
    expect(two.events).toContainEqual({ vm: 'c', data: { kind: 'held', reason: 'cap', shares: 100, cap: 25 } });
  });

  it('applies new shares from the next period (vmctl set) and reports them', () => {
    const sim = simulate(1, [{ name: 'a', shares: 100, cap: 100, demand: [1] }, { name: 'b', shares: 100, cap: 100, demand: [1] }], 10);
    sim.s.update('a', 300, 100);
    expect(sim.events).toContainEqual({ vm: 'a', data: { kind: 'settings', shares: 300, cap: 100 } });
    expect(sim.s.figures('a')!.hartCpuPercent).toHaveLength(1);
    expect(sim.s.figures('nobody')).toBeNull();
  });
});
