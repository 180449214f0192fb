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

export const PROTOCOL_VERSION = 1;

export const VM_STATES = ['stopped', 'starting', 'running', 'paused', 'stopping', 'aborted', 'saved'] as const;
export type VmState = (typeof VM_STATES)[number];

export const ERROR_CLASSES = [
  'ProtocolError', 'VersionMismatch', 'UnknownMethod', 'InvalidParams', 'ConfigError',
  'NoSuchVm', 'AlreadyExists', 'WrongState', 'StartFailed', 'Timeout', 'ShuttingDown', 'Internal',
  'NoSuchBoot',
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
/** sched: the daemon's CPU scheduler changed something for the VM (data.kind: `settings` after
 *  `vmctl set`, `held` when it starts getting less CPU than it wants, with `reason` contention or
 *  cap, `released` when that ends). */
export type EventName = 'state' | 'console' | 'power' | 'deleted' | 'sched';

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
  readonly state: VmState;
  readonly cpus: number;
  /** CPU weight (1..10000) and cap (% of one host core per hart). */
  readonly cpuShares: number;
  readonly cpuCap: number;
  readonly memoryBytes: number;
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
  'vm.definition': { name },
  'vm.redefine': { name, file: { type: 'string', required: true }, text: { type: 'string', required: true }, base: { type: 'string' } },
  // CPU settings: shares and cap apply at once (and are saved); cpus only to a stopped VM.
  'vm.set': { name, cpuShares: { type: 'integer' }, cpuCap: { type: 'number' }, cpus: { type: 'integer' } },
  // Every VM's events (or one VM's), including VMs created later; console output only with console.
  'events.subscribe': { name: { type: 'string' }, console: { type: 'boolean' } },
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
