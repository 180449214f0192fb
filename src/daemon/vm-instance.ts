// One registered VM as the daemon sees it: its definition, its persisted state, and while it runs
// the worker thread that hosts its machine. All state changes go through here and are persisted
// atomically before they are announced.

import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import type { MachineConfig, PowerEvent } from '../board/machine-types.js';
import type { VmDefinition } from '../config/vm-definition.js';
import { DiskError } from '../disk/errors.js';
import { acquireDiskLocks, type DiskLock } from '../disk/lock.js';
import { ProtocolFailure, type PowerInfo, type VmFigures, type VmInfo, type VmState } from '../protocol/messages.js';
import type { Scheduler } from './scheduler.js';
import type { FromWorker, ToWorker, WorkerInit } from '../vm/messages.js';
import { writeFileAtomic } from './atomic.js';
import { SerialLog } from './serial-log.js';

export interface PersistedState {
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
  | { event: 'state'; data: { state: VmState; bootId: number; previous: VmState } }
  | { event: 'console'; data: { bootId: number; data: string } }
  | { event: 'power'; data: { bootId: number } & PowerInfo }
  | { event: 'sched'; data: Record<string, unknown> };

export interface InstanceEnv {
  /** VMCTL_HOME (recorded in disk locks, so `vmctl disk info` can say which daemon holds an image). */
  readonly home: string;
  readonly workerPath: string;
  /** The hart thread script, when not the one next to the VM worker's bundle. */
  readonly hartWorkerPath?: string;
  readonly serialLogMaxBytes: number;
  readonly consoleHistoryBytes: number;
  /** The daemon's CPU scheduler: every running hart gets a slot in it. */
  readonly scheduler?: Scheduler;
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
  private workerDone: Promise<void> = Promise.resolve();
  listener: (e: VmEvent) => void = () => {};
  /** Instructions retired (in all and per hart) at the last two figures from the worker, for MIPS. */
  private rate: { at: number; total: number; harts: readonly number[] }[] = [];

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
    return JSON.parse(readFileSync(f, 'utf8')) as PersistedState;
  }

  save(): void {
    writeFileAtomic(VmInstance.stateFile(this.dir), `${JSON.stringify(this.persisted, null, 2)}\n`);
  }

  private setState(s: VmState): void {
    const previous = this.persisted.state;
    if (previous === s) return;
    this.persisted.state = s;
    this.save();
    this.env.log(`vm ${this.name}: ${previous} -> ${s}`);
    this.listener({ event: 'state', data: { state: s, bootId: this.persisted.bootId, previous } });
  }

  info(): VmInfo {
    const p = this.persisted;
    const d = this.def;
    const running = p.state === 'running' || p.state === 'paused' || p.state === 'stopping' || p.state === 'starting';
    return {
      name: d.name,
      state: p.state,
      cpus: d.cpus,
      memoryBytes: d.memoryBytes,
      cpuShares: d.cpuShares,
      cpuCap: d.cpuCap,
      ...this.figures(),
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
    };
  }

  // ---- lifecycle ----

  async start(): Promise<void> {
    const s = this.state;
    if (s !== 'stopped' && s !== 'aborted') throw new ProtocolFailure('WrongState', `VM ${this.name} is ${s}; only a stopped or aborted VM can be started`);
    await this.boot();
  }

  private boot(): Promise<void> {
    // A disk image is used by one writing VM or by any number of VMs that attach it read-only, also
    // across daemons (src/disk/lock.ts); refused before anything changes. A guest reboot keeps the
    // locks it already holds, so no other VM can take a disk in between.
    try {
      if (this.diskLocks.length === 0) this.diskLocks = acquireDiskLocks(this.def.disks, this.name, this.env.home);
    } catch (e) {
      return Promise.reject(e instanceof DiskError ? new ProtocolFailure('WrongState', `VM ${this.name} cannot start: ${e.message}`) : e);
    }
    const p = this.persisted;
    p.bootId += 1;
    p.startedAt = new Date().toISOString();
    p.lastError = null;
    this.history = [];
    this.historySize = 0;
    this.stopping = false;
    this.setState('starting');
    // serial.index records where this boot's output starts in serial.log (vmctl logs --boot).
    this.serial ??= new SerialLog(this.dir, this.env.serialLogMaxBytes, (e) => this.env.log(`vm ${this.name}: writing serial.index failed: ${e.message}`));
    this.serial.beginBoot(p.bootId, Date.parse(p.startedAt));
    // Its harts' host CPU allowance (src/daemon/scheduler.ts).
    const sched = this.env.scheduler;
    const slot = sched?.attach(this.name, this.def.cpus, this.def.cpuShares, this.def.cpuCap);
    this.rate = [];
    const init: WorkerInit = {
      mode: 'run', vmName: this.name, config: this.machineConfig(), hartWorkerPath: this.env.hartWorkerPath,
      ...(sched && slot ? { cpu: { slots: sched.slots.buffer, slot } } : {}),
    };
    let worker: Worker;
    try {
      worker = new Worker(this.env.workerPath, { workerData: init, name: `vm ${this.name}` });
    } catch (e) {
      this.releaseDiskLocks();
      this.serialFlushClose();
      sched?.detach(this.name);
      p.lastError = `cannot start the VM's worker thread: ${(e as Error).message}`;
      this.setState('stopped');
      return Promise.reject(new ProtocolFailure('StartFailed', `VM ${this.name} failed to start: ${p.lastError}`));
    }
    this.worker = worker;
    const bootId = p.bootId;
    let ready = false;
    let closed = false;
    let fatal: string | null = null;
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
            this.rate = [...this.rate.slice(-1), { at: Date.now(), total: m.instructionsRetired, harts: m.hartInstructions }];
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
            this.env.log(`vm ${this.name}: ${m.message}`);
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
          this.env.scheduler?.detach(this.name);
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
            reject(new ProtocolFailure('StartFailed', `VM ${this.name} failed to start: ${p.lastError}`));
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
    if (this.state !== 'running') throw new ProtocolFailure('WrongState', `VM ${this.name} is ${this.state}; only a running VM can be paused`);
    await this.request('pause', 'paused');
    this.setState('paused');
  }

  async resume(): Promise<void> {
    if (this.state === 'running') return;
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
    if (!force && cmd !== undefined && this.state !== 'starting') {
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
    const init: WorkerInit = { mode: 'dtb', vmName: this.name, config: this.machineConfig() };
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
