// The VM definition: the strict YAML schema a user writes (see vm-config.example.yaml).
// Parsing resolves relative paths against the file's folder, so a stored definition is
// position-independent: every path in it is absolute.

import { existsSync, statSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { isScalar, isSeq, stringify, type Node, type Pair } from 'yaml';
import type { FirmwareSpec } from '../board/machine-types.js';
import { ConfigError, ConfigErrors } from './errors.js';
import { describe, readYamlFile, SchemaReader } from './yaml-schema.js';
import { formatSize, looksLikeSize, parseDuration, parseSize } from './units.js';
import { bootImageProblems } from './boot-images.js';
// Disk identity as the disk locks see it: the same file under two names is one disk.
import { canonicalImagePath } from '../disk/lock.js';

export const VM_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;
export const MAX_CPUS = 8;
export const MAX_DISKS = 8;
export const MIN_MEMORY = 1024 * 1024;
export const MAX_MEMORY = 16 * 1024 ** 3;
const PAGE = 4096;
const SECTOR = 512;

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
    readonly timeoutMs?: number;
  };
}

export interface ParseOptions {
  /** Replaces (or supplies) `name:` — `vmctl create --name`. */
  readonly nameOverride?: string;
  /** Skip file-existence checks (used when re-reading a stored definition whose files may have moved). */
  readonly skipFileChecks?: boolean;
}

const TOP_KEYS = ['name', 'cpus', 'memory', 'boot', 'disks', 'shutdown'] as const;
const BOOT_KEYS = ['firmware', 'kernel', 'initrd', 'cmdline'] as const;
const DISK_KEYS = ['path', 'size', 'readonly', 'name'] as const;
const SHUTDOWN_KEYS = ['console', 'timeout'] as const;

/** Reads and validates a VM file. Throws ConfigErrors listing every problem found. */
export function loadVmDefinition(file: string, opts: ParseOptions = {}): VmDefinition {
  const abs = resolve(file);
  return parseVmDefinition(readYamlFile(abs, file), file, dirname(abs), opts);
}

/** Validates YAML text; `displayFile` is used in messages, `baseDir` resolves relative paths. */
export function parseVmDefinition(text: string, displayFile: string, baseDir: string, opts: ParseOptions = {}): VmDefinition {
  const r = new SchemaReader(displayFile, text);
  if (r.errors.length > 0) throw new ConfigErrors(r.errors);
  const root = r.doc.contents;
  if (root === null || (isScalar(root) && root.value === null)) {
    throw new ConfigErrors([new ConfigError({ file: displayFile, line: 1, col: 1 }, 'the file is empty; expected a mapping with keys name, cpus, memory, boot, ...')]);
  }
  const top = r.mapping(root, '', TOP_KEYS);
  if (!top) throw new ConfigErrors(r.errors);

  /** False when the file is missing or unusable (reported); true when it is there (or not checked). */
  const checkFile = (pair: Pair<Node, Node | null>, key: string, p: string, expected?: string): boolean => {
    if (opts.skipFileChecks) return true;
    if (!existsSync(p)) r.fail(pair.value, `${key}: file ${JSON.stringify(p)} does not exist`, pair.key);
    else if (!statSync(p).isFile()) r.fail(pair.value, `${key}: ${JSON.stringify(p)} is not a regular file`, pair.key);
    // An empty image would load as nothing at all and the hart would run whatever RAM holds.
    else if (expected !== undefined && statSync(p).size === 0) r.fail(pair.value, `${key}: ${JSON.stringify(p)} is empty (0 bytes); expected ${expected}`, pair.key);
    else return true;
    return false;
  };
  const pathValue = (pair: Pair<Node, Node | null>, key: string): string | undefined => {
    const v = scalar(pair.value);
    if (typeof v !== 'string' || v === '') {
      r.fail(pair.value, `${key}: found ${describe(pair.value)}; expected a file path`, pair.key);
      return undefined;
    }
    return isAbsolute(v) ? v : resolve(baseDir, v);
  };

  // name
  let name = opts.nameOverride;
  if (name !== undefined) {
    if (!VM_NAME_RE.test(name)) r.errors.push(new ConfigError({ file: '--name', line: 1, col: 1 }, `name ${JSON.stringify(name)} is not a valid VM name; expected letters, digits, ".", "_" or "-" (1..63 characters, starting with a letter or digit)`));
  } else {
    const p = top.get('name');
    if (!p) r.fail(root as Node, 'missing key "name"; expected a VM name like "demo" (or pass --name)');
    else {
      // `name: 42` or `name: 1e3`: YAML reads a plain scalar as a number, but the user wrote a name.
      const v = isScalar(p.value) && p.value.type === 'PLAIN' && typeof p.value.value === 'number' ? p.value.source : scalar(p.value);
      if (typeof v !== 'string' || !VM_NAME_RE.test(v)) {
        r.fail(p.value, `name: found ${describe(p.value)}; expected letters, digits, ".", "_" or "-" (1..63 characters, starting with a letter or digit)`, p.key);
      } else name = v;
    }
  }

  // cpus
  let cpus = 1;
  const cp = top.get('cpus');
  if (cp) {
    const v = scalar(cp.value);
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > MAX_CPUS) {
      r.fail(cp.value, `cpus: found ${describe(cp.value)}; expected a whole number from 1 to ${MAX_CPUS}`, cp.key);
    } else cpus = v;
  }

  // memory
  let memoryBytes = 128 * 1024 * 1024;
  let memoryOk = true;
  const mp = top.get('memory');
  if (mp) {
    const v = scalar(mp.value);
    const n = typeof v === 'string' || typeof v === 'number' ? parseSize(v) : null;
    memoryOk = false;
    if (n === null && (typeof v === 'string' || typeof v === 'number') && looksLikeSize(v)) r.fail(mp.value, `memory: ${describe(mp.value)} is out of range; expected from ${formatSize(MIN_MEMORY)} to ${formatSize(MAX_MEMORY)}`, mp.key);
    else if (n === null) r.fail(mp.value, `memory: found ${describe(mp.value)}; expected a size like 128MiB (units B, KiB, MiB, GiB)`, mp.key);
    else if (n < MIN_MEMORY || n > MAX_MEMORY) r.fail(mp.value, `memory: ${describe(mp.value)} is out of range; expected from ${formatSize(MIN_MEMORY)} to ${formatSize(MAX_MEMORY)}`, mp.key);
    else if (n % PAGE !== 0) r.fail(mp.value, `memory: ${describe(mp.value)} is not a multiple of 4KiB`, mp.key);
    else {
      memoryBytes = n;
      memoryOk = true;
    }
  }

  // boot
  let firmware: FirmwareSpec = { kind: 'none' };
  let kernel: string | undefined;
  let initrd: string | undefined;
  let cmdline = '';
  // The pairs of the image files that exist, for the load check below.
  const images = new Map<'boot.firmware' | 'boot.kernel' | 'boot.initrd' | 'boot.cmdline' | 'memory', Pair<Node, Node | null>>();
  if (mp) images.set('memory', mp);
  let imagesOk = true;
  const bp = top.get('boot');
  if (!bp) r.fail(root as Node, 'missing key "boot"; expected a mapping with at least boot.kernel (or boot.firmware)');
  else {
    const boot = r.mapping(bp.value, 'boot', BOOT_KEYS, bp.key);
    if (boot) {
      const fw = boot.get('firmware');
      if (fw) {
        const v = scalar(fw.value);
        if (v === 'none') firmware = { kind: 'none' };
        else if (v === 'builtin') firmware = { kind: 'builtin' };
        else if (typeof v === 'string' && v !== '') {
          const p = pathValue(fw, 'boot.firmware')!;
          if (checkFile(fw, 'boot.firmware', p, 'a firmware binary (ELF or raw)')) images.set('boot.firmware', fw);
          else imagesOk = false;
          firmware = { kind: 'file', path: p };
        } else {
          imagesOk = false;
          r.fail(fw.value, `boot.firmware: found ${describe(fw.value)}; expected none, builtin or a path to a firmware binary`, fw.key);
        }
      }
      const kp = boot.get('kernel');
      if (kp) {
        kernel = pathValue(kp, 'boot.kernel');
        if (kernel && checkFile(kp, 'boot.kernel', kernel, 'a kernel (ELF, Linux Image or raw binary)')) images.set('boot.kernel', kp);
        else imagesOk = false;
      } else if (firmware.kind !== 'file') {
        r.fail(bp.value, `missing key "boot.kernel"; with firmware ${firmware.kind} a kernel (ELF or raw image) is required`, bp.key);
      }
      const ip = boot.get('initrd');
      if (ip) {
        initrd = pathValue(ip, 'boot.initrd');
        if (initrd && checkFile(ip, 'boot.initrd', initrd)) images.set('boot.initrd', ip);
        else imagesOk = false;
      }
      const cl = boot.get('cmdline');
      if (cl) {
        const v = scalar(cl.value);
        if (typeof v !== 'string') r.fail(cl.value, `boot.cmdline: found ${describe(cl.value)}; expected a string`, cl.key);
        else {
          cmdline = v;
          images.set('boot.cmdline', cl);
        }
      }
    }
  }

  // Load the images as the board will, once every one of them exists and the memory size is known.
  if (!opts.skipFileChecks && imagesOk && memoryOk && (images.has('boot.kernel') || images.has('boot.firmware'))) {
    for (const p of bootImageProblems({ firmware, kernel, initrd, cmdline }, memoryBytes, cpus)) {
      // memory: left out (the default) is reported at the image that does not fit.
      const pair = images.get(p.key) ?? images.get('boot.kernel') ?? images.get('boot.firmware')!;
      r.fail(pair.value, p.message, pair.key);
    }
  }

  // disks
  const bootFiles: [string, string][] = [['boot.kernel', kernel], ['boot.initrd', initrd], ['boot.firmware', firmware.kind === 'file' ? firmware.path : undefined]]
    .filter((e): e is [string, string] => e[1] !== undefined);
  const disks: DiskDefinition[] = [];
  const dp = top.get('disks');
  if (dp && !(isScalar(dp.value) && dp.value.value === null)) {
    const seq = dp.value as Node | null;
    if (!isSeq(seq)) {
      r.fail(dp.value, `disks: found ${describe(dp.value)}; expected a list of disks (- path: ...)`, dp.key);
    } else {
      const items = seq.items as Node[];
      // The virt board has 8 virtio-mmio slots (0x10001000..0x10008000), one disk each.
      if (items.length > MAX_DISKS) r.fail(items[MAX_DISKS], `disks: ${items.length} disks; the board has ${MAX_DISKS} virtio slots, so at most ${MAX_DISKS}`);
      const seenNames = new Set<string>();
      const seenPaths = new Set<string>();
      items.forEach((item, i) => {
        const where = `disks[${i}]`;
        const d = r.mapping(item, where, DISK_KEYS, dp.key);
        if (!d) return;
        const pp = d.get('path');
        let path: string | undefined;
        if (!pp) r.fail(item, `${where}: missing key "path"; expected the path of a raw disk image`);
        else path = pathValue(pp, `${where}.path`);
        let sizeBytes: number | undefined;
        const sp = d.get('size');
        if (sp) {
          const v = scalar(sp.value);
          const n = typeof v === 'string' || typeof v === 'number' ? parseSize(v) : null;
          if (n === null && (typeof v === 'string' || typeof v === 'number') && looksLikeSize(v)) r.fail(sp.value, `${where}.size: ${describe(sp.value)} is too large; expected a size like 1GiB (less than 8192TiB)`, sp.key);
          else if (n === 0) r.fail(sp.value, `${where}.size: ${describe(sp.value)} is empty; expected a size like 1GiB, at least 512 bytes`, sp.key);
          else if (n === null) r.fail(sp.value, `${where}.size: found ${describe(sp.value)}; expected a size like 1GiB (units B, KiB, MiB, GiB)`, sp.key);
          else if (n % SECTOR !== 0) r.fail(sp.value, `${where}.size: ${describe(sp.value)} is not a multiple of 512 bytes (one sector)`, sp.key);
          else sizeBytes = n;
        }
        let ro = false;
        const rp = d.get('readonly');
        if (rp) {
          const v = scalar(rp.value);
          if (typeof v !== 'boolean') r.fail(rp.value, `${where}.readonly: found ${describe(rp.value)}; expected true or false`, rp.key);
          else ro = v;
        }
        let dname = `disk${i}`;
        const np = d.get('name');
        if (np) {
          const v = scalar(np.value);
          // virtio-blk spec 5.2.6: VIRTIO_BLK_T_GET_ID returns at most 20 bytes.
          if (typeof v !== 'string' || !/^[A-Za-z0-9._-]{1,20}$/.test(v)) r.fail(np.value, `${where}.name: found ${describe(np.value)}; expected 1..20 letters, digits, ".", "_" or "-"`, np.key);
          else dname = v;
        }
        if (seenNames.has(dname)) r.fail(np?.value ?? item, `${where}.name: "${dname}" is already used by another disk`);
        seenNames.add(dname);
        if (path !== undefined && pp) {
          // The same file under two names (a symlink) is still the same disk.
          const real = opts.skipFileChecks ? path : canonicalImagePath(path);
          if (seenPaths.has(real)) r.fail(pp.value, `${where}.path: ${JSON.stringify(path)}${real !== path ? ` (${JSON.stringify(real)})` : ''} is already attached as another disk`, pp.key);
          seenPaths.add(real);
          // A guest that can write its own kernel, firmware or initrd corrupts the next boot.
          const image = !ro && !opts.skipFileChecks ? bootFiles.find(([, f]) => canonicalImagePath(f) === real) : undefined;
          if (image) r.fail(pp.value, `${where}.path: ${JSON.stringify(path)} is also ${image[0]}; the guest would write over it; expected another file, or readonly: true`, pp.key);
          if (!opts.skipFileChecks) {
            if (!existsSync(path)) {
              if (sizeBytes === undefined && !sp) r.fail(pp.value, `${where}.path: file ${JSON.stringify(path)} does not exist; give ${where}.size to have vmctl create it`, pp.key);
              else if (!existsSync(dirname(path))) r.fail(pp.value, `${where}.path: folder ${JSON.stringify(dirname(path))} does not exist`, pp.key);
              else if (ro) r.fail(rp?.value ?? item, `${where}.readonly: a new (empty) image cannot be read-only`);
            } else if (!statSync(path).isFile()) r.fail(pp.value, `${where}.path: ${JSON.stringify(path)} is not a regular file`, pp.key);
          }
          disks.push({ path, sizeBytes, readonly: ro, name: dname });
        }
      });
    }
  }

  // shutdown
  const shutdown: { console?: string; timeoutMs?: number } = {};
  const shp = top.get('shutdown');
  if (shp && !(isScalar(shp.value) && shp.value.value === null)) {
    const s = r.mapping(shp.value, 'shutdown', SHUTDOWN_KEYS, shp.key);
    if (s) {
      const c = s.get('console');
      if (c) {
        const v = scalar(c.value);
        if (typeof v !== 'string' || v === '') r.fail(c.value, `shutdown.console: found ${describe(c.value)}; expected the text to type, like "poweroff\\n"`, c.key);
        else shutdown.console = v;
      }
      const t = s.get('timeout');
      if (t) {
        const v = scalar(t.value);
        const ms = typeof v === 'string' || typeof v === 'number' ? parseDuration(v) : null;
        if (ms === null) r.fail(t.value, `shutdown.timeout: found ${describe(t.value)}; expected a duration like 30s, 500ms or 5m`, t.key);
        else shutdown.timeoutMs = ms;
      }
    }
  }

  if (r.errors.length > 0) throw new ConfigErrors(r.errors);
  return { name: name!, cpus, memoryBytes, boot: { firmware, kernel, initrd, cmdline }, disks, shutdown };
}

/** The stored form (vm.yaml in the VM's folder): same schema, absolute paths. */
export function serializeVmDefinition(d: VmDefinition): string {
  const boot: Record<string, unknown> = {
    firmware: d.boot.firmware.kind === 'file' ? d.boot.firmware.path : d.boot.firmware.kind,
  };
  if (d.boot.kernel) boot.kernel = d.boot.kernel;
  if (d.boot.initrd) boot.initrd = d.boot.initrd;
  boot.cmdline = d.boot.cmdline;
  const out: Record<string, unknown> = { name: d.name, cpus: d.cpus, memory: formatSize(d.memoryBytes), boot };
  if (d.disks.length > 0) {
    out.disks = d.disks.map((x) => ({ path: x.path, ...(x.sizeBytes !== undefined ? { size: formatSize(x.sizeBytes) } : {}), readonly: x.readonly, name: x.name }));
  }
  const sh: Record<string, unknown> = {};
  if (d.shutdown.console !== undefined) sh.console = d.shutdown.console;
  if (d.shutdown.timeoutMs !== undefined) sh.timeout = `${d.shutdown.timeoutMs}ms`;
  if (Object.keys(sh).length > 0) out.shutdown = sh;
  return `# Stored by vmctl; paths are absolute.\n${stringify(out)}`;
}

function scalar(node: Node | null | undefined): unknown {
  if (isScalar(node)) return node.value;
  return node === null || node === undefined ? null : Symbol('non-scalar');
}
