// The VM definition: the strict YAML schema a user writes (see vm-config.example.yaml).
// Parsing resolves relative paths against the file's folder, so a stored definition is
// position-independent: every path in it is absolute.

import { existsSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { isScalar, stringify, type Node } from 'yaml';
import type { FirmwareSpec } from '../board/machine-types.js';
import { ConfigError, ConfigErrors } from './errors.js';
import { readYamlFile, SchemaReader } from './yaml-schema.js';
import { formatSize } from './units.js';
import { bootImageProblems } from './boot-images.js';
import { quote, quotePath } from './quote.js';
import { formatDuration, readDocument, ReadContext, type Spec } from './schema.js';
import { DEFAULT_CPU_CAP, DEFAULT_CPU_SHARES, memoryBytesOf, memoryMinOf, VM_NAME_RE, VM_NAME_TEXT, VM_SCHEMA, type VmFile } from './vm-schema.js';
import { isNull } from './schema.js';
import { defaultNicCount, virtioSlotsNeeded } from '../board/virtio-slots.js';
// Disk identity as the disk locks see it: the same file under two names is one disk.
import { canonicalImagePath } from '../disk/lock.js';
import { VIRTIO_COUNT } from '../board/memory-map.js';
import { parseHostEndpoint } from '../net/forward-spec.js';
import { formatMac, macProblem, parseMac } from '../net/mac.js';
import { DiskError } from '../disk/errors.js';
import { imageChain } from '../disk/image.js';

export { MAX_CPUS, MAX_DISKS, MAX_MEMORY, MIN_MEMORY, VM_NAME_RE } from './vm-schema.js';

export interface DiskDefinition {
  /** Absolute path of the raw image. */
  readonly path: string;
  /** Size for an image vmctl creates when `path` does not exist yet. */
  readonly sizeBytes?: number;
  readonly readonly: boolean;
  /** virtio-blk serial (disk0, disk1, ... by default). */
  readonly name: string;
}

/** A port forward of a user-mode NIC: host side as bound (127.0.0.1 unless given). */
export interface ForwardDefinition {
  readonly proto: 'tcp' | 'udp';
  readonly hostAddress: string;
  readonly hostPort: number;
  readonly guestPort: number;
}

/** A network card; `mac` absent: derived from the VM's UUID when it starts. */
export type NicDefinition =
  | { readonly mode: 'user'; readonly forwards: readonly ForwardDefinition[]; readonly restrict: boolean; readonly mac?: string }
  | { readonly mode: 'switch'; readonly name: string; readonly mac?: string };

export interface NetworkDefinition {
  /** False when the file has no `network:` key: then `nics` is the default NIC (one on user-mode
   *  NAT) if a virtio slot was left after the disks, else nothing. */
  readonly explicit: boolean;
  readonly nics: readonly NicDefinition[];
}

/** The balloon as the definition has it (after the virtio slot budget). */
export interface BalloonDefinition {
  /** The VM gets a virtio-balloon. False when `enabled: false`, or when no slot was left for the
   *  default one (a warning says so). */
  readonly enabled: boolean;
  /** The definition has a `balloon:` key (only then is it written back, and a balloon that does
   *  not fit an error). */
  readonly explicit: boolean;
  readonly deflateOnOom: boolean;
  readonly statsIntervalMs: number;
  readonly freePageReporting: boolean;
}

export interface VmDefinition {
  readonly name: string;
  readonly cpus: number;
  /** Relative CPU weight (1..10000) and cap (percent of one host core per hart, 1..100). */
  readonly cpuShares: number;
  readonly cpuCap: number;
  readonly memoryBytes: number;
  /** The least memory the balloon may leave the guest (memory.min). */
  readonly memoryMinBytes: number;
  /** memory.min was written (it is written back only then). */
  readonly memoryMinGiven: boolean;
  readonly balloon: BalloonDefinition;
  readonly boot: {
    readonly firmware: FirmwareSpec;
    readonly kernel?: string;
    readonly initrd?: string;
    readonly cmdline: string;
  };
  readonly disks: readonly DiskDefinition[];
  readonly shutdown: {
    /** Typed on the console by `vmctl stop` (without --force). */
    readonly console?: string;
    /** How long `stop` waits for the guest after typing the command (ms); `--timeout` overrides. */
    readonly timeoutMs: number;
  };
  readonly network: NetworkDefinition;
  /** What is worth saying about a valid definition (validate and create print it; not stored). */
  readonly warnings?: readonly string[];
}

export interface ParseOptions {
  /** Replaces (or supplies) `name:` — `vmctl create --name`. */
  readonly nameOverride?: string;
  /** Skip file-existence checks (used when re-reading a stored definition whose files may have moved). */
  readonly skipFileChecks?: boolean;
  /** The name an existing VM has (`vmctl edit`): `name:` may be left out, not changed. */
  readonly keepName?: string;
}

/** Reads and validates a VM file. Throws ConfigErrors listing every problem found. */
export function loadVmDefinition(file: string, opts: ParseOptions = {}): VmDefinition {
  const abs = resolve(file);
  return parseVmDefinition(readYamlFile(abs, file), file, dirname(abs), opts);
}

/**
 * Validates YAML text; `displayFile` is used in messages, `baseDir` resolves relative paths.
 * First the shape, as VM_SCHEMA declares it (src/config/vm-schema.ts); then, where the shape of
 * what they need is valid, the checks that look outside the file: the files exist and load as the
 * board will load them, disks are distinct and not the VM's own boot images.
 */
export function parseVmDefinition(text: string, displayFile: string, baseDir: string, opts: ParseOptions = {}): VmDefinition {
  const r = new SchemaReader(displayFile, text);
  if (r.errors.length > 0) throw new ConfigErrors(r.errors);
  const given = new Map<string, unknown>();
  if (opts.nameOverride !== undefined) {
    if (!VM_NAME_RE.test(opts.nameOverride)) r.errors.push(new ConfigError({ file: '--name', line: 1, col: 1 }, `name ${quote(opts.nameOverride)} is not a valid VM name; expected ${VM_NAME_TEXT}`));
    given.set('name', opts.nameOverride);
  }
  if (opts.keepName !== undefined) given.set('name', opts.keepName);
  const ctx = new ReadContext(r, baseDir, given);
  const v = readDocument(VM_SCHEMA, ctx, false);
  if (!v) throw new ConfigErrors(r.errors);
  const namePair = ctx.at.get('name');
  if (opts.keepName !== undefined && namePair && ctx.ok('name')) {
    const written = isScalar(namePair.value) ? (typeof namePair.value.value === 'string' ? namePair.value.value : namePair.value.source) : undefined;
    if (written !== opts.keepName) r.fail(namePair.value, `name: found ${written === undefined ? String(written) : quote(written)}, but this is VM ${quote(opts.keepName)}, and a VM cannot be renamed; expected ${quote(opts.keepName)}`, namePair.key);
  }
  checkBeyondShape(v, ctx, !opts.skipFileChecks);
  const warnings: string[] = [];
  const balloon = balloonFitting(v, ctx, warnings);
  const network = networkDefinition(v, ctx, warnings, balloon.enabled);
  if (r.errors.length > 0) throw new ConfigErrors(r.errors);
  return {
    name: v.name,
    cpus: v.cpus.count,
    cpuShares: v.cpus.shares,
    cpuCap: v.cpus.cap,
    memoryBytes: memoryBytesOf(v.memory),
    memoryMinBytes: memoryMinOf(v.memory),
    memoryMinGiven: typeof v.memory === 'object' && v.memory.min !== undefined,
    balloon,
    boot: { firmware: v.boot.firmware, kernel: v.boot.kernel, initrd: v.boot.initrd, cmdline: v.boot.cmdline },
    disks: v.disks.map((d) => ({ path: d.path, sizeBytes: d.size, readonly: d.readonly, name: d.name })),
    shutdown: { console: v.shutdown.console, timeoutMs: v.shutdown.timeout },
    network,
    ...(warnings.length > 0 ? { warnings } : {}),
  };
}

/**
 * The NICs, with what the shape cannot say: forward host addresses and ports in range and each
 * bound once, MACs usable and distinct, and room on the board: disks take the virtio slots from
 * the bottom, NICs from the top, 8 in all. An explicit NIC that does not fit is an error at its
 * key; the default NIC takes a slot only where one is left after the disks and the balloon
 * (src/board/virtio-slots.ts), else it is left out (with a warning) so a file that fit before still does.
 */
function networkDefinition(v: VmFile, ctx: ReadContext, warnings: string[], balloon: boolean): NetworkDefinition {
  const fail = (path: string, message: string): void => {
    const pair = ctx.at.get(path);
    ctx.r.fail(pair?.value, message, pair?.key);
  };
  const n = v.network;
  if (n.kind === 'default') {
    if (defaultNicCount(v.disks.length, balloon) === 1) return { explicit: false, nics: [{ mode: 'user', forwards: [], restrict: false }] };
    warnings.push(`no NIC: the ${v.disks.length} disks${balloon ? ' and the balloon' : ''} take all ${VIRTIO_COUNT} virtio slots, so the default NIC (user-mode NAT) is left out; give fewer disks for a network, or network: none to say so`);
    return { explicit: false, nics: [] };
  }
  const nics: NicDefinition[] = [];
  const macs = new Map<string, number>();
  const bound = new Map<string, string>();
  n.nics.forEach((f, i) => {
    const where = `network[${i}]`;
    if (!ctx.ok(where)) return;
    if (virtioSlotsNeeded(v.disks.length, i + 1, false) > VIRTIO_COUNT) {
      fail(where, `${where}: no virtio slot left for this NIC: ${v.disks.length} disks and ${n.nics.length} NIC${n.nics.length === 1 ? '' : 's'}; the board has ${VIRTIO_COUNT} slots`);
    }
    if (f.mac !== undefined) {
      const bytes = parseMac(f.mac)!;
      const problem = macProblem(bytes);
      const key = formatMac(bytes);
      if (problem) fail(`${where}.mac`, `${where}.mac: ${f.mac} cannot be a NIC's address: ${problem}`);
      else if (macs.has(key)) fail(`${where}.mac`, `${where}.mac: ${f.mac} is also network[${macs.get(key)}]'s address; expected a MAC of its own`);
      macs.set(key, i);
    }
    if (f.mode === 'switch') {
      nics.push({ mode: 'switch', name: f.name!, ...(f.mac !== undefined ? { mac: f.mac } : {}) });
      return;
    }
    const forwards: ForwardDefinition[] = [];
    f.forwards.forEach((fw, j) => {
      const at = `${where}.forwards[${j}]`;
      if (!ctx.ok(at)) return;
      const host = parseHostEndpoint(fw.host);
      if (typeof host === 'string') { fail(`${at}.host`, `${at}.host: ${host}`); return; }
      const id = `${fw.proto} ${host.address}:${host.port}`;
      if (host.port !== 0 && bound.has(id)) fail(`${at}.host`, `${at}.host: ${id} is already forwarded by ${bound.get(id)}; expected each host port once`);
      bound.set(id, at);
      forwards.push({ proto: fw.proto as 'tcp' | 'udp', hostAddress: host.address, hostPort: host.port, guestPort: fw.guest });
    });
    nics.push({ mode: 'user', forwards, restrict: f.restrict, ...(f.mac !== undefined ? { mac: f.mac } : {}) });
  });
  return { explicit: true, nics };
}

/**
 * The virtio slot budget (src/board/virtio-slots.ts): disks come first; a balloon the definition
 * asks for (a `balloon:` key with enabled: true) that finds no slot is an error at its key, the
 * default one is left out with a warning, so that a file that validated before keeps validating.
 */
function balloonFitting(v: VmFile, ctx: ReadContext, warnings: string[]): BalloonDefinition {
  // Explicit NICs claim their slots before the balloon (an explicit NIC that does not fit is an error of its own).
  const nics = v.network.kind === 'list' ? v.network.nics.length : 0;
  const b = v.balloon;
  const explicit = ctx.at.has('balloon') && !isNull(ctx.at.get('balloon')!.value);
  const settings = { explicit, deflateOnOom: b.deflateOnOom, statsIntervalMs: b.statsInterval, freePageReporting: b.freePageReporting };
  if (!b.enabled || !ctx.ok('disks')) return { enabled: b.enabled, ...settings };
  const needed = virtioSlotsNeeded(v.disks.length, nics, true);
  if (needed <= VIRTIO_COUNT) return { enabled: true, ...settings };
  const why = `the board's ${VIRTIO_COUNT} virtio slots are all taken by ${v.disks.length} disks${nics > 0 ? ` and ${nics} NIC${nics === 1 ? '' : 's'}` : ''}`;
  if (explicit) {
    const key = ctx.at.has('balloon.enabled') ? 'balloon.enabled' : 'balloon';
    const pair = ctx.at.get(key)!;
    ctx.r.fail(pair.value, `${key}: no virtio slot is left for the balloon: ${why}; expected at most ${VIRTIO_COUNT - 1} disks and NICs with a balloon, or balloon.enabled: false`, pair.key);
  } else {
    warnings.push(`no memory balloon: ${why} (give balloon: {enabled: false} to say so, or use fewer disks)`);
  }
  return { enabled: false, ...settings };
}

/** The second step: what the shape cannot say (distinct disks) and, with `files`, what the files
 *  named by the definition are and hold. Each check runs where the values it reads are valid. */
function checkBeyondShape(v: VmFile, ctx: ReadContext, files: boolean): void {
  const r = ctx.r;
  const fail = (path: string, message: string): void => {
    const pair = ctx.at.get(path);
    r.fail(pair?.value, message, pair?.key);
  };
  /** False when the file is missing or unusable (reported); true when it is there. */
  const checkFile = (key: string, p: string, expected?: string): boolean => {
    if (!existsSync(p)) fail(key, `${key}: file ${quotePath(p)} does not exist`);
    else if (!statSync(p).isFile()) fail(key, `${key}: ${quotePath(p)} is not a regular file`);
    // An empty image would load as nothing at all and the hart would run whatever RAM holds.
    else if (expected !== undefined && statSync(p).size === 0) fail(key, `${key}: ${quotePath(p)} is empty (0 bytes); expected ${expected}`);
    else return true;
    return false;
  };

  // Boot images: each must exist; then, once all do and the memory size is known, they are loaded
  // as the board will load them.
  const { firmware, kernel, initrd, cmdline } = v.boot;
  let imagesOk = files && ctx.ok('boot');
  if (files && firmware.kind === 'file' && ctx.ok('boot.firmware')) imagesOk = checkFile('boot.firmware', firmware.path, 'a firmware binary (ELF or raw)') && imagesOk;
  if (files && kernel !== undefined && ctx.ok('boot.kernel')) imagesOk = checkFile('boot.kernel', kernel, 'a kernel (ELF, Linux Image or raw binary)') && imagesOk;
  if (files && initrd !== undefined && ctx.ok('boot.initrd')) imagesOk = checkFile('boot.initrd', initrd) && imagesOk;
  if (imagesOk && ctx.ok('memory') && ctx.ok('cpus') && (kernel !== undefined || firmware.kind === 'file')) {
    for (const p of bootImageProblems({ firmware, kernel, initrd, cmdline }, memoryBytesOf(v.memory), v.cpus.count)) {
      // memory: left out (the default) is reported at the image that does not fit.
      fail(ctx.at.has(p.key) ? p.key : kernel !== undefined ? 'boot.kernel' : 'boot.firmware', p.message);
    }
  }

  // Disks: distinct images, distinct names, not the VM's own boot images; new ones can be created.
  const bootFiles: [string, string][] = [['boot.kernel', kernel], ['boot.initrd', initrd], ['boot.firmware', firmware.kind === 'file' ? firmware.path : undefined]]
    .filter((e): e is [string, string] => e[1] !== undefined);
  const seenNames = new Set<string>();
  const seenPaths = new Set<string>();
  const chains: { index: number; backing: string[]; real: string; writable: boolean }[] = [];
  v.disks.forEach((d, i) => {
    const where = `disks[${i}]`;
    if (ctx.ok(`${where}.name`)) {
      if (seenNames.has(d.name)) fail(ctx.at.has(`${where}.name`) ? `${where}.name` : where, `${where}.name: "${d.name}" is already used by another disk`);
      seenNames.add(d.name);
    }
    if (!ctx.ok(`${where}.path`)) return;
    const key = `${where}.path`;
    // The same file under two names (a symlink) is still the same disk.
    const real = files ? canonicalImagePath(d.path) : d.path;
    if (seenPaths.has(real)) fail(key, `${key}: ${quotePath(d.path)}${real !== d.path ? ` (${quotePath(real)})` : ''} is already attached as another disk`);
    seenPaths.add(real);
    // A guest that can write its own kernel, firmware or initrd corrupts the next boot.
    const image = files && !d.readonly ? bootFiles.find(([, f]) => canonicalImagePath(f) === real) : undefined;
    if (image) fail(key, `${key}: ${quotePath(d.path)} is also ${image[0]}; the guest would write over it; expected another file, or readonly: true`);
    if (!files) return;
    if (!existsSync(d.path)) {
      if (!ctx.at.has(`${where}.size`)) fail(key, `${key}: file ${quotePath(d.path)} does not exist; give ${where}.size to have vmctl create it`);
      else if (!existsSync(dirname(d.path))) fail(key, `${key}: folder ${quotePath(dirname(d.path))} does not exist`);
      else if (d.readonly) fail(ctx.at.has(`${where}.readonly`) ? `${where}.readonly` : where, `${where}.readonly: a new (empty) image cannot be read-only`);
    } else if (!statSync(d.path).isFile()) fail(key, `${key}: ${quotePath(d.path)} is not a regular file`);
    else {
      // The image as the VM will open it: its header (raw or qcow2) and its whole backing chain.
      try {
        const backing = imageChain(d.path).slice(1).map((l) => canonicalImagePath(l.path));
        chains.push({ index: i, backing, real, writable: !d.readonly });
      } catch (e) {
        if (!(e instanceof DiskError)) throw e;
        fail(key, `${key}: ${e.message}`);
      }
    }
  });
  // A disk the VM writes may not be a backing file of another of its disks: that overlay would
  // see its base change under it (the disk locks would refuse the start anyway).
  for (const w of chains.filter((c) => c.writable)) {
    const reader = chains.find((c) => c.backing.includes(w.real));
    if (reader) {
      fail(`disks[${w.index}].path`, `disks[${w.index}].path: ${JSON.stringify(w.real)} is a backing file of disks[${reader.index}], so the VM cannot also write it; expected readonly: true or another image`);
    }
  }
}

/** One value given outside a file (`vmctl set --cpu-shares 0`, a protocol parameter), checked
 *  as the key's declaration checks it: the value, or the message `NAME: found …; expected …`. */
export function readSetting(spec: Spec<number>, name: string, text: string): number | string {
  const r = new SchemaReader(name, text);
  const v = r.errors.length === 0 ? spec.read(r.doc.contents as Node | null, { path: name, key: null, index: 0 }, new ReadContext(r, '/')) : undefined;
  return v ?? r.errors[0]?.detail ?? `${name}: found ${JSON.stringify(text)}`;
}

/** The stored form (vm.yaml in the VM's folder): same schema, absolute paths. */
export function serializeVmDefinition(d: VmDefinition): string {
  const boot: Record<string, unknown> = {
    firmware: d.boot.firmware.kind === 'file' ? d.boot.firmware.path : d.boot.firmware.kind,
  };
  if (d.boot.kernel) boot.kernel = d.boot.kernel;
  if (d.boot.initrd) boot.initrd = d.boot.initrd;
  boot.cmdline = d.boot.cmdline;
  const memory = d.memoryMinGiven ? { size: formatSize(d.memoryBytes), min: formatSize(d.memoryMinBytes) } : formatSize(d.memoryBytes);
  const cpus = d.cpuShares === DEFAULT_CPU_SHARES && d.cpuCap === DEFAULT_CPU_CAP
    ? d.cpus : { count: d.cpus, shares: d.cpuShares, cap: `${d.cpuCap}%` };
  const out: Record<string, unknown> = { name: d.name, cpus, memory, boot };
  if (d.disks.length > 0) {
    out.disks = d.disks.map((x) => ({ path: x.path, ...(x.sizeBytes !== undefined ? { size: formatSize(x.sizeBytes) } : {}), readonly: x.readonly, name: x.name }));
  }
  if (d.balloon.explicit) {
    const b = d.balloon;
    // `enabled` as written: an explicit balloon that did not fit is an error, never stored.
    out.balloon = { enabled: b.enabled, deflateOnOom: b.deflateOnOom, statsInterval: formatDuration(b.statsIntervalMs), freePageReporting: b.freePageReporting };
  }
  const sh: Record<string, unknown> = {};
  if (d.shutdown.console !== undefined) sh.console = d.shutdown.console;
  sh.timeout = formatDuration(d.shutdown.timeoutMs);
  if (Object.keys(sh).length > 0) out.shutdown = sh;
  // Absent stays absent: the default NIC is decided again at each read.
  if (d.network.explicit) {
    out.network = d.network.nics.length === 0 ? 'none' : d.network.nics.map((n) => ({
      mode: n.mode,
      ...(n.mode === 'switch' ? { name: n.name } : {
        forwards: n.forwards.map((f) => ({ proto: f.proto, host: `${f.hostAddress}:${f.hostPort}`, guest: f.guestPort })),
        restrict: n.restrict,
      }),
      ...(n.mac !== undefined ? { mac: n.mac } : {}),
    }));
  }
  return `# Stored by vmctl; paths are absolute.\n${stringify(out)}`;
}
