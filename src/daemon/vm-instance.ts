// One registered VM as the daemon sees it: its definition, its persisted state, and while it runs
// the worker thread that hosts its machine. All state changes go through here and are persisted
// atomically before they are announced.

import { existsSync, readdirSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import type { MessagePort, Worker } from 'node:worker_threads';
import type { MachineConfig, NicAttachment, PortForward, PowerEvent } from '../board/machine-types.js';
import { defaultMac } from '../net/mac.js';
import { ensureSshKey, sshKeyPaths } from './ssh-key.js';
import { serializeVmDefinition, type VmDefinition } from '../config/vm-definition.js';
import type { SwitchHub } from './switches.js';
import { DiskError } from '../disk/errors.js';
import { formatSize, humanSize } from '../config/units.js';
import { MEMORY_WAIT_BEFORE_PAUSE_MS } from '../vm/memory-budget.js';
import { imageInfo, lockDiskChains } from '../disk/image.js';
import { canonicalImagePath, type DiskLock } from '../disk/lock.js';
import { FileRefused, readRegular } from '../host/regular-file.js';
import { holdAt } from '../host/test-hold.js';
import { isActiveState, ProtocolFailure, type DiskInfo, type MemoryInfo, type PauseReason, type PortInfo, type PowerInfo, type StopPath, type VmFigures, type VmInfo, type VmState } from '../protocol/messages.js';
import type { HostMemory, MemorySlot } from './host-memory.js';
import type { DiskIo, FromWorker, MemoryFigures, ToWorker, WorkerInit } from '../vm/messages.js';
import { isTempFileFor, renameIntoPlace, tempPathFor, writeFileAtomic } from './atomic.js';
import type { Scheduler } from './scheduler.js';
import type { VmThreads } from './vm-threads.js';
import { SerialLog } from './serial-log.js';
import { ConsoleHistory } from './console-history.js';
import { SnapshotTree, type Snapshot } from './snapshots.js';

export interface PersistedState {
  /** The VM's identity (RFC 4122 version 4), given at create; older VMs get one when first loaded. */
  uuid: string;
  state: VmState;
  bootId: number;
  createdAt: string;
  startedAt: string | null;
  lastPower: (PowerInfo & { at: string }) | null;
  lastError: string | null;
  ephemeral: boolean;
  /** Disk images vmctl created on `create` (removed by `delete`); others are never touched. */
  createdDisks: string[];
  instructionsRetired: number | null;
  /** The machine state `vmctl save` wrote (SAVED_STATE_FILE in the VM's folder); null when none. */
  savedState?: SavedStateRecord | null;
  /** What the VM was cloned from (`vmctl clone`). */
  clonedFrom?: { readonly vm: string; readonly snapshot: string | null; readonly linked: boolean } | null;
  /** Why a paused VM is paused: `vmctl pause`, or host memory ran short (absent in older files). */
  pauseReason?: PauseReason | null;
}

export interface SavedStateRecord {
  readonly bytes: number;
  readonly savedAt: string;
}

/** Where `vmctl save` keeps a VM's machine state, in the VM's folder. */
export const SAVED_STATE_FILE = 'saved.vmstate';

export type VmEvent =
  /** `restarting`: this `stopped` is followed by a new boot (a guest or `vmctl reset`, `vmctl
   *  restart`); consoles and waiters stay attached instead of ending with the VM. */
  /** `reason: 'delete'`: the VM is being stopped because it is being deleted (a `deleted` event follows). */
  /** `pauseReason`: why a `paused` VM is paused (`memory`: host memory is short). */
  | { event: 'state'; data: { state: VmState; bootId: number; previous: VmState; restarting?: true; reason?: 'delete'; pauseReason?: PauseReason } }
  | { event: 'memory'; data: Record<string, unknown> & { kind: string } }
  | { event: 'console'; data: { bootId: number; data: string } }
  | { event: 'power'; data: { bootId: number } & PowerInfo }
  | { event: 'sched'; data: Record<string, unknown> };

export interface InstanceEnv {
  /** VMCTL_HOME (recorded in disk locks, so `vmctl disk info` can say which daemon holds an image). */
  readonly home: string;
  /** vmctl's version (recorded in machine-state files). */
  readonly version: string;
  /** The VMs' worker threads (started, or reused when idle). */
  readonly threads: VmThreads;
  /** The hart thread script, when not the one next to the VM worker's bundle. */
  readonly hartWorkerPath?: string;
  readonly serialLogMaxBytes: number;
  readonly consoleHistoryBytes: number;
  /** The daemon's switch networks (NICs with mode: switch); without it such a NIC cannot start. */
  readonly switches?: SwitchHub;
  /** The daemon's CPU scheduler: every running hart gets a slot in it. */
  readonly scheduler?: Scheduler;
  log(msg: string): void;
  /** A VM's worker thread could not be ended (the process cannot exit normally any more). */
  workerLost(vm: string): void;
  /** Host memory: admission, and the ledger VM threads take RAM chunks from (host-memory.ts). */
  readonly memory: HostMemory;
  /** The VMs that count against host memory now (running, paused, starting, stopping). */
  committed(except: VmInstance): { name: string; bytes: number }[];
  /** A VM waits for host memory: the balloon policy should look now. */
  memoryShort(vm: VmInstance): void;
}

/** state.json is a few hundred bytes; a larger one was not written by vmctl. */
const MAX_STATE_FILE_BYTES = 1024 * 1024;

/** `stop --force` waits this long for the worker to close its disks before terminating it. */
const FORCE_GRACE_MS = 400;
/** ... and this long for the terminated worker to end before giving it up. */
const TERMINATE_WAIT_MS = 3000;

export class VmInstance {
  private worker: Worker | null = null;
  /** Locks on this VM's disk images while its worker lives (src/disk/lock.ts). */
  private diskLocks: DiskLock[] = [];
  private serial: SerialLog | null = null;
  /** Console output of the current boot (tail), for `wait --for-console` and `start --wait-for`. */
  private readonly history: ConsoleHistory;
  private stopping = false;
  /** Set by powerOff(): a stop that was waiting for the guest reports a power-off instead. */
  private poweredOff = false;
  /** Set while restart() stops the VM: the `stopped` it announces is followed by a new boot. */
  private restarting = false;
  /** The boot a reset started (guest or `vmctl reset`); reset() waits for it. */
  private reboot: Promise<void> | null = null;
  /** Set by powerOff('delete'): the VM is stopped in order to be deleted (clients say so). */
  private deleting = false;
  /** Failed serial.log writes this boot (only the first is logged as it happens). */
  private serialErrors = 0;
  /** `vmctl save` is writing the state or winding the worker down afterwards. */
  private saving = false;
  private workerDone: Promise<void> = Promise.resolve();
  /** Set when the current boot's thread is being terminated: it is not reused. */
  private terminating = false;
  /** Ends the current boot as if its worker had exited, when the worker cannot be ended. */
  private abandonWorker: ((why: string) => void) | null = null;
  /** The worker's last memory figures (null while it does not run) and when they came. */
  private memory: MemoryFigures | null = null;
  /** The worker's last disk request counts (by disk index), null while it does not run. */
  private diskIo: readonly DiskIo[] | null = null;
  private memoryAt = 0;
  /** The VM's place in the host memory ledger while its worker lives. */
  private memorySlot: MemorySlot | null = null;
  /** Its harts wait for host memory now (since when, performance.now()). */
  private waitingForMemorySince: number | null = null;
  /** The memory target set with `vmctl set` (null: none, the guest keeps all of its memory), and
   *  the one the daemon's balloon policy sets (never above the user's). */
  userTarget: number | null = null;
  policyTarget: number | null = null;
  listener: (e: VmEvent) => void = () => {};
  /** Instructions retired (in all and per hart) at the last two figures from the worker, for MIPS. */
  private rate: { at: number; total: number; harts: readonly number[] }[] = [];

  /** A definition saved (`vmctl edit`) while the VM runs: it applies once the worker has ended
   *  and its disks are released (a guest reboot keeps the running definition and its locks). */
  private nextDef: VmDefinition | null = null;

  /** The operation that holds the VM (a snapshot, a save): others wait for it to end. */
  private busy: string | null = null;
  private treeObj: SnapshotTree | null = null;

  constructor(
    public def: VmDefinition,
    readonly dir: string,
    readonly persisted: PersistedState,
    private readonly env: InstanceEnv,
  ) {
    this.history = new ConsoleHistory(env.consoleHistoryBytes);
  }

  /** The VM's snapshots (snapshots.json, read when first needed). */
  get tree(): SnapshotTree {
    return this.treeObj ??= new SnapshotTree(this);
  }

  /**
   * Makes `def` the VM's definition at once and writes vm.yaml: the disk paths a snapshot moves
   * the VM to (also while it runs: the machine has switched already), or a snapshot's definition
   * on restore. A definition saved by `vmctl edit` for the next start keeps its own settings,
   * with the same disks moved.
   */
  setDefinition(def: VmDefinition): void {
    if (this.nextDef) {
      const moved = new Map<string, string>();
      this.def.disks.forEach((d, i) => { if (def.disks[i] && def.disks[i].name === d.name && def.disks[i].path !== d.path) moved.set(canonicalImagePath(d.path), def.disks[i].path); });
      this.nextDef = { ...this.nextDef, disks: this.nextDef.disks.map((d) => (moved.has(canonicalImagePath(d.path)) ? { ...d, path: moved.get(canonicalImagePath(d.path))! } : d)) };
    }
    this.def = def;
    writeFileAtomic(join(this.dir, 'vm.yaml'), serializeVmDefinition(this.nextDef ?? def));
  }

  /** Runs `fn` as the VM's one operation of its kind at a time (snapshots, save). */
  private async exclusive<T>(what: string, fn: () => Promise<T>): Promise<T> {
    if (this.busy !== null) throw new ProtocolFailure('WrongState', `VM ${this.name} is busy (${this.busy}); try again when it is done`);
    this.busy = what;
    try {
      return await fn();
    } finally {
      this.busy = null;
    }
  }

  checkNotBusy(what: string): void {
    if (this.busy !== null) throw new ProtocolFailure('WrongState', `VM ${this.name} is busy (${this.busy}); cannot ${what} now`);
  }

  get name(): string {
    return this.def.name;
  }

  /** Replaces the definition: at once for a VM that is not running, else once it stops. */
  redefine(def: VmDefinition): 'now' | 'next-start' {
    if (this.active) {
      this.nextDef = def;
      return 'next-start';
    }
    this.def = def;
    this.nextDef = null;
    return 'now';
  }

  /** The definition in vm.yaml: the one saved for the next start, or the running one. */
  storedDefinition(): VmDefinition {
    return this.nextDef ?? this.def;
  }

  /** `vmctl set`: CPU settings saved as `stored`; shares and cap apply to the running VM too. */
  setCpu(stored: VmDefinition): void {
    if (this.nextDef) {
      this.nextDef = stored;
      this.def = { ...this.def, cpuShares: stored.cpuShares, cpuCap: stored.cpuCap };
    } else this.def = stored;
  }

  get state(): VmState {
    return this.persisted.state;
  }

  get active(): boolean {
    return this.worker !== null;
  }

  static stateFile(dir: string): string {
    return join(dir, 'state.json');
  }

  static readPersisted(dir: string): PersistedState | null {
    const f = VmInstance.stateFile(dir);
    if (!existsSync(f)) return null;
    return JSON.parse(readRegular(f, { maxBytes: MAX_STATE_FILE_BYTES }).toString('utf8')) as PersistedState;
  }

  save(): void {
    writeFileAtomic(VmInstance.stateFile(this.dir), `${JSON.stringify(this.persisted, null, 2)}\n`);
  }

  private setState(s: VmState, how: { restarting?: boolean; pauseReason?: PauseReason } = {}): void {
    const { restarting = false, pauseReason = null } = how;
    const previous = this.persisted.state;
    if (previous === s) return;
    this.persisted.state = s;
    this.persisted.pauseReason = s === 'paused' ? pauseReason : null;
    this.save();
    const why = restarting ? ' (restarting)' : s === 'paused' && pauseReason === 'memory' ? ' (host memory is short)' : '';
    this.env.log(`vm ${this.name}: ${previous} -> ${s}${why}`);
    this.listener({ event: 'state', data: {
      state: s, bootId: this.persisted.bootId, previous,
      ...(restarting ? { restarting: true as const } : {}), ...(this.deleting ? { reason: 'delete' as const } : {}),
      ...(s === 'paused' && pauseReason ? { pauseReason } : {}),
    } });
  }

  /** Why it is paused, while it is. */
  get pauseReason(): PauseReason | null {
    return this.persisted.state === 'paused' ? this.persisted.pauseReason ?? 'user' : null;
  }

  /** Its harts wait for host memory (a guest that touched new memory while the host had none). */
  get waitingForMemory(): boolean {
    return this.waitingForMemorySince !== null;
  }

  /** A VM thread that waits for host memory reads no message until it has it: requests that need
   *  its answer (save, snapshot, ports, disks) are refused meanwhile rather than left hanging. */
  private waitingForMemoryError(): ProtocolFailure {
    return new ProtocolFailure('WrongState', `VM ${this.name} is waiting for host memory (its harts are stopped); try again once it has it, or stop it`);
  }

  info(): VmInfo {
    const p = this.persisted;
    const d = this.def;
    const running = isActiveState(p.state);
    return {
      name: d.name,
      uuid: p.uuid,
      state: p.state,
      pauseReason: this.pauseReason,
      cpus: d.cpus,
      memoryBytes: d.memoryBytes,
      cpuShares: d.cpuShares,
      cpuCap: d.cpuCap,
      ...this.figures(),
      memory: this.memoryInfo(),
      uptimeSeconds: running && p.startedAt ? Math.max(0, Math.round((Date.now() - Date.parse(p.startedAt)) / 100) / 10) : 0,
      bootId: p.bootId,
      createdAt: p.createdAt,
      startedAt: p.startedAt,
      firmware: d.boot.firmware.kind === 'file' ? d.boot.firmware.path : d.boot.firmware.kind,
      kernel: d.boot.kernel ?? null,
      initrd: d.boot.initrd ?? null,
      cmdline: d.boot.cmdline,
      disks: d.disks.map((x, i) => this.diskInfo(x.name, x.path, x.readonly, i)),
      shutdownConsole: d.shutdown.console ?? null,
      lastPower: p.lastPower,
      lastError: p.lastError,
      instructionsRetired: p.instructionsRetired,
      savedState: p.savedState ? { bytes: p.savedState.bytes, savedAt: p.savedState.savedAt } : null,
      clonedFrom: p.clonedFrom ?? null,
      snapshots: this.tree.snapshots.length,
      currentSnapshot: this.tree.snapshots.find((s) => s.id === this.tree.current)?.name ?? null,
      ephemeral: p.ephemeral,
      directory: this.dir,
    };
  }

  /** A disk as the file is now (also an image that existed before `create`). */
  private diskInfo(name: string, path: string, readonly: boolean, index: number): DiskInfo {
    let sizes: { virtualBytes: number | null; allocatedBytes: number | null } = { virtualBytes: null, allocatedBytes: null };
    try {
      const i = imageInfo(path);
      sizes = { virtualBytes: i.virtualBytes, allocatedBytes: i.allocatedBytes };
    } catch { /* missing or unreadable: the sizes say null */ }
    const io = this.active ? this.diskIo?.[index] ?? null : null;
    return {
      name, path, readonly, ...sizes, createdByVmctl: this.persisted.createdDisks.includes(path),
      reads: io?.reads ?? null, writes: io?.writes ?? null, readBytes: io?.readBytes ?? null, writtenBytes: io?.writtenBytes ?? null, flushes: io?.flushes ?? null,
    };
  }

  /** The worker's latest memory figures, null while the VM does not run. */
  get memoryFigures(): MemoryFigures | null {
    return this.memory;
  }

  memoryInfo(): MemoryInfo {
    const m = this.active ? this.memory : null;
    const b = m?.balloon ?? null;
    const g = b?.stats.values ?? {};
    const at = b?.stats.updatedAt ?? null;
    const stat = (k: keyof typeof g): number | null => g[k] ?? null;
    return {
      configuredBytes: this.def.memoryBytes,
      minBytes: this.def.memoryMinBytes,
      residentBytes: m?.residentBytes ?? null,
      targetBytes: b?.targetBytes ?? null,
      actualBytes: b?.actualBytes ?? null,
      balloonBytes: b?.balloonBytes ?? null,
      reportedFreeBytes: b?.reportedBytes ?? null,
      chunksReleased: m?.chunksReleased ?? null,
      guestTotalBytes: stat('totalMemory'),
      guestFreeBytes: stat('freeMemory'),
      guestAvailableBytes: stat('availableMemory'),
      guestCachesBytes: stat('diskCaches'),
      majorFaults: stat('majorFaults'),
      minorFaults: stat('minorFaults'),
      // Linux counts swapped pages (5.5.6.3.1: VIRTIO_BALLOON_S_SWAP_IN/OUT).
      swapIns: stat('swapIn'),
      swapOuts: stat('swapOut'),
      // The worker's performance.now() and ours differ: the age is measured in the worker's
      // terms when the figures were sent, plus the time since.
      guestStatsAgeSeconds: at === null || m === null ? null : Math.round((m.sentAt - at + (Date.now() - this.memoryAt)) / 100) / 10,
    };
  }

  /** Live figures (VmFigures): CPU from the scheduler, MIPS from the worker's counts. */
  figures(): VmFigures {
    const cpu = this.worker ? this.env.scheduler?.figures(this.name) ?? null : null;
    const [a, b] = this.rate.length === 2 ? this.rate : [null, null];
    const dt = a && b ? (b.at - a.at) / 1000 : 0;
    const running = this.worker !== null && a !== null && b !== null && dt > 0;
    const round = (x: number): number => Math.round(x * 10) / 10;
    return {
      cpuPercent: cpu ? round(cpu.cpuPercent) : null,
      hartCpuPercent: cpu ? cpu.hartCpuPercent.map(round) : null,
      mips: running ? round((b!.total - a!.total) / dt / 1e6) : null,
      hartMips: running ? b!.harts.map((n, i) => round((n - (a!.harts[i] ?? 0)) / dt / 1e6)) : null,
      heldBack: cpu?.heldBack ?? null,
    };
  }

  consoleHistory(): Buffer {
    return this.history.contents();
  }

  machineConfig(): MachineConfig {
    const d = this.def;
    const nics = this.nics();
    return {
      memoryBytes: d.memoryBytes,
      cpus: d.cpus,
      firmware: d.boot.firmware,
      kernelPath: d.boot.kernel,
      initrdPath: d.boot.initrd,
      cmdline: d.boot.cmdline,
      disks: d.disks.map((x) => ({ path: x.path, readonly: x.readonly, name: x.name })),
      nics,
      ...(nics.length > 0 ? { sshAuthorizedKeys: this.sshPublicKey() } : {}),
      ...(d.balloon.enabled ? {
        balloon: { deflateOnOom: d.balloon.deflateOnOom, freePageReporting: d.balloon.freePageReporting, statsIntervalMs: d.balloon.statsIntervalMs },
      } : {}),
    };
  }

  /** The home's key for `vmctl ssh`, handed to the guest in its device tree (made on first use). */
  private sshPublicKey(): string | undefined {
    try {
      return ensureSshKey(this.env.home);
    } catch (e) {
      this.env.log(`vm ${this.name}: no ssh key for the guest: ${(e as Error).message}`);
      return undefined;
    }
  }

  /** The VM's network cards as the definition has them (src/config/vm-definition.ts decides the
   *  default NIC), each with its MAC: the one given, or one derived from the VM's UUID. */
  private nics(): NicAttachment[] {
    return this.def.network.nics.map((n, i) => ({
      mac: n.mac ?? defaultMac(this.persisted.uuid, i),
      network: n.mode === 'user' ? { mode: 'user', forwards: n.forwards, restrict: n.restrict } : { mode: 'switch', name: n.name },
    }));
  }

  // ---- lifecycle ----

  /** Boots the VM, or resumes a saved one (unless `discardState`: then it boots afresh). */
  async start(opts: { discardState?: boolean } = {}): Promise<void> {
    this.checkNotBusy('start');
    const s = this.state;
    if (s !== 'stopped' && s !== 'aborted' && s !== 'saved') throw new ProtocolFailure('WrongState', `VM ${this.name} is ${s}; only a stopped, saved or aborted VM can be started`);
    // Checked in the same turn as the state becomes `starting`: two starts at once cannot both
    // pass. A guest reboot keeps its place (boot() without start()).
    this.env.memory.admit(this.name, this.def.memoryBytes, this.env.committed(this));
    if (s === 'saved' && !opts.discardState) {
      await this.boot({ file: this.savedStatePath(), kind: 'saved', paused: false });
      return;
    }
    if (s === 'saved') this.discardSavedState();
    await this.boot();
  }

  /** The file `vmctl save` wrote. */
  savedStatePath(): string {
    return join(this.dir, SAVED_STATE_FILE);
  }

  /** Drops the saved state: the VM is stopped, as if powered off when it was saved. */
  discardSavedState(): void {
    this.persisted.savedState = null;
    if (this.state === 'saved') this.persisted.state = 'stopped';
    this.save();
    try { unlinkSync(this.savedStatePath()); } catch { /* already gone */ }
    this.env.log(`vm ${this.name}: saved state discarded`);
    this.listener({ event: 'state', data: { state: this.persisted.state, bootId: this.persisted.bootId, previous: 'saved' } });
  }

  /** What a previous daemon, killed at any instant, may have left: temporary state files (never
   *  taken for good), and a saved state recorded while the VM was still winding down. */
  recoverSavedState(): void {
    for (const n of readdirSync(this.dir)) {
      if (isTempFileFor(this.savedStatePath(), n)) try { unlinkSync(join(this.dir, n)); } catch { /* gone */ }
    }
    const p = this.persisted;
    if (p.savedState && p.state !== 'saved' && existsSync(this.savedStatePath())) {
      this.env.log(`vm ${this.name}: its state was saved before the daemon ended; now saved`);
      p.state = 'saved';
      p.lastError = null;
      this.save();
    } else if (p.state === 'saved' && !existsSync(this.savedStatePath())) {
      this.env.log(`vm ${this.name}: saved, but ${this.savedStatePath()} is gone; now stopped`);
      p.state = 'stopped';
      p.savedState = null;
      p.lastError = `the saved state ${this.savedStatePath()} was missing`;
      this.save();
    } else if (!p.savedState && p.state !== 'saved' && existsSync(this.savedStatePath())) {
      unlinkSync(this.savedStatePath()); // written, but never recorded: not the VM's state
    }
  }

  /** Boots the machine, or resumes it `from` a machine state: the VM's saved state (the same boot
   *  goes on; the file is dropped once resumed) or a snapshot's (a new boot; the file stays). */
  private boot(from?: { file: string; kind: 'saved' | 'snapshot'; paused: boolean }): Promise<void> {
    const restoreFrom = from?.file;
    // A disk image is used by one writing VM or by any number of VMs that attach it read-only, also
    // across daemons (src/disk/lock.ts); a qcow2 overlay's backing files are shared read-only, so
    // overlays of one base run side by side. Refused before anything changes. A guest reboot keeps
    // the locks it already holds, so no other VM can take a disk in between.
    try {
      if (this.diskLocks.length === 0) this.diskLocks = lockDiskChains(this.def.disks, this.name, this.env.home);
    } catch (e) {
      if (!(e instanceof DiskError)) return Promise.reject(e);
      // A disk in use is the VM's state (exit 5); a missing backing file or a damaged image is a failure.
      return Promise.reject(new ProtocolFailure(e.code === 'IN_USE' ? 'WrongState' : 'StartFailed', `VM ${this.name} cannot start: ${e.message}`));
    }
    const p = this.persisted;
    try {
      // Opened without blocking: a serial.log replaced by a FIFO is refused here, naming it.
      // serial.index records where each boot's output starts in serial.log (vmctl logs --boot).
      this.serial ??= new SerialLog(this.dir, this.env.serialLogMaxBytes, (e) => this.env.log(`vm ${this.name}: writing serial.index failed: ${e.message}`));
    } catch (e) {
      this.releaseDiskLocks();
      return Promise.reject(e instanceof FileRefused ? new ProtocolFailure('StartFailed', `VM ${this.name} failed to start: its serial log ${e.message}`) : e);
    }
    const resuming = from?.kind === 'saved';
    // A resumed VM goes on with the boot it was saved in (same boot id, its output continues).
    if (!resuming) p.bootId += 1;
    p.startedAt = new Date().toISOString();
    p.lastError = null;
    this.history.clear();
    this.stopping = false;
    this.poweredOff = false;
    this.serialErrors = 0;
    this.saving = false;
    this.memory = null;
    this.diskIo = null;
    this.setState('starting');
    if (!resuming) this.serial!.beginBoot(p.bootId, Date.parse(p.startedAt));
    this.userTarget = this.policyTarget = null;
    this.waitingForMemorySince = null;
    const config = this.machineConfig();
    // NICs on switch networks: a port of the daemon's switch each, its other end handed to the worker.
    const plugged = (config.nics ?? []).map((n, i) => (n.network.mode === 'switch'
      ? this.env.switches?.attach(n.network.name, `vm ${this.name} nic${i}`) ?? null : null));
    const unplug = (): void => { for (const p of plugged) p?.detach(); };
    const switchPorts = plugged.map((p) => p?.port ?? null);
    // Its harts' host CPU allowance (src/daemon/scheduler.ts).
    const sched = this.env.scheduler;
    const cpuSlot = sched?.attach(this.name, this.def.cpus, this.def.cpuShares, this.def.cpuCap);
    this.rate = [];
    // The VM's place in the host memory ledger, from here until its machine has closed.
    const slot = this.env.memory.attach(this.def.cpus);
    this.memorySlot = slot;
    const init: WorkerInit = {
      mode: 'run', vmName: this.name, config, hartWorkerPath: this.env.hartWorkerPath, vmctlVersion: this.env.version, switchPorts, memory: slot,
      ...(restoreFrom !== undefined ? { restoreFrom, startPaused: from!.paused } : {}),
      ...(sched && cpuSlot ? { cpu: { slots: sched.slots.buffer, slot: cpuSlot } } : {}),
    };
    let worker: Worker;
    try {
      worker = this.env.threads.acquire();
    } catch (e) {
      unplug();
      this.env.memory.detach(slot);
      this.memorySlot = null;
      this.releaseDiskLocks();
      this.serialFlushClose();
      sched?.detach(this.name);
      p.lastError = `cannot start the VM's worker thread: ${(e as Error).message}`;
      this.setState('stopped');
      return Promise.reject(new ProtocolFailure('StartFailed', `VM ${this.name} failed to start: ${p.lastError}`));
    }
    this.worker = worker;
    this.terminating = false;
    const bootId = p.bootId;
    let ready = false;
    let closed = false;
    let fatal: string | null = null;
    let refused = false;
    let hostMemoryShort = false;
    let adoptTarget = restoreFrom !== undefined;
    let power: PowerEvent | null = null;

    return new Promise<void>((resolve, reject) => {
      let ended = false;
      /** Ends this boot: the machine closed (both null), the thread exited (`code`), or it was given up on (`lost`). */
      let end!: (code: number | null, lost: string | null) => void;
      const onMessage = (m: FromWorker): void => {
        if (ended) return; // an abandoned worker's last words
        switch (m.type) {
          case 'ready':
            ready = true;
            // A resumed guest goes on from the state, which is then no longer the VM's state
            // (its disks change from here on): it is dropped, as VirtualBox drops a resumed one.
            if (resuming) p.savedState = null;
            this.setState(from?.paused ? 'paused' : 'running');
            if (resuming) {
              try { unlinkSync(restoreFrom!); } catch { /* gone */ }
              this.env.log(`vm ${this.name}: resumed from its saved state`);
            }
            resolve();
            break;
          case 'console':
            this.onConsole(Buffer.from(m.data.buffer, m.data.byteOffset, m.data.byteLength), bootId);
            break;
          case 'power':
            power = m.event;
            this.onPower(m.event, bootId);
            break;
          case 'log':
            this.env.log(`vm ${this.name}: ${m.message}`);
            break;
          case 'stats':
            p.instructionsRetired = m.instructionsRetired;
            this.memory = m.memory;
            this.memoryAt = Date.now();
            this.rate = [...this.rate.slice(-1), { at: Date.now(), total: m.instructionsRetired, harts: m.hartInstructions }];
            this.diskIo = m.disks;
            if (adoptTarget && m.memory.balloon) {
              // A machine state brought its balloon back: its target is the VM's target again.
              adoptTarget = false;
              const t = m.memory.balloon.targetBytes;
              this.userTarget = t >= this.def.memoryBytes ? null : t;
            }
            break;
          case 'paused':
          case 'resumed':
          case 'dtb':
          case 'stateWritten':
          case 'stateFailed':
            break;
          case 'closed':
            // The machine's last message (src/vm/worker.ts): the thread lives on.
            closed = true;
            p.instructionsRetired = m.instructionsRetired;
            end(null, null);
            break;
          case 'fatal':
            fatal = m.message;
            refused = m.startRefused === true;
            hostMemoryShort = m.hostMemoryShort === true;
            this.env.log(`vm ${this.name}: ${m.message}`);
            break;
          case 'memoryWait':
          case 'memoryPaused':
          case 'memoryResumed':
            this.onMemoryWait(m);
            break;
          case 'port-reply':
            break;
        }
      };
      const onError = (e: Error): void => {
        fatal = `worker crashed: ${e.stack ?? e.message}`;
        this.env.log(`vm ${this.name}: ${fatal}`);
      };
      const onExit = (code: number): void => {
        if (ended) this.env.log(`vm ${this.name}: its abandoned worker thread ended after all (code ${code})`);
        end(code, null);
      };
      worker.on('message', onMessage);
      worker.on('error', onError);
      worker.on('exit', onExit);
      this.workerDone = new Promise<void>((done) => {
        end = (code, lost) => {
          if (ended) return;
          ended = true;
          this.abandonWorker = null;
          this.worker = null;
          this.env.scheduler?.detach(this.name);
          unplug();
          // Its machine has closed (or its thread is given up on): the chunks it held go back.
          this.env.memory.detach(slot);
          this.memorySlot = null;
          this.waitingForMemorySince = null;
          if (code === null && lost === null) {
            // Closed cleanly: the thread can host the next VM, unless it is being terminated or
            // its machine failed while running (an emulator error: a fresh thread is safer).
            worker.off('message', onMessage);
            worker.off('error', onError);
            worker.off('exit', onExit);
            if (!this.terminating && (!ready || fatal === null)) this.env.threads.release(worker);
            else void worker.terminate();
          }
          if (this.serialErrors > 1) this.env.log(`vm ${this.name}: writing serial.log failed ${this.serialErrors - 1} more times this boot`);
          if (lost !== null) {
            // The thread may still exist, blocked in the host; its images were not closed by it.
            this.releaseDiskLocks();
            if (this.nextDef) this.redefine(this.nextDef);
            this.serialFlushClose();
            p.lastError = lost;
            if (ready) this.setState('aborted');
            else {
              this.setState('stopped');
              reject(new ProtocolFailure('StartFailed', `VM ${this.name} failed to start: ${lost}`));
            }
            done();
            return;
          }
          const rebooting = ready && !this.stopping && !this.saving && closed && fatal === null && power?.kind === 'reset' && !p.ephemeral;
          if (!rebooting) {
            this.releaseDiskLocks(); // the worker closed (fsync'd) its images, or died
            if (this.nextDef) this.redefine(this.nextDef);
          }
          this.serialFlushClose();
          if (!ready) {
            // The machine never came up (a missing kernel, a bad image): the VM stays stopped, or
            // saved when its state could not be resumed (the state is kept for another try).
            p.lastError = fatal ?? `worker exited with code ${code} before the machine was ready`;
            this.setState(resuming ? 'saved' : 'stopped');
            // A refusal for the host's state (a forward's port is taken) is "wrong state", as a disk
            // in use; a host short of memory for the guest's RAM is InsufficientResources.
            const cls = hostMemoryShort ? 'InsufficientResources' : refused ? 'WrongState' : 'StartFailed';
            reject(new ProtocolFailure(cls, `VM ${this.name} ${refused ? 'cannot start' : `failed to ${from ? 'resume' : 'start'}`}: ${p.lastError}` +
              (resuming && cls === 'StartFailed' ? `; vmctl start --discard-state ${this.name} boots it afresh` : '')));
          } else if (this.saving && p.savedState) {
            this.setState('saved');
          } else if (this.stopping || (closed && fatal === null)) {
            this.setState('stopped', { restarting: rebooting || this.restarting });
            if (rebooting) {
              // A guest reboot restarts a long-lived VM (a `run` VM ends instead, like -no-reboot).
              this.env.log(`vm ${this.name}: ${power?.source === 'vmctl' ? 'reset by vmctl reset' : 'guest reset'}; booting again`);
              this.reboot = this.boot();
              this.reboot.catch((e) => {
                this.releaseDiskLocks();
                this.env.log(`vm ${this.name}: reboot failed: ${(e as Error).message}`);
              });
            }
          } else {
            // The worker died while the guest ran (an emulator error, an out-of-memory thread):
            // VirtualBox calls this "aborted".
            p.lastError = fatal ?? `worker exited with code ${code}`;
            this.setState('aborted');
          }
          done();
        };
        this.abandonWorker = (why) => end(null, why);
      });
      worker.postMessage({ type: 'init', init } satisfies ToWorker, switchPorts.filter((p): p is MessagePort => p !== null));
    });
  }

  /** The worker's news about waiting for host memory: log, event, state. */
  private onMemoryWait(m: Extract<FromWorker, { type: 'memoryWait' | 'memoryPaused' | 'memoryResumed' }>): void {
    const name = this.name;
    switch (m.type) {
      case 'memoryWait':
        this.waitingForMemorySince = performance.now();
        this.env.log(`vm ${name}: waits for host memory: its guest touched new memory while the VMs hold ${humanSize(m.usedBytes)} of the ${humanSize(m.limitBytes)} they may (it holds ${humanSize(m.heldBytes)}); reclaiming from balloons`);
        this.announce({ kind: 'wait', heldBytes: m.heldBytes, usedBytes: m.usedBytes, limitBytes: m.limitBytes });
        this.env.memoryShort(this);
        break;
      case 'memoryPaused':
        this.env.log(`vm ${name}: still no host memory after ${MEMORY_WAIT_BEFORE_PAUSE_MS / 1000} s; paused until there is`);
        this.announce({ kind: 'paused' });
        this.setState('paused', { pauseReason: 'memory' });
        break;
      case 'memoryResumed':
        this.waitingForMemorySince = null;
        if (this.stopping) {
          this.env.log(`vm ${name}: stopped while it waited for host memory (${(m.waitedMs / 1000).toFixed(1)} s)`);
          break;
        }
        this.env.log(`vm ${name}: got host memory after ${(m.waitedMs / 1000).toFixed(1)} s${m.wasPaused ? '; running again' : ''}`);
        this.announce({ kind: 'resumed', waitedSeconds: Math.round(m.waitedMs / 100) / 10 });
        if (m.wasPaused && this.state === 'paused') this.setState('running');
        break;
    }
  }

  private releaseDiskLocks(): void {
    for (const l of this.diskLocks.splice(0)) l.release();
  }

  private serialFlushClose(): void {
    if (this.serial) {
      this.serial.close();
      this.serial = null;
    }
  }

  private onConsole(data: Buffer, bootId: number): void {
    try {
      this.serial?.append(data);
    } catch (e) {
      // Once per boot in the log (a full disk would otherwise log every chunk); counted at the end.
      if (this.serialErrors++ === 0) this.env.log(`vm ${this.name}: writing serial.log failed: ${(e as Error).message}`);
    }
    this.history.append(data);
    this.listener({ event: 'console', data: { bootId, data: data.toString('base64') } });
  }

  private onPower(ev: PowerEvent, bootId: number): void {
    const info: PowerInfo = ev.kind === 'poweroff' ? { kind: 'poweroff', code: ev.code, failed: ev.failed, source: ev.source } : { kind: 'reset', source: ev.source };
    this.persisted.lastPower = { ...info, at: new Date().toISOString() };
    this.env.log(`vm ${this.name}: guest ${ev.kind}${ev.kind === 'poweroff' ? ` code ${ev.code}${ev.failed ? ' (failure)' : ''}` : ''} via ${ev.source}`);
    this.listener({ event: 'power', data: { bootId, ...info } });
  }

  private send(m: ToWorker): void {
    this.worker?.postMessage(m);
  }

  /** Pauses a running VM; false when it already was paused (the asked-for state holds). */
  async pause(): Promise<boolean> {
    if (this.state === 'paused') return false;
    if (this.waitingForMemory) throw this.waitingForMemoryError();
    if (this.state !== 'running') throw new ProtocolFailure('WrongState', `VM ${this.name} is ${this.state}; only a running VM can be paused`);
    await this.request('pause', 'paused');
    this.setState('paused');
    return true;
  }

  /** Resumes a paused VM; false when it already was running. */
  async resume(): Promise<boolean> {
    if (this.state === 'running') return false;
    if (this.pauseReason === 'memory') {
      throw new ProtocolFailure('WrongState', `VM ${this.name} is paused because host memory is short; it runs again by itself once memory is free (stop a VM, or lower the memory target of one with vmctl set --memory-target)`);
    }
    if (this.state !== 'paused') throw new ProtocolFailure('WrongState', `VM ${this.name} is ${this.state}; only a paused VM can be resumed`);
    await this.request('resume', 'resumed');
    this.setState('running');
    return true;
  }

  /** Sends a control message and waits for its acknowledgement (or the worker's end). */
  private async request(type: 'pause' | 'resume', ack: 'paused' | 'resumed'): Promise<void> {
    await this.call({ type }, [ack]);
  }

  /** Sends `msg` and waits for the worker's first reply of one of the `replies` types. */
  private call<T extends FromWorker['type']>(msg: ToWorker, replies: readonly T[]): Promise<Extract<FromWorker, { type: T }>> {
    const w = this.worker;
    if (!w) return Promise.reject(new ProtocolFailure('WrongState', `VM ${this.name} is not running`));
    if (this.waitingForMemory) return Promise.reject(this.waitingForMemoryError());
    return new Promise((resolve, reject) => {
      const onMsg = (m: FromWorker) => {
        if ((replies as readonly string[]).includes(m.type)) {
          cleanup();
          resolve(m as Extract<FromWorker, { type: T }>);
        } else if (m.type === 'closed') onExit(); // the machine ended first
      };
      const onExit = () => {
        cleanup();
        reject(new ProtocolFailure('WrongState', `VM ${this.name} stopped`));
      };
      const cleanup = () => {
        w.off('message', onMsg);
        w.off('exit', onExit);
      };
      w.on('message', onMsg);
      w.on('exit', onExit);
      w.postMessage(msg);
    });
  }

  /**
   * `vmctl save`: pauses the VM, writes its machine state (disks fsynced first), then ends the
   * worker; the VM is `saved` and `start` resumes it. The state is written to a temporary file
   * and renamed into place only when complete, and recorded in state.json after that, so a
   * daemon killed at any instant never leaves a half-written state taken for good. A failed
   * write leaves the VM as it was (a running VM runs on).
   */
  saveMachine(): Promise<{ bytes: number; ms: number }> {
    return this.exclusive('save', () => this.saveNow());
  }

  private async saveNow(): Promise<{ bytes: number; ms: number }> {
    const was = this.state;
    if (!this.worker || (was !== 'running' && was !== 'paused')) {
      throw new ProtocolFailure('WrongState', `VM ${this.name} is ${was}; only a running or paused VM can be saved`);
    }
    if (this.saving) throw new ProtocolFailure('WrongState', `VM ${this.name} is being saved already`);
    this.saving = true;
    try {
      if (was === 'running') await this.pause();
      const file = this.savedStatePath();
      const tmp = tempPathFor(file);
      const r = await this.call({ type: 'writeState', path: tmp }, ['stateWritten', 'stateFailed']);
      if (r.type === 'stateFailed') {
        if (was === 'running') await this.resume().catch(() => {});
        throw new ProtocolFailure('Internal', `VM ${this.name} could not be saved: ${r.message}`);
      }
      renameIntoPlace(tmp, file);
      await holdAt('save-before-record');
      this.persisted.savedState = { bytes: r.bytes, savedAt: new Date().toISOString() };
      this.save();
      this.env.log(`vm ${this.name}: state saved to ${file} (${r.bytes} bytes in ${Math.round(r.ms)} ms)`);
      await this.powerOff();
      return { bytes: r.bytes, ms: r.ms };
    } catch (e) {
      if (!this.persisted.savedState) this.saving = false;
      throw e;
    }
  }

  // ---- port forwards (`vmctl port`): asked of the worker, which owns the user-mode networks ----

  private portRequests = 0;

  /** The forwards bound now; for a VM that is not running, those of its definition. */
  async ports(): Promise<PortInfo[]> {
    if (!this.worker || this.state === 'starting') return this.definedForwards();
    return [...(await this.portRequest({ type: 'port-list', id: ++this.portRequests })).forwards ?? []];
  }

  /** Binds a forward on the running VM; a port that cannot be bound is "wrong state" (in use). */
  async addPort(f: PortForward, nic?: number): Promise<PortInfo> {
    this.requireRunningForPorts();
    const r = await this.portRequest({ type: 'port-add', id: ++this.portRequests, forward: f, ...(nic !== undefined ? { nic } : {}) });
    if (r.error !== undefined) throw new ProtocolFailure(/cannot listen/.test(r.error) ? 'WrongState' : 'InvalidParams', `VM ${this.name}: ${r.error}`);
    this.env.log(`vm ${this.name}: forward ${f.proto} ${f.hostAddress}:${r.forwards![0].hostPort} -> guest port ${f.guestPort} added`);
    return r.forwards![0];
  }

  async removePort(proto: 'tcp' | 'udp', hostAddress: string, hostPort: number): Promise<void> {
    this.requireRunningForPorts();
    const r = await this.portRequest({ type: 'port-remove', id: ++this.portRequests, proto, hostAddress, hostPort });
    if (r.removed !== true) {
      const have = (await this.ports()).map((p) => `${p.proto} ${p.hostAddress}:${p.hostPort}`);
      throw new ProtocolFailure('InvalidParams', `VM ${this.name} has no ${proto} forward on ${hostAddress}:${hostPort}; it has ${have.length ? have.join(', ') : 'none'}`);
    }
    this.env.log(`vm ${this.name}: forward ${proto} ${hostAddress}:${hostPort} removed`);
  }

  /** Where `vmctl ssh` connects: a forward to the guest's port 22 on 127.0.0.1 (one the VM has,
   *  or one made now, for this boot), with the home's key. */
  async sshEndpoint(): Promise<{ host: string; port: number; identityFile: string; user: string }> {
    this.requireRunningForPorts();
    const have = (await this.ports()).find((f) => f.proto === 'tcp' && f.guestPort === 22 && (f.hostAddress === '127.0.0.1' || f.hostAddress === '0.0.0.0'));
    const f = have ?? await this.addPort({ proto: 'tcp', hostAddress: '127.0.0.1', hostPort: 0, guestPort: 22 });
    return { host: '127.0.0.1', port: f.hostPort, identityFile: sshKeyPaths(this.env.home).privateKey, user: 'root' };
  }

  private requireRunningForPorts(): void {
    const s = this.state;
    if (!this.worker || (s !== 'running' && s !== 'paused')) {
      throw new ProtocolFailure('WrongState', `VM ${this.name} is ${s}; forwards can be changed on a running VM (the definition's network: sets those bound at start)`);
    }
  }

  private definedForwards(): PortInfo[] {
    const out: PortInfo[] = [];
    this.nics().forEach((n, nic) => {
      if (n.network.mode === 'user') for (const f of n.network.forwards) out.push({ nic, ...f });
    });
    return out;
  }

  private portRequest(m: Extract<ToWorker, { id: number }>): Promise<Extract<FromWorker, { type: 'port-reply' }>> {
    const w = this.worker;
    if (!w) return Promise.reject(new ProtocolFailure('WrongState', `VM ${this.name} is not running`));
    if (this.waitingForMemory) return Promise.reject(this.waitingForMemoryError());
    return new Promise((resolve, reject) => {
      const onMsg = (r: FromWorker): void => {
        if (r.type === 'port-reply' && r.id === m.id) { cleanup(); resolve(r); } else if (r.type === 'closed') onExit();
      };
      const onExit = (): void => { cleanup(); reject(new ProtocolFailure('WrongState', `VM ${this.name} stopped`)); };
      const cleanup = (): void => { w.off('message', onMsg); w.off('exit', onExit); };
      w.on('message', onMsg);
      w.on('exit', onExit);
      w.postMessage(m);
    });
  }

  // ---- memory (`vmctl set --memory`): moves the balloon in the worker ----

  /**
   * Moves the balloon of a running VM so that the guest keeps `bytes` (memory.min..memory.size),
   * as QEMU's `balloon`, `virsh setmem` or Firecracker's PATCH /balloon do. `by` says who, for
   * the log.
   */
  setMemoryTarget(bytes: number, by: string): void {
    const d = this.def;
    if (!this.worker || (this.state !== 'running' && this.state !== 'paused')) {
      throw new ProtocolFailure('WrongState', `VM ${this.name} is ${this.state}; the memory target moves the balloon of a running VM`);
    }
    if (!d.balloon.enabled) {
      throw new ProtocolFailure('WrongState', `VM ${this.name} has no balloon (balloon.enabled is false, or no virtio slot was left for one); its memory target cannot move`);
    }
    if (!Number.isInteger(bytes) || bytes < d.memoryMinBytes || bytes > d.memoryBytes) {
      throw new ProtocolFailure('InvalidParams', `memory target ${formatSize(bytes)} for VM ${this.name} is outside ${formatSize(d.memoryMinBytes)} (memory.min) .. ${formatSize(d.memoryBytes)} (memory.size)`);
    }
    const from = this.memoryTarget;
    this.userTarget = bytes === d.memoryBytes ? null : bytes;
    // The user's word goes: the policy moves again from there when the host needs it.
    this.policyTarget = null;
    this.applyMemoryTarget();
    this.env.log(`vm ${this.name}: memory target ${formatSize(from)} -> ${formatSize(bytes)} (balloon ${formatSize(d.memoryBytes - bytes)}), set by ${by}`);
    this.announce({ kind: 'balloon', by: 'user', fromBytes: from, targetBytes: bytes });
  }

  /** The memory target in force: the user's, or the policy's when it is lower. */
  get memoryTarget(): number {
    return Math.min(this.userTarget ?? this.def.memoryBytes, this.policyTarget ?? this.def.memoryBytes);
  }

  /** Sends the target in force to the worker (the balloon moves). */
  applyMemoryTarget(): void {
    this.send({ type: 'memoryTarget', bytes: this.memoryTarget });
  }

  /** A `memory` event for subscribers (balloon moves, waiting for memory). */
  announce(data: Record<string, unknown> & { kind: string }): void {
    this.listener({ event: 'memory', data: { bootId: this.persisted.bootId, ...data } });
  }

  /** Flow control (not a state change): the guest gets no CPU while its output cannot be delivered. */
  throttle(on: boolean): void {
    this.send({ type: 'throttle', on });
  }

  consoleInput(data: Uint8Array): void {
    if (!this.worker || (this.state !== 'running' && this.state !== 'paused' && this.state !== 'stopping')) {
      throw new ProtocolFailure('WrongState', `VM ${this.name} is ${this.state}; console input needs a running VM`);
    }
    this.send({ type: 'input', data });
  }

  /**
   * Stops the VM. Without `force` and with shutdown.console, types the command and waits up to
   * `timeoutMs` (0: no limit) for the guest to power off; then (or with `force`) powers off at once.
   * Returns which path was taken.
   */
  async stop(force: boolean, timeoutMs: number, discardState = false): Promise<StopPath> {
    this.checkNotBusy('stop');
    if (this.state === 'saved') {
      // `--force` keeps its meaning (power off at once): only an explicit --discard-state drops a state.
      if (!discardState) {
        throw new ProtocolFailure('WrongState', `VM ${this.name} is saved (its machine state is in ${this.savedStatePath()}); ` +
          `vmctl start ${this.name} resumes it, vmctl stop --discard-state ${this.name} discards the state`);
      }
      this.discardSavedState();
      return 'discarded-state';
    }
    if (!this.worker) {
      if (this.state === 'aborted') this.setState('stopped');
      return 'already-stopped';
    }
    const cmd = this.def.shutdown.console;
    // A guest waiting for host memory cannot run its shutdown command: it is powered off.
    if (!force && cmd !== undefined && this.state !== 'starting' && !this.waitingForMemory) {
      if (this.state === 'paused') await this.resume();
      this.stopping = true;
      this.setState('stopping');
      this.send({ type: 'input', data: new TextEncoder().encode(cmd) });
      const done = await Promise.race([this.workerDone.then(() => true), ...(timeoutMs > 0 ? [sleep(timeoutMs).then(() => false)] : [])]);
      if (done) {
        // The guest powered off by itself (its own power event stands), unless someone else
        // powered it off meanwhile (a forced daemon stop).
        return this.poweredOff ? 'poweroff' : 'guest-poweroff';
      }
      await this.powerOff();
      return 'timeout-poweroff';
    }
    await this.powerOff();
    return 'poweroff';
  }

  /** How long stop() waits for the guest: the client's timeout, else the VM file's
   *  shutdown.timeout, else 30 s (0: no limit). */
  stopTimeoutMs(requestedSeconds?: number): number {
    return requestedSeconds !== undefined ? requestedSeconds * 1000 : this.def.shutdown.timeoutMs ?? 30_000;
  }

  /**
   * Stops the VM as stop() does, then boots it again; consoles and waiters see one `stopped`
   * marked `restarting` and stay attached. A VM that is not running is just started.
   */
  async restart(force: boolean, timeoutMs: number): Promise<StopPath> {
    if (this.state === 'starting' || this.state === 'stopping') throw new ProtocolFailure('WrongState', `VM ${this.name} is ${this.state}; restart it once that is done`);
    if (!this.worker) {
      await this.start();
      return 'already-stopped';
    }
    this.restarting = true;
    let path: StopPath;
    try {
      path = await this.stop(force, timeoutMs);
    } finally {
      this.restarting = false;
    }
    await this.boot();
    return path;
  }

  /**
   * A hard reset, as the guest's own reset through the test finisher: this boot ends at once
   * (disks flushed, locks kept) and the VM boots again. Resolves once the new boot runs.
   * A `vmctl run` VM ends instead, as it does on a guest reset.
   */
  async reset(): Promise<void> {
    if (this.state !== 'running' && this.state !== 'paused') {
      const idle = this.state === 'stopped' || this.state === 'aborted';
      throw new ProtocolFailure('WrongState', `VM ${this.name} is ${this.state}; only a running or paused VM can be reset${idle ? ' (start it instead)' : ''}`);
    }
    this.reboot = null;
    const exited = this.workerDone;
    this.send({ type: 'reset' });
    await exited;
    if (this.reboot) await this.reboot;
  }

  /** Ends the VM within about a second, whatever the guest does. `why: 'delete'` marks its state
   *  changes as part of a deletion, so that a client waiting on it does not report a mere stop. */
  async powerOff(why?: 'delete'): Promise<void> {
    const w = this.worker;
    if (!w) return;
    if (why === 'delete') this.deleting = true;
    this.stopping = true;
    this.poweredOff = true;
    if (this.state !== 'stopping') this.setState('stopping');
    this.send({ type: 'stop' });
    // A thread waiting for memory would never read the message: let it go on to read it.
    if (this.memorySlot) this.env.memory.cancel(this.memorySlot);
    // The run loop sees the message between two slices (~15 ms) and flushes disks. A worker stuck
    // inside one slice (an emulator bug) is terminated.
    const exited = await Promise.race([this.workerDone.then(() => true), sleep(FORCE_GRACE_MS).then(() => false)]);
    if (exited) return;
    this.env.log(`vm ${this.name}: worker did not stop in ${FORCE_GRACE_MS} ms; terminating it`);
    this.terminating = true;
    // terminate() stops JavaScript, not a system call that never returns (no vmctl code makes such
    // a call: files are opened without blocking, src/host/regular-file.ts). Should one happen
    // anyway, the VM is given up on rather than leaving `stop --force` and `daemon stop` hanging.
    const ended = await Promise.race([w.terminate().then(() => true, () => true), sleep(TERMINATE_WAIT_MS).then(() => false)]);
    if (!ended && this.abandonWorker) {
      const why = `its worker thread did not end within ${TERMINATE_WAIT_MS / 1000} s of being terminated (blocked in the host)`;
      this.env.log(`vm ${this.name}: ${why}; giving it up`);
      this.env.workerLost(this.name);
      this.abandonWorker(why);
    }
    await this.workerDone;
  }

  /** Waits for the worker to end (after the guest powered off). */
  whenStopped(): Promise<void> {
    return this.workerDone;
  }

  // ---- snapshots ----

  /** Replies of the worker of the types asked for, in order, from now on (so none is missed
   *  between a request and the wait for its answer); rejects once the worker has ended. */
  private replies(types: readonly FromWorker['type'][]): { next(): Promise<FromWorker>; close(): void } {
    const w = this.worker;
    if (!w) throw new ProtocolFailure('WrongState', `VM ${this.name} is not running`);
    const queue: FromWorker[] = [];
    const waiting: { resolve: (m: FromWorker) => void; reject: (e: Error) => void }[] = [];
    let ended = false;
    const onMsg = (m: FromWorker) => {
      if (m.type === 'closed' && !types.includes(m.type)) return onExit(); // the machine ended
      if (!types.includes(m.type)) return;
      const wt = waiting.shift();
      if (wt) wt.resolve(m); else queue.push(m);
    };
    const onExit = () => {
      ended = true;
      for (const wt of waiting.splice(0)) wt.reject(new ProtocolFailure('WrongState', `VM ${this.name} stopped`));
    };
    w.on('message', onMsg);
    w.on('exit', onExit);
    return {
      next: () => {
        const m = queue.shift();
        if (m) return Promise.resolve(m);
        if (ended) return Promise.reject(new ProtocolFailure('WrongState', `VM ${this.name} stopped`));
        return new Promise((resolve, reject) => waiting.push({ resolve, reject }));
      },
      close: () => {
        w.off('message', onMsg);
        w.off('exit', onExit);
      },
    };
  }

  /** Locks the VM's disks for an operation on a VM that is not running (nobody else may use them
   *  meanwhile); a disk in use is exit 5. */
  private lockForOperation(): DiskLock[] {
    try {
      return lockDiskChains(this.def.disks, this.name, this.env.home);
    } catch (e) {
      if (e instanceof DiskError) throw new ProtocolFailure(e.code === 'IN_USE' ? 'WrongState' : 'Internal', `VM ${this.name}: ${e.message}`);
      throw e;
    }
  }

  /** A running VM's disks moved to other files: its locks follow (new top layers exclusive, the
   *  layers below shared). */
  private relockDisks(): void {
    this.releaseDiskLocks();
    try {
      this.diskLocks = lockDiskChains(this.def.disks, this.name, this.env.home);
    } catch (e) {
      this.env.log(`vm ${this.name}: cannot lock its disks after they moved: ${(e as Error).message}`);
    }
  }

  /**
   * `vmctl snapshot take`: the disks always, and the machine state of a running or paused VM
   * captured at the same instant (the guest is held only for the capture: `pauseMs`), or a
   * saved VM's state. Returns the snapshot.
   */
  takeSnapshot(name: string | undefined, description: string): Promise<Snapshot & { warning?: string }> {
    return this.exclusive('snapshot take', async () => {
      const s = this.state;
      if (s === 'starting' || s === 'stopping') throw new ProtocolFailure('WrongState', `VM ${this.name} is ${s}; try again when it is done`);
      if (this.worker && this.waitingForMemory) throw this.waitingForMemoryError();
      const tree = this.tree;
      const locks = this.worker ? [] : this.lockForOperation();
      try {
        const vmState = s === 'running' || s === 'paused' || s === 'saved' ? s : 'stopped';
        const { snapshot, switches } = tree.beginTake(name ?? tree.freeName(), description, vmState);
        const { tmp } = tree.stateFileFor(snapshot);
        if (!this.worker) {
          if (s === 'saved') return tree.finishTake(tmp, tree.linkState(this.savedStatePath(), tmp), null);
          return tree.finishTake(null, 0, null);
        }
        await holdAt('take-before-switch');
        const r = this.replies(['snapshotTaken', 'snapshotFailed', 'stateWritten', 'stateFailed']);
        try {
          this.send({ type: 'snapshot', statePath: tmp, disks: switches });
          const taken = await r.next().catch(() => null);
          if (taken?.type === 'snapshotFailed') {
            tree.abortTake();
            throw new ProtocolFailure('Internal', `VM ${this.name}: the snapshot could not be taken: ${taken.message}`);
          }
          if (taken?.type !== 'snapshotTaken') {
            // The machine ended meanwhile; the definition names the new layers already, so the
            // snapshot stands with its disks (the state could not be captured).
            return { ...tree.finishTake(null, 0, null), warning: 'the VM stopped while the snapshot was taken: it holds the disks only' };
          }
          this.relockDisks();
          this.env.log(`vm ${this.name}: snapshot ${snapshot.name} taken; the guest was held ${taken.pauseMs.toFixed(1)} ms`);
          const written = await r.next().catch((e: Error) => ({ type: 'stateFailed' as const, message: e.message }));
          if (written.type !== 'stateWritten') {
            const why = written.type === 'stateFailed' ? written.message : written.type;
            this.env.log(`vm ${this.name}: the machine state of snapshot ${snapshot.name} was not written: ${why}`);
            return { ...tree.finishTake(null, 0, taken.pauseMs), warning: `its machine state could not be written (${why}): it holds the disks only` };
          }
          return tree.finishTake(tmp, written.bytes, taken.pauseMs);
        } finally {
          r.close();
        }
      } finally {
        for (const l of locks) l.release();
      }
    });
  }

  /**
   * `vmctl snapshot restore`: the VM goes back to the snapshot (its definition and disks; its
   * machine state too, running or paused as it was taken). A running, paused or saved VM needs
   * `force` (it is powered off, a saved state discarded).
   */
  restoreSnapshot(name: string, force: boolean): Promise<void> {
    return this.exclusive('snapshot restore', async () => {
      const snap = this.tree.find(name);
      const s = this.state;
      if (s !== 'stopped' && s !== 'aborted') {
        if (!force) {
          throw new ProtocolFailure('WrongState', `VM ${this.name} is ${s}; stop it first, or restore with --force (${s === 'saved' ? 'its saved state is discarded' : 'it is powered off at once'})`);
        }
        if (s === 'saved') this.discardSavedState();
        else await this.powerOff();
      }
      const locks = this.lockForOperation();
      try {
        this.tree.restore(snap);
      } finally {
        for (const l of locks) l.release();
      }
      this.env.log(`vm ${this.name}: restored snapshot ${snap.name}`);
      const state = this.tree.statePath(snap);
      if (state !== null) await this.boot({ file: state, kind: 'snapshot', paused: snap.vmState === 'paused' });
    });
  }

  /**
   * `vmctl snapshot delete`: merges the snapshot's layers into their neighbours (src/daemon/
   * snapshots.ts). A running VM whose disks are among the files that change is held with its
   * disks closed meanwhile. `inUseElsewhere` names other VMs built on files that would change.
   */
  deleteSnapshot(name: string, inUseElsewhere: (files: string[]) => string[]): Promise<void> {
    return this.exclusive('snapshot delete', async () => {
      const snap = this.tree.find(name);
      if (this.state === 'starting' || this.state === 'stopping') throw new ProtocolFailure('WrongState', `VM ${this.name} is ${this.state}; try again when it is done`);
      const plan = this.tree.planDelete(snap, inUseElsewhere);
      const hold = this.worker !== null && this.tree.planTouchesCurrent(plan);
      const locks = this.worker ? [] : this.lockForOperation();
      if (hold) {
        const r = await this.call({ type: 'detachDisks' }, ['disksDetached', 'disksFailed']);
        if (r.type === 'disksFailed') throw new ProtocolFailure('Internal', `VM ${this.name}: cannot close its disks: ${r.message}`);
      }
      const t0 = performance.now();
      try {
        this.tree.delete(snap, plan);
      } finally {
        for (const l of locks) l.release();
        if (hold && this.worker) {
          this.relockDisks();
          const r = await this.call({ type: 'attachDisks', disks: this.def.disks.map((d, index) => ({ index, path: d.path })) }, ['disksAttached', 'disksFailed']);
          if (r.type === 'disksFailed') {
            this.persisted.lastError = `its disks could not be opened again after snapshot ${name} was deleted: ${r.message}`;
            this.env.log(`vm ${this.name}: ${this.persisted.lastError}; powering it off`);
            await this.powerOff();
          }
        }
      }
      this.env.log(`vm ${this.name}: deleted snapshot ${snap.name} (${plan.length} layer merges, ${Math.round(performance.now() - t0)} ms${hold ? ', guest held meanwhile' : ''})`);
    });
  }

  /** Builds the machine in a short-lived worker to read its device tree. */
  dtb(): Promise<Uint8Array> {
    // The disks are opened read-only: the tree does not depend on it, and a VM that runs meanwhile
    // keeps its images to itself (a qcow2 image has one writer of its tables).
    const config = this.machineConfig();
    const init: WorkerInit = { mode: 'dtb', vmName: this.name, config: { ...config, disks: config.disks.map((d) => ({ ...d, readonly: true })) }, vmctlVersion: this.env.version };
    const w = this.env.threads.acquire();
    return new Promise((resolve, reject) => {
      let result: Uint8Array | null = null;
      let fatal: string | null = null;
      const settle = (): void => {
        w.off('message', onMessage);
        w.off('error', onError);
        w.off('exit', settle);
        if (result) resolve(result);
        else reject(new ProtocolFailure('StartFailed', `cannot build VM ${this.name}: ${fatal ?? 'the worker ended without a device tree'}`));
      };
      const onMessage = (m: FromWorker): void => {
        if (m.type === 'dtb') result = m.data;
        if (m.type === 'fatal') fatal = m.message;
        if (m.type === 'closed') {
          this.env.threads.release(w);
          settle();
        }
      };
      const onError = (e: Error): void => { fatal = e.message; };
      w.on('message', onMessage);
      w.on('error', onError);
      w.on('exit', settle);
      w.postMessage({ type: 'init', init } satisfies ToWorker);
    });
  }
}

function sleep(ms: number): Promise<void> {
  // Clamped to setTimeout's range (a client may send any number).
  return new Promise((r) => setTimeout(r, Math.max(0, Math.min(ms, 2 ** 31 - 1))).unref());
}
