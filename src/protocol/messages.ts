// The vmctl socket protocol (version 1). Newline-delimited JSON over VMCTL_HOME/vmd.sock.
//
//   server -> client  {"hello":{"protocol":1,"server":"vmd","version":"0.1.0","pid":123}}   (greeting, first line)
//   client -> server  {"id":1,"method":"hello","params":{"protocol":1}}                     (must be the first request)
//   client -> server  {"id":2,"method":"vm.start","params":{"name":"demo"}}
//   server -> client  {"id":2,"result":{...}}  or  {"id":2,"error":{"class":"NoSuchVm","message":"..."}}
//   server -> client  {"event":"state","vm":"demo","data":{...},"timestamp":"..."}          (after vm.subscribe)
//
// Like QMP: versioned greeting, ids on requests, errors with a class, events separate from replies,
// strict about unknown fields. A malformed line gets an error reply (id null), never a crash.

export const PROTOCOL_VERSION = 1;

export const VM_STATES = ['stopped', 'starting', 'running', 'paused', 'stopping', 'aborted', 'saved'] as const;
export type VmState = (typeof VM_STATES)[number];

export const ERROR_CLASSES = [
  'ProtocolError', 'VersionMismatch', 'UnknownMethod', 'InvalidParams', 'ConfigError',
  'NoSuchVm', 'AlreadyExists', 'WrongState', 'StartFailed', 'Timeout', 'ShuttingDown', 'Internal',
  'NoSuchBoot', 'InsufficientResources',
] as const;
export type ErrorClass = (typeof ERROR_CLASSES)[number];

export interface ErrorBody { readonly class: ErrorClass; readonly message: string }

export class ProtocolFailure extends Error {
  constructor(readonly errorClass: ErrorClass, message: string) {
    super(message);
    this.name = 'ProtocolFailure';
  }
}

export interface Greeting { readonly hello: { protocol: number; server: string; version: string; pid: number } }
export interface Request { readonly id: number | string; readonly method: string; readonly params?: Record<string, unknown> }
export interface Reply { readonly id: number | string | null; readonly result?: unknown; readonly error?: ErrorBody }
export interface EventMessage { readonly event: EventName; readonly vm: string; readonly data: Record<string, unknown>; readonly timestamp: string }
export type EventName = 'state' | 'console' | 'power' | 'deleted' | 'memory';
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
  readonly sizeBytes: number | null;
  /** True when vmctl created the image (and `delete` removes it). */
  readonly createdByVmctl: boolean;
}

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

export interface VmInfo {
  readonly name: string;
  /** The VM's identity, given at create (RFC 4122 version 4, lower case). */
  readonly uuid: string;
  readonly state: VmState;
  /** Why it is paused (null unless paused). */
  readonly pauseReason: PauseReason | null;
  readonly cpus: number;
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
  readonly ephemeral: boolean;
  readonly directory: string;
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
}

type FieldType = 'string' | 'boolean' | 'number' | 'integer';
interface FieldSpec { readonly type: FieldType; readonly required?: boolean }
type ParamSpec = Readonly<Record<string, FieldSpec>>;

const name: FieldSpec = { type: 'string', required: true };

/** Every method and its parameters. Unknown methods and fields are rejected. */
export const METHODS = {
  'hello': { protocol: { type: 'integer', required: true }, client: { type: 'string' } },
  'daemon.status': {},
  'daemon.shutdown': {},
  'vm.create': { file: { type: 'string', required: true }, text: { type: 'string', required: true }, name: { type: 'string' }, ephemeral: { type: 'boolean' } },
  'vm.list': {},
  'vm.info': { name },
  'vm.start': { name },
  'vm.stop': { name, force: { type: 'boolean' }, timeoutSeconds: { type: 'number' } },
  'vm.pause': { name },
  'vm.resume': { name },
  'vm.delete': { name, force: { type: 'boolean' } },
  'vm.consoleInput': { name, data: { type: 'string', required: true } },
  'vm.subscribe': { name, console: { type: 'boolean' }, history: { type: 'boolean' } },
  // boot: a boot id, or -1, -2, ... counting back from the newest; since: an ISO 8601 time; tail: lines.
  'vm.log': { name, follow: { type: 'boolean' }, boot: { type: 'integer' }, since: { type: 'string' }, tail: { type: 'integer' } },
  'vm.dtb': { name },
  // memoryTarget: bytes the balloon leaves the guest (memory.min..memory.size).
  'vm.set': { name, memoryTarget: { type: 'integer' } },
  'vm.definition': { name },
  'vm.redefine': { name, file: { type: 'string', required: true }, text: { type: 'string', required: true }, base: { type: 'string' } },
} as const satisfies Record<string, ParamSpec>;
export type MethodName = keyof typeof METHODS;

/** Checks a decoded line is a well-formed request; throws ProtocolFailure otherwise. */
export function parseRequest(v: unknown): Request & { method: MethodName; params: Record<string, unknown> } {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new ProtocolFailure('ProtocolError', 'a request must be a JSON object');
  const o = v as Record<string, unknown>;
  for (const k of Object.keys(o)) {
    if (k !== 'id' && k !== 'method' && k !== 'params') throw new ProtocolFailure('ProtocolError', `unknown request field "${k}"; expected id, method, params`);
  }
  if (!(typeof o.id === 'number' && Number.isFinite(o.id)) && !(typeof o.id === 'string' && o.id.length <= 128)) {
    throw new ProtocolFailure('ProtocolError', 'request "id" must be a number or a short string');
  }
  if (typeof o.method !== 'string') throw new ProtocolFailure('ProtocolError', 'request "method" must be a string');
  if (!Object.prototype.hasOwnProperty.call(METHODS, o.method)) throw new ProtocolFailure('UnknownMethod', `unknown method ${JSON.stringify(o.method.slice(0, 64))}`);
  const method = o.method as MethodName;
  const spec: ParamSpec = METHODS[method];
  let params: Record<string, unknown> = {};
  if (o.params !== undefined) {
    if (typeof o.params !== 'object' || o.params === null || Array.isArray(o.params)) throw new ProtocolFailure('InvalidParams', `${method}: "params" must be an object`);
    params = o.params as Record<string, unknown>;
  }
  for (const [k, val] of Object.entries(params)) {
    const f = spec[k];
    if (!f) throw new ProtocolFailure('InvalidParams', `${method}: unknown parameter "${k.slice(0, 64)}"${Object.keys(spec).length ? `; expected ${Object.keys(spec).join(', ')}` : '; it takes none'}`);
    const ok = f.type === 'integer' ? Number.isInteger(val) : f.type === 'number' ? typeof val === 'number' && Number.isFinite(val) : typeof val === f.type;
    if (!ok) throw new ProtocolFailure('InvalidParams', `${method}: parameter "${k}" must be ${f.type === 'integer' ? 'an integer' : `a ${f.type}`}`);
  }
  for (const [k, f] of Object.entries(spec)) {
    if (f.required && !(k in params)) throw new ProtocolFailure('InvalidParams', `${method}: missing parameter "${k}"`);
  }
  return { id: o.id as number | string, method, params };
}
