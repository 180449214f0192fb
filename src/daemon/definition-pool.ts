// Validating VM definitions off the daemon's main thread. `vm.create` carries a YAML file of up to
// one protocol line (src/protocol/framing.ts); parsing it and loading its boot images can take far
// longer than a request may hold the daemon's event loop (a 469 KB file with 40,000 keys took a
// minute with the YAML library's duplicate-key check). Every definition is therefore validated in
// one of a few worker threads (definition-worker.ts): other clients are served meanwhile, at most
// POOL_SIZE validations run at once (the rest wait their turn), and one that takes longer than
// JOB_TIMEOUT_MS is ended with its thread.

import { Worker } from 'node:worker_threads';
import type { ParseOptions, VmDefinition } from '../config/vm-definition.js';
import { ProtocolFailure } from '../protocol/messages.js';

export interface DefinitionRequest {
  readonly id: number;
  readonly text: string;
  /** Absolute path of the file the text came from (relative paths resolve against its folder). */
  readonly file: string;
  /** `create --name`, or the name an edited VM keeps. */
  readonly opts: Pick<ParseOptions, 'nameOverride' | 'keepName'>;
}

export type DefinitionReply =
  | { readonly id: number; readonly ok: true; readonly def: VmDefinition }
  | { readonly id: number; readonly ok: false; readonly configError: string }
  | { readonly id: number; readonly ok: false; readonly internal: string };

/** Threads validating at once: the machine's cores are for the guests. */
const POOL_SIZE = 2;
/** A validation running longer than this is ended (its thread terminated). */
const JOB_TIMEOUT_MS = 30_000;
/** An idle thread is ended after this long: it holds a JavaScript heap of its own, 12 MiB of the
 *  daemon's RSS after checking the Linux test guest's definition (measured), which a VM started
 *  just after its `create` should not find still there. Long enough for a script's burst of
 *  creates to reuse it. */
const IDLE_MS = 2_000;

interface Job {
  readonly req: DefinitionRequest;
  resolve(def: VmDefinition): void;
  reject(e: Error): void;
}

interface Slot {
  readonly worker: Worker;
  job: Job | null;
  timer: NodeJS.Timeout | null;
}

export class DefinitionPool {
  private readonly slots = new Set<Slot>();
  private readonly queue: Job[] = [];
  private nextId = 1;
  private closed = false;

  constructor(private readonly workerPath: string, private readonly log: (m: string) => void) {}

  /** The validated definition, or a ProtocolFailure (ConfigError with the file's problems). */
  validate(text: string, file: string, opts: DefinitionRequest['opts']): Promise<VmDefinition> {
    if (this.closed) return Promise.reject(new ProtocolFailure('ShuttingDown', 'the daemon is shutting down'));
    return new Promise((resolve, reject) => {
      this.queue.push({ req: { id: this.nextId++, text, file, opts }, resolve, reject });
      this.dispatch();
    });
  }

  /** Threads running now (busy or idle). */
  get threadCount(): number {
    return this.slots.size;
  }

  /** Ends every thread; waiting validations fail. */
  close(): void {
    this.closed = true;
    for (const job of this.queue.splice(0)) job.reject(new ProtocolFailure('ShuttingDown', 'the daemon is shutting down'));
    for (const slot of [...this.slots]) this.end(slot, new ProtocolFailure('ShuttingDown', 'the daemon is shutting down'));
  }

  private dispatch(): void {
    while (this.queue.length > 0) {
      let slot = [...this.slots].find((s) => s.job === null);
      if (!slot) {
        if (this.slots.size >= POOL_SIZE) return;
        slot = this.spawn();
      }
      const job = this.queue.shift()!;
      if (slot.timer) clearTimeout(slot.timer);
      slot.job = job;
      const s = slot;
      s.timer = setTimeout(() => {
        this.log(`validating ${job.req.file} took longer than ${JOB_TIMEOUT_MS / 1000} s; ending it`);
        this.end(s, new ProtocolFailure('ConfigError', `${job.req.file}: validating the VM definition took longer than ${JOB_TIMEOUT_MS / 1000} s; expected a smaller, simpler file`));
        this.dispatch();
      }, JOB_TIMEOUT_MS);
      s.worker.postMessage(job.req);
    }
  }

  private spawn(): Slot {
    const worker = new Worker(this.workerPath, { name: 'vm definitions' });
    const slot: Slot = { worker, job: null, timer: null };
    this.slots.add(slot);
    worker.on('message', (reply: DefinitionReply) => {
      const job = slot.job;
      if (!job || job.req.id !== reply.id) return;
      slot.job = null;
      if (slot.timer) clearTimeout(slot.timer);
      // Idle threads are ended after a while; the next request starts one again.
      slot.timer = setTimeout(() => { if (slot.job === null) this.end(slot, null); }, IDLE_MS);
      slot.timer.unref();
      if (reply.ok) job.resolve(reply.def);
      else if ('configError' in reply) job.reject(new ProtocolFailure('ConfigError', reply.configError));
      else {
        this.log(`internal error while validating ${job.req.file}: ${reply.internal}`);
        job.reject(new ProtocolFailure('Internal', `validating ${job.req.file} failed: ${reply.internal.split('\n')[0]}`));
      }
      this.dispatch();
    });
    const gone = (why: string) => {
      if (!this.slots.has(slot)) return;
      this.end(slot, new ProtocolFailure('Internal', `validating ${slot.job?.req.file ?? 'a VM definition'} failed: ${why}`));
      this.dispatch();
    };
    worker.on('error', (e) => {
      this.log(`the definition worker crashed: ${e.stack ?? e.message}`);
      gone(`the validating thread crashed (${e.message})`);
    });
    worker.on('exit', (code) => gone(`the validating thread exited (code ${code})`));
    return slot;
  }

  /** Ends a thread; its job, if any, fails with `why`. */
  private end(slot: Slot, why: Error | null): void {
    this.slots.delete(slot);
    if (slot.timer) clearTimeout(slot.timer);
    const job = slot.job;
    slot.job = null;
    if (job && why) job.reject(why);
    void slot.worker.terminate();
  }
}
