// Harts in parallel (docs/harts.md): hart 0 runs on the machine's own thread, where every device
// model lives; harts 1..N-1 each run on a hart thread of their own, over the same guest RAM
// (shared chunk memories, src/memory/ram.ts), the same clock and LR/SC reservations, and the
// control words of hart-control.ts.
//
// A hart thread reaches a device by forwarding the access to the machine's thread through a
// MessagePort and waiting until it is done (the machine's thread serves it between hart 0's
// slices, or at once when it is idle). Writes wait too: a posted write would land after accesses
// the hart made later, e.g. OpenSBI clearing its MSIP, then another hart raising it again for the
// next IPI, then the clear arriving and losing that IPI. Devices therefore never run on two
// threads and need no locks; a device raising an interrupt for a hart on another thread sets
// that hart's LINES word and wakes it. Only the boot ROM, which never changes, is copied into
// every thread (harts fetch their first instructions from it).
//
// Guest RAM chunks (docs/guest-ram.md (b)) are made on the machine's thread only, on first touch
// there (hart 0, DMA, loaders) or when a hart thread asks for one it does not hold: the machine's
// thread makes it (once: it serves one request at a time) and posts its memory back, so harts
// that touch a new chunk at once all get the same one. The balloon drops a chunk on the machine's
// thread: it lets the memory go, bumps the chunk's GEN (hart-control.ts) and asks every hart
// thread to drop its copy (REQ_DROP, as a remote fence, also to a hart waiting for a device
// access, which touches no RAM meanwhile); it goes on once every hart that runs has done so. A
// touch after that gets a fresh zeroed chunk, shared as above.
//
// This file has both sides: SmpHost on the machine's thread, HartThread on a hart thread, and
// SharedHarts, the builtin SBI's view of harts on several threads.

import { MessageChannel, receiveMessageOnPort, type MessagePort } from 'node:worker_threads';
import { CHUNK_SIZE, GuestRam, newChunkMemory } from '../memory/ram.js';
import { PhysicalMemoryMap, type MmioDevice, type MmioRegion } from '../memory/bus.js';
import { Hart, type HartState } from '../riscv/hart.js';
import { ReservationSet } from '../riscv/reservations.js';
import type { JitStats } from '../riscv/jit.js';
import { VirtClock } from '../devices/clock.js';
import { BootRom } from './boot-rom.js';
import { COLLECT_EVERY_MS, Throttle } from './throttle.js';
import { BuiltinSbi, raiseSsip, remoteFence, type SbiHarts } from './sbi/builtin-sbi.js';
import type { PowerEvent } from './machine-types.js';
import {
  CTRL_PAUSE, CTRL_RUN, CTRL_STOP, HartControl, INSTRET, JIT, HSM, HSM_START_PENDING, HSM_STARTED, HSM_STOPPED, LINES, REQ, REQ_DROP, REQ_FENCE_I, REQ_SAVE,
  REQ_SFENCE, REQ_SSIP, REQ_START, RESP_HI, RESP_LO, RESP_SEQ, RUNNING, START_ARG_HI, START_ARG_LO, START_PC_HI, START_PC_LO, WAKE,
} from './hart-control.js';

/** Instructions a hart thread runs between two looks at its control words. */
const SLICE = 20_000;
/** A hart thread waiting for the machine's thread looks at the machine's state this often. */
const POLL_MS = 50;
/** How long a hart rests when its guest polls (Hart.polling: waits for another hart), unless woken. */
export const POLLING_REST_MS = 1;
const TWO32 = 4294967296;

/** What a hart thread is started with (structured-clonable: it crosses to the thread). */
export interface HartThreadInit {
  readonly hartId: number;
  readonly harts: number;
  readonly ramBase: number;
  readonly ramSize: number;
  /** The chunks the machine's thread holds now (undefined: none), and their GENs. */
  readonly memories: (WebAssembly.Memory | undefined)[];
  readonly chunkGens: Int32Array;
  readonly control: SharedArrayBuffer;
  readonly clock: SharedArrayBuffer;
  readonly reservations: WebAssembly.Memory;
  /** Device regions of the machine; `rom`: a copy to serve locally, else forwarded. */
  readonly regions: { base: number; size: number; name: string; rom?: Uint8Array }[];
  /** RAM ranges with a write watcher on the machine's thread (HTIF tohost). */
  readonly watched: { base: number; size: number }[];
  /** Builtin SBI: where unexpected M-mode traps land, and the UART its legacy getchar reads.
   *  null = real firmware or none: the hart starts at `bootPc` (the boot ROM). */
  readonly builtinSbi: { trapSink: number; uartBase: number } | null;
  readonly bootPc: number;
  readonly jit: boolean;
  /** The hart thread's end of its channel to the machine's thread. */
  readonly port: MessagePort;
  /** A saved state to start from (a restored machine) instead of the boot state. */
  readonly state?: HartState;
}

/** Messages from a hart thread to the machine's thread. */
export type HartMessage =
  | { k: 'r'; i: number; o: number; s: number }                    // device read (answered in RESP_*)
  | { k: 'w'; i: number; o: number; s: number; lo: number; hi: number } // device write (done: RESP_SEQ)
  | { k: 'watch'; pa: number; s: number }                          // a store into a watched RAM range (done: RESP_SEQ)
  | { k: 'chunk'; c: number }                                      // RAM chunk c, please (a ChunkReply, then RESP_SEQ)
  | { k: 'out'; b: number }                                        // a console byte (builtin SBI putchar)
  | { k: 'power'; ev: PowerEvent }
  | { k: 'log'; m: string }
  | { k: 'ready' }                                                 // the thread built its hart
  | { k: 'state'; s: HartState }                                   // its saved state (REQ_SAVE)
  | { k: 'wake' };                                                 // hart 0 has requests

/** The machine's thread's answer to a hart thread's `chunk` request, on the hart's port. */
interface ChunkReply { readonly c: number; readonly g: number; readonly m: WebAssembly.Memory }

/** How a hart's thread keeps to the host CPU time it is granted (src/vm/cpu-slots.ts: the
 *  daemon's scheduler sets the allowance; the thread charges what it uses and waits when it has
 *  used it up). */
export interface CpuGate {
  /** 0 when the hart may run a slice now, else how long (ms) to wait at most before asking again. */
  wait(): number;
  /** Waits (at most `ms`) for a larger allowance. */
  sleep(ms: number): void;
  /** The hart ran a slice of `ms` wall time. */
  ran(ms: number): void;
  /** The hart sleeps (WFI, HSM-stopped) or wants to run again. */
  idle(on: boolean): void;
}

/** A running hart thread, as the machine sees it (src/vm makes them Worker threads). */
export interface HartThreadHandle {
  /** Called once when the thread ends; `error` when it died of an exception. */
  onExit(cb: (error: Error | null) => void): void;
  terminate(): void;
}
export type StartHartThread = (init: HartThreadInit) => HartThreadHandle;

// =============================================================================================
// Both sides

/** Applies the requests other harts posted to `hart` (it is not executing guest code now); returns
 *  their bits (0: none). `dropChunks`: a hart thread's, for REQ_DROP. */
function applyRequests(ctl: HartControl, hart: Hart, dropChunks: (() => void) | null = null): number {
  const id = hart.hartId;
  const bits = ctl.takeRequests(id, REQ_SSIP | REQ_FENCE_I | REQ_SFENCE | REQ_START | (dropChunks === null ? 0 : REQ_DROP));
  if (bits === 0) return 0;
  if (bits & REQ_DROP) dropChunks!();
  if (bits & REQ_FENCE_I) remoteFence(hart, true);
  if (bits & REQ_SFENCE) remoteFence(hart, false);
  if (bits & REQ_SSIP) raiseSsip(hart);
  if (bits & REQ_START) {
    const pc = ctl.load(id, START_PC_HI) * TWO32 + (ctl.load(id, START_PC_LO) >>> 0);
    const arg = (BigInt(ctl.load(id, START_ARG_HI) >>> 0) << 32n) | BigInt(ctl.load(id, START_ARG_LO) >>> 0);
    hart.hsmStart(pc, arg);
    ctl.store(id, HSM, HSM_STARTED);
  }
  ctl.requestsDone(id);
  return bits;
}

/**
 * The builtin SBI's harts when they run on several threads. Every thread has one: `self` is the
 * hart of that thread. Requests to other harts go through their control words; `wakeMachine`
 * wakes the machine's thread, which sleeps on its event loop rather than on a WAKE word.
 */
export class SharedHarts implements SbiHarts {
  constructor(private readonly ctl: HartControl, private readonly self: Hart, private readonly wakeMachine: () => void,
              private readonly whileWaiting: () => void) {}

  get count(): number { return this.ctl.harts; }

  status(id: number): number { return this.ctl.load(id, HSM); }

  start(id: number, pc: number, opaque: bigint): boolean {
    const c = this.ctl;
    if (id === this.self.hartId) {
      if (c.load(id, HSM) !== HSM_STOPPED) return false;
      this.self.hsmStart(pc, opaque);
      c.store(id, HSM, HSM_STARTED);
      return true;
    }
    if (Atomics.compareExchange(c.words, c.at(id, HSM), HSM_STOPPED, HSM_START_PENDING) !== HSM_STOPPED) return false;
    const v = BigInt.asUintN(64, opaque);
    c.store(id, START_PC_LO, pc | 0);
    c.store(id, START_PC_HI, Math.floor(pc / TWO32) | 0);
    c.store(id, START_ARG_LO, Number(BigInt.asIntN(32, v)));
    c.store(id, START_ARG_HI, Number(BigInt.asIntN(32, v >> 32n)));
    this.post(id, REQ_START);
    return true;
  }

  stop(self: Hart): void {
    self.halted = true;
    this.ctl.store(self.hartId, HSM, HSM_STOPPED);
  }

  raiseSsip(id: number): void {
    if (id === this.self.hartId) raiseSsip(this.self);
    else this.post(id, REQ_SSIP);
  }

  fence(self: Hart, ids: readonly number[], fenceI: boolean): void {
    const bit = fenceI ? REQ_FENCE_I : REQ_SFENCE;
    const waitFor: number[] = [];
    for (const id of ids) {
      if (id === self.hartId) remoteFence(self, fenceI);
      else { this.post(id, bit); waitFor.push(id); }
    }
    // Done when every target has taken the request, or executes nothing (it looks at its
    // requests before it runs again). Meanwhile serve whatever this thread must serve, or two
    // harts fencing each other would wait forever.
    for (const id of waitFor) this.ctl.waitTaken(id, bit, this.whileWaiting);
  }

  private post(id: number, bits: number): void {
    this.ctl.request(id, bits);
    this.ctl.wake(id);
    if (id === 0) this.wakeMachine();
  }
}

// =============================================================================================
// The machine's thread

/** The machine's side of its hart threads: starts them, serves their device accesses, drives
 *  their interrupt lines, holds them for a pause and stops them. */
export class SmpHost {
  readonly control: HartControl;
  private readonly threads: HartThreadHandle[] = [];
  private readonly ports: MessagePort[] = [];
  private failure: string | null = null;
  private closed = false;
  /** Inside serve() (see there). */
  private serving = false;
  private readyThreads = 0;
  private started = false;
  /** States the hart threads posted for a REQ_SAVE (collectStates). */
  private readonly states: (HartState | undefined)[] = [];

  constructor(private readonly p: {
    harts: number;
    regions: () => readonly MmioRegion[];
    mem: PhysicalMemoryMap;
    /** Console output of the builtin SBI on a hart thread. */
    putchar: (b: number) => void;
    power: (ev: PowerEvent) => void;
    log: (m: string) => void;
    /** The machine's thread should look at hart 0 and the devices (it may be asleep). */
    wake: () => void;
  }) {
    this.control = new HartControl(p.harts, undefined, p.mem.ram.chunkCount);
    // Hart threads take a while to start (a fresh V8 isolate, the interpreter's warm-up); they
    // are held until every one of them is there, so that all harts start at once, at power-on.
    this.control.setCtrl(CTRL_PAUSE);
  }

  /** Have the harts started (every hart thread up, see the constructor)? */
  get running(): boolean { return this.started; }

  /** Starts the harts once every hart thread is up; true when they run. */
  tryStart(): boolean {
    if (this.started) return true;
    this.serve();
    if (this.readyThreads < this.p.harts - 1) return false;
    this.started = true;
    this.release();
    return true;
  }

  /** Starts harts 1..N-1 on their threads (from `states[id]`, a restored machine's, when given). */
  start(spawn: StartHartThread, init: Omit<HartThreadInit, 'hartId' | 'port' | 'harts' | 'control' | 'state'> & { states?: readonly HartState[] }): void {
    const { states, ...base } = init;
    for (let id = 1; id < this.p.harts; id++) {
      const state = states?.[id];
      // The device lines the hart saw are in its state: the LINES word starts from them.
      if (state) this.control.store(id, LINES, state.mipLines);
      const { port1: mine, port2: theirs } = new MessageChannel();
      // The event loop delivers a message when this thread was not polling (idle): handle it,
      // then whatever came after it, and let hart 0 look at its requests.
      mine.on('message', (m: HartMessage) => { this.handle(id, m); this.serve(); this.p.wake(); });
      this.ports.push(mine);
      const t = spawn({ ...base, hartId: id, harts: this.p.harts, control: this.control.buffer, port: theirs, ...(state ? { state } : {}) });
      t.onExit((error) => {
        if (this.closed) return;
        this.failure ??= error ? `hart ${id} thread crashed: ${error.stack ?? error.message}` : `hart ${id} thread ended unexpectedly`;
        this.p.wake();
      });
      this.threads.push(t);
    }
  }

  /** Why the machine cannot go on (a hart thread died), or null. */
  get failed(): string | null { return this.failure; }

  /** Serves every forwarded device access waiting (called between hart 0's slices). Not again
   *  from inside one being served (one that drops RAM chunks, or waits for host memory and
   *  pauses the machine meanwhile): accesses are served one at a time, as devices expect, and a
   *  hart waiting for one drops chunks while it waits, so nothing needs it. */
  serve(): void {
    if (this.serving) return;
    this.serving = true;
    try {
      for (let i = 0; i < this.ports.length; i++) {
        const port = this.ports[i];
        for (;;) {
          const m = receiveMessageOnPort(port);
          if (m === undefined) break;
          this.handle(i + 1, m.message as HartMessage);
        }
      }
    } finally {
      this.serving = false;
    }
  }

  private handle(hartId: number, m: HartMessage): void {
    const c = this.control;
    switch (m.k) {
      case 'r': {
        const r = this.p.regions()[m.i];
        const lo = this.p.mem.readDevice(r, m.o, m.s) | 0;
        c.store(hartId, RESP_LO, lo);
        c.store(hartId, RESP_HI, m.s === 8 ? this.p.mem.readHi | 0 : 0);
        this.done(hartId);
        break;
      }
      case 'w':
        this.p.mem.writeDevice(this.p.regions()[m.i], m.o, m.s, m.lo, m.hi);
        this.done(hartId);
        break;
      case 'watch': this.p.mem.notifyWrite(m.pa, m.s); this.done(hartId); break;
      case 'chunk': {
        // Made here if the machine's thread does not hold it (the host memory budget is taken
        // here, and may make the hart wait): every thread asking gets this same memory.
        const reply: ChunkReply = { c: m.c, g: Atomics.load(c.chunkGen, m.c), m: this.p.mem.ram.views(m.c).memory };
        this.ports[hartId - 1].postMessage(reply);
        this.done(hartId);
        break;
      }
      case 'out': this.p.putchar(m.b); break;
      case 'power': this.p.power(m.ev); break;
      case 'log': this.p.log(m.m); break;
      case 'ready': this.readyThreads++; break;
      case 'state': this.states[hartId] = m.s; break;
      case 'wake': break;
    }
  }

  /** The states of harts 1..N-1, asked of their threads (which must be held: hold()). */
  collectStates(timeoutMs = 5000): HartState[] {
    const c = this.control;
    this.states.length = 0;
    for (let h = 1; h < this.p.harts; h++) c.request(h, REQ_SAVE);
    c.nudgeHeld();
    const end = Date.now() + timeoutMs;
    const out: HartState[] = [];
    for (let h = 1; h < this.p.harts; h++) {
      for (;;) {
        this.serve();
        const s = this.states[h];
        if (s) { out.push(s); break; }
        if (this.failure) throw new Error(this.failure);
        if (Date.now() > end) throw new Error(`hart ${h} did not hand over its state within ${timeoutMs} ms`);
        Atomics.wait(c.words, 0, c.ctrl, 1); // a short nap
      }
    }
    return out;
  }

  /** RAM chunks the machine's thread has just dropped (and no longer hands out): every hart thread
   *  drops its copy; returns once each hart that executes guest code has (a hart that does not
   *  drops them before it runs again; it is woken so that it lets them go now). Hart threads'
   *  requests are served meanwhile, unless this runs inside one being served (a balloon notify
   *  by a hart thread): a hart waiting for its access drops chunks while it waits. */
  dropChunks(indices: readonly number[]): void {
    const c = this.control;
    for (const i of indices) Atomics.add(c.chunkGen, i, 1);
    for (let h = 1; h < this.p.harts; h++) c.requestAndWake(h, REQ_DROP);
    for (let h = 1; h < this.p.harts; h++) c.waitTaken(h, REQ_DROP, () => this.serve());
  }

  /** Instructions retired by hart `h` (>= 1) as its thread last published. */
  instret(h: number): number {
    return this.control.figure(h, INSTRET);
  }

  /** Adds hart `h`'s translator figures (as its thread last published them) to `into`. */
  addJitStats(h: number, into: JitStats): void {
    into.addFrom(this.control.figures, this.control.figureAt(h, JIT));
  }

  /** The forwarded access of hart `h` is done: it may go on. */
  private done(h: number): void {
    const c = this.control;
    c.addPending(-1);
    Atomics.add(c.words, c.at(h, RESP_SEQ), 1);
    Atomics.notify(c.words, c.at(h, RESP_SEQ));
  }

  /** A device drove interrupt line `bit` of hart `h` (h >= 1). Raising a line already up (an IPI
   *  to a hart whose MSIP is still set) wakes the hart too: a hart polling with WFI (Hart.polling)
   *  may be resting until exactly that IPI's message. */
  setLine(h: number, bit: number, level: boolean): void {
    if (this.control.setLine(h, bit, level) || level) this.control.wake(h);
  }

  /** Hart 0's turn: serve forwarded accesses and apply what other harts asked of it. */
  beforeHart0(h0: Hart): void {
    if (this.control.pending !== 0) this.serve();
    applyRequests(this.control, h0);
  }

  /** Hart 0 executes guest code (or stops doing so): see RUNNING in hart-control.ts. */
  hart0Running(on: boolean, h0: Hart): void {
    this.control.store(0, RUNNING, on ? 1 : 0);
    if (on) applyRequests(this.control, h0);
  }

  /** Holds every hart thread (a pause): true once they are all parked (within `ms`). */
  hold(ms: number): boolean {
    this.control.setCtrl(CTRL_PAUSE);
    const end = Date.now() + ms;
    // Parking harts may wait for a device read: keep serving until they are all held.
    for (;;) {
      this.serve();
      if (this.control.waitHeld(this.p.harts - 1, 2)) return true;
      if (Date.now() > end) return false;
    }
  }

  release(): void {
    this.control.setCtrl(CTRL_RUN);
  }

  /** The machine powered off: no hart executes another instruction (their threads end on close). */
  stopHarts(): void {
    this.control.setCtrl(CTRL_STOP);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.control.setCtrl(CTRL_STOP);
    for (const t of this.threads) t.terminate();
    for (const p of this.ports) p.close();
  }
}

// =============================================================================================
// A hart thread

/** The physical address space as a hart thread sees it: the shared RAM, the boot ROM copy, and
 *  every other device region forwarded to the machine's thread. */
class ForwardingMemoryMap extends PhysicalMemoryMap {
  constructor(ram: GuestRam, private readonly link: MachineLink) { super(ram); }

  override readDevice(r: MmioRegion, offset: number, size: number): number {
    if (r.device !== FORWARDED) return super.readDevice(r, offset, size);
    const lo = this.link.read(this.indexOf(r), offset, size);
    this.readHi = this.link.hi;
    return lo;
  }

  override writeDevice(r: MmioRegion, offset: number, size: number, lo: number, hi: number): void {
    if (r.device !== FORWARDED) { super.writeDevice(r, offset, size, lo, hi); return; }
    this.link.call({ k: 'w', i: this.indexOf(r), o: offset, s: size, lo: lo | 0, hi: hi | 0 });
  }

  private indexOf(r: MmioRegion): number { return (r as MmioRegion & { index: number }).index; }
}

/** Stands for a device that lives on the machine's thread (ForwardingMemoryMap forwards it). */
const FORWARDED: MmioDevice = {
  read: () => { throw new Error('forwarded device read locally'); },
  write: () => { throw new Error('forwarded device written locally'); },
};

/** A hart thread's channel to the machine's thread. */
class MachineLink {
  hi = 0;
  /** Drops the RAM chunks the machine's thread dropped (REQ_DROP), set by the HartThread. */
  dropChunks: () => void = () => {};
  constructor(readonly port: MessagePort, private readonly ctl: HartControl, private readonly id: number) {}

  post(m: HartMessage): void {
    if (m.k === 'r' || m.k === 'w' || m.k === 'watch' || m.k === 'chunk') this.ctl.addPending(1);
    this.port.postMessage(m);
  }

  /** A device access (or a chunk): waits until the machine's thread has done it (or stops).
   *  Meanwhile the hart touches no RAM, so it drops chunks when asked: the machine's thread may
   *  be dropping them in this very access (a balloon notify) and waits for that. */
  call(m: HartMessage): void {
    const c = this.ctl, id = this.id, seqAt = c.at(id, RESP_SEQ);
    const seq = Atomics.load(c.words, seqAt);
    this.post(m);
    while (Atomics.load(c.words, seqAt) === seq) {
      if (c.ctrl === CTRL_STOP) return;
      if (c.takeRequests(id, REQ_DROP) !== 0) {
        this.dropChunks();
        c.requestsDone(id);
        continue;
      }
      Atomics.wait(c.words, seqAt, seq, POLL_MS);
    }
  }

  /** A device read: the answer (low word; the high one in `hi`). */
  read(i: number, o: number, s: number): number {
    this.call({ k: 'r', i, o, s });
    this.hi = this.ctl.load(this.id, RESP_HI);
    return this.ctl.load(this.id, RESP_LO);
  }
}

/** Runs one hart on the calling (hart) thread until the machine stops. */
export class HartThread {
  readonly hart: Hart;
  private readonly ctl: HartControl;
  private readonly clock: VirtClock;
  private readonly link: MachineLink;
  private readonly ram: GuestRam;
  /** The GEN (hart-control.ts) of each chunk this thread holds, as it got it. */
  private readonly gens: Int32Array;
  private readonly drop = (): void => this.dropChunks();
  /** Chunks were dropped since the last collection (see run). */
  private released = false;
  /** collect and collectIdle each run at most every COLLECT_EVERY_MS. */
  private readonly collectDue = new Throttle(COLLECT_EVERY_MS);
  private readonly idleCollectDue = new Throttle(COLLECT_EVERY_MS);
  private lines = 0;
  private idle = false;
  /** The WAKE word just before the hart's last slice: a wake that came during the slice ends the
   *  rest of a polling hart (see run). */
  private wakeBeforeSlice = 0;

  /** `collect`: a full garbage collection of this thread's heap (dropped chunks leave the process
   *  only once every thread that held them has collected them). `collectIdle`: called while the
   *  hart waits, at most every COLLECT_EVERY_MS: the thread may collect its heap then if it has
   *  grown (src/vm/collect-garbage.ts collectIfGrown). The thread never returns to its event
   *  loop, so V8's own idle-time collections never run in it: with this, the 2-hart 1 GiB Linux
   *  test guest's heap pages after boot went 37-49 -> 20-29 MiB (docs/guest-ram.md (d)). */
  constructor(init: HartThreadInit, private readonly gate: CpuGate | null = null, private readonly collect: (() => void) | null = null,
    private readonly collectIdle: (() => void) | null = null) {
    const id = init.hartId;
    this.ctl = new HartControl(init.harts, init.control, init.ramSize / CHUNK_SIZE);
    this.link = new MachineLink(init.port, this.ctl, id);
    const ram = new GuestRam(init.ramBase, init.ramSize, init.memories);
    this.ram = ram;
    this.gens = Int32Array.from(init.chunkGens);
    ram.provider = (index) => this.fetchChunk(index);
    this.link.dropChunks = this.drop;
    const mem = new ForwardingMemoryMap(ram, this.link);
    init.regions.forEach((r, index) => {
      mem.addDevice(r.base, r.size, r.name, r.rom ? new BootRom(r.rom, r.size) : FORWARDED);
      (mem.findDevice(r.base) as MmioRegion & { index: number }).index = index;
    });
    for (const w of init.watched) mem.watchWrites(w.base, w.size, (pa, s) => this.link.call({ k: 'watch', pa, s }));
    this.clock = new VirtClock(undefined, init.clock);
    const hart = new Hart(id, mem, this.clock, new ReservationSet(init.harts, init.reservations));
    hart.smp = true;
    hart.jitEnabled = init.jit;
    this.hart = hart;
    if (init.builtinSbi) {
      const harts = new SharedHarts(this.ctl, hart, () => this.link.post({ k: 'wake' }), () => applyRequests(this.ctl, hart, this.drop));
      const sbi = new BuiltinSbi({
        harts,
        putchar: (b) => this.link.post({ k: 'out', b }),
        getchar: () => { // legacy console_getchar: the UART on the machine's thread, as on hart 0
          const r = mem.findDevice(init.builtinSbi!.uartBase)!;
          return (mem.readDevice(r, 5, 1) & 1) ? mem.readDevice(r, 0, 1) : -1;
        },
        power: (ev) => { this.hart.stopRequested = true; this.link.post({ k: 'power', ev }); },
        trapSink: init.builtinSbi.trapSink,
        ramBase: init.ramBase,
        ramSize: init.ramSize,
      });
      sbi.attach(hart);
    } else hart.setPc(init.bootPc);
    if (init.state) {
      hart.loadState(init.state);
      this.lines = init.state.mipLines;
    }
    this.link.post({ k: 'ready' });
  }

  /** The hart's loop: returns when the machine stops. */
  run(): void {
    const c = this.ctl, h = this.hart, id = h.hartId;
    for (;;) {
      const ctrl = c.ctrl;
      if (ctrl === CTRL_STOP) return;
      if (this.released) this.collectDropped();
      if (ctrl === CTRL_PAUSE) {
        c.store(id, RUNNING, 0);
        // While held, the machine's thread may ask for the hart's state (a save, a snapshot).
        c.hold(() => { if (c.takeRequests(id, REQ_SAVE) !== 0) this.link.post({ k: 'state', s: h.saveState() }); });
        continue;
      }
      const seen = c.load(id, WAKE);
      c.store(id, RUNNING, 1);
      const arrived = this.takeLines() | applyRequests(c, h, this.drop);
      if (h.halted || h.waiting || h.stopRequested) {
        c.store(id, RUNNING, 0);
        if (!this.idle) { this.idle = true; this.gate?.idle(true); }
        if (this.collectIdle !== null) this.idleCollect();
        // Nothing to run until something happens: an interrupt line, a request, Sstc's timer.
        if (Atomics.load(c.words, c.at(id, LINES)) === this.lines && Atomics.load(c.words, c.at(id, REQ)) === 0) {
          const t = h.halted || h.stopRequested ? Infinity : h.nextTimerEvent();
          const ms = t === Infinity ? POLL_MS * 20 : Math.max(0, Math.min(POLL_MS * 20, this.clock.msUntil(t)));
          if (ms > 0) c.sleep(id, seen, ms);
        }
        if (h.waiting && !h.halted) { // lets Sstc's timer (if due) end the wait
          c.store(id, RUNNING, 1); // it may execute an instruction: what was asked of it first
          applyRequests(c, h, this.drop);
          h.run(1);
        }
        continue;
      }
      if (h.polling) {
        // The guest waits for another hart (Hart.polling): rest a moment instead of spinning a
        // host core, unless a line or request came since the hart last ran (the wake that went
        // with it moved WAKE past wakeBeforeSlice, even if it came during that slice); anything
        // sent to the hart ends the rest.
        c.store(id, RUNNING, 0);
        if (arrived === 0) c.sleep(id, this.wakeBeforeSlice, POLLING_REST_MS);
        h.polling = false;
        continue;
      }
      this.wakeBeforeSlice = seen;
      const gate = this.gate;
      if (gate !== null) {
        if (this.idle) { this.idle = false; gate.idle(false); }
        const w = gate.wait();
        if (w > 0) { c.store(id, RUNNING, 0); gate.sleep(w); continue; } // its host CPU allowance is used up
        const t0 = performance.now();
        h.run(SLICE);
        gate.ran(performance.now() - t0);
      } else h.run(SLICE);
      c.setFigure(id, INSTRET, h.instret);
      h.jitStats.writeTo(c.figures, c.figureAt(id, JIT));
      if (h.mode === 3 && h.ecallHook !== null) this.builtinTrapped();
    }
  }

  /** RAM chunk `index`, which this thread does not hold: the machine's thread's (made there if
   *  need be). A chunk dropped again before this thread took it is asked for again. */
  private fetchChunk(index: number): WebAssembly.Memory {
    const c = this.ctl;
    for (;;) {
      this.link.call({ k: 'chunk', c: index });
      let r = receiveMessageOnPort(this.link.port);
      while (r === undefined) {
        // The machine stopped before it answered: this hart executes nothing more.
        if (c.ctrl === CTRL_STOP) return newChunkMemory();
        Atomics.wait(c.chunkGen, index, Atomics.load(c.chunkGen, index), 1);
        r = receiveMessageOnPort(this.link.port);
      }
      const reply = r.message as ChunkReply;
      if (reply.c !== index) throw new Error(`hart ${this.hart.hartId} asked for RAM chunk ${index} and got chunk ${reply.c}`);
      if (Atomics.load(c.chunkGen, index) === reply.g) {
        this.gens[index] = reply.g;
        return reply.m;
      }
    }
  }

  /** REQ_DROP: forgets every chunk the machine's thread dropped since this thread got it (its
   *  soft-TLB views, fetch page and translated code with it). */
  private dropChunks(): void {
    const ram = this.ram, gen = this.ctl.chunkGen;
    for (let i = 0; i < ram.chunkCount; i++) {
      if (!ram.isAllocated(i) || this.gens[i] === Atomics.load(gen, i)) continue;
      this.hart.dropRam(ram.base + i * CHUNK_SIZE, CHUNK_SIZE);
      ram.release(i);
      this.released = true;
    }
  }

  /** Dropped chunks go back to the OS once collected; a hart thread allocates little, so V8
   *  would not collect soon by itself. At most once a second (a collection takes a few ms). */
  private collectDropped(): void {
    if (this.collect === null || !this.collectDue.take()) return;
    this.released = false;
    this.collect();
  }

  /** collectIdle, at most every COLLECT_EVERY_MS (the hart waits: a pause costs its guest little). */
  private idleCollect(): void {
    if (this.idleCollectDue.take()) this.collectIdle!();
  }

  /** Copies changed interrupt lines into the hart; returns the bits that changed. */
  private takeLines(): number {
    const v = this.ctl.load(this.hart.hartId, LINES);
    const changed = v ^ this.lines;
    if (changed === 0) return 0;
    this.lines = v;
    for (let bit = 0; bit < 12; bit++) if ((changed >>> bit) & 1) this.hart.setInterruptLevel(bit, ((v >>> bit) & 1) !== 0);
    return changed;
  }

  /** With the builtin SBI nothing may trap into M-mode (see VirtMachine.builtinTrapped). */
  private builtinTrapped(): void {
    const h = this.hart;
    const hex = (n: number) => `0x${(h.readCsr(n) ?? 0n).toString(16)}`;
    this.link.post({ k: 'log', m: `hart ${h.hartId}: unexpected trap into M-mode under the builtin SBI (mcause ${hex(0x342)}, mepc ${hex(0x341)}, mtval ${hex(0x343)})` });
    h.stopRequested = true;
    this.link.post({ k: 'power', ev: { kind: 'poweroff', code: 255, source: 'other', failed: true } });
  }
}
