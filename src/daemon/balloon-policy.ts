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

import { formatSize, humanSize } from '../config/units.js';
import type { HostMemory } from './host-memory.js';
import type { VmInstance } from './vm-instance.js';

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
    if (used > POLICY_HIGH * limit || waiting.length > 0) return this.inflate(running, used, limit, waiting);
    if (used < POLICY_FREE * limit) return this.deflate(running, used, limit, false);
    return this.deflate(running, used, limit, true);
  }

  private inflate(running: VmInstance[], used: number, limit: number, waiting: VmInstance[]): PolicyMove[] {
    let need = used - POLICY_LOW * limit + waiting.length * STEP / 4;
    const why = waiting.length > 0
      ? `${waiting.map((v) => v.name).join(', ')} ${waiting.length === 1 ? 'waits' : 'wait'} for host memory`
      : `the VMs hold ${humanSize(used)} of the ${humanSize(limit)} they may`;
    const candidates = running
      .filter((v) => !v.waitingForMemory && v.state === 'running')
      .map((v) => ({ v, give: reclaimable(v) }))
      .filter((c) => c.give >= MIN_MOVE)
      .sort((a, b) => b.give - a.give);
    const moves: PolicyMove[] = [];
    for (const { v, give } of candidates) {
      if (need <= 0) break;
      const m = v.memoryFigures!;
      const holds = Math.min(m.residentBytes, m.balloon!.actualBytes);
      const take = Math.min(give, need, STEP);
      const to = align(Math.max(v.def.memoryMinBytes, holds - take));
      const from = v.memoryTarget;
      if (from - to < MIN_MOVE) continue;
      v.policyTarget = to;
      moves.push(this.apply(v, from, `${why}; inflating the balloon of the VM with the most memory to give (${humanSize(give)})`));
      need -= from - to;
    }
    return moves;
  }

  /** Gives memory back: to every VM when the host has plenty (`onlyShort` false), else only to
   *  guests that run short themselves. */
  private deflate(running: VmInstance[], used: number, limit: number, onlyShort: boolean): PolicyMove[] {
    let room = POLICY_LOW * limit - used;
    const moves: PolicyMove[] = [];
    for (const v of running) {
      if (v.policyTarget === null || v.state !== 'running' || room < MIN_MOVE) continue;
      const m = v.memoryFigures?.balloon;
      const available = m?.stats.values.availableMemory ?? m?.stats.values.freeMemory;
      const short = available !== undefined && available < Math.max(GUEST_MARGIN, 0.1 * (m?.actualBytes ?? 0));
      if (onlyShort && !short) continue;
      const cap = v.userTarget ?? v.def.memoryBytes;
      const from = v.memoryTarget;
      const to = align(Math.min(cap, from + Math.min(STEP, room)));
      v.policyTarget = to >= cap ? null : to;
      if (to - from < MIN_MOVE && v.policyTarget !== null) continue;
      moves.push(this.apply(v, from, short ? 'the guest runs short of memory; deflating its balloon' : `host memory is free again (the VMs hold ${humanSize(used)} of ${humanSize(limit)}); deflating`));
      room -= to - from;
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
  const m = v.memoryFigures;
  const b = m?.balloon;
  if (!m || !b || !b.driverBound) return 0;
  const age = v.memoryInfo().guestStatsAgeSeconds;
  const available = b.stats.values.availableMemory ?? b.stats.values.freeMemory;
  if (available === undefined || age === null || age > STATS_MAX_AGE_S) return 0;
  const holds = Math.min(m.residentBytes, b.actualBytes);
  const mustKeep = Math.max(v.def.memoryMinBytes, b.actualBytes - available + GUEST_MARGIN);
  return Math.max(0, holds - mustKeep);
}

function align(n: number): number {
  return Math.floor(n / ALIGN) * ALIGN;
}
