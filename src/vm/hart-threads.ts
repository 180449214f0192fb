// How a VM's worker starts the threads of its other harts (src/board/smp.ts): worker threads
// running dist/hart-worker.js, next to this bundle.
//
// A hart thread whose machine stopped is kept idle for a while and given a hart of the next
// machine this thread starts, as the daemon keeps VM threads (src/daemon/vm-threads.ts): a new
// hart thread is a new V8 isolate that parses the bundle, warms the interpreter up and optimizes
// it again for the guest's paths (docs/harts.md). VM threads are themselves reused, so a 4-hart
// VM started after another one gets warm hart threads.

import { Worker } from 'node:worker_threads';
import type { HartThreadHandle, HartThreadInit, StartHartThread } from '../board/smp.js';
import { type CachedRegion, exportRegionCache } from '../riscv/wasm/region-cache.js';

/** What a hart thread gets: the machine's part, and its CPU slot (src/vm/cpu-slots.ts). */
export interface HartWorkerData extends HartThreadInit {
  readonly cpu?: { readonly slots: SharedArrayBuffer; readonly slot: number };
  /** The starting thread's translation cache (riscv/wasm/region-cache.ts), which the hart
   *  thread adds to its own: a machine's new hart threads get the regions its VM thread made. */
  readonly code?: readonly CachedRegion[];
}

/** Idle hart threads kept at most (more are ended at once). */
const MAX_IDLE = 8;
/** An idle hart thread is ended after this long. */
const IDLE_MS = 30_000;
/** A stopped machine's hart thread that has not gone idle within this long is ended. */
const STOP_MS = 5_000;

interface Idle { readonly worker: Worker; readonly script: string; readonly timer: NodeJS.Timeout; readonly drop: () => void }
const idle: Idle[] = [];
/** Threads started (not taken from the idle ones): for tests. */
let started = 0;
export function hartThreadsStarted(): number { return started; }
/** Idle hart threads now. */
export function idleHartThreads(): number { return idle.length; }

function takeIdle(script: string): Worker | null {
  const i = idle.findIndex((x) => x.script === script);
  if (i < 0) return null;
  const x = idle[i];
  x.drop();
  x.worker.ref();
  return x.worker;
}

function keepIdle(worker: Worker, script: string): void {
  if (idle.length >= MAX_IDLE) { void worker.terminate(); return; }
  worker.unref();
  const drop = (): void => {
    const i = idle.findIndex((x) => x.worker === worker);
    if (i >= 0) { clearTimeout(idle[i].timer); worker.off('exit', drop); idle.splice(i, 1); }
  };
  const timer = setTimeout(() => { drop(); void worker.terminate(); }, IDLE_MS);
  timer.unref();
  worker.on('exit', drop); // (ended meanwhile: its VM thread ended, say)
  idle.push({ worker, script, timer, drop });
}

/** `cpu`: the daemon's CPU slots and each hart's slot (by hart id); without it, harts run unmetered. */
export function hartThreads(script: URL = new URL('./hart-worker.js', import.meta.url), cpu?: { slots: SharedArrayBuffer; slot: readonly number[] }): StartHartThread {
  const href = script.href;
  return (init): HartThreadHandle => {
    const data: HartWorkerData = { ...init, ...(cpu ? { cpu: { slots: cpu.slots, slot: cpu.slot[init.hartId] } } : {}), code: exportRegionCache() };
    let w = takeIdle(href);
    if (w === null) {
      started++;
      w = new Worker(script, { name: `hart ${init.hartId}` });
    }
    w.postMessage({ k: 'run', init: data }, [init.port]); // (not workerData, which the thread would keep)
    const worker = w;
    let error: Error | null = null;
    let exitCb: ((error: Error | null) => void) | null = null;
    let released = false, stopped = false;
    let stopTimer: NodeJS.Timeout | null = null;
    const onError = (e: Error): void => { error = e; };
    const onExit = (): void => { detach(); if (stopTimer) clearTimeout(stopTimer); exitCb?.(error); };
    const toIdle = (): void => {
      detach();
      if (stopTimer) clearTimeout(stopTimer);
      keepIdle(worker, href);
    };
    // `idle`: the hart returned (its machine stopped it); the thread is kept once the machine is
    // done with it (terminate), whichever comes first.
    const onMessage = (m: { k: string }): void => {
      if (m.k !== 'idle') return;
      stopped = true;
      if (released) toIdle();
    };
    const detach = (): void => {
      worker.off('error', onError); worker.off('exit', onExit); worker.off('message', onMessage);
    };
    worker.on('error', onError);
    worker.on('exit', onExit);
    worker.on('message', onMessage);
    return {
      onExit(cb) { exitCb = cb; },
      terminate() {
        // The machine stopped its harts: the thread goes idle once its hart has returned.
        if (released) return;
        released = true;
        if (stopped) { toIdle(); return; }
        stopTimer = setTimeout(() => { detach(); void worker.terminate(); }, STOP_MS);
        stopTimer.unref();
      },
    };
  };
}
