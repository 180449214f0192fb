// The daemon's socket server: one Connection per client, requests dispatched to the registry,
// events fanned out to subscribers.

import { statSync } from 'node:fs';
import type { Socket } from 'node:net';
import { ConfigErrors } from '../config/errors.js';
import { encodeFrame, LineDecoder, MAX_LINE_BYTES } from '../protocol/framing.js';
import {
  parseRequest, PROTOCOL_VERSION, ProtocolFailure, validId,
  type DaemonStatus, type ErrorBody, type EventMessage, type EventName, type MethodName, type StopReport, type SnapshotInfo,
} from '../protocol/messages.js';
import { DEFAULT_FORWARD_ADDRESS, guestPortProblem, parseHostEndpoint } from '../net/forward-spec.js';
import type { Registry } from './registry.js';
import { bootsIn, readSerialLayout, readSerialRange, selectRange, SelectionError, tailStart, type LogSelection } from './serial-log.js';
import type { Snapshot } from './snapshots.js';
import type { VmInstance } from './vm-instance.js';

/** A client that reads too slowly is dropped rather than buffered without bound. */
const MAX_PENDING_OUTPUT = 16 * 1024 * 1024;
/** Pending output at which the VMs of a lagging `run` client are held back. */
const THROTTLE_HIGH_WATER = 1024 * 1024;
/** `vm.log` returns at most the newest this-many bytes of what was asked for. */
const MAX_LOG_REPLY_BYTES = 64 * 1024 * 1024;
/** A peer that keeps sending garbage is disconnected. */
const MAX_BAD_LINES = 64;
/** Requests of one client being handled at once; beyond this its socket is not read until some
 *  are answered, so a client piling up `vm.create`s of 1 MiB each cannot fill the daemon's memory. */
const MAX_IN_FLIGHT = 16;

export interface ServerContext {
  readonly registry: Registry;
  readonly version: string;
  /** The directory of the daemon's built code (dist/), told in the greeting. */
  readonly install: string;
  status(): DaemonStatus;
  /** Stops every running VM (as `vmctl stop`, or at once with `force`), then the daemon. Resolves
   *  with what it did to each VM once they are stopped; the daemon closes after the reply. */
  shutdown(opts: { force: boolean; timeoutSeconds?: number }): Promise<StopReport[]>;
  /** True once a shutdown began: requests that would start a VM are refused. */
  readonly shuttingDown: boolean;
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
  private inFlight = 0;

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
        // The reply echoes the id only when it is a valid one (never a 900 KB string).
        const id = typeof f.value === 'object' && f.value !== null && !Array.isArray(f.value) ? validId((f.value as { id?: unknown }).id) : null;
        this.badLine(pf.errorClass ?? 'ProtocolError', pf.message, id);
        return;
      }
      void this.handle(req.id, req.method, req.params);
    });
    sock.on('data', (b: Buffer) => decoder.push(b));
    this.send({ hello: { protocol: PROTOCOL_VERSION, server: 'vmd', version: ctx.version, pid: process.pid, install: ctx.install, node: process.version } });
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
    if (++this.inFlight === MAX_IN_FLIGHT) this.sock.pause();
    try {
      if (!this.helloDone && method !== 'hello') throw new ProtocolFailure('ProtocolError', 'the first request must be "hello" with the protocol version');
      const result = await this.dispatch(method, params);
      this.send({ id, result: result ?? {} });
    } catch (e) {
      this.send({ id, error: toErrorBody(e, this.ctx) });
      if (e instanceof ProtocolFailure && e.errorClass === 'VersionMismatch') this.sock.end();
    } finally {
      if (this.inFlight-- === MAX_IN_FLIGHT) this.sock.resume();
    }
  }

  private async dispatch(method: MethodName, p: Record<string, unknown>): Promise<unknown> {
    const reg = this.ctx.registry;
    const vm = (): VmInstance => reg.get(p.name as string);
    if (this.ctx.shuttingDown && STARTS_A_VM.has(method)) throw new ProtocolFailure('ShuttingDown', `the daemon is shutting down; ${method} refused`);
    switch (method) {
      case 'hello':
        if (p.protocol !== PROTOCOL_VERSION) throw new ProtocolFailure('VersionMismatch', `this daemon speaks protocol ${PROTOCOL_VERSION}, the client ${String(p.protocol)}; restart the daemon (vmctl daemon stop) after upgrading`);
        this.helloDone = true;
        return { protocol: PROTOCOL_VERSION };
      case 'daemon.status':
        return this.ctx.status();
      case 'daemon.shutdown': {
        return { stopped: await this.ctx.shutdown({ force: p.force === true, timeoutSeconds: p.timeoutSeconds as number | undefined }) };
      }
      case 'vm.create': {
        const { vm: v, warnings } = await reg.create(p.file as string, p.text as string, p.name as string | undefined, p.ephemeral === true);
        if (p.ephemeral === true) this.ephemeral.add(v.name);
        return { ...v.info(), warnings };
      }
      case 'vm.list':
        return [...reg.vms.values()].sort((a, b) => a.name.localeCompare(b.name)).map((v) => v.info());
      case 'vm.info':
        return vm().info();
      case 'vm.start': {
        const v = vm();
        await v.start({ discardState: p.discardState === true });
        return v.info();
      }
      case 'vm.stop': {
        const v = vm();
        const path = await v.stop(p.force === true, v.stopTimeoutMs(p.timeoutSeconds as number | undefined), p.discardState === true);
        return { path, ...v.info() };
      }
      case 'vm.restart': {
        const v = vm();
        const path = await v.restart(p.force === true, v.stopTimeoutMs(p.timeoutSeconds as number | undefined));
        return { path, ...v.info() };
      }
      case 'vm.reset': {
        const v = vm();
        await v.reset();
        return v.info();
      }
      case 'vm.save': {
        const v = vm();
        const r = await v.saveMachine();
        return { ...v.info(), saveSeconds: r.ms / 1000 };
      }
      case 'vm.pause': {
        const v = vm();
        const changed = await v.pause();
        return { ...v.info(), changed };
      }
      case 'vm.resume': {
        const v = vm();
        const changed = await v.resume();
        return { ...v.info(), changed };
      }
      case 'vm.delete': {
        const v = vm();
        const disks = p.disks as string | undefined;
        if (disks !== undefined && disks !== 'delete' && disks !== 'keep') throw new ProtocolFailure('InvalidParams', `vm.delete: parameter "disks" must be "delete" or "keep"`);
        // Images holding data go only when the client said so; checked before anything changes,
        // and again once a running VM is off (its guest may have written meanwhile).
        const refuseUnsaid = (): void => {
          const why = disks === undefined ? reg.unsaidDiskData(v) : null;
          if (why) throw new ProtocolFailure('WrongState', why);
        };
        v.checkNotBusy('delete it');
        // Linked clones built on its layers: refused (or flattened) before anything changes.
        const clones = reg.checkClones(v, p.flattenClones === true);
        refuseUnsaid();
        // (and a kept disk must be one that survives the folder's removal)
        if (disks === 'keep') reg.checkDeletable(v, 'keep');
        if (v.active) {
          if (p.force !== true) throw new ProtocolFailure('WrongState', `VM ${v.name} is ${v.state}; stop it first or use --force`);
          reg.checkDeletable(v, disks === 'keep' ? 'keep' : 'delete'); // refused before the VM is stopped for it
          await v.powerOff('delete');
          refuseUnsaid();
        }
        for (const c of clones) reg.flattenClone(c, v);
        const result = reg.delete(v, disks === 'keep' ? 'keep' : 'delete');
        this.ctx.log(`vm ${v.name}: removed by a client`);
        this.ctx.vmDeleted(v.name);
        return { deleted: v.name, disks: result };
      }
      case 'vm.clone': {
        const v = await reg.clone(vm(), p.newName as string, { snapshot: p.snapshot as string | undefined, linked: p.linked === true });
        return v.info();
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
        const { applies, warnings } = await reg.redefine(v, p.file as string, p.text as string, p.base as string | undefined);
        return { ...v.info(), applies, warnings };
      }
      case 'snapshot.take': {
        const v = vm();
        const s = await v.takeSnapshot(p.snapshot as string | undefined, (p.description as string | undefined) ?? '');
        return { snapshot: snapshotInfo(v, s), vm: v.info(), ...(s.warning ? { warning: s.warning } : {}) };
      }
      case 'snapshot.list': {
        const v = vm();
        return { current: v.tree.snapshots.find((s) => s.id === v.tree.current)?.name ?? null, snapshots: v.tree.snapshots.map((s) => snapshotInfo(v, s)) };
      }
      case 'snapshot.restore': {
        const v = vm();
        await v.restoreSnapshot(p.snapshot as string, p.force === true);
        return v.info();
      }
      case 'snapshot.delete': {
        const v = vm();
        await v.deleteSnapshot(p.snapshot as string, (files) => reg.usersOf(files, v));
        return { deleted: p.snapshot, vm: v.info() };
      }
      case 'vm.set': {
        const v = vm();
        await reg.set(v, {
          memoryTarget: p.memoryTarget as number | undefined,
          cpuShares: p.cpuShares as number | undefined, cpuCap: p.cpuCap as number | undefined, cpus: p.cpus as number | undefined,
        });
        return v.info();
      }
      case 'vm.dtb':
        return { data: Buffer.from(await vm().dtb()).toString('base64') };
      case 'vm.ssh':
        return await vm().sshEndpoint();
      case 'vm.port.list':
        return { forwards: await vm().ports() };
      case 'vm.port.add': {
        const f = forwardParams(p);
        const guestPort = p.guestPort as number;
        const gp = guestPortProblem(guestPort);
        if (gp) throw new ProtocolFailure('InvalidParams', `vm.port.add: ${gp}`);
        return { forward: await vm().addPort({ ...f, guestPort }, p.nic as number | undefined) };
      }
      case 'vm.port.remove': {
        const f = forwardParams(p);
        await vm().removePort(f.proto, f.hostAddress, f.hostPort);
        return { removed: true };
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

/** A snapshot as `snapshot list` shows it. */
function snapshotInfo(v: VmInstance, s: Snapshot): SnapshotInfo {
  const t = v.tree;
  const byId = (id: string | null) => (id === null ? null : t.snapshots.find((x) => x.id === id)?.name ?? null);
  const diskBytes = s.disks.reduce((n, d) => n + allocatedBytes(d.path), 0);
  return {
    name: s.name, id: s.id, parent: byId(s.parent), children: t.children(s.id).map((c) => c.name),
    createdAt: s.createdAt, description: s.description, vmState: s.vmState, withState: s.state !== null,
    stateBytes: s.state?.bytes ?? 0, diskBytes, sizeBytes: diskBytes + (s.state?.bytes ?? 0),
    current: t.current === s.id, pauseSeconds: s.pauseMs === null ? null : s.pauseMs / 1000,
    disks: s.disks.map((d) => ({ name: d.name, layer: d.path })),
  };
}

function allocatedBytes(path: string): number {
  try { return statSync(path).blocks * 512; } catch { return 0; }
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

/** Methods refused once the daemon is shutting down (they would leave a VM running). */
const STARTS_A_VM: ReadonlySet<MethodName> = new Set(['vm.create', 'vm.start', 'vm.restart', 'vm.reset', 'vm.resume']);
/** proto / hostAddress / hostPort of vm.port.add and vm.port.remove, checked. */
function forwardParams(p: Record<string, unknown>): { proto: 'tcp' | 'udp'; hostAddress: string; hostPort: number } {
  const proto = (p.proto ?? 'tcp') as string;
  if (proto !== 'tcp' && proto !== 'udp') throw new ProtocolFailure('InvalidParams', `"proto" must be tcp or udp, not ${JSON.stringify(proto)}`);
  const host = parseHostEndpoint(`${(p.hostAddress as string | undefined) ?? DEFAULT_FORWARD_ADDRESS}:${p.hostPort as number}`);
  if (typeof host === 'string') throw new ProtocolFailure('InvalidParams', host);
  return { proto, hostAddress: host.address, hostPort: host.port };
}

export function toErrorBody(e: unknown, ctx: { log(m: string): void }): ErrorBody {
  if (e instanceof ProtocolFailure) return { class: e.errorClass, message: e.message };
  if (e instanceof ConfigErrors) return { class: 'ConfigError', message: e.message };
  ctx.log(`internal error: ${(e as Error)?.stack ?? String(e)}`);
  return { class: 'Internal', message: (e as Error)?.message ?? String(e) };
}
