// One registered VM as the daemon sees it: its definition, its persisted state, and while it runs
// the worker thread that hosts its machine. All state changes go through here and are persisted
// atomically before they are announced.

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Worker } from 'node:worker_threads';
import type { MachineConfig, PowerEvent } from '../board/machine-types.js';
import type { VmDefinition } from '../config/vm-definition.js';
import { DiskError } from '../disk/errors.js';
import { acquireDiskLocks, type DiskLock } from '../disk/lock.js';
import { FileRefused, readRegular } from '../host/regular-file.js';
import { ProtocolFailure, type PowerInfo, type VmInfo, type VmState } from '../protocol/messages.js';
import type { FromWorker, ToWorker, WorkerInit } from '../vm/messages.js';
import { writeFileAtomic } from './atomic.js';
import type { VmThreads } from './vm-threads.js';
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
  /** `reason: 'delete'`: the VM is being stopped because it is being deleted (a `deleted` event follows). */
  | { event: 'state'; data: { state: VmState; bootId: number; previous: VmState; reason?: 'delete' } }
  | { event: 'console'; data: { bootId: number; data: string } }
  | { event: 'power'; data: { bootId: number } & PowerInfo };

export interface InstanceEnv {
  /** VMCTL_HOME (recorded in disk locks, so `vmctl disk info` can say which daemon holds an image). */
  readonly home: string;
  /** The VMs' worker threads (started, or reused when idle). */
  readonly threads: VmThreads;
  readonly serialLogMaxBytes: number;
  readonly consoleHistoryBytes: number;
  log(msg: string): void;
  /** A VM's worker thread could not be ended (the process cannot exit normally any more). */
  workerLost(vm: string): void;
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
  private history: Buffer[] = [];
  private historySize = 0;
  private stopping = false;
  /** Set by powerOff('delete'): the VM is stopped in order to be deleted (clients say so). */
  private deleting = false;
  /** Failed serial.log writes this boot (only the first is logged as it happens). */
  private serialErrors = 0;
  private workerDone: Promise<void> = Promise.resolve();
  /** Set when the current boot's thread is being terminated: it is not reused. */
  private terminating = false;
  /** Ends the current boot as if its worker had exited, when the worker cannot be ended. */
  private abandonWorker: ((why: string) => void) | null = null;
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
    return JSON.parse(readRegular(f, { maxBytes: MAX_STATE_FILE_BYTES }).toString('utf8')) as PersistedState;
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
    this.listener({ event: 'state', data: { state: s, bootId: this.persisted.bootId, previous, ...(this.deleting ? { reason: 'delete' as const } : {}) } });
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
    try {
      // Opened without blocking: a serial.log replaced by a FIFO is refused here, naming it.
      // serial.index records where each boot's output starts in serial.log (vmctl logs --boot).
      this.serial ??= new SerialLog(this.dir, this.env.serialLogMaxBytes, (e) => this.env.log(`vm ${this.name}: writing serial.index failed: ${e.message}`));
    } catch (e) {
      this.releaseDiskLocks();
      return Promise.reject(e instanceof FileRefused ? new ProtocolFailure('StartFailed', `VM ${this.name} failed to start: its serial log ${e.message}`) : e);
    }
    p.bootId += 1;
    p.startedAt = new Date().toISOString();
    p.lastError = null;
    this.history = [];
    this.historySize = 0;
    this.stopping = false;
    this.serialErrors = 0;
    this.setState('starting');
    this.serial!.beginBoot(p.bootId, Date.parse(p.startedAt));
    const init: WorkerInit = { mode: 'run', vmName: this.name, config: this.machineConfig() };
    let worker: Worker;
    try {
      worker = this.env.threads.acquire();
    } catch (e) {
      this.releaseDiskLocks();
      this.serialFlushClose();
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
            break;
          case 'paused':
          case 'resumed':
          case 'dtb':
            break;
          case 'closed':
            // The machine's last message (src/vm/worker.ts): the thread lives on.
            closed = true;
            p.instructionsRetired = m.instructionsRetired;
            end(null, null);
            break;
          case 'fatal':
            fatal = m.message;
            this.env.log(`vm ${this.name}: ${m.message}`);
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
        };
        this.abandonWorker = (why) => end(null, why);
      });
      worker.postMessage({ type: 'init', init } satisfies ToWorker);
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
      // Once per boot in the log (a full disk would otherwise log every chunk); counted at the end.
      if (this.serialErrors++ === 0) this.env.log(`vm ${this.name}: writing serial.log failed: ${(e as Error).message}`);
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

  /** Ends the VM within about a second, whatever the guest does. `why: 'delete'` marks its state
   *  changes as part of a deletion, so that a client waiting on it does not report a mere stop. */
  async powerOff(why?: 'delete'): Promise<void> {
    const w = this.worker;
    if (!w) return;
    if (why === 'delete') this.deleting = true;
    this.stopping = true;
    if (this.state !== 'stopping') this.setState('stopping');
    this.send({ type: 'stop' });
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

  /** Builds the machine in a short-lived worker to read its device tree. */
  dtb(): Promise<Uint8Array> {
    const init: WorkerInit = { mode: 'dtb', vmName: this.name, config: this.machineConfig() };
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
