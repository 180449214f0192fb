// The daemon's CPU scheduler (issue 12, docs/harts.md): shares the host cores vmctl may use
// (config.yaml host.cpus) among the harts of all running VMs.
//
// Every PERIOD_MS it looks at what each hart used (its slot in src/vm/cpu-slots.ts) and grants
// the next period's CPU time: max-min fair by weight (a VM's shares, split among its busy harts),
// no hart more than one core, no hart more than its VM's cap (even on an idle host); time a hart
// does not want goes to the others (work-conserving), and what is left over is spread by weight
// so that a hart that wakes up has something to start with. A hart that sleeps (WFI) uses
// nothing and asks for nothing. Each hart's thread holds itself to its grant (SlotGate); while a
// hart waits for more, its guest clock keeps host time, as on a loaded real host.

import { CpuSlots, FLAG_IDLE, MAX_SLOTS } from '../vm/cpu-slots.js';
import { monotonicMs } from '../devices/clock.js';

export const PERIOD_MS = 100;
const PERIOD_NS = PERIOD_MS * 1e6;
/** A hart that used at least this share of a core in a period counts as busy (its VM's weight is
 *  split among its busy harts). */
const BUSY = 0.05;
/** The least share of a core per busy hart the supply estimate goes down to. */
const MIN_SUPPLY = 0.02;
/** Figures are averaged over this many periods (1 s). */
const WINDOW = 10;
/** A VM's held-back state must last this many periods before it is reported (an event). */
const STEADY = 3;

/** One hart as the allocation sees it. */
export interface Claim {
  readonly weight: number;
  /** ns it would use this period if it could. */
  readonly demand: number;
}

/**
 * Weighted max-min fair shares (water-filling): `capacity` split among claims in proportion to
 * their weights, no claim getting more than its demand, what a claim does not need going to the
 * others. Returns ns per claim.
 */
export function maxMinFair(claims: readonly Claim[], capacity: number): number[] {
  const alloc = claims.map(() => 0);
  let left = capacity;
  let open = claims.map((_, i) => i).filter((i) => claims[i].demand > 0 && claims[i].weight > 0);
  while (open.length > 0 && left > 1e-6) {
    const w = open.reduce((s, i) => s + claims[i].weight, 0);
    const per = left / w;
    const satisfied = open.filter((i) => claims[i].demand - alloc[i] <= per * claims[i].weight);
    if (satisfied.length === 0) {
      for (const i of open) alloc[i] += per * claims[i].weight;
      left = 0;
      break;
    }
    for (const i of satisfied) {
      left -= claims[i].demand - alloc[i];
      alloc[i] = claims[i].demand;
    }
    open = open.filter((i) => !satisfied.includes(i));
  }
  return alloc;
}

interface HartState {
  readonly slot: number;
  usedAt: number;        // USED at the last period
  grant: number;         // ns granted for the current period
  want: number;          // ns it asked for in the last period (demand)
  readonly usedWindow: number[];
}

interface VmEntry {
  readonly name: string;
  shares: number;
  cap: number;
  readonly harts: HartState[];
  /** Consecutive periods it was held back (by contention or its cap), or not. */
  heldFor: number;
  freeFor: number;
  held: false | 'contention' | 'cap';
}

export interface VmCpuFigures {
  /** Host CPU used, % of one core, over the last second: the VM, and each hart. */
  readonly cpuPercent: number;
  readonly hartCpuPercent: readonly number[];
  /** Why the VM got less than it wanted in the last periods, or null. */
  readonly heldBack: 'contention' | 'cap' | null;
}

export type SchedEvent = { vm: string; data: Record<string, unknown> };

export class Scheduler {
  readonly slots = new CpuSlots();
  private readonly free: number[] = Array.from({ length: MAX_SLOTS }, (_, i) => MAX_SLOTS - 1 - i);
  private readonly vms = new Map<string, VmEntry>();
  private timer: NodeJS.Timeout | null = null;
  /** What the host really gives vmctl's harts per period (ns), at most host.cpus: a host busy
   *  with other work gives less than host.cpus, and then the shares must split what it gives. */
  private supply = Infinity;

  /** `machineCpus`: the cores this process may use at all (src/config/host-cpus.ts). While one VM
   *  alone wants CPU and host.cpus leaves it all of them, the host already holds it to host.cpus:
   *  its harts are then only held to their cap, not throttled against each other in 100 ms
   *  steps, which stalls a guest whose harts wait on each other (locks, IPIs). */
  constructor(private hostCpus: number, private readonly emit: (e: SchedEvent) => void, private readonly machineCpus = Infinity) {}

  get cores(): number { return this.hostCpus; }

  /** A VM starts with `harts` harts: their slots (by hart id). */
  attach(name: string, harts: number, shares: number, cap: number): number[] {
    this.detach(name);
    if (this.free.length < harts) throw new Error(`no CPU slot left for VM ${name} (${MAX_SLOTS} harts in all)`);
    const e: VmEntry = { name, shares, cap, harts: [], heldFor: 0, freeFor: 0, held: false };
    for (let h = 0; h < harts; h++) {
      const slot = this.free.pop()!;
      // Until the next period: what a busy hart of it would get now.
      this.slots.reset(slot, PERIOD_NS * Math.min(1, cap / 100));
      e.harts.push({ slot, usedAt: 0, grant: 0, want: 0, usedWindow: [] });
    }
    this.vms.set(name, e);
    this.start();
    return e.harts.map((x) => x.slot);
  }

  detach(name: string): void {
    const e = this.vms.get(name);
    if (!e) return;
    this.vms.delete(name);
    for (const h of e.harts) this.free.push(h.slot);
    if (this.vms.size === 0) this.stop();
  }

  /** `vmctl set`: new shares or cap, effective from the next period. */
  update(name: string, shares: number, cap: number): void {
    const e = this.vms.get(name);
    if (!e) return;
    e.shares = shares;
    e.cap = cap;
    this.emit({ vm: name, data: { kind: 'settings', shares, cap } });
  }

  setHostCpus(n: number): void { this.hostCpus = n; }

  figures(name: string): VmCpuFigures | null {
    const e = this.vms.get(name);
    if (!e) return null;
    const pct = (h: HartState): number => {
      const w = h.usedWindow;
      return w.length === 0 ? 0 : (w.reduce((s, x) => s + x, 0) / (w.length * PERIOD_NS)) * 100;
    };
    const hartCpuPercent = e.harts.map(pct);
    return { cpuPercent: hartCpuPercent.reduce((s, x) => s + x, 0), hartCpuPercent, heldBack: e.held || null };
  }

  private start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => this.tick(), PERIOD_MS);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /**
   * The capacity to share this period: host.cpus, or less when the host gave the busy harts less
   * than that (the host's own scheduler was deciding, and shares would not bind). Then it is what
   * they got; it grows by a tenth in each period in which every hart the allocation held below
   * its maximum ran into its limit (the host had more to give), so it follows the host back up.
   */
  private adaptSupply(all: readonly { h: HartState; used: number; max: number; busy: boolean; hit: boolean }[]): number {
    const capacity = this.hostCpus * PERIOD_NS;
    const busy = all.filter((a) => a.busy);
    if (busy.length === 0) {
      this.supply = capacity;
      return capacity;
    }
    const supply = Math.min(this.supply, capacity);
    const used = busy.reduce((x, a) => x + a.used, 0);
    const held = busy.filter((a) => a.h.grant + 1e3 < a.max);
    if (held.length > 0 && held.every((a) => a.hit)) this.supply = Math.min(capacity, Math.max(supply, used) * 1.1);
    else if (used < 0.95 * supply) this.supply = Math.max(used * 1.02, MIN_SUPPLY * busy.length * PERIOD_NS);
    return Math.min(this.supply, capacity);
  }

  /** One period: measure, allocate, grant. */
  tick(): void {
    const s = this.slots;
    s.nextGrant = monotonicMs() + PERIOD_MS;
    const all: { e: VmEntry; h: HartState; used: number; max: number; busy: boolean; hit: boolean }[] = [];
    for (const e of this.vms.values()) {
      const max = PERIOD_NS * Math.min(1, e.cap / 100);
      for (const h of e.harts) {
        const now = s.used(h.slot);
        const used = Math.max(0, now - h.usedAt);
        h.usedAt = now;
        h.usedWindow.push(used);
        if (h.usedWindow.length > WINDOW) h.usedWindow.shift();
        const hit = s.takeHit(h.slot);
        const idle = (s.flags(h.slot) & FLAG_IDLE) !== 0;
        // It wanted more than it got when it ran into its limit (or used nearly all of it).
        const saturated = hit || (h.grant > 0 && used >= 0.9 * h.grant && !idle);
        h.want = saturated ? max : Math.min(max, used * 1.5 + 0.02 * PERIOD_NS);
        all.push({ e, h, used, max, busy: saturated || used >= BUSY * PERIOD_NS, hit });
      }
    }
    const busyOf = new Map<VmEntry, number>();
    for (const a of all) if (a.busy) busyOf.set(a.e, (busyOf.get(a.e) ?? 0) + 1);
    const alone = busyOf.size <= 1 && this.hostCpus >= this.machineCpus;
    const claims: Claim[] = all.map((a) => ({ weight: a.e.shares / (a.busy ? busyOf.get(a.e)! : a.e.harts.length), demand: a.h.want }));
    const capacity = this.adaptSupply(all);
    const first = alone ? all.map((a) => a.max) : maxMinFair(claims, capacity);
    // Work-conserving: what nobody asked for is spread by weight up to each hart's own maximum,
    // so that a hart that starts running again has time at once.
    const spent = first.reduce((x, y) => x + y, 0);
    const extra = maxMinFair(all.map((a, i) => ({ weight: claims[i].weight, demand: a.max - first[i] })), Math.max(0, capacity - spent));
    all.forEach((a, i) => {
      a.h.grant = first[i] + extra[i];
      // What a hart ran over its last limit (it checks between slices) counts against this one,
      // up to one period's worth.
      const used = s.used(a.h.slot);
      s.setLimit(a.h.slot, Math.max(used - PERIOD_NS, Math.min(used, s.limit(a.h.slot))) + a.h.grant);
    });
    // Held back: a hart of the VM wanted more than it was granted in this period.
    for (const e of this.vms.values()) {
      const mine = all.map((a, i) => ({ a, i })).filter(({ a }) => a.e === e);
      const short = mine.some(({ a, i }) => a.hit && first[i] + 1e3 < a.h.want);
      const capped = mine.some(({ a }) => a.hit && a.h.want >= a.max && a.max < PERIOD_NS);
      const now: false | 'contention' | 'cap' = short ? 'contention' : capped ? 'cap' : false;
      if (now !== false) { e.heldFor++; e.freeFor = 0; } else { e.freeFor++; e.heldFor = 0; }
      if (now !== false && e.held !== now && e.heldFor >= STEADY) {
        e.held = now;
        this.emit({ vm: e.name, data: { kind: 'held', reason: now, shares: e.shares, cap: e.cap } });
      } else if (now === false && e.held !== false && e.freeFor >= STEADY) {
        e.held = false;
        this.emit({ vm: e.name, data: { kind: 'released', shares: e.shares, cap: e.cap } });
      }
    }
  }
}
