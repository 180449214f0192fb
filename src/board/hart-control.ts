// Control words shared by the threads of a machine whose harts run in parallel (docs/harts.md):
// one block for the machine and one per hart, in a SharedArrayBuffer every thread maps. All
// accesses are JS Atomics (sequentially consistent), so the protocols below need no more
// reasoning than "every thread sees every other's steps in one order".
//
// Per hart:
//   WAKE     bumped (and Atomics.notify'd) whenever something for the hart happened; a hart with
//            nothing to do sleeps in Atomics.wait on it
//   LINES    interrupt lines driven by devices of the machine's thread (MSIP MTIP SEIP MEIP bits,
//            as mip); the hart copies changes into its own mip between blocks
//   REQ      requests from other harts: REQ_SSIP (SBI IPI), REQ_FENCE_I, REQ_SFENCE (remote
//            fences), REQ_START (HSM hart_start, with START_*); the hart clears a bit once done.
//            REQ_SAVE, from the machine's thread while the harts are held: post your state.
//            REQ_DROP, from the machine's thread: RAM chunks were dropped (balloon); forget every
//            chunk whose GEN moved since you got it (see below), then clear the bit.
//   RUNNING  1 while the hart executes guest code; a hart that sleeps, is stopped or held
//            executes nothing, so a remote fence need not wait for it (it looks at REQ first
//            when it runs again: it sets RUNNING before reading REQ, the requester sets REQ
//            before reading RUNNING, and sequential consistency makes one of them see the other)
//   HSM      SBI HSM state: HSM_STARTED / HSM_STOPPED / HSM_START_PENDING
//   RESP_*   the answer to the hart's last forwarded device read (smp.ts)
// Machine: CTRL (run / pause / stop), HELD (harts parked for a pause), PENDING (forwarded device
// accesses the machine's thread has not served yet).
// Figures per hart (doubles, written by the hart's thread only): INSTRET, then from JIT the
// translators' figures (src/riscv/jit.ts JitStats.writeTo).
// Per RAM chunk: GEN, bumped by the machine's thread each time it drops the chunk (docs/guest-ram.md
// (b)). Chunks are made only on the machine's thread; a hart thread asks for one (smp.ts) and gets
// its memory with its GEN, and holds it while its GEN stays so. A hart that finds its copy's GEN
// outdated drops it; so does one that was asleep through any number of drops, when it wakes.

import { JIT_FIGURES } from '../riscv/jit.js';

export const WAKE = 0, LINES = 1, REQ = 2, RUNNING = 3, HSM = 4;
export const START_PC_LO = 5, START_PC_HI = 6, START_ARG_LO = 7, START_ARG_HI = 8;
export const RESP_SEQ = 9, RESP_LO = 10, RESP_HI = 11;
const STRIDE = 16;

export const REQ_SSIP = 1, REQ_FENCE_I = 2, REQ_SFENCE = 4, REQ_START = 8, REQ_SAVE = 16, REQ_DROP = 32;
/** SBI spec 9.1 hart states. */
export const HSM_STARTED = 0, HSM_STOPPED = 1, HSM_START_PENDING = 2;

export const CTRL_RUN = 0, CTRL_PAUSE = 1, CTRL_STOP = 2;
const CTRL = 0, HELD = 1, PENDING = 2;
const MACHINE_WORDS = 4;
export const INSTRET = 0, JIT = 1;
const F_STRIDE = JIT + JIT_FIGURES;

export class HartControl {
  readonly words: Int32Array;
  /** Per-hart figures: [F_STRIDE * h + INSTRET]. */
  readonly figures: Float64Array;
  /** Per RAM chunk: its generation (GEN above). */
  readonly chunkGen: Int32Array;

  /** `chunks`: RAM chunks of the machine (one GEN word each). */
  constructor(readonly harts: number, buffer?: SharedArrayBuffer, chunks = 0) {
    const wordBytes = 8 * Math.ceil((4 * (MACHINE_WORDS + STRIDE * harts)) / 8);
    const figureBytes = 8 * F_STRIDE * harts;
    const b = buffer ?? new SharedArrayBuffer(wordBytes + figureBytes + 4 * chunks);
    this.words = new Int32Array(b, 0, MACHINE_WORDS + STRIDE * harts);
    this.figures = new Float64Array(b, wordBytes, F_STRIDE * harts);
    this.chunkGen = new Int32Array(b, wordBytes + figureBytes, chunks);
  }

  figure(h: number, f: number): number { return this.figures[F_STRIDE * h + f]; }
  setFigure(h: number, f: number, v: number): void { this.figures[F_STRIDE * h + f] = v; }
  /** Index in `figures` of figure `f` of hart `h`. */
  figureAt(h: number, f: number): number { return F_STRIDE * h + f; }

  get buffer(): SharedArrayBuffer { return this.words.buffer as SharedArrayBuffer; }

  /** Index of field `f` of hart `h`. */
  at(h: number, f: number): number { return MACHINE_WORDS + STRIDE * h + f; }

  load(h: number, f: number): number { return Atomics.load(this.words, this.at(h, f)); }
  store(h: number, f: number, v: number): void { Atomics.store(this.words, this.at(h, f), v); }

  /** Something for hart `h` happened: wake it if it sleeps. */
  wake(h: number): void {
    const i = this.at(h, WAKE);
    Atomics.add(this.words, i, 1);
    Atomics.notify(this.words, i);
  }

  /** Sets or clears interrupt line bit `bit` of hart `h`; true when it changed. */
  setLine(h: number, bit: number, level: boolean): boolean {
    const i = this.at(h, LINES), m = 1 << bit;
    const old = level ? Atomics.or(this.words, i, m) : Atomics.and(this.words, i, ~m);
    return ((old & m) !== 0) !== level;
  }

  /** Posts request bits to hart `h`. */
  request(h: number, bits: number): void {
    Atomics.or(this.words, this.at(h, REQ), bits);
  }

  /** Takes (clears and returns) hart `h`'s pending request bits among `mask`. */
  takeRequests(h: number, mask: number): number {
    return Atomics.and(this.words, this.at(h, REQ), ~mask) & mask;
  }

  /** Posts request bits to hart `h` and wakes it wherever it waits: asleep (WAKE) or for the
   *  machine's thread to serve its device access (RESP_SEQ). */
  requestAndWake(h: number, bits: number): void {
    this.request(h, bits);
    this.wake(h);
    Atomics.notify(this.words, this.at(h, RESP_SEQ));
  }

  /** Waits until hart `h` has taken request `bit`, or executes nothing (RUNNING is 0: it looks at
   *  its requests before it runs again), or the machine stops. Meanwhile `whileWaiting` serves
   *  what the calling thread must serve, or two threads waiting for each other would deadlock. */
  waitTaken(h: number, bit: number, whileWaiting: () => void): void {
    const i = this.at(h, REQ);
    for (;;) {
      const req = Atomics.load(this.words, i);
      if ((req & bit) === 0 || this.load(h, RUNNING) === 0 || this.ctrl === CTRL_STOP) return;
      whileWaiting();
      Atomics.wait(this.words, i, req, 1);
    }
  }

  /** Wakes whoever waits for hart `h`'s requests to be done. */
  requestsDone(h: number): void {
    Atomics.notify(this.words, this.at(h, REQ));
  }

  /** Sleeps until hart h's WAKE moves on from `seen`, at most `ms` (Infinity = no limit). */
  sleep(h: number, seen: number, ms: number): void {
    Atomics.wait(this.words, this.at(h, WAKE), seen, ms);
  }

  // ---- the machine ----
  get ctrl(): number { return Atomics.load(this.words, CTRL); }
  setCtrl(c: number): void {
    Atomics.store(this.words, CTRL, c);
    Atomics.notify(this.words, CTRL);
    for (let h = 0; h < this.harts; h++) this.wake(h);
  }
  /** A hart parks while the machine is paused (returns when it is not); `whileHeld` runs each
   *  time it is woken meanwhile (see nudgeHeld). */
  hold(whileHeld?: () => void): void {
    Atomics.add(this.words, HELD, 1);
    Atomics.notify(this.words, HELD);
    while (Atomics.load(this.words, CTRL) === CTRL_PAUSE) {
      whileHeld?.();
      Atomics.wait(this.words, CTRL, CTRL_PAUSE, 1000);
    }
    Atomics.sub(this.words, HELD, 1);
  }
  /** Wakes the parked harts (still paused) to look at their requests. */
  nudgeHeld(): void {
    Atomics.notify(this.words, CTRL);
  }
  /** Waits (at most `ms`) until `n` harts are parked; true when they are. */
  waitHeld(n: number, ms: number): boolean {
    const end = Date.now() + ms;
    for (;;) {
      const v = Atomics.load(this.words, HELD);
      if (v >= n) return true;
      const left = end - Date.now();
      if (left <= 0) return false;
      Atomics.wait(this.words, HELD, v, left);
    }
  }
  get pending(): number { return Atomics.load(this.words, PENDING); }
  addPending(d: number): void { Atomics.add(this.words, PENDING, d); }
}
