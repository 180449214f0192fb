// Drives one machine inside its worker thread: run a slice, yield to the event loop so control
// messages (console input, pause, stop) get through, and sleep while every hart waits for an
// interrupt, so an idle VM costs almost no host CPU.

import type { MachineHost, PowerEvent } from '../board/machine-types.js';
import type { FromWorker, ToWorker } from './messages.js';

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

export class ConsoleBatcher implements MachineHost {
  private chunks: Uint8Array[] = [];
  private size = 0;
  power: PowerEvent | null = null;

  constructor(private readonly post: (m: FromWorker) => void) {}

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
    this.post({ type: 'log', message });
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
  private finished = false;
  /** Figures go out every STATS_EVERY_MS whatever the machine does (also while paused: they
   *  show that nothing runs then). */
  private statsTimer: NodeJS.Timeout | null = null;

  constructor(
    private readonly machine: RunnableMachine,
    private readonly host: ConsoleBatcher,
    private readonly post: (m: FromWorker) => void,
    private readonly onFinished: () => void,
  ) {}

  start(): void {
    this.machine.onWake = () => {
      // Something for hart 0 or a device came from another hart's thread: look now, not at the
      // next timer.
      if (!this.paused && !this.throttled && !this.finished && this.timer) this.schedule(0);
    };
    this.schedule(0);
    this.statsTimer = setInterval(() => {
      this.post({ type: 'stats', instructionsRetired: this.machine.instructionsRetired(), hartInstructions: this.machine.hartInstructions() });
    }, STATS_EVERY_MS);
  }

  handle(msg: ToWorker): void {
    if (this.finished) return;
    switch (msg.type) {
      case 'input':
        this.machine.consoleInput(msg.data);
        // Wake an idle machine now rather than at its next timer.
        if (!this.paused && !this.throttled && this.timer) this.schedule(0);
        break;
      case 'pause':
        if (!this.paused) {
          this.paused = true;
          this.cancel();
          this.machine.pauseClock();
        }
        this.post({ type: 'paused' });
        break;
      case 'resume':
        if (this.paused) {
          this.paused = false;
          this.machine.resumeClock();
          if (this.throttled) this.machine.holdHarts(true);
          else this.schedule(0);
        }
        this.post({ type: 'resumed' });
        break;
      case 'throttle':
        if (this.throttled !== msg.on && !this.paused) this.machine.holdHarts(msg.on);
        this.throttled = msg.on;
        if (msg.on) this.cancel();
        else if (!this.paused) this.schedule(0);
        break;
      case 'stop':
        this.finish();
        break;
    }
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
    if (this.paused || this.throttled || this.finished) return;
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
    if (r === 'halted' || this.host.power) {
      if (this.host.power) this.post({ type: 'power', event: this.host.power });
      this.finish();
      return;
    }
    if (r === 'running') {
      this.schedule(0);
      return;
    }
    // Round up: waking a fraction of a millisecond early would find the timer not yet due and
    // spin through setImmediate until it is.
    const wait = this.machine.idleTimeoutMs();
    this.schedule(Math.min(Number.isFinite(wait) ? Math.max(1, Math.ceil(wait)) : MAX_IDLE_SLEEP_MS, MAX_IDLE_SLEEP_MS));
  };

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
      this.machine.close();
    } catch (e) {
      this.post({ type: 'fatal', message: `closing the machine failed: ${(e as Error).message}` });
    }
    this.post({ type: 'closed', instructionsRetired: instret });
    this.onFinished();
  }
}
