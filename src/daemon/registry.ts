// The VMs a daemon knows: one folder per VM under VMCTL_HOME/vms, loaded at start-up.
// VMs that were active when the previous daemon died are marked `aborted`.

import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { DiskError } from '../disk/errors.js';
import { convertImage } from '../disk/convert.js';
import { createImage, imageChain } from '../disk/image.js';
import { backingOf, pullLayer, rebaseImage } from '../disk/layers.js';
import { canonicalImagePath, readDiskLocks } from '../disk/lock.js';
import { deleteCreatedDisks, prepareDisks, type PreparedDisks } from '../disk/prepare.js';
import { imageInfo } from '../disk/image.js';
import { loadVmDefinition, serializeVmDefinition, VM_NAME_RE, type VmDefinition } from '../config/vm-definition.js';
import { ProtocolFailure, type DeletedDisk } from '../protocol/messages.js';
import { formatSize, humanSize } from '../config/units.js';
import { quote } from '../config/quote.js';
import { YAML_LIMITS } from '../config/yaml-schema.js';
import { readRegular } from '../host/regular-file.js';
import { writeFileAtomic } from './atomic.js';
import type { DefinitionPool } from './definition-pool.js';
import { vmDir, type HomePaths } from './paths.js';
import { VmInstance, type InstanceEnv, type PersistedState } from './vm-instance.js';

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export class Registry {
  readonly vms = new Map<string, VmInstance>();
  /** VM folders found at start-up that could not be loaded, and why: kept as they are. */
  readonly unloadable = new Map<string, string>();

  constructor(
    private readonly paths: HomePaths,
    private readonly env: InstanceEnv,
    /** Validates definitions sent by clients, off the main thread. */
    private readonly definitions: DefinitionPool,
    /** Called for every VM loaded or created (the daemon routes its events). */
    private readonly onAdded: (vm: VmInstance) => void,
  ) {}

  load(): void {
    if (!existsSync(this.paths.vmsDir)) return;
    for (const name of readdirSync(this.paths.vmsDir)) {
      if (!VM_NAME_RE.test(name)) continue;
      const dir = vmDir(this.paths, name);
      try {
        const persisted = VmInstance.readPersisted(dir);
        if (!persisted) {
          this.env.log(`skipping ${dir}: no state.json (an interrupted create)`);
          continue;
        }
        const def = loadVmDefinition(`${dir}/vm.yaml`, { skipFileChecks: true });
        const vm = new VmInstance(def, dir, persisted, this.env);
        if (persisted.ephemeral) {
          // A `vmctl run` VM whose client and daemon are gone: nobody can use it any more.
          this.env.log(`removing leftover ephemeral VM ${name}`);
          this.removeFiles(vm);
          continue;
        }
        let changed = false;
        if (typeof persisted.uuid !== 'string' || !UUID_RE.test(persisted.uuid)) {
          // A VM stored before VMs had identities: it gets one now, kept from here on.
          persisted.uuid = randomUUID();
          this.env.log(`vm ${name}: no UUID stored; gave it ${persisted.uuid}`);
          changed = true;
        }
        vm.recoverSavedState();
        vm.tree.recover((m) => this.env.log(`vm ${name}: ${m}`));
        if (['starting', 'running', 'paused', 'stopping'].includes(persisted.state)) {
          this.env.log(`vm ${name}: was ${persisted.state} when the daemon died; now aborted`);
          persisted.state = 'aborted';
          persisted.lastError = 'the daemon ended while the VM ran';
          changed = true;
        }
        if (changed) vm.save();
        this.vms.set(name, vm);
        this.onAdded(vm);
      } catch (e) {
        this.env.log(`skipping ${dir}: ${(e as Error).message}`);
        this.unloadable.set(name, (e as Error).message);
      }
    }
  }

  get(name: string): VmInstance {
    const vm = this.vms.get(name);
    if (!vm) throw new ProtocolFailure('NoSuchVm', `no VM named ${quote(name)}`);
    return vm;
  }

  /** Registers a VM from YAML text (validated again here, in the definition pool: the daemon trusts
   *  no client). Everything after the validation is synchronous, so two creates cannot interleave. */
  async create(file: string, text: string, nameOverride: string | undefined, ephemeral: boolean): Promise<{ vm: VmInstance; warnings: string[] }> {
    const def = await this.definitions.validate(text, file, { nameOverride });
    const dir = this.newFolder(def.name);
    let created: string[] = [];
    try {
      const prepared = this.prepareDisks(file, def);
      created = prepared.created;
      for (const w of prepared.warnings) this.env.log(`vm ${def.name}: ${w}`);
      const warnings = [...(def.warnings ?? []), ...prepared.warnings];
      const vm = this.register(def, dir, { ephemeral, createdDisks: created });
      this.env.log(`vm ${def.name}: created from ${file}${created.length ? ` (new disks: ${created.join(', ')})` : ''}`);
      return { vm, warnings };
    } catch (e) {
      try { deleteCreatedDisks(created); } catch { /* best effort */ }
      rmSync(dir, { recursive: true, force: true });
      throw e;
    }
  }

  /** The folder of a new VM, created empty (refused when the name is taken). */
  private newFolder(name: string): string {
    if (this.vms.has(name)) throw new ProtocolFailure('AlreadyExists', `a VM named ${JSON.stringify(name)} already exists`);
    const dir = vmDir(this.paths, name);
    // A folder without state.json is an interrupted create; one with it is a VM this daemon could
    // not load (a damaged vm.yaml or state.json): its serial log and the record of the disks it
    // created must not be wiped by a new VM that happens to take its name.
    if (existsSync(join(dir, 'state.json'))) {
      const why = this.unloadable.get(name) ?? 'it appeared after the daemon started';
      throw new ProtocolFailure('AlreadyExists', `a VM named ${JSON.stringify(name)} is stored in ${dir} but could not be loaded (${why.split('\n')[0]}); repair or remove that folder, or choose another name (--name)`);
    }
    if (existsSync(dir)) rmSync(dir, { recursive: true, force: true }); // an interrupted create
    mkdirSync(dir, { mode: 0o700 });
    return dir;
  }

  /** Stores a new VM (vm.yaml, then state.json: a folder without state.json is an interrupted
   *  create) with a new identity, and registers it. */
  private register(def: VmDefinition, dir: string, extra: Pick<PersistedState, 'ephemeral' | 'createdDisks'> & Partial<PersistedState>): VmInstance {
    const persisted: PersistedState = {
      uuid: randomUUID(), state: 'stopped', bootId: 0, createdAt: new Date().toISOString(), startedAt: null,
      lastPower: null, lastError: null, instructionsRetired: null, ...extra,
    };
    writeFileAtomic(`${dir}/vm.yaml`, serializeVmDefinition(def));
    const vm = new VmInstance(def, dir, persisted, this.env);
    vm.save();
    this.vms.set(def.name, vm);
    this.onAdded(vm);
    return vm;
  }

  /**
   * `vmctl clone SRC NEW`: a new VM (new UUID; it boots afresh, with a new random seed) with the
   * source's definition and disks: at a snapshot (`snapshot`), or as they are now (the source
   * must not run). A full clone copies each writable disk (flattened); a linked clone gets a
   * qcow2 overlay over the source's layer, which stays read-only as long as the clone exists (a
   * linked clone of the current disks takes a snapshot of the source first, so that the source
   * goes on on an overlay of its own). Read-only disks are shared.
   */
  async clone(src: VmInstance, name: string, opts: { snapshot?: string; linked: boolean }): Promise<VmInstance> {
    if (!VM_NAME_RE.test(name)) throw new ProtocolFailure('InvalidParams', `${JSON.stringify(name)} is not a valid VM name; expected letters, digits, ".", "_" or "-" (1..63 characters, starting with a letter or digit)`);
    if (this.vms.has(name)) throw new ProtocolFailure('AlreadyExists', `a VM named ${JSON.stringify(name)} already exists`);
    let def: VmDefinition;
    let layers: Map<string, string>;
    let from: string | null = opts.snapshot ?? null;
    if (opts.snapshot !== undefined) {
      const s = src.tree.find(opts.snapshot);
      def = s.definition;
      layers = new Map(s.disks.map((d) => [d.name, d.path]));
    } else {
      if (src.state !== 'stopped' && src.state !== 'aborted' && src.state !== 'saved') {
        throw new ProtocolFailure('WrongState', `VM ${src.name} is ${src.state}; a clone is made from disks at rest: stop it, or clone one of its snapshots (--snapshot SNAP)`);
      }
      if (opts.linked) {
        const s = await src.takeSnapshot(`clone-${name}`, `base of linked clone ${name}`);
        def = s.definition;
        layers = new Map(s.disks.map((d) => [d.name, d.path]));
        from = s.name;
      } else {
        def = src.def;
        layers = new Map(def.disks.filter((d) => !d.readonly).map((d) => [d.name, d.path]));
      }
    }
    const dir = this.newFolder(name);
    const created: string[] = [];
    try {
      const disks = def.disks.map((d) => {
        if (d.readonly) return d;
        const layer = layers.get(d.name);
        if (layer === undefined) throw new ProtocolFailure('Internal', `no layer for disk ${d.name}`);
        const chain = imageChain(layer);
        const format = opts.linked || chain.length > 1 || chain[0].format === 'qcow2' ? 'qcow2' : 'raw';
        const path = join(dir, `${d.name}.${format === 'raw' ? 'img' : 'qcow2'}`);
        if (opts.linked) createImage(path, { format: 'qcow2', backing: layer });
        else convertImage(layer, path, format, this.paths.home);
        created.push(path);
        return { ...d, path };
      });
      const vm = this.register({ ...def, name, disks }, dir, {
        ephemeral: false, createdDisks: created, clonedFrom: { vm: src.name, snapshot: from, linked: opts.linked },
      });
      this.env.log(`vm ${name}: ${opts.linked ? 'linked' : 'full'} clone of ${src.name}${from ? ` at snapshot ${from}` : ''}`);
      return vm;
    } catch (e) {
      rmSync(dir, { recursive: true, force: true });
      if (e instanceof DiskError) throw new ProtocolFailure(e.code === 'IN_USE' ? 'WrongState' : 'Internal', `cannot clone ${src.name}: ${e.message}`);
      throw e;
    }
  }

  /** The stored definition (vm.yaml) as text, for `vmctl edit`. */
  definitionText(vm: VmInstance): string {
    return readRegular(join(vm.dir, 'vm.yaml'), { maxBytes: YAML_LIMITS.bytes }).toString('utf8');
  }

  /**
   * Replaces a VM's definition (`vmctl edit`), validated here like `create` (the daemon trusts no
   * client); `base` is the text the edit started from, so two edits at once cannot silently undo
   * each other. New disk images are created as on create. A running VM keeps its definition
   * until it stops. The text is validated in the definition pool; what follows is synchronous.
   */
  async redefine(vm: VmInstance, file: string, text: string, base: string | undefined): Promise<{ applies: 'now' | 'next-start'; warnings: string[] }> {
    const def = await this.definitions.validate(text, file, { keepName: vm.name });
    if (this.vms.get(vm.name) !== vm) throw new ProtocolFailure('NoSuchVm', `VM ${vm.name} was deleted while its new definition was checked`);
    if (base !== undefined && base !== this.definitionText(vm)) {
      throw new ProtocolFailure('WrongState', `the definition of VM ${vm.name} was changed by someone else while it was edited; nothing was saved`);
    }
    const prepared = this.prepareDisks(file, def);
    try {
      writeFileAtomic(join(vm.dir, 'vm.yaml'), serializeVmDefinition(def));
    } catch (e) {
      try { deleteCreatedDisks(prepared.created); } catch { /* best effort */ }
      throw e;
    }
    vm.persisted.createdDisks.push(...prepared.created.filter((p) => !vm.persisted.createdDisks.includes(p)));
    vm.save();
    const applies = vm.redefine(def);
    for (const w of prepared.warnings) this.env.log(`vm ${vm.name}: ${w}`);
    this.env.log(`vm ${vm.name}: definition replaced${applies === 'now' ? '' : ' (applies when the VM stops)'}${prepared.created.length ? ` (new disks: ${prepared.created.join(', ')})` : ''}`);
    return { applies, warnings: [...(def.warnings ?? []), ...prepared.warnings] };
  }

  /** New images are created sparse; existing ones are used as they are (src/disk/prepare.ts). */
  private prepareDisks(file: string, def: VmDefinition): PreparedDisks {
    try {
      return prepareDisks(def.disks);
    } catch (e) {
      if (e instanceof DiskError) throw new ProtocolFailure('ConfigError', `${file}: ${e.message}`);
      throw e;
    }
  }

  /** VMs other than `except` whose disks are built on any of `files` (linked clones), or that
   *  hold a lock on one (VMs of other daemons too). With `backingOnly`, a VM that names one of
   *  `files` itself as a disk (its top layer: two VMs given one image) is not counted: it is not
   *  built on it. */
  usersOf(files: readonly string[], except: VmInstance, backingOnly = false): string[] {
    const wanted = new Set(files.map(canonicalImagePath));
    const users = new Set<string>();
    for (const v of this.vms.values()) {
      if (v === except) continue;
      // Its disks and its snapshots' layers (a clone's snapshots are built on the source too).
      for (const p of [...v.def.disks.map((d) => d.path), ...v.tree.snapshots.flatMap((s) => s.disks.map((d) => d.path))]) {
        let chain: string[];
        try { chain = imageChain(p).map((l) => canonicalImagePath(l.path)); } catch { continue; }
        if (chain.some((f, i) => wanted.has(f) && (i > 0 || !backingOnly))) users.add(v.name);
      }
    }
    for (const f of wanted) for (const h of readDiskLocks(f)) if (h.vm !== except.name || h.home !== this.paths.home) users.add(h.vm ?? `vmctl ${h.command}`);
    return [...users];
  }

  /** Every file deleting `vm` removes: its folder (snapshot layers and states) and the disk
   *  images vmctl created for it. */
  private ownedFiles(vm: VmInstance): string[] {
    const files: string[] = [...vm.persisted.createdDisks];
    const walk = (d: string) => {
      for (const e of readdirSync(d, { withFileTypes: true })) {
        if (e.isDirectory()) walk(join(d, e.name)); else files.push(join(d, e.name));
      }
    };
    walk(vm.dir);
    return files.map(canonicalImagePath);
  }

  /**
   * Linked clones built on `vm`'s files: deleting `vm` is refused while they are (exit 5, naming
   * them), unless `flatten`: then each of them (stopped, or saved) gets copied into its own layers
   * what it took from `vm`'s (flattenClones). Checked before anything changes.
   */
  checkClones(vm: VmInstance, flatten: boolean): VmInstance[] {
    // Another VM given one of vm's images as its own disk is no clone: whether that image goes
    // is the delete's disk question (--delete-disks / --keep-disks), asked after this.
    const users = this.usersOf(this.ownedFiles(vm), vm, true);
    if (users.length === 0) return [];
    const list = `${users.length === 1 ? 'linked clone' : 'linked clones'} ${users.join(', ')}`;
    if (!flatten) {
      throw new ProtocolFailure('WrongState', `VM ${vm.name} cannot be deleted: its disk layers back the disks of ${list}; delete ${users.length === 1 ? 'it' : 'them'} first, or delete with --flatten-clones (copies what ${users.length === 1 ? 'it needs into it' : 'they need into them'})`);
    }
    return users.map((n) => {
      const c = this.vms.get(n);
      if (!c) throw new ProtocolFailure('WrongState', `VM ${vm.name} cannot be deleted: its disk layers are in use by ${n}, which this daemon cannot flatten`);
      if (c.active) throw new ProtocolFailure('WrongState', `VM ${vm.name} cannot be deleted: its ${list} must be flattened, and ${n} is ${c.state}; stop it first`);
      return c;
    });
  }

  /** Makes `clone`'s images independent of `vm`'s files: each of its layers built on one of them
   *  pulls in what it took from there (and from below, as long as those are `vm`'s too). */
  flattenClone(clone: VmInstance, vm: VmInstance): void {
    const owned = new Set(this.ownedFiles(vm));
    const files = new Set<string>();
    for (const p of [...clone.def.disks.map((d) => d.path), ...clone.tree.snapshots.flatMap((s) => s.disks.map((d) => d.path))]) {
      for (const l of imageChain(p)) if (!owned.has(canonicalImagePath(l.path))) files.add(canonicalImagePath(l.path));
    }
    for (const f of files) {
      for (let b = backingOf(f); b !== null && owned.has(b); b = backingOf(f)) {
        pullLayer(b, f);
        rebaseImage(f, backingOf(b));
      }
    }
    // Read-only disks that are `vm`'s own files: the clone gets a copy of its own.
    const disks = clone.def.disks.map((d) => {
      if (!d.readonly || !imageChain(d.path).some((l) => owned.has(canonicalImagePath(l.path)))) return d;
      const copy = join(clone.dir, `${d.name}.flattened.qcow2`);
      convertImage(d.path, copy, 'qcow2', this.paths.home);
      clone.persisted.createdDisks.push(copy);
      return { ...d, path: copy };
    });
    clone.setDefinition({ ...clone.def, disks });
    clone.persisted.clonedFrom = clone.persisted.clonedFrom ? { ...clone.persisted.clonedFrom, linked: false } : null;
    clone.save();
    this.env.log(`vm ${clone.name}: flattened: no longer built on ${vm.name}'s disk layers`);
  }

  /** The images vmctl created for `vm` that hold data (host space allocated): what a delete
   *  must not remove without being told to. */
  disksHoldingData(vm: VmInstance): { path: string; allocatedBytes: number; virtualBytes: number }[] {
    return createdImages(vm).filter((d) => d.allocatedBytes > 0);
  }

  /** Why a delete without a word about the disks is refused, or null when it loses no data. */
  unsaidDiskData(vm: VmInstance): string | null {
    const full = this.disksHoldingData(vm);
    if (full.length === 0) return null;
    const list = full.map((d) => `${d.path} (${humanSize(d.allocatedBytes)} allocated, ${formatSize(d.virtualBytes)} virtual)`).join(', ');
    return `VM ${vm.name} has ${full.length === 1 ? 'a disk image' : 'disk images'} that vmctl created and that ${full.length === 1 ? 'holds' : 'hold'} data: ${list}; ` +
      `say --delete-disks to remove ${full.length === 1 ? 'it' : 'them'} with the VM, or --keep-disks to keep ${full.length === 1 ? 'it' : 'them'}`;
  }

  /** Throws WrongState when `delete` would be refused: the images vmctl created for `vm` go with
   *  it (`disks` "delete") and another VM (or vmctl command) holds one of them. */
  checkDeletable(vm: VmInstance, disks: 'delete' | 'keep' = 'delete'): void {
    if (disks !== 'delete') {
      // Its snapshot layers live in its folder, which goes: they cannot be kept where they are.
      const inFolder = layersInFolder(vm);
      if (inFolder.length > 0) {
        throw new ProtocolFailure('WrongState', `VM ${vm.name}'s disks are snapshot layers in its folder (${inFolder.join(', ')}), which goes with the VM: ` +
          `to keep a disk, copy it out first (vmctl disk convert ${inFolder[0]} COPY --format qcow2), then delete with --delete-disks`);
      }
      return;
    }
    for (const { path: p } of createdImages(vm)) {
      const others = readDiskLocks(p).filter((h) => h.vm !== vm.name).map((h) => h.vm ?? `vmctl ${h.command}`);
      if (others.length > 0) {
        throw new ProtocolFailure('WrongState', `disk ${p} of VM ${vm.name} is in use by ${others.length === 1 ? 'VM' : 'VMs'} ${others.join(', ')}; stop ${others.length === 1 ? 'that VM' : 'them'} first, or keep the disks (--keep-disks)`);
      }
    }
  }

  /**
   * Removes a stopped VM: its folder, and the images vmctl created for it unless `disks` is
   * "keep" (images that existed before `create` are never touched). Returns what became of them.
   */
  delete(vm: VmInstance, disks: 'delete' | 'keep' = 'delete'): DeletedDisk[] {
    const images = createdImages(vm);
    // Check first, so a refused delete leaves the VM registered.
    this.checkDeletable(vm, disks);
    this.vms.delete(vm.name);
    const deleted = this.removeFiles(vm, disks === 'delete');
    this.env.log(`vm ${vm.name}: deleted${images.length ? ` (${deleted ? 'removed' : 'kept'} its disk images: ${images.map((d) => d.path).join(', ')})` : ''}`);
    return images.map((d) => ({ path: d.path, allocatedBytes: d.allocatedBytes, action: deleted ? 'deleted' : 'kept' }));
  }

  /** Removes the VM's folder and, with `disks`, the images vmctl created; false when they stay. */
  private removeFiles(vm: VmInstance, disks = true): boolean {
    let removed = false;
    if (disks) {
      try {
        // Only images vmctl created; refused while another VM holds one (its lock).
        deleteCreatedDisks(vm.persisted.createdDisks);
        removed = true;
      } catch (e) {
        this.env.log(`vm ${vm.name}: keeping its disk images: ${(e as Error).message}`);
      }
    }
    rmSync(vm.dir, { recursive: true, force: true });
    return removed;
  }
}

/** The VM's disks that are top layers in its own folder (the overlays snapshots put it on): its
 *  data since the first snapshot, gone with the folder. */
function layersInFolder(vm: VmInstance): string[] {
  return vm.def.disks.filter((d) => !d.readonly && d.path.startsWith(`${vm.dir}/`)).map((d) => d.path);
}

/** The images vmctl created for a VM that still exist, with their sizes (the overlays its
 *  snapshots made included). */
function createdImages(vm: VmInstance): { path: string; allocatedBytes: number; virtualBytes: number }[] {
  return [...vm.persisted.createdDisks, ...layersInFolder(vm).filter((p) => !vm.persisted.createdDisks.includes(p))].flatMap((path) => {
    try {
      const i = imageInfo(path);
      return [{ path, allocatedBytes: i.allocatedBytes, virtualBytes: i.virtualBytes }];
    } catch {
      return []; // gone already (removed by hand)
    }
  });
}
