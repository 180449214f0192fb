// One registered VM as the daemon sees it: its definition, its persisted state, and while it runs
// the worker thread that hosts its machine. All state changes go through here and are persisted
// atomically before they are announced.

import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import type { MachineConfig, PowerEvent } from '../board/machine-types.js';
import type { VmDefinition } from '../config/vm-definition.js';
import { DiskError } from '../disk/errors.js';
import { formatSize, humanSize } from '../config/units.js';
import { MEMORY_WAIT_BEFORE_PAUSE_MS } from '../vm/memory-budget.js';
import { lockDiskChains } from '../disk/image.js';
import type { DiskLock } from '../disk/lock.js';
import { ProtocolFailure, type MemoryInfo, type PauseReason, type PowerInfo, type VmInfo, type VmState } from '../protocol/messages.js';
import type { HostMemory, MemorySlot } from './host-memory.js';
import type { FromWorker, MemoryFigures, ToWorker, WorkerInit } from '../vm/messages.js';
import { writeFileAtomic } from './atomic.js';
import { SerialLog } from './serial-log.js';

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
  /** Why a paused VM is paused: `vmctl pause`, or host memory ran short (absent in older files). */
  pauseReason?: PauseReason | null;
}

export type VmEvent =
  | { event: 'state'; data: { state: VmState; bootId: number; previous: VmState; pauseReason?: PauseReason } }
  | { event: 'memory'; data: Record<string, unknown> & { kind: string } }
  | { event: 'console'; data: { bootId: number; data: string } }
  | { event: 'power'; data: { bootId: number } & PowerInfo };

export interface InstanceEnv {
  /** VMCTL_HOME (recorded in disk locks, so `vmctl disk info` can say which daemon holds an image). */
  readonly home: string;
  readonly workerPath: string;
  readonly serialLogMaxBytes: number;
  readonly consoleHistoryBytes: number;
  log(msg: string): void;
  /** Host memory: admission, and the ledger VM threads take RAM chunks from (host-memory.ts). */
  readonly memory: HostMemory;
  /** The VMs that count against host memory now (running, paused, starting, stopping). */
  committed(except: VmInstance): { name: string; bytes: number }[];
  /** A VM waits for host memory: the balloon policy should look now. */
  memoryShort(vm: VmInstance): void;
}

/** A VM thread's young generation is kept small: the hart allocates next to nothing, and V8's
 *  default (up to 32 MiB of semi-spaces) cost ~10 MiB of RSS per VM for no speed (measured: a
 *  1GiB Linux boot took the same CPU time, 4.1 s median of 3 on this loaded host, either way). */
const WORKER_LIMITS = { maxYoungGenerationSizeMb: 4 };

/** `stop --force` waits this long for the worker to close its disks before terminating it. */
const FORCE_GRACE_MS = 400;

export class VmInstance {
  private worker: Worker | null = null;
  /** Locks on this VM's disk images while its worker lives (src/disk/lock.ts). */
  private diskLocks: DiskLock[] = [];
  private serial: SerialLog | null = null;
  /** Console output of the current boot (tail), for `wait --for-console` and `start --wait-for`. */
  private history: Buffer[] = [];
  private historySize = 0;
  private stopping = false;
  private workerDone: Promise<void> = Promise.resolve();
  /** The worker's last memory figures (null while it does not run) and when they came. */
  private memory: MemoryFigures | null = null;
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

  /** A definition saved (`vmctl edit`) while the VM runs: it applies once the worker has ended
   *  and its disks are released (a guest reboot keeps the running definition and its locks). */
  private nextDef: VmDefinition | null = null;

  constructor(
    public def: VmDefinition,
    readonly dir: string,
    readonly persisted: PersistedState,
    private readonly env: InstanceEnv,
  ) {}

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
    return JSON.parse(readFileSync(f, 'utf8')) as PersistedState;
  }

  save(): void {
    writeFileAtomic(VmInstance.stateFile(this.dir), `${JSON.stringify(this.persisted, null, 2)}\n`);
  }

  private setState(s: VmState, pauseReason: PauseReason | null = null): void {
    const previous = this.persisted.state;
    if (previous === s) return;
    this.persisted.state = s;
    this.persisted.pauseReason = s === 'paused' ? pauseReason : null;
    this.save();
    this.env.log(`vm ${this.name}: ${previous} -> ${s}${s === 'paused' && pauseReason === 'memory' ? ' (host memory is short)' : ''}`);
    this.listener({ event: 'state', data: { state: s, bootId: this.persisted.bootId, previous, ...(s === 'paused' && pauseReason ? { pauseReason } : {}) } });
  }

  /** Why it is paused, while it is. */
  get pauseReason(): PauseReason | null {
    return this.persisted.state === 'paused' ? this.persisted.pauseReason ?? 'user' : null;
  }

  /** Its harts wait for host memory (a guest that touched new memory while the host had none). */
  get waitingForMemory(): boolean {
    return this.waitingForMemorySince !== null;
  }

  info(): VmInfo {
    const p = this.persisted;
    const d = this.def;
    const running = p.state === 'running' || p.state === 'paused' || p.state === 'stopping' || p.state === 'starting';
    return {
      name: d.name,
      uuid: p.uuid,
      state: p.state,
      pauseReason: this.pauseReason,
      cpus: d.cpus,
      memoryBytes: d.memoryBytes,
      memory: this.memoryInfo(),
      uptimeSeconds: running && p.startedAt ? Math.max(0, Math.round((Date.now() - Date.parse(p.startedAt)) / 100) / 10) : 0,
      bootId: p.bootId,
      createdAt: p.createdAt,
      startedAt: p.startedAt,
      firmware: d.boot.firmware.kind === 'file' ? d.boot.firmware.path : d.boot.firmware.kind,
      kernel: d.boot.kernel ?? null,
      initrd: d.boot.initrd ?? null,
      cmdline: d.boot.cmdline,
      disks: d.disks.map((x) => ({
        name: x.name,
        path: x.path,
        readonly: x.readonly,
        sizeBytes: x.sizeBytes ?? null,
        createdByVmctl: p.createdDisks.includes(x.path),
      })),
      shutdownConsole: d.shutdown.console ?? null,
      lastPower: p.lastPower,
      lastError: p.lastError,
      instructionsRetired: p.instructionsRetired,
      ephemeral: p.ephemeral,
      directory: this.dir,
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

  consoleHistory(): Buffer {
    return Buffer.concat(this.history);
  }

  machineConfig(): MachineConfig {
    const d = this.def;
    return {
      memoryBytes: d.memoryBytes,
      cpus: d.cpus,
      firmware: d.boot.firmware,
      kernelPath: d.boot.kernel,
      initrdPath: d.boot.initrd,
      cmdline: d.boot.cmdline,
      disks: d.disks.map((x) => ({ path: x.path, readonly: x.readonly, name: x.name })),
      ...(d.balloon.enabled ? {
        balloon: { deflateOnOom: d.balloon.deflateOnOom, freePageReporting: d.balloon.freePageReporting, statsIntervalMs: d.balloon.statsIntervalMs },
      } : {}),
    };
  }

  // ---- lifecycle ----

  async start(): Promise<void> {
    const s = this.state;
    if (s !== 'stopped' && s !== 'aborted') throw new ProtocolFailure('WrongState', `VM ${this.name} is ${s}; only a stopped or aborted VM can be started`);
    // Checked in the same turn as the state becomes `starting`: two starts at once cannot both
    // pass. A guest reboot keeps its place (boot() without start()).
    this.env.memory.admit(this.name, this.def.memoryBytes, this.env.committed(this));
    await this.boot();
  }

  private boot(): Promise<void> {
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
    p.bootId += 1;
    p.startedAt = new Date().toISOString();
    p.lastError = null;
    this.history = [];
    this.historySize = 0;
    this.stopping = false;
    this.memory = null;
    this.setState('starting');
    // serial.index records where this boot's output starts in serial.log (vmctl logs --boot).
    this.serial ??= new SerialLog(this.dir, this.env.serialLogMaxBytes, (e) => this.env.log(`vm ${this.name}: writing serial.index failed: ${e.message}`));
    this.serial.beginBoot(p.bootId, Date.parse(p.startedAt));
    this.userTarget = this.policyTarget = null;
    this.waitingForMemorySince = null;
    const slot = this.env.memory.attach();
    this.memorySlot = slot;
    const init: WorkerInit = { mode: 'run', vmName: this.name, config: this.machineConfig(), memory: slot };
    let worker: Worker;
    try {
      worker = new Worker(this.env.workerPath, { workerData: init, name: `vm ${this.name}`, resourceLimits: WORKER_LIMITS });
    } catch (e) {
      this.env.memory.detach(slot);
      this.memorySlot = null;
      this.releaseDiskLocks();
      this.serialFlushClose();
      p.lastError = `cannot start the VM's worker thread: ${(e as Error).message}`;
      this.setState('stopped');
      return Promise.reject(new ProtocolFailure('StartFailed', `VM ${this.name} failed to start: ${p.lastError}`));
    }
    this.worker = worker;
    const bootId = p.bootId;
    let ready = false;
    let closed = false;
    let fatal: string | null = null;
    let hostMemoryShort = false;
    let power: PowerEvent | null = null;

    return new Promise<void>((resolve, reject) => {
      worker.on('message', (m: FromWorker) => {
        switch (m.type) {
          case 'ready':
            ready = true;
            this.setState('running');
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
            break;
          case 'paused':
          case 'resumed':
          case 'dtb':
            break;
          case 'closed':
            closed = true;
            p.instructionsRetired = m.instructionsRetired;
            break;
          case 'fatal':
            fatal = m.message;
            hostMemoryShort = m.hostMemoryShort === true;
            this.env.log(`vm ${this.name}: ${m.message}`);
            break;
          case 'memoryWait':
          case 'memoryPaused':
          case 'memoryResumed':
            this.onMemoryWait(m);
            break;
        }
      });
      worker.on('error', (e) => {
        fatal = `worker crashed: ${e.stack ?? e.message}`;
        this.env.log(`vm ${this.name}: ${fatal}`);
      });
      this.workerDone = new Promise<void>((done) => {
        worker.on('exit', (code) => {
          this.worker = null;
          this.env.memory.detach(slot);
          this.memorySlot = null;
          this.waitingForMemorySince = null;
          const rebooting = ready && !this.stopping && closed && fatal === null && power?.kind === 'reset' && !p.ephemeral;
          if (!rebooting) {
            this.releaseDiskLocks(); // the worker closed (fsync'd) its images, or died
            if (this.nextDef) this.redefine(this.nextDef);
          }
          this.serialFlushClose();
          if (!ready) {
            // The machine never came up (a missing kernel, a bad image): the VM stays stopped.
            p.lastError = fatal ?? `worker exited with code ${code} before the machine was ready`;
            this.setState('stopped');
            reject(new ProtocolFailure(hostMemoryShort ? 'InsufficientResources' : 'StartFailed', `VM ${this.name} failed to start: ${p.lastError}`));
          } else if (this.stopping || (closed && fatal === null)) {
            this.setState('stopped');
            if (rebooting) {
              // A guest reboot restarts a long-lived VM (a `run` VM ends instead, like -no-reboot).
              this.env.log(`vm ${this.name}: guest reset; booting again`);
              this.boot().catch((e) => {
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
        });
      });
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
        this.setState('paused', 'memory');
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
      this.env.log(`vm ${this.name}: writing serial.log failed: ${(e as Error).message}`);
    }
    this.history.push(data);
    this.historySize += data.length;
    while (this.historySize > this.env.consoleHistoryBytes && this.history.length > 1) {
      this.historySize -= this.history.shift()!.length;
    }
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

  async pause(): Promise<void> {
    if (this.state === 'paused') return;
    if (this.waitingForMemory) throw new ProtocolFailure('WrongState', `VM ${this.name} is waiting for host memory (its harts are stopped); it cannot be paused until it has it`);
    if (this.state !== 'running') throw new ProtocolFailure('WrongState', `VM ${this.name} is ${this.state}; only a running VM can be paused`);
    await this.request('pause', 'paused');
    this.setState('paused');
  }

  async resume(): Promise<void> {
    if (this.state === 'running') return;
    if (this.pauseReason === 'memory') {
      throw new ProtocolFailure('WrongState', `VM ${this.name} is paused because host memory is short; it runs again by itself once memory is free (stop a VM, or lower the memory target of one with vmctl set --memory-target)`);
    }
    if (this.state !== 'paused') throw new ProtocolFailure('WrongState', `VM ${this.name} is ${this.state}; only a paused VM can be resumed`);
    await this.request('resume', 'resumed');
    this.setState('running');
  }

  /** Sends a control message and waits for its acknowledgement (or the worker's end). */
  private request(type: 'pause' | 'resume', ack: 'paused' | 'resumed'): Promise<void> {
    const w = this.worker;
    if (!w) return Promise.reject(new ProtocolFailure('WrongState', `VM ${this.name} is not running`));
    return new Promise((resolve, reject) => {
      const onMsg = (m: FromWorker) => {
        if (m.type === ack) {
          cleanup();
          resolve();
        }
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
      w.postMessage({ type } satisfies ToWorker);
    });
  }

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
   * `timeoutMs` for the guest to power off; then (or with `force`) powers off at once.
   * Returns which path was taken.
   */
  async stop(force: boolean, timeoutMs: number): Promise<'already-stopped' | 'guest-poweroff' | 'timeout-poweroff' | 'poweroff'> {
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
      const done = await Promise.race([this.workerDone.then(() => true), sleep(timeoutMs).then(() => false)]);
      if (done) {
        // The guest powered off by itself: its own power event stands.
        return 'guest-poweroff';
      }
      await this.powerOff();
      return 'timeout-poweroff';
    }
    await this.powerOff();
    return 'poweroff';
  }

  /** Ends the VM within about a second, whatever the guest does. */
  async powerOff(): Promise<void> {
    const w = this.worker;
    if (!w) return;
    this.stopping = true;
    if (this.state !== 'stopping') this.setState('stopping');
    this.send({ type: 'stop' });
    // A thread waiting for memory would never read the message: let it go on to read it.
    if (this.memorySlot) this.env.memory.cancel(this.memorySlot);
    // The run loop sees the message between two slices (~15 ms) and flushes disks. A worker stuck
    // inside one slice (an emulator bug) is terminated.
    const exited = await Promise.race([this.workerDone.then(() => true), sleep(FORCE_GRACE_MS).then(() => false)]);
    if (!exited) {
      this.env.log(`vm ${this.name}: worker did not stop in ${FORCE_GRACE_MS} ms; terminating it`);
      await w.terminate();
      await this.workerDone;
    }
  }

  /** Waits for the worker to end (after the guest powered off). */
  whenStopped(): Promise<void> {
    return this.workerDone;
  }

  /** Builds the machine in a short-lived worker to read its device tree. */
  dtb(): Promise<Uint8Array> {
    // The disks are opened read-only: the tree does not depend on it, and a VM that runs meanwhile
    // keeps its images to itself (a qcow2 image has one writer of its tables).
    const config = this.machineConfig();
    const init: WorkerInit = { mode: 'dtb', vmName: this.name, config: { ...config, disks: config.disks.map((d) => ({ ...d, readonly: true })) } };
    const w = new Worker(this.env.workerPath, { workerData: init, name: `dtb ${this.name}` });
    return new Promise((resolve, reject) => {
      let result: Uint8Array | null = null;
      let fatal: string | null = null;
      w.on('message', (m: FromWorker) => {
        if (m.type === 'dtb') result = m.data;
        if (m.type === 'fatal') fatal = m.message;
      });
      w.on('error', (e) => { fatal = e.message; });
      w.on('exit', () => {
        if (result) resolve(result);
        else reject(new ProtocolFailure('StartFailed', `cannot build VM ${this.name}: ${fatal ?? 'the worker ended without a device tree'}`));
      });
    });
  }
}

function sleep(ms: number): Promise<void> {
  // Clamped to setTimeout's range (a client may send any number).
  return new Promise((r) => setTimeout(r, Math.max(0, Math.min(ms, 2 ** 31 - 1))).unref());
}
