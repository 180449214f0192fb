// The daemon's balloon policy (what VirtualBox leaves to its separate VBoxBalloonCtrl service):
// when the guest RAM all VMs hold nears what vmctl may use (HostMemory.limitBytes), inflate the
// balloons of the VMs that can give the most (by their own statistics: memory available to them,
// free or reclaimable cache), never below their memory.min; when the pressure is gone, or a guest
// runs short itself, give the memory back. Every move is an event and a line in the daemon's log.
// `host: { autoBalloon: false }` turns it off; `vmctl set --memory-target` still works then.
//
// Why targets follow resident memory rather than the guest's free memory: with free page
// reporting, a guest's free memory is mostly memory the host already got back. A balloon that
// only took free pages would save nothing; the host gains only when the guest must shrink what
// it holds (page cache first). So a VM asked to give back X gets a target of what it holds
// minus X, bounded below by what it uses and cannot drop (its memory outside the balloon minus
// what it reports available) plus a margin, and by memory.min.
//
// Overcommitted (the running VMs are configured with more than the limit), that comes too late:
// a guest's free memory is mostly memory it has never touched, and a guest reading files turns
// it into page cache, new host memory, faster than a balloon inflates. Once every VM waits for
// memory no guest runs to inflate its balloon, and all end paused (measured: four 1 GiB guests
// reading 500 MiB each on host.memory 2GiB, overcommit 2). So then the policy also caps growth:
// each guest's target is at most what it holds plus its share of the room left below FREE; the
// guest's balloon takes its untouched memory (which costs the host nothing), and it recycles its
// own cache instead of touching new memory. The caps rise with the room, and a guest that runs
// short gets memory back as before. The band between FREE and LOW is left for two things: a
// guest holds more host memory than its target (the host drops 2 MiB chunks, the balloon takes
// 4 KiB pages: measured, four guests capped at ~330 MiB each held 260-510 MiB after reading),
// and a guest that runs short (it gets memory from that band first, at no one's expense).

import { formatSize, humanSize } from '../config/units.js';
import type { HostMemory } from './host-memory.js';
import type { VmInstance } from './vm-instance.js';
import type { MemoryFigures } from '../vm/messages.js';

type BalloonFigures = NonNullable<MemoryFigures['balloon']>;

const MiB = 1024 * 1024;
/** Above this share of the limit the policy inflates, down to LOW; below FREE it deflates. */
export const POLICY_HIGH = 0.9;
export const POLICY_LOW = 0.8;
export const POLICY_FREE = 0.6;
/** Memory a guest keeps free beyond what it uses, when the policy shrinks it. */
const GUEST_MARGIN = 48 * MiB;
/** Largest move of one balloon per step (the guest inflates ~100 MiB/s here). */
const STEP = 256 * MiB;
/** Smaller moves are not worth an event. */
const MIN_MOVE = 16 * MiB;
/** The least room a capped guest gets beyond what it holds. */
const HEADROOM_MIN = GUEST_MARGIN;
/** Statistics older than this do not count (a guest whose driver stopped answering). */
const STATS_MAX_AGE_S = 30;
const ALIGN = 4096;

export interface PolicyMove {
  readonly vm: string;
  readonly fromBytes: number;
  readonly toBytes: number;
  readonly reason: string;
}

export class BalloonPolicy {
  constructor(
    private readonly memory: HostMemory,
    private readonly vms: () => Iterable<VmInstance>,
    private readonly log: (m: string) => void,
  ) {}

  /** One look at the host: returns the moves made (each already logged and announced). */
  step(): PolicyMove[] {
    const running = [...this.vms()].filter((v) => v.active);
    const used = this.memory.usedBytes;
    const limit = this.memory.limitBytes;
    const waiting = running.filter((v) => v.waitingForMemory);
    if (used > POLICY_HIGH * limit || waiting.length > 0) {
      const why = `${waiting.map((v) => v.name).join(', ')} ${waiting.length === 1 ? 'waits' : 'wait'} for host memory`;
      return this.inflate(running, used, limit, waiting, waiting.length > 0 ? why : `the VMs hold ${humanSize(used)} of the ${humanSize(limit)} they may`);
    }
    // Guests that run short get memory first; where the room below the mark does not cover
    // them, the VMs with the most to give inflate to make it (it comes a step later).
    const short = running.filter((v) => v.policyTarget !== null && v.state === 'running' && runsShort(v));
    const inflating = short.length > 0 && POLICY_LOW * limit - used < short.length * STEP / 4
      ? this.inflate(running, used, limit, short, `${short.map((v) => v.name).join(', ')} ${short.length === 1 ? 'runs' : 'run'} short of memory and the host has no room for ${short.length === 1 ? 'it' : 'them'}`)
      : [];
    const headroom = growthHeadroom(running, used, limit);
    const moved = new Set(inflating.map((m) => m.vm));
    const order = [...short, ...running.filter((v) => !short.includes(v) && !moved.has(v.name))];
    return [...inflating, ...this.capGrowth(running, headroom), ...this.deflate(order, used, limit, used >= POLICY_FREE * limit, headroom)];
  }

  /** Overcommitted: lowers the target of every guest that may grow more than `headroom` beyond
   *  what it holds (its balloon takes untouched memory), but a guest that runs short. So the
   *  targets add up to the mark at most (what the VMs hold, plus each one's share of the room):
   *  a guest that starts, or one that grows, lowers the others' share. */
  private capGrowth(running: VmInstance[], headroom: number | null): PolicyMove[] {
    if (headroom === null) return [];
    const moves: PolicyMove[] = [];
    for (const v of running) {
      const g = v.state === 'running' && !runsShort(v) ? guestFigures(v) : null;
      if (g === null) continue;
      const ceiling = align(Math.max(v.def.memoryMinBytes, g.holds + headroom));
      const from = v.memoryTarget;
      if (from - ceiling < MIN_MOVE) continue;
      v.policyTarget = ceiling;
      moves.push(this.apply(v, from, `the VMs are configured with more memory than the host has for them; the guest may grow ${humanSize(headroom)} beyond the ${humanSize(g.holds)} it holds`));
    }
    return moves;
  }

  /** Takes memory from the VMs with the most to give until the VMs hold POLICY_LOW of the limit
   *  and each of `needy` (waiting for memory, or running short) has STEP / 4 of room. */
  private inflate(running: VmInstance[], used: number, limit: number, needy: VmInstance[], why: string): PolicyMove[] {
    let need = used - POLICY_LOW * limit + needy.length * STEP / 4;
    const candidates = running
      .filter((v) => !v.waitingForMemory && !needy.includes(v) && v.state === 'running')
      .map((v) => { const g = guestFigures(v); return { v, g, give: g === null ? 0 : canGive(v, g) }; })
      .filter((c) => c.give >= MIN_MOVE)
      .sort((a, b) => b.give - a.give);
    const moves: PolicyMove[] = [];
    for (const { v, g, give } of candidates) {
      if (need <= 0) break;
      const take = Math.min(give, need, STEP);
      const to = align(Math.max(v.def.memoryMinBytes, g!.holds - take));
      const from = v.memoryTarget;
      if (from - to < MIN_MOVE) continue;
      v.policyTarget = to;
      moves.push(this.apply(v, from, `${why}; inflating the balloon of the VM with the most memory to give (${humanSize(give)})`));
      need -= from - to;
    }
    return moves;
  }

  /** Gives memory back, in the order given: to every VM when the host has plenty (`onlyShort`
   *  false), else only to guests that run short themselves. Overcommitted (`headroom` not null),
   *  a guest that does not run short grows only to what it holds plus `headroom`. A guest that
   *  runs short keeps what its driver took back from the balloon (deflate on OOM): its target
   *  goes from there, so that the next move does not ask it to inflate into memory it needs. */
  private deflate(running: VmInstance[], used: number, limit: number, onlyShort: boolean, headroom: number | null): PolicyMove[] {
    let room = POLICY_LOW * limit - used;
    const moves: PolicyMove[] = [];
    for (const v of running) {
      if (v.policyTarget === null || v.state !== 'running') continue;
      const short = runsShort(v);
      if (onlyShort && !short) continue;
      const g = headroom !== null && !short ? guestFigures(v) : null;
      const cap = v.userTarget ?? v.def.memoryBytes;
      const from = v.memoryTarget;
      const base = short ? Math.max(from, v.memoryFigures?.balloon?.actualBytes ?? 0) : from;
      const to = align(Math.min(cap, base + Math.min(STEP, Math.max(0, room)), g ? g.holds + headroom! : Infinity));
      const release = to >= cap;
      if (to <= from || (to - from < MIN_MOVE && !release)) continue;
      v.policyTarget = release ? null : to;
      moves.push(this.apply(v, from, short ? 'the guest runs short of memory; deflating its balloon'
        : g ? `room below the marks: the guest may grow ${humanSize(headroom!)} beyond the ${humanSize(g.holds)} it holds`
          : `host memory is free again (the VMs hold ${humanSize(used)} of ${humanSize(limit)}); deflating`));
      room -= Math.max(0, to - base);
    }
    return moves;
  }

  private apply(v: VmInstance, from: number, reason: string): PolicyMove {
    const to = v.memoryTarget;
    v.applyMemoryTarget();
    this.log(`balloon policy: vm ${v.name}: memory target ${formatSize(from)} -> ${formatSize(to)}: ${reason}`);
    v.announce({ kind: 'balloon', by: 'policy', fromBytes: from, targetBytes: to, reason });
    return { vm: v.name, fromBytes: from, toBytes: to, reason };
  }
}

/** What a running VM can give back now, by its figures: what it holds minus what it must keep
 *  (its used memory that it cannot drop, a margin, memory.min). 0 without a bound balloon driver
 *  or recent statistics. */
export function reclaimable(v: VmInstance): number {
  const g = guestFigures(v);
  return g === null ? 0 : canGive(v, g);
}

/** What a VM with figures `g` can give back (see reclaimable). */
function canGive(v: VmInstance, g: GuestFigures): number {
  const mustKeep = Math.max(v.def.memoryMinBytes, g.actualBytes - g.available + GUEST_MARGIN);
  return Math.max(0, g.holds - mustKeep);
}

/** Whether a guest reports less memory available than it needs to work (a margin, or a tenth of
 *  the memory outside its balloon). */
function runsShort(v: VmInstance): boolean {
  const b = v.memoryFigures?.balloon;
  const available = b ? guestAvailable(b) : undefined;
  return available !== undefined && available < Math.max(GUEST_MARGIN, 0.1 * (b?.actualBytes ?? 0));
}

interface GuestFigures { holds: number; actualBytes: number; available: number }

/** What the policy goes by: the guest RAM a VM holds (resident, outside its balloon), what its
 *  guest keeps and reports available; null without a bound balloon driver or recent statistics. */
function guestFigures(v: VmInstance): GuestFigures | null {
  const m = v.memoryFigures;
  const b = m?.balloon;
  if (!m || !b || !b.driverBound) return null;
  const age = v.memoryInfo().guestStatsAgeSeconds;
  const available = guestAvailable(b);
  if (available === undefined || age === null || age > STATS_MAX_AGE_S) return null;
  return { holds: Math.min(m.residentBytes, b.actualBytes), actualBytes: b.actualBytes, available };
}

/** The memory the guest reports available to it (MemAvailable; MemFree from a guest without it). */
function guestAvailable(b: BalloonFigures): number | undefined {
  return b.stats.values.availableMemory ?? b.stats.values.freeMemory;
}

/** Overcommitted (the active VMs are configured with more than `limit`): how far each guest may
 *  grow beyond what it holds, its share of the room below POLICY_FREE (at least HEADROOM_MIN);
 *  null otherwise. */
export function growthHeadroom(active: readonly VmInstance[], used: number, limit: number): number | null {
  const configured = active.reduce((n, v) => n + v.def.memoryBytes, 0);
  if (configured <= limit || active.length === 0) return null;
  return align(Math.max(HEADROOM_MIN, (POLICY_FREE * limit - used) / active.length));
}

function align(n: number): number {
  return Math.floor(n / ALIGN) * ALIGN;
}
