// The daemon's socket server: one Connection per client, requests dispatched to the registry,
// events fanned out to subscribers.

import type { Socket } from 'node:net';
import { ConfigErrors } from '../config/errors.js';
import { encodeFrame, LineDecoder, MAX_LINE_BYTES } from '../protocol/framing.js';
import {
  parseRequest, PROTOCOL_VERSION, ProtocolFailure,
  type DaemonStatus, type ErrorBody, type EventMessage, type EventName, type MethodName,
} from '../protocol/messages.js';
import type { Registry } from './registry.js';
import { bootsIn, readSerialLayout, readSerialRange, selectRange, SelectionError, tailStart, type LogSelection } from './serial-log.js';
import type { VmInstance } from './vm-instance.js';

/** A client that reads too slowly is dropped rather than buffered without bound. */
const MAX_PENDING_OUTPUT = 16 * 1024 * 1024;
/** Pending output at which the VMs of a lagging `run` client are held back. */
const THROTTLE_HIGH_WATER = 1024 * 1024;
/** `vm.log` returns at most the newest this-many bytes of what was asked for. */
const MAX_LOG_REPLY_BYTES = 64 * 1024 * 1024;
/** A peer that keeps sending garbage is disconnected. */
const MAX_BAD_LINES = 64;

export interface ServerContext {
  readonly registry: Registry;
  readonly version: string;
  status(): DaemonStatus;
  shutdown(): void;
  /** Tells subscribers a VM is gone. */
  vmDeleted(name: string): void;
  /** Holds back (or releases) VMs whose owner cannot keep up with their output. */
  throttle(names: readonly string[], on: boolean): void;
  log(msg: string): void;
}

interface Subscription { console: boolean }

export class Connection {
  private helloDone = false;
  private badLines = 0;
  private closed = false;
  readonly subscriptions = new Map<string, Subscription>();
  /** events.subscribe without a name: every VM's events, also of VMs created later. */
  allEvents: Subscription | null = null;
  /** `vmctl run` VMs owned by this client: removed when it disconnects. */
  readonly ephemeral = new Set<string>();
  private throttling = false;

  constructor(private readonly sock: Socket, private readonly ctx: ServerContext, private readonly onClose: (c: Connection) => void) {
    sock.on('error', () => { /* close follows */ });
    sock.on('close', () => {
      this.closed = true;
      this.onClose(this);
    });
    const decoder = new LineDecoder(MAX_LINE_BYTES, (f) => {
      if (!f.ok) {
        this.badLine('ProtocolError', f.detail);
        return;
      }
      let req;
      try {
        req = parseRequest(f.value);
      } catch (e) {
        const pf = e as ProtocolFailure;
        const id = typeof f.value === 'object' && f.value !== null && 'id' in f.value && (typeof (f.value as { id: unknown }).id === 'number' || typeof (f.value as { id: unknown }).id === 'string') ? (f.value as { id: number | string }).id : null;
        this.badLine(pf.errorClass ?? 'ProtocolError', pf.message, id);
        return;
      }
      void this.handle(req.id, req.method, req.params);
    });
    sock.on('data', (b: Buffer) => decoder.push(b));
    this.send({ hello: { protocol: PROTOCOL_VERSION, server: 'vmd', version: ctx.version, pid: process.pid } });
  }

  private badLine(cls: ErrorBody['class'], message: string, id: number | string | null = null): void {
    this.send({ id, error: { class: cls, message } });
    if (++this.badLines >= MAX_BAD_LINES) {
      this.ctx.log(`dropping a client after ${MAX_BAD_LINES} malformed messages`);
      this.sock.destroy();
    }
  }

  send(msg: unknown): void {
    if (this.closed || this.sock.destroyed) return;
    if (this.sock.writableLength > MAX_PENDING_OUTPUT) {
      this.ctx.log('dropping a client that does not read its messages');
      this.sock.destroy();
      return;
    }
    this.sock.write(encodeFrame(msg));
    // Flow control for `vmctl run`: when the owner of ephemeral VMs reads slowly (a slow CI log),
    // its VMs stop running until the socket drains, like a serial line with hardware flow control,
    // instead of output piling up until the client is dropped.
    if (!this.throttling && this.ephemeral.size > 0 && this.sock.writableLength > THROTTLE_HIGH_WATER) {
      this.throttling = true;
      this.ctx.throttle([...this.ephemeral], true);
      this.sock.once('drain', () => {
        this.throttling = false;
        this.ctx.throttle([...this.ephemeral], false);
      });
    }
  }

  event(name: EventName, vm: string, data: Record<string, unknown>): void {
    const m: EventMessage = { event: name, vm, data, timestamp: new Date().toISOString() };
    this.send(m);
  }

  private async handle(id: number | string, method: MethodName, params: Record<string, unknown>): Promise<void> {
    try {
      if (!this.helloDone && method !== 'hello') throw new ProtocolFailure('ProtocolError', 'the first request must be "hello" with the protocol version');
      const result = await this.dispatch(method, params);
      this.send({ id, result: result ?? {} });
    } catch (e) {
      this.send({ id, error: toErrorBody(e, this.ctx) });
      if (e instanceof ProtocolFailure && e.errorClass === 'VersionMismatch') this.sock.end();
    }
  }

  private async dispatch(method: MethodName, p: Record<string, unknown>): Promise<unknown> {
    const reg = this.ctx.registry;
    const vm = (): VmInstance => reg.get(p.name as string);
    switch (method) {
      case 'hello':
        if (p.protocol !== PROTOCOL_VERSION) throw new ProtocolFailure('VersionMismatch', `this daemon speaks protocol ${PROTOCOL_VERSION}, the client ${String(p.protocol)}; restart the daemon (vmctl daemon stop) after upgrading`);
        this.helloDone = true;
        return { protocol: PROTOCOL_VERSION };
      case 'daemon.status':
        return this.ctx.status();
      case 'daemon.shutdown':
        setImmediate(() => this.ctx.shutdown());
        return { stopping: true };
      case 'vm.create': {
        const { vm: v, warnings } = reg.create(p.file as string, p.text as string, p.name as string | undefined, p.ephemeral === true);
        if (p.ephemeral === true) this.ephemeral.add(v.name);
        return { ...v.info(), warnings };
      }
      case 'vm.list':
        return [...reg.vms.values()].sort((a, b) => a.name.localeCompare(b.name)).map((v) => v.info());
      case 'vm.info':
        return vm().info();
      case 'vm.start': {
        const v = vm();
        await v.start();
        return v.info();
      }
      case 'vm.stop': {
        const v = vm();
        const t = p.timeoutSeconds as number | undefined;
        const timeoutMs = t !== undefined ? t * 1000 : v.def.shutdown.timeoutMs;
        const path = await v.stop(p.force === true, timeoutMs);
        return { path, ...v.info() };
      }
      case 'vm.pause': {
        const v = vm();
        await v.pause();
        return v.info();
      }
      case 'vm.resume': {
        const v = vm();
        await v.resume();
        return v.info();
      }
      case 'vm.delete': {
        const v = vm();
        if (v.active) {
          if (p.force !== true) throw new ProtocolFailure('WrongState', `VM ${v.name} is ${v.state}; stop it first or use --force`);
          await v.powerOff();
        }
        reg.delete(v);
        this.ctx.log(`vm ${v.name}: removed by a client`);
        this.ctx.vmDeleted(v.name);
        return { deleted: v.name };
      }
      case 'vm.consoleInput': {
        const v = vm();
        const data = Buffer.from(p.data as string, 'base64');
        v.consoleInput(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
        return { bytes: data.length };
      }
      case 'vm.subscribe': {
        const v = vm();
        this.subscriptions.set(v.name, { console: p.console === true });
        return { state: v.state, bootId: v.persisted.bootId, ...(p.history === true ? { history: v.consoleHistory().toString('base64') } : {}) };
      }
      case 'vm.log': {
        const v = vm();
        const r = readLog(v, p);
        // Read and subscribed in the same turn: follow events start right after the data.
        if (p.follow === true) this.subscriptions.set(v.name, { console: true });
        return { ...r, state: v.state, bootId: v.persisted.bootId };
      }
      case 'vm.definition': {
        const v = vm();
        return { text: reg.definitionText(v), state: v.state };
      }
      case 'vm.redefine': {
        const v = vm();
        const { applies, warnings } = reg.redefine(v, p.file as string, p.text as string, p.base as string | undefined);
        return { ...v.info(), applies, warnings };
      }
      case 'vm.dtb':
        return { data: Buffer.from(await vm().dtb()).toString('base64') };
      case 'vm.set': {
        const v = vm();
        reg.set(v, { cpuShares: p.cpuShares as number | undefined, cpuCap: p.cpuCap as number | undefined, cpus: p.cpus as number | undefined });
        return v.info();
      }
      case 'events.subscribe': {
        const sub = { console: p.console === true };
        if (p.name === undefined) {
          this.allEvents = sub;
          return { vms: [...reg.vms.values()].map((v) => ({ name: v.name, state: v.state })) };
        }
        const v = vm();
        this.subscriptions.set(v.name, sub);
        return { vms: [{ name: v.name, state: v.state }] };
      }
    }
  }

  close(): void {
    this.sock.end();
    this.sock.destroy();
  }

  get isClosed(): boolean {
    return this.closed;
  }
}

/** vm.log: the serial log, or the part of it a selection (boot, since, tail) picks, with where
 *  each boot in it starts (offsets into the returned data; negative for the boot it begins in). */
function readLog(v: VmInstance, p: Record<string, unknown>): { data: string; boots: { bootId: number; startedAt: string; offset: number }[]; omittedBytes: number } {
  const sel: LogSelection = {
    ...(p.boot !== undefined ? { boot: p.boot as number } : {}),
    ...(p.since !== undefined ? { since: Date.parse(p.since as string) } : {}),
    ...(p.tail !== undefined ? { tail: p.tail as number } : {}),
  };
  if (sel.boot === 0) throw new ProtocolFailure('InvalidParams', 'vm.log: "boot" is a boot id (1, 2, ...) or counts back from the newest (-1, -2, ...); 0 is neither');
  if (sel.since !== undefined && Number.isNaN(sel.since)) throw new ProtocolFailure('InvalidParams', `vm.log: "since" must be an ISO 8601 time, not ${JSON.stringify(p.since)}`);
  if (sel.tail !== undefined && sel.tail < 0) throw new ProtocolFailure('InvalidParams', 'vm.log: "tail" must be 0 or more');
  const layout = readSerialLayout(v.dir);
  let range;
  try {
    range = selectRange(layout, sel);
  } catch (e) {
    if (e instanceof SelectionError) throw new ProtocolFailure('NoSuchBoot', `VM ${v.name}: ${e.message}`);
    throw e;
  }
  const newest = layout.boots[layout.boots.length - 1];
  if (p.follow === true && range.boot && range.boot !== newest) {
    throw new ProtocolFailure('InvalidParams', `VM ${v.name}: boot ${range.boot.bootId} is over (boot ${newest.bootId} is the newest); only the newest boot can be followed`);
  }
  let from = sel.tail !== undefined ? tailStart(layout, range.from, range.to, sel.tail) : range.from;
  // serialLogMaxSize is configurable: keep one reply line within reason.
  const omittedBytes = Math.max(0, range.to - from - MAX_LOG_REPLY_BYTES);
  from += omittedBytes;
  const boots = bootsIn(layout, from, range.to, range.boot)
    .map((b) => ({ bootId: b.bootId, startedAt: new Date(b.time).toISOString(), offset: b.offset - from }));
  return { data: readSerialRange(layout, from, range.to).toString('base64'), boots, omittedBytes };
}

export function toErrorBody(e: unknown, ctx: { log(m: string): void }): ErrorBody {
  if (e instanceof ProtocolFailure) return { class: e.errorClass, message: e.message };
  if (e instanceof ConfigErrors) return { class: 'ConfigError', message: e.message };
  ctx.log(`internal error: ${(e as Error)?.stack ?? String(e)}`);
  return { class: 'Internal', message: (e as Error)?.message ?? String(e) };
}
