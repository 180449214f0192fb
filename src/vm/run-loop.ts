// Drives one machine inside its worker thread: run a slice, yield to the event loop so control
// messages (console input, pause, stop) get through, and sleep while every hart waits for an
// interrupt, so an idle VM costs almost no host CPU.

import type { MachineHost, MachineState, NicAttachment, PowerEvent } from '../board/machine-types.js';
import type { NetBackend } from '../net/nic.js';
import { COLLECT_EVERY_MS, Throttle } from '../board/throttle.js';
import { LogLimiter } from './log-limiter.js';
import { writeMachineState, type HostSideState } from './machine-state.js';
import type { DiskSwitch, FromWorker, MemoryFigures, ToWorker } from './messages.js';
import type { DiskIo } from '../devices/virtio/blk.js';

/** The part of VirtMachine (src/board/virt.ts) the run loop uses. */
export interface RunnableMachine {
  run(budgetMs: number): 'running' | 'idle' | 'halted';
  idleTimeoutMs(): number;
  consoleInput(bytes: Uint8Array): void;
  pauseClock(): void;
  resumeClock(): void;
  /** Holds (or releases) the harts that run on other threads; the clock runs on. */
  holdHarts(on: boolean): void;
  instructionsRetired(): number;
  /** What the harts' translators did (logged when the VM stops). */
  jitStats(): { describe(instret: number): string };
  /** Makes every completed disk write durable (fsync). */
  flushDisks(): void;
  reopenDisks(disks: readonly DiskSwitch[], onCurrent?: boolean): { flush(): void }[];
  detachDisks(): void;
  attachDisks(disks: readonly DiskSwitch[]): void;
  saveState(copyRam: boolean): MachineState;
  memoryFigures(): MemoryFigures;
  diskIo(): DiskIo[];
  /** Moves the balloon (no-op without one). */
  setMemoryTarget(bytes: number): void;
  /** Instructions retired per hart, by hart id. */
  hartInstructions(): number[];
  close(): void;
  /** Set by the run loop: the machine calls it when it wants a tick soon (it may be idle). */
  onWake: () => void;
}

/** One slice of guest execution between two looks at the message queue. */
const SLICE_MS = 15;
/** Longest sleep while idle, even with no timer armed: keeps the loop observable. */
const MAX_IDLE_SLEEP_MS = 250;
const STATS_EVERY_MS = 1000;
/** Console bytes are batched per slice; a chatty guest is flushed sooner. */
const CONSOLE_FLUSH_BYTES = 64 * 1024;
/** onIdle is called once no slice has used its whole budget for this long. */
const QUIET_MS = 1000;

export class ConsoleBatcher implements MachineHost {
  private chunks: Uint8Array[] = [];
  private size = 0;
  power: PowerEvent | null = null;
  /** Set by the worker: the backends of the VM's NICs (src/vm/networks.ts). */
  openNic: ((index: number, nic: NicAttachment) => NetBackend) | undefined;
  /** Set by the worker: wakes the run loop. */
  onWake: () => void = () => {};
  /** Device messages, rate-limited per device on their way to the daemon's log. */
  private readonly logs: LogLimiter;
  /** RAM chunks were dropped since the last collection. */
  released = false;

  constructor(private readonly post: (m: FromWorker) => void) {
    this.logs = new LogLimiter((message) => post({ type: 'log', message }));
  }

  wake(): void {
    this.onWake();
  }

  consoleOutput(bytes: Uint8Array): void {
    // The machine may reuse its buffer: copy.
    this.chunks.push(bytes.slice());
    this.size += bytes.length;
    if (this.size >= CONSOLE_FLUSH_BYTES) this.flush();
  }

  powerEvent(ev: PowerEvent): void {
    if (!this.power) this.power = ev;
  }

  log(message: string): void {
    this.logs.log(message);
  }

  /** Reports the messages held back by the rate limit (of windows that are over, or all: `final`). */
  flushLogs(final = false): void {
    this.logs.flush(final);
  }

  memoryReleased(): void {
    this.released = true;
  }

  flush(): void {
    if (this.size === 0) return;
    const out = new Uint8Array(this.size);
    let o = 0;
    for (const c of this.chunks) {
      out.set(c, o);
      o += c.length;
    }
    this.chunks = [];
    this.size = 0;
    this.post({ type: 'console', data: out });
  }
}

export class RunLoop {
  private timer: NodeJS.Timeout | null = null;
  private immediate: NodeJS.Immediate | null = null;
  private paused = false;
  /** Held back by flow control; unlike `paused`, the guest's clock keeps running. */
  private throttled = false;
  /** Held while the disks are detached (their files change); the clock stands still. */
  private held = false;
  private finished = false;
  /** Figures go out every STATS_EVERY_MS whatever the machine does (also while paused: they
   *  show that nothing runs then). */
  private statsTimer: NodeJS.Timeout | null = null;
  /** A state being written from the live RAM: the machine must not run until it is done. */
  private writing: Promise<void> | null = null;
  private readonly collectDue = new Throttle(COLLECT_EVERY_MS);
  private readonly idleCallDue = new Throttle(COLLECT_EVERY_MS);
  /** When a slice last used its whole budget (the guest was busy). */
  private lastRunning = 0;

  constructor(
    private readonly machine: RunnableMachine,
    private readonly host: ConsoleBatcher,
    private readonly post: (m: FromWorker) => void,
    private readonly onFinished: () => void,
    private readonly vmctlVersion = '',
    /** A full garbage collection (the worker's `gc`): dropped chunks only leave the process once
     *  collected, and nothing else makes V8 collect soon in a thread that allocates little. */
    private readonly collect: () => void = () => {},
    /** The VM's host side as a state records it, taken at the same instant as the machine's. */
    private readonly hostSide: () => HostSideState = () => ({}),
    /** Called while the guest is quiet (no slice used its whole budget for QUIET_MS; at most
     *  every COLLECT_EVERY_MS): the thread's heap may be collected then, when a pause costs the
     *  guest nothing (collectIfGrown). */
    private readonly onIdle: () => void = () => {},
  ) {}

  start(): void {
    this.machine.onWake = () => {
      // Something for hart 0 or a device came from another hart's thread: look now, not at the
      // next timer.
      if (!this.paused && !this.throttled && !this.finished && this.timer) this.schedule(0);
    };
    this.schedule(0);
    this.statsTimer = setInterval(() => {
      this.postStats();
      this.host.flushLogs();
    }, STATS_EVERY_MS);
  }

  /** Something outside the harts (a received frame) needs the machine: if it sleeps idle, run
   *  it now rather than at its next timer. */
  wake(): void {
    if (this.timer !== null && !this.paused && !this.throttled && !this.finished) this.schedule(0);
  }

  handle(msg: ToWorker): void {
    if (this.finished) return;
    switch (msg.type) {
      case 'input':
        this.machine.consoleInput(msg.data);
        // Wake an idle machine now rather than at its next timer.
        if (!this.paused && !this.throttled && !this.held && this.timer) this.schedule(0);
        break;
      case 'pause':
        if (!this.paused) {
          this.paused = true;
          this.cancel();
          if (!this.held) this.machine.pauseClock();
        }
        this.post({ type: 'paused' });
        break;
      case 'resume':
        if (this.writing) {
          void this.writing.then(() => this.handle(msg));
          break;
        }
        if (this.paused) {
          this.paused = false;
          if (!this.held) {
            this.machine.resumeClock();
            if (this.throttled) this.machine.holdHarts(true);
            else this.schedule(0);
          }
        }
        this.post({ type: 'resumed' });
        break;
      case 'throttle':
        if (this.throttled !== msg.on && !this.paused && !this.held) this.machine.holdHarts(msg.on);
        this.throttled = msg.on;
        if (msg.on) this.cancel();
        else if (!this.paused && !this.held) this.schedule(0);
        break;
      case 'stop':
        this.finish();
        break;
      case 'reset':
        // As a reset through the test finisher: the first power event of a boot is the one that counts.
        this.host.powerEvent({ kind: 'reset', source: 'vmctl' });
        this.post({ type: 'power', event: this.host.power! });
        this.finish();
        break;
      case 'writeState':
        this.writeState(msg.path);
        break;
      case 'snapshot':
        this.snapshot(msg.statePath, msg.disks);
        break;
      case 'detachDisks':
        try {
          this.machine.flushDisks();
          this.hold(true);
          this.machine.detachDisks();
          this.post({ type: 'disksDetached' });
        } catch (e) {
          this.post({ type: 'disksFailed', message: (e as Error).message });
        }
        break;
      case 'attachDisks':
        try {
          this.machine.attachDisks(msg.disks);
        } catch (e) {
          // The guest stays held: its disks are not there. The daemon powers it off.
          this.post({ type: 'disksFailed', message: (e as Error).message });
          break;
        }
        this.hold(false);
        this.post({ type: 'disksAttached' });
        break;
      case 'memoryTarget':
        this.machine.setMemoryTarget(msg.bytes);
        // A sleeping guest must see the configuration change now.
        this.wake();
        this.postStats();
        break;
    }
  }

  private hold(on: boolean): void {
    if (this.held === on) return;
    this.held = on;
    if (on) {
      this.cancel();
      if (!this.paused) this.machine.pauseClock();
    } else if (!this.paused) {
      this.machine.resumeClock();
      if (this.throttled) this.machine.holdHarts(true);
      else this.schedule(0);
    }
  }

  /** Takes a snapshot between two slices: nothing of the guest runs while this handler does,
   *  which is the whole pause; the state (from a copy of RAM) is written while the guest runs on. */
  private snapshot(statePath: string | null, disks: readonly DiskSwitch[]): void {
    const t0 = performance.now();
    let state: MachineState | null;
    let host: HostSideState = {};
    let oldTops: { flush(): void }[];
    try {
      state = statePath !== null ? this.machine.saveState(true) : null;
      if (state !== null) host = this.hostSide();
      oldTops = this.machine.reopenDisks(disks, true);
    } catch (e) {
      this.post({ type: 'snapshotFailed', message: (e as Error).message });
      return;
    }
    // The disks have switched. The old top layers, read-only from now on, are made durable
    // (fsync) before the guest goes on: part of the pause, as it blocks this thread.
    try {
      for (const t of oldTops) t.flush();
    } catch (e) {
      this.post({ type: 'log', message: `snapshot: flushing the old top layers failed: ${(e as Error).message}` });
    }
    this.post({ type: 'snapshotTaken', pauseMs: performance.now() - t0 });
    if (state === null || statePath === null) return;
    const path = statePath;
    const s = state;
    // The guest runs on meanwhile (its next slice is scheduled already); the state is written
    // from the RAM copy, compressed on libuv's threads.
    void (async () => {
      try {
        const w = await writeMachineState(path, s, this.vmctlVersion, host);
        this.post({ type: 'stateWritten', bytes: w.bytes, ms: performance.now() - t0 });
      } catch (e) {
        this.post({ type: 'stateFailed', message: (e as Error).message });
      }
    })();
  }

  /** Writes the paused machine's state (disks fsynced first: the state and the disks then
   *  survive a host crash together). */
  private writeState(path: string): void {
    if (!this.paused || this.writing) {
      this.post({ type: 'stateFailed', message: this.writing ? 'a state is already being written' : 'the machine is not paused' });
      return;
    }
    const t0 = performance.now();
    this.writing = (async () => {
      try {
        this.machine.flushDisks();
        const w = await writeMachineState(path, this.machine.saveState(false), this.vmctlVersion, this.hostSide());
        this.post({ type: 'stateWritten', bytes: w.bytes, ms: performance.now() - t0 });
      } catch (e) {
        this.post({ type: 'stateFailed', message: (e as Error).message });
      } finally {
        this.writing = null;
      }
    })();
  }

  private cancel(): void {
    if (this.timer) clearTimeout(this.timer);
    if (this.immediate) clearImmediate(this.immediate);
    this.timer = null;
    this.immediate = null;
  }

  private schedule(ms: number): void {
    this.cancel();
    if (ms <= 0) this.immediate = setImmediate(this.tick);
    else this.timer = setTimeout(this.tick, ms);
  }

  private readonly tick = (): void => {
    this.timer = null;
    this.immediate = null;
    if (this.paused || this.throttled || this.held || this.finished) return;
    let r: 'running' | 'idle' | 'halted';
    try {
      r = this.machine.run(SLICE_MS);
    } catch (e) {
      this.host.flush();
      this.post({ type: 'fatal', message: `machine error: ${(e as Error).stack ?? String(e)}` });
      this.finish();
      return;
    }
    this.host.flush();
    const now = Date.now();
    if (this.host.released && this.collectDue.take()) {
      this.host.released = false;
      this.collect();
    }
    if (r === 'halted' || this.host.power) {
      if (this.host.power) this.post({ type: 'power', event: this.host.power });
      this.finish();
      return;
    }
    if (r === 'running') {
      this.lastRunning = now;
      this.schedule(0);
      return;
    }
    // Quiet for a while (a slice that used its whole budget resets it): not only hart 0 waiting
    // while hart threads boot, which a pause of this thread (it serves their devices) would slow.
    if (now - this.lastRunning >= QUIET_MS && this.idleCallDue.take()) {
      this.onIdle();
    }
    // Round up: waking a fraction of a millisecond early would find the timer not yet due and
    // spin through setImmediate until it is.
    const wait = this.machine.idleTimeoutMs();
    this.schedule(Math.min(Number.isFinite(wait) ? Math.max(1, Math.ceil(wait)) : MAX_IDLE_SLEEP_MS, MAX_IDLE_SLEEP_MS));
  };

  private postStats(): void {
    this.post({ type: 'stats', instructionsRetired: this.machine.instructionsRetired(), hartInstructions: this.machine.hartInstructions(), memory: this.machine.memoryFigures(), disks: this.machine.diskIo() });
  }

  /** Powers off: disks are flushed and closed by machine.close(). */
  private finish(): void {
    if (this.finished) return;
    this.finished = true;
    this.cancel();
    if (this.statsTimer) clearInterval(this.statsTimer);
    this.host.flush();
    let instret = 0;
    try {
      instret = this.machine.instructionsRetired();
      this.host.log(`translator: ${this.machine.jitStats().describe(instret)}`);
      this.machine.close();
    } catch (e) {
      this.post({ type: 'fatal', message: `closing the machine failed: ${(e as Error).message}` });
    }
    this.host.flushLogs(true);
    this.post({ type: 'closed', instructionsRetired: instret });
    this.onFinished();
  }
}
