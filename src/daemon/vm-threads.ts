// The VMs' worker threads (dist/vm-worker.js, src/vm/worker.ts). A thread hosts one machine at a
// time; one whose machine closed cleanly is kept idle for a while and handed the next VM that
// starts, instead of being ended and a new one started.
//
// Why: every new thread is a new JavaScript engine (heap, compiled code, the worker bundle parsed
// and warmed up again), and what glibc's allocator gets back from an ended thread it mostly keeps.
// Measured with 16 ticker VMs started and stopped in rounds, one thread per boot: the daemon's idle
// RSS went 99 -> 128 MB over 40 rounds before it levelled off (its JavaScript heap flat at 8 MB).
// Idle threads are ended after IDLE_MS, and at most MAX_IDLE are kept, so memory comes back once
// VMs stay stopped.

import { Worker } from 'node:worker_threads';

/** Idle threads kept at most (more are ended at once). */
const MAX_IDLE = 16;
/** An idle thread is ended after this long. */
const IDLE_MS = 30_000;
/** A VM thread's young generation is kept small: the hart allocates next to nothing, and V8's
 *  default (up to 32 MiB of semi-spaces) cost ~10 MiB of RSS per VM for no speed (measured: a
 *  1GiB Linux boot took the same CPU time, 4.1 s median of 3 on this loaded host, either way). */
const WORKER_LIMITS = { maxYoungGenerationSizeMb: 4 };

interface Idle {
  readonly worker: Worker;
  readonly timer: NodeJS.Timeout;
  readonly onExit: () => void;
}

export class VmThreads {
  private readonly idle: Idle[] = [];
  private closed = false;

  /** @param onDrained called when the last idle thread has ended (the daemon may be idle now). */
  constructor(private readonly workerPath: string, private readonly onDrained: () => void = () => {}) {}

  get idleCount(): number {
    return this.idle.length;
  }

  /** An idle thread, or a new one. The caller posts its `init` and owns it until it releases it. */
  acquire(): Worker {
    const it = this.idle.pop();
    if (!it) return new Worker(this.workerPath, { name: 'vm', resourceLimits: WORKER_LIMITS });
    clearTimeout(it.timer);
    it.worker.off('exit', it.onExit);
    it.worker.ref();
    return it.worker;
  }

  /** Takes back a thread whose machine closed cleanly (its last message was `closed`). */
  release(worker: Worker): void {
    if (this.closed || this.idle.length >= MAX_IDLE) {
      void worker.terminate();
      return;
    }
    const onExit = (): void => {
      const i = this.idle.findIndex((x) => x.worker === worker);
      if (i >= 0) {
        clearTimeout(this.idle[i].timer);
        this.idle.splice(i, 1);
      }
    };
    const timer = setTimeout(() => {
      onExit();
      void worker.terminate().then(() => { if (this.idle.length === 0 && !this.closed) this.onDrained(); });
    }, IDLE_MS);
    timer.unref();
    worker.on('exit', onExit);
    // An idle thread does not keep the daemon alive.
    worker.unref();
    this.idle.push({ worker, timer, onExit });
  }

  /** Ends the idle threads (daemon shutdown); threads released afterwards are ended at once. */
  close(): void {
    this.closed = true;
    for (const it of this.idle.splice(0)) {
      clearTimeout(it.timer);
      it.worker.off('exit', it.onExit);
      void it.worker.terminate();
    }
  }
}
