// One registered VM as the daemon sees it: its definition, its persisted state, and while it runs
// the worker thread that hosts its machine. All state changes go through here and are persisted
// atomically before they are announced.

import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import type { MachineConfig, NicAttachment, PortForward, PowerEvent } from '../board/machine-types.js';
import { defaultNicCount } from '../board/virtio-slots.js';
import { defaultMac } from '../net/mac.js';
import type { VmDefinition } from '../config/vm-definition.js';
import { DiskError } from '../disk/errors.js';
import { formatSize } from '../config/units.js';
import { imageInfo, lockDiskChains } from '../disk/image.js';
import type { DiskLock } from '../disk/lock.js';
import { ProtocolFailure, type DiskInfo, type MemoryInfo, type PortInfo, type PowerInfo, type StopPath, type VmInfo, type VmState } from '../protocol/messages.js';
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
}

export type VmEvent =
  /** `restarting`: this `stopped` is followed by a new boot (a guest or `vmctl reset`, `vmctl
   *  restart`); consoles and waiters stay attached instead of ending with the VM. */
  | { event: 'state'; data: { state: VmState; bootId: number; previous: VmState; restarting?: true } }
  | { event: 'console'; data: { bootId: number; data: string } }
  | { event: 'power'; data: { bootId: number } & PowerInfo };

export interface InstanceEnv {
  /** VMCTL_HOME (recorded in disk locks, so `vmctl disk info` can say which daemon holds an image). */
  readonly home: string;
  readonly workerPath: string;
  /** The hart thread script, when not the one next to the VM worker's bundle. */
  readonly hartWorkerPath?: string;
  readonly serialLogMaxBytes: number;
  readonly consoleHistoryBytes: number;
  log(msg: string): void;
}

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
  /** Set by powerOff(): a stop that was waiting for the guest reports a power-off instead. */
  private poweredOff = false;
  /** Set while restart() stops the VM: the `stopped` it announces is followed by a new boot. */
  private restarting = false;
  /** The boot a reset started (guest or `vmctl reset`); reset() waits for it. */
  private reboot: Promise<void> | null = null;
  private workerDone: Promise<void> = Promise.resolve();
  /** The worker's last memory figures (null while it does not run) and when they came. */
  private memory: MemoryFigures | null = null;
  private memoryAt = 0;
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

  private setState(s: VmState, restarting = false): void {
    const previous = this.persisted.state;
    if (previous === s) return;
    this.persisted.state = s;
    this.save();
    this.env.log(`vm ${this.name}: ${previous} -> ${s}${restarting ? ' (restarting)' : ''}`);
    this.listener({ event: 'state', data: { state: s, bootId: this.persisted.bootId, previous, ...(restarting ? { restarting: true as const } : {}) } });
  }

  info(): VmInfo {
    const p = this.persisted;
    const d = this.def;
    const running = p.state === 'running' || p.state === 'paused' || p.state === 'stopping' || p.state === 'starting';
    return {
      name: d.name,
      uuid: p.uuid,
      state: p.state,
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
      disks: d.disks.map((x) => this.diskInfo(x.name, x.path, x.readonly)),
      shutdownConsole: d.shutdown.console ?? null,
      lastPower: p.lastPower,
      lastError: p.lastError,
      instructionsRetired: p.instructionsRetired,
      ephemeral: p.ephemeral,
      directory: this.dir,
    };
  }

  /** A disk as the file is now (also an image that existed before `create`). */
  private diskInfo(name: string, path: string, readonly: boolean): DiskInfo {
    let sizes: { virtualBytes: number | null; allocatedBytes: number | null } = { virtualBytes: null, allocatedBytes: null };
    try {
      const i = imageInfo(path);
      sizes = { virtualBytes: i.virtualBytes, allocatedBytes: i.allocatedBytes };
    } catch { /* missing or unreadable: the sizes say null */ }
    return { name, path, readonly, ...sizes, createdByVmctl: this.persisted.createdDisks.includes(path) };
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
      nics: this.nics(),
      ...(d.balloon.enabled ? {
        balloon: { deflateOnOom: d.balloon.deflateOnOom, freePageReporting: d.balloon.freePageReporting, statsIntervalMs: d.balloon.statsIntervalMs },
      } : {}),
    };
  }

  /** The VM's network cards: without a `network:` key, one on user-mode NAT where a virtio
   *  slot is left (as QEMU and VirtualBox default to). */
  private nics(): NicAttachment[] {
    if (defaultNicCount(this.def.disks.length, this.def.balloon.enabled) === 0) return [];
    return [{ mac: defaultMac(this.name, 0), network: { mode: 'user', forwards: [], restrict: false } }];
  }

  // ---- lifecycle ----

  async start(): Promise<void> {
    const s = this.state;
    if (s !== 'stopped' && s !== 'aborted') throw new ProtocolFailure('WrongState', `VM ${this.name} is ${s}; only a stopped or aborted VM can be started`);
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
    this.poweredOff = false;
    this.memory = null;
    this.setState('starting');
    // serial.index records where this boot's output starts in serial.log (vmctl logs --boot).
    this.serial ??= new SerialLog(this.dir, this.env.serialLogMaxBytes, (e) => this.env.log(`vm ${this.name}: writing serial.index failed: ${e.message}`));
    this.serial.beginBoot(p.bootId, Date.parse(p.startedAt));
    const init: WorkerInit = { mode: 'run', vmName: this.name, config: this.machineConfig(), hartWorkerPath: this.env.hartWorkerPath };
    let worker: Worker;
    try {
      worker = new Worker(this.env.workerPath, { workerData: init, name: `vm ${this.name}` });
    } catch (e) {
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
    let refused = false;
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
            refused = m.startRefused === true;
            this.env.log(`vm ${this.name}: ${m.message}`);
            break;
          case 'port-reply':
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
            // A refusal for the host's state (a forward's port is taken) is "wrong state", as a disk in use.
            reject(new ProtocolFailure(refused ? 'WrongState' : 'StartFailed', `VM ${this.name} ${refused ? 'cannot start' : 'failed to start'}: ${p.lastError}`));
          } else if (this.stopping || (closed && fatal === null)) {
            this.setState('stopped', rebooting || this.restarting);
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
        });
      });
    });
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

  /** Pauses a running VM; false when it already was paused (the asked-for state holds). */
  async pause(): Promise<boolean> {
    if (this.state === 'paused') return false;
    if (this.state !== 'running') throw new ProtocolFailure('WrongState', `VM ${this.name} is ${this.state}; only a running VM can be paused`);
    await this.request('pause', 'paused');
    this.setState('paused');
    return true;
  }

  /** Resumes a paused VM; false when it already was running. */
  async resume(): Promise<boolean> {
    if (this.state === 'running') return false;
    if (this.state !== 'paused') throw new ProtocolFailure('WrongState', `VM ${this.name} is ${this.state}; only a paused VM can be resumed`);
    await this.request('resume', 'resumed');
    this.setState('running');
    return true;
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
    return new Promise((resolve, reject) => {
      const onMsg = (r: FromWorker): void => {
        if (r.type === 'port-reply' && r.id === m.id) { cleanup(); resolve(r); }
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
    this.env.log(`vm ${this.name}: memory target ${formatSize(bytes)} (balloon ${formatSize(d.memoryBytes - bytes)}), set by ${by}`);
    this.send({ type: 'memoryTarget', bytes });
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
  async stop(force: boolean, timeoutMs: number): Promise<StopPath> {
    if (!this.worker) {
      if (this.state === 'aborted') this.setState('stopped');
      return 'already-stopped';
    }
    const cmd = this.def.shutdown.console;
    if (!force && cmd !== undefined && this.state !== 'starting') {
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

  /** Ends the VM within about a second, whatever the guest does. */
  async powerOff(): Promise<void> {
    const w = this.worker;
    if (!w) return;
    this.stopping = true;
    this.poweredOff = true;
    if (this.state !== 'stopping') this.setState('stopping');
    this.send({ type: 'stop' });
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
