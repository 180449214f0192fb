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
import { formatDuration, readDocument, ReadContext, type Spec } from './schema.js';
import { DEFAULT_CPU_CAP, DEFAULT_CPU_SHARES, VM_NAME_RE, VM_NAME_TEXT, VM_SCHEMA, type VmFile } from './vm-schema.js';
// Disk identity as the disk locks see it: the same file under two names is one disk.
import { canonicalImagePath } from '../disk/lock.js';

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

export interface VmDefinition {
  readonly name: string;
  readonly cpus: number;
  /** Relative CPU weight (1..10000) and cap (percent of one host core per hart, 1..100). */
  readonly cpuShares: number;
  readonly cpuCap: number;
  readonly memoryBytes: number;
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
    if (!VM_NAME_RE.test(opts.nameOverride)) r.errors.push(new ConfigError({ file: '--name', line: 1, col: 1 }, `name ${JSON.stringify(opts.nameOverride)} is not a valid VM name; expected ${VM_NAME_TEXT}`));
    given.set('name', opts.nameOverride);
  }
  if (opts.keepName !== undefined) given.set('name', opts.keepName);
  const ctx = new ReadContext(r, baseDir, given);
  const v = readDocument(VM_SCHEMA, ctx, false);
  if (!v) throw new ConfigErrors(r.errors);
  const namePair = ctx.at.get('name');
  if (opts.keepName !== undefined && namePair && ctx.ok('name')) {
    const written = isScalar(namePair.value) ? (typeof namePair.value.value === 'string' ? namePair.value.value : namePair.value.source) : undefined;
    if (written !== opts.keepName) r.fail(namePair.value, `name: found ${JSON.stringify(written)}, but this is VM ${JSON.stringify(opts.keepName)}, and a VM cannot be renamed; expected ${JSON.stringify(opts.keepName)}`, namePair.key);
  }
  checkBeyondShape(v, ctx, !opts.skipFileChecks);
  if (r.errors.length > 0) throw new ConfigErrors(r.errors);
  return {
    name: v.name,
    cpus: v.cpus.count,
    cpuShares: v.cpus.shares,
    cpuCap: v.cpus.cap,
    memoryBytes: v.memory,
    boot: { firmware: v.boot.firmware, kernel: v.boot.kernel, initrd: v.boot.initrd, cmdline: v.boot.cmdline },
    disks: v.disks.map((d) => ({ path: d.path, sizeBytes: d.size, readonly: d.readonly, name: d.name })),
    shutdown: { console: v.shutdown.console, timeoutMs: v.shutdown.timeout },
  };
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
    if (!existsSync(p)) fail(key, `${key}: file ${JSON.stringify(p)} does not exist`);
    else if (!statSync(p).isFile()) fail(key, `${key}: ${JSON.stringify(p)} is not a regular file`);
    // An empty image would load as nothing at all and the hart would run whatever RAM holds.
    else if (expected !== undefined && statSync(p).size === 0) fail(key, `${key}: ${JSON.stringify(p)} is empty (0 bytes); expected ${expected}`);
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
    for (const p of bootImageProblems({ firmware, kernel, initrd, cmdline }, v.memory, v.cpus.count)) {
      // memory: left out (the default) is reported at the image that does not fit.
      fail(ctx.at.has(p.key) ? p.key : kernel !== undefined ? 'boot.kernel' : 'boot.firmware', p.message);
    }
  }

  // Disks: distinct images, distinct names, not the VM's own boot images; new ones can be created.
  const bootFiles: [string, string][] = [['boot.kernel', kernel], ['boot.initrd', initrd], ['boot.firmware', firmware.kind === 'file' ? firmware.path : undefined]]
    .filter((e): e is [string, string] => e[1] !== undefined);
  const seenNames = new Set<string>();
  const seenPaths = new Set<string>();
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
    if (seenPaths.has(real)) fail(key, `${key}: ${JSON.stringify(d.path)}${real !== d.path ? ` (${JSON.stringify(real)})` : ''} is already attached as another disk`);
    seenPaths.add(real);
    // A guest that can write its own kernel, firmware or initrd corrupts the next boot.
    const image = files && !d.readonly ? bootFiles.find(([, f]) => canonicalImagePath(f) === real) : undefined;
    if (image) fail(key, `${key}: ${JSON.stringify(d.path)} is also ${image[0]}; the guest would write over it; expected another file, or readonly: true`);
    if (!files) return;
    if (!existsSync(d.path)) {
      if (!ctx.at.has(`${where}.size`)) fail(key, `${key}: file ${JSON.stringify(d.path)} does not exist; give ${where}.size to have vmctl create it`);
      else if (!existsSync(dirname(d.path))) fail(key, `${key}: folder ${JSON.stringify(dirname(d.path))} does not exist`);
      else if (d.readonly) fail(ctx.at.has(`${where}.readonly`) ? `${where}.readonly` : where, `${where}.readonly: a new (empty) image cannot be read-only`);
    } else if (!statSync(d.path).isFile()) fail(key, `${key}: ${JSON.stringify(d.path)} is not a regular file`);
  });
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
  const cpus = d.cpuShares === DEFAULT_CPU_SHARES && d.cpuCap === DEFAULT_CPU_CAP
    ? d.cpus : { count: d.cpus, shares: d.cpuShares, cap: `${d.cpuCap}%` };
  const out: Record<string, unknown> = { name: d.name, cpus, memory: formatSize(d.memoryBytes), boot };
  if (d.disks.length > 0) {
    out.disks = d.disks.map((x) => ({ path: x.path, ...(x.sizeBytes !== undefined ? { size: formatSize(x.sizeBytes) } : {}), readonly: x.readonly, name: x.name }));
  }
  const sh: Record<string, unknown> = {};
  if (d.shutdown.console !== undefined) sh.console = d.shutdown.console;
  sh.timeout = formatDuration(d.shutdown.timeoutMs);
  if (Object.keys(sh).length > 0) out.shutdown = sh;
  return `# Stored by vmctl; paths are absolute.\n${stringify(out)}`;
}
