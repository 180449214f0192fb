// The vmctl socket protocol (version 1). Newline-delimited JSON over VMCTL_HOME/vmd.sock.
//
//   server -> client  {"hello":{"protocol":1,"server":"vmd","version":"0.1.0","pid":123}}   (greeting, first line)
//   client -> server  {"id":1,"method":"hello","params":{"protocol":1}}                     (must be the first request)
//   client -> server  {"id":2,"method":"vm.start","params":{"name":"demo"}}
//   server -> client  {"id":2,"result":{...}}  or  {"id":2,"error":{"class":"NoSuchVm","message":"..."}}
//   server -> client  {"event":"state","vm":"demo","data":{...},"timestamp":"..."}          (after vm.subscribe or events.subscribe)
//
// Like QMP: versioned greeting, ids on requests, errors with a class, events separate from replies,
// strict about unknown fields. A malformed line gets an error reply (id null), never a crash.

import { quote } from '../config/quote.js';

export const PROTOCOL_VERSION = 1;

export const VM_STATES = ['stopped', 'starting', 'running', 'paused', 'stopping', 'aborted', 'saved'] as const;
export type VmState = (typeof VM_STATES)[number];
/** The states a VM can reach: what `wait --state` offers (all of them, `saved` included). */
export const REACHABLE_VM_STATES: readonly VmState[] = VM_STATES;

/** States in which the VM's machine exists (its worker runs). The others, stopped, aborted and
 *  saved, have no machine running. */
export function isActiveState(s: string): boolean {
  return s === 'starting' || s === 'running' || s === 'paused' || s === 'stopping';
}

export const ERROR_CLASSES = [
  'ProtocolError', 'VersionMismatch', 'UnknownMethod', 'InvalidParams', 'ConfigError',
  'NoSuchVm', 'AlreadyExists', 'WrongState', 'StartFailed', 'Timeout', 'ShuttingDown', 'Internal',
  'NoSuchBoot', 'NoSuchSnapshot', 'InsufficientResources',
] as const;
export type ErrorClass = (typeof ERROR_CLASSES)[number];

export interface ErrorBody { readonly class: ErrorClass; readonly message: string }

export class ProtocolFailure extends Error {
  constructor(readonly errorClass: ErrorClass, message: string) {
    super(message);
    this.name = 'ProtocolFailure';
  }
}

/** `install` is the directory of the daemon's built code (its dist/), `node` the Node version it
 *  runs on: a client built elsewhere can tell it is talking to another vmctl's daemon. */
export interface Greeting { readonly hello: { protocol: number; server: string; version: string; pid: number; install?: string; node?: string } }
export interface Request { readonly id: number | string; readonly method: string; readonly params?: Record<string, unknown> }
export interface Reply { readonly id: number | string | null; readonly result?: unknown; readonly error?: ErrorBody }
export interface EventMessage { readonly event: EventName; readonly vm: string; readonly data: Record<string, unknown>; readonly timestamp: string }
/** sched: the daemon's CPU scheduler changed something for the VM (data.kind: `settings` after
 *  `vmctl set`, `held` when it starts getting less CPU than it wants, with `reason` contention or
 *  cap, `released` when that ends). memory: the host's memory for the VM (waiting for memory,
 *  paused for it, the balloon policy's moves; data.kind says which). */
export type EventName = 'state' | 'console' | 'power' | 'deleted' | 'sched' | 'memory';
/** Why a VM is paused: `vmctl pause`, or the host ran short of memory while it needed some. */
export type PauseReason = 'user' | 'memory';

export interface PowerInfo {
  readonly kind: 'poweroff' | 'reset';
  readonly code?: number;
  readonly failed?: boolean;
  readonly source: string;
}

export interface DiskInfo {
  readonly name: string;
  readonly path: string;
  readonly readonly: boolean;
  /** The image's size as the guest sees it, read from the file (null when it cannot be read). */
  readonly virtualBytes: number | null;
  /** Host space the image takes (0 for a new sparse image; null when it cannot be read). */
  readonly allocatedBytes: number | null;
  /** True when vmctl created the image (`delete` asks before removing it when it holds data). */
  readonly createdByVmctl: boolean;
  /** Requests the guest completed on it this boot, and their bytes (null while the VM does not run). */
  readonly reads: number | null;
  readonly writes: number | null;
  readonly readBytes: number | null;
  readonly writtenBytes: number | null;
  readonly flushes: number | null;
}

/** How `vmctl stop` (and `daemon stop`, `restart`) ended a VM. */
export type StopPath = 'already-stopped' | 'guest-poweroff' | 'timeout-poweroff' | 'poweroff' | 'discarded-state';

/** What `daemon.shutdown` did to each VM that was running. */
export interface StopReport { readonly name: string; readonly path: StopPath }

/** What `vm.delete` did with each disk image vmctl had created for the VM. */
export interface DeletedDisk { readonly path: string; readonly allocatedBytes: number; readonly action: 'deleted' | 'kept' }
/** A VM's memory as `info --json` shows it: sizes in bytes; null where nothing is known (the VM
 *  does not run, has no balloon, or the guest does not report that figure). */
export interface MemoryInfo {
  /** memory.size */
  readonly configuredBytes: number;
  /** memory.min: the balloon target's floor */
  readonly minBytes: number;
  /** Host memory held for guest RAM now (touched RAM chunks). */
  readonly residentBytes: number | null;
  /** Memory the guest is asked to keep (configured minus the balloon target). */
  readonly targetBytes: number | null;
  /** Memory the guest keeps: configured minus the pages in the balloon. */
  readonly actualBytes: number | null;
  readonly balloonBytes: number | null;
  /** Bytes the guest reported free (free page reporting) since it started. */
  readonly reportedFreeBytes: number | null;
  /** RAM chunks dropped since the VM started (balloon). */
  readonly chunksReleased: number | null;
  // The guest's own figures (virtio-balloon statistics).
  readonly guestTotalBytes: number | null;
  readonly guestFreeBytes: number | null;
  readonly guestAvailableBytes: number | null;
  readonly guestCachesBytes: number | null;
  readonly majorFaults: number | null;
  readonly minorFaults: number | null;
  readonly swapIns: number | null;
  readonly swapOuts: number | null;
  /** Seconds since the guest last sent its statistics. */
  readonly guestStatsAgeSeconds: number | null;
}

/** Live figures of a VM (`vmctl stats`; also in `vm.info`): rates are per second, over the last
 *  second. Null while the VM does not run. */
export interface VmFigures {
  /** Host CPU used by the VM, % of one core (up to 100 per hart). */
  readonly cpuPercent: number | null;
  readonly hartCpuPercent: readonly number[] | null;
  /** Guest instructions retired per second, in millions, in all and per hart. */
  readonly mips: number | null;
  readonly hartMips: readonly number[] | null;
  /** Why the scheduler gives the VM less CPU than it wants: contention (other VMs), cap, or null. */
  readonly heldBack: 'contention' | 'cap' | null;
}

export interface VmInfo extends VmFigures {
  readonly name: string;
  /** The VM's identity, given at create (RFC 4122 version 4, lower case). */
  readonly uuid: string;
  readonly state: VmState;
  /** Why it is paused (null unless paused). */
  readonly pauseReason: PauseReason | null;
  readonly cpus: number;
  /** CPU weight (1..10000) and cap (% of one host core per hart). */
  readonly cpuShares: number;
  readonly cpuCap: number;
  readonly memoryBytes: number;
  readonly memory: MemoryInfo;
  readonly uptimeSeconds: number;
  readonly bootId: number;
  readonly createdAt: string;
  readonly startedAt: string | null;
  readonly firmware: string;
  readonly kernel: string | null;
  readonly initrd: string | null;
  readonly cmdline: string;
  readonly disks: readonly DiskInfo[];
  readonly shutdownConsole: string | null;
  readonly lastPower: (PowerInfo & { at: string }) | null;
  readonly lastError: string | null;
  readonly instructionsRetired: number | null;
  /** The machine state of a `saved` VM: its file's size and when it was written. */
  readonly savedState: { readonly bytes: number; readonly savedAt: string } | null;
  /** The VM this one was cloned from (at which snapshot; linked: built on its layers). */
  readonly clonedFrom: { readonly vm: string; readonly snapshot: string | null; readonly linked: boolean } | null;
  /** How many snapshots the VM has, and the one its current state descends from. */
  readonly snapshots: number;
  readonly currentSnapshot: string | null;
  readonly ephemeral: boolean;
  readonly directory: string;
}

/** A port forward as `vmctl port` shows it. */
export interface PortInfo {
  readonly nic: number;
  readonly proto: 'tcp' | 'udp';
  readonly hostAddress: string;
  /** The port bound (the one the system picked when 0 was asked for). */
  readonly hostPort: number;
  readonly guestPort: number;
}

/** One snapshot as `snapshot list --json` shows it. */
export interface SnapshotInfo {
  readonly name: string;
  readonly id: string;
  readonly parent: string | null;
  readonly children: readonly string[];
  readonly createdAt: string;
  readonly description: string;
  /** What the VM was doing: running and paused VMs' snapshots hold the machine state. */
  readonly vmState: 'stopped' | 'running' | 'paused' | 'saved';
  readonly withState: boolean;
  readonly stateBytes: number;
  /** Host space of the snapshot's own disk layers. */
  readonly diskBytes: number;
  readonly sizeBytes: number;
  /** The VM's current state descends from this snapshot. */
  readonly current: boolean;
  /** How long the guest was held to take it (running VMs). */
  readonly pauseSeconds: number | null;
  readonly disks: readonly { readonly name: string; readonly layer: string }[];
}

export interface DaemonStatus {
  readonly pid: number;
  readonly version: string;
  readonly protocol: number;
  readonly home: string;
  readonly socket: string;
  readonly uptimeSeconds: number;
  readonly vms: number;
  readonly runningVms: number;
  /** The directory of the daemon's built code (dist/), and the Node version it runs on. */
  readonly install: string;
  readonly node: string;
  /** The daemon process's memory (process.memoryUsage()), in bytes: rss is what the OS counts,
   *  heapUsed the live JavaScript objects, external and arrayBuffers what lives outside the heap. */
  readonly memory: { readonly rss: number; readonly heapUsed: number; readonly heapTotal: number; readonly external: number; readonly arrayBuffers: number };
  /** VM worker threads kept idle for the next VM that starts (ended after 30 s unused). */
  readonly idleVmThreads: number;
}

type FieldType = 'string' | 'boolean' | 'number' | 'integer';
interface FieldSpec { readonly type: FieldType; readonly required?: boolean }
type ParamSpec = Readonly<Record<string, FieldSpec>>;

const name: FieldSpec = { type: 'string', required: true };

/** Every method and its parameters. Unknown methods and fields are rejected. */
export const METHODS = {
  'hello': { protocol: { type: 'integer', required: true }, client: { type: 'string' } },
  'daemon.status': {},
  'daemon.shutdown': { force: { type: 'boolean' }, timeoutSeconds: { type: 'number' } },
  'vm.create': { file: { type: 'string', required: true }, text: { type: 'string', required: true }, name: { type: 'string' }, ephemeral: { type: 'boolean' } },
  'vm.list': {},
  'vm.info': { name },
  'vm.start': { name, discardState: { type: 'boolean' } },
  'vm.stop': { name, force: { type: 'boolean' }, timeoutSeconds: { type: 'number' }, discardState: { type: 'boolean' } },
  'vm.save': { name },
  'vm.restart': { name, force: { type: 'boolean' }, timeoutSeconds: { type: 'number' } },
  'vm.reset': { name },
  'vm.pause': { name },
  'vm.resume': { name },
  /** disks: "delete" or "keep" the images vmctl created; without it, images holding data refuse the delete. */
  'vm.delete': { name, force: { type: 'boolean' }, disks: { type: 'string' }, flattenClones: { type: 'boolean' } },
  'vm.clone': { name, newName: { type: 'string', required: true }, snapshot: { type: 'string' }, linked: { type: 'boolean' } },
  'vm.consoleInput': { name, data: { type: 'string', required: true } },
  'vm.subscribe': { name, console: { type: 'boolean' }, history: { type: 'boolean' } },
  // boot: a boot id, or -1, -2, ... counting back from the newest; since: an ISO 8601 time; tail: lines.
  'vm.log': { name, follow: { type: 'boolean' }, boot: { type: 'integer' }, since: { type: 'string' }, tail: { type: 'integer' } },
  'vm.dtb': { name },
  // memoryTarget: bytes the balloon leaves the guest (memory.min..memory.size; a running VM).
  // CPU settings: shares and cap apply at once (and are saved); cpus only to a stopped VM.
  'vm.set': { name, memoryTarget: { type: 'integer' }, cpuShares: { type: 'integer' }, cpuCap: { type: 'number' }, cpus: { type: 'integer' } },
  'vm.definition': { name },
  'snapshot.take': { name, snapshot: { type: 'string' }, description: { type: 'string' } },
  'snapshot.list': { name },
  'snapshot.restore': { name, snapshot: { type: 'string', required: true }, force: { type: 'boolean' } },
  'snapshot.delete': { name, snapshot: { type: 'string', required: true } },
  'vm.redefine': { name, file: { type: 'string', required: true }, text: { type: 'string', required: true }, base: { type: 'string' } },
  // Port forwards of a running VM's user-mode network (as QEMU's hostfwd_add/hostfwd_remove).
  'vm.port.list': { name },
  'vm.port.add': { name, proto: { type: 'string' }, hostAddress: { type: 'string' }, hostPort: { type: 'integer', required: true }, guestPort: { type: 'integer', required: true }, nic: { type: 'integer' } },
  'vm.port.remove': { name, proto: { type: 'string' }, hostAddress: { type: 'string' }, hostPort: { type: 'integer', required: true } },
  // Where `vmctl ssh` connects (a forward to the guest's port 22, made if needed) and with what key.
  'vm.ssh': { name },
  // Every VM's events (or one VM's), including VMs created later; console output only with console.
  'events.subscribe': { name: { type: 'string' }, console: { type: 'boolean' } },
} as const satisfies Record<string, ParamSpec>;
export type MethodName = keyof typeof METHODS;

/** Longest string id a request may carry (an id is echoed in the reply). */
export const MAX_ID_CHARS = 128;

/** The request's id when it is one the reply may echo (a finite number or a short string), else null. */
export function validId(id: unknown): number | string | null {
  if (typeof id === 'number' && Number.isFinite(id)) return id;
  if (typeof id === 'string' && id.length <= MAX_ID_CHARS) return id;
  return null;
}

/**
 * Checks a decoded line is a well-formed request; throws ProtocolFailure otherwise. Parameters
 * come back in a null-prototype object holding only the method's own parameters: a key such as
 * "__proto__" or "constructor" is refused as unknown, never looked up on Object.prototype.
 */
export function parseRequest(v: unknown): Request & { method: MethodName; params: Record<string, unknown> } {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new ProtocolFailure('ProtocolError', 'a request must be a JSON object');
  const o = v as Record<string, unknown>;
  for (const k of Object.keys(o)) {
    if (k !== 'id' && k !== 'method' && k !== 'params') throw new ProtocolFailure('ProtocolError', `unknown request field ${quote(k)}; expected id, method, params`);
  }
  const id = validId(o.id);
  if (id === null) {
    throw new ProtocolFailure('ProtocolError', `request "id" must be a number or a string of at most ${MAX_ID_CHARS} characters; found ${typeof o.id === 'string' ? quote(o.id) : o.id === undefined ? 'none' : typeof o.id}`);
  }
  if (typeof o.method !== 'string') throw new ProtocolFailure('ProtocolError', 'request "method" must be a string');
  if (!Object.hasOwn(METHODS, o.method)) throw new ProtocolFailure('UnknownMethod', `unknown method ${quote(o.method)}`);
  const method = o.method as MethodName;
  const spec: ParamSpec = METHODS[method];
  const expected = Object.keys(spec).length ? `; expected ${Object.keys(spec).join(', ')}` : '; it takes none';
  const params: Record<string, unknown> = Object.create(null);
  if (o.params !== undefined) {
    if (typeof o.params !== 'object' || o.params === null || Array.isArray(o.params)) throw new ProtocolFailure('InvalidParams', `${method}: "params" must be an object`);
    for (const [k, val] of Object.entries(o.params)) {
      if (!Object.hasOwn(spec, k)) throw new ProtocolFailure('InvalidParams', `${method}: unknown parameter ${quote(k)}${expected}`);
      const f = spec[k];
      const ok = f.type === 'integer' ? Number.isInteger(val) : f.type === 'number' ? typeof val === 'number' && Number.isFinite(val) : typeof val === f.type;
      if (!ok) throw new ProtocolFailure('InvalidParams', `${method}: parameter "${k}" must be ${f.type === 'integer' ? 'an integer' : `a ${f.type}`}`);
      params[k] = val;
    }
  }
  for (const [k, f] of Object.entries(spec)) {
    if (f.required && !Object.hasOwn(params, k)) throw new ProtocolFailure('InvalidParams', `${method}: missing parameter "${k}"`);
  }
  return { id, method, params };
}
