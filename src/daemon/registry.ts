// The VMs a daemon knows: one folder per VM under VMCTL_HOME/vms, loaded at start-up.
// VMs that were active when the previous daemon died are marked `aborted`.

import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { DiskError } from '../disk/errors.js';
import { readDiskLocks } from '../disk/lock.js';
import { deleteCreatedDisks, prepareDisks, type PreparedDisks } from '../disk/prepare.js';
import { loadVmDefinition, parseVmDefinition, readSetting, serializeVmDefinition, VM_NAME_RE, type VmDefinition } from '../config/vm-definition.js';
import { cpuCap as cpuCapSpec, cpuCount as cpuCountSpec, cpuShares as cpuSharesSpec } from '../config/vm-schema.js';
import type { Spec } from '../config/schema.js';
import { ProtocolFailure } from '../protocol/messages.js';
import { writeFileAtomic } from './atomic.js';
import { vmDir, type HomePaths } from './paths.js';
import { VmInstance, type InstanceEnv, type PersistedState } from './vm-instance.js';

export class Registry {
  readonly vms = new Map<string, VmInstance>();
  /** VM folders found at start-up that could not be loaded, and why: kept as they are. */
  readonly unloadable = new Map<string, string>();

  constructor(
    private readonly paths: HomePaths,
    private readonly env: InstanceEnv,
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
        if (['starting', 'running', 'paused', 'stopping'].includes(persisted.state)) {
          this.env.log(`vm ${name}: was ${persisted.state} when the daemon died; now aborted`);
          persisted.state = 'aborted';
          persisted.lastError = 'the daemon ended while the VM ran';
          vm.save();
        }
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
    if (!vm) throw new ProtocolFailure('NoSuchVm', `no VM named ${JSON.stringify(name)}`);
    return vm;
  }

  /** Registers a VM from YAML text (validated again here: the daemon trusts no client). */
  create(file: string, text: string, nameOverride: string | undefined, ephemeral: boolean): { vm: VmInstance; warnings: string[] } {
    const def = parseVmDefinition(text, file, dirname(file), { nameOverride });
    if (this.vms.has(def.name)) throw new ProtocolFailure('AlreadyExists', `a VM named ${JSON.stringify(def.name)} already exists`);
    const dir = vmDir(this.paths, def.name);
    // A folder without state.json is an interrupted create; one with it is a VM this daemon could
    // not load (a damaged vm.yaml or state.json): its serial log and the record of the disks it
    // created must not be wiped by a new VM that happens to take its name.
    if (existsSync(join(dir, 'state.json'))) {
      const why = this.unloadable.get(def.name) ?? 'it appeared after the daemon started';
      throw new ProtocolFailure('AlreadyExists', `a VM named ${JSON.stringify(def.name)} is stored in ${dir} but could not be loaded (${why.split('\n')[0]}); repair or remove that folder, or choose another name (--name)`);
    }
    if (existsSync(dir)) rmSync(dir, { recursive: true, force: true }); // an interrupted create
    mkdirSync(dir, { mode: 0o700 });
    let created: string[] = [];
    try {
      const prepared = this.prepareDisks(file, def);
      created = prepared.created;
      for (const w of prepared.warnings) this.env.log(`vm ${def.name}: ${w}`);
      const warnings = prepared.warnings;
      const persisted: PersistedState = {
        state: 'stopped', bootId: 0, createdAt: new Date().toISOString(), startedAt: null,
        lastPower: null, lastError: null, ephemeral, createdDisks: created, instructionsRetired: null,
      };
      writeFileAtomic(`${dir}/vm.yaml`, serializeVmDefinition(def));
      const vm = new VmInstance(def, dir, persisted, this.env);
      vm.save();
      this.vms.set(def.name, vm);
      this.onAdded(vm);
      this.env.log(`vm ${def.name}: created from ${file}${created.length ? ` (new disks: ${created.join(', ')})` : ''}`);
      return { vm, warnings };
    } catch (e) {
      try { deleteCreatedDisks(created); } catch { /* best effort */ }
      rmSync(dir, { recursive: true, force: true });
      throw e;
    }
  }

  /** The stored definition (vm.yaml) as text, for `vmctl edit`. */
  definitionText(vm: VmInstance): string {
    return readFileSync(join(vm.dir, 'vm.yaml'), 'utf8');
  }

  /**
   * Replaces a VM's definition (`vmctl edit`), validated here like `create` (the daemon trusts no
   * client); `base` is the text the edit started from, so two edits at once cannot silently undo
   * each other. New disk images are created as on create. A running VM keeps its definition
   * until it stops.
   */
  redefine(vm: VmInstance, file: string, text: string, base: string | undefined): { applies: 'now' | 'next-start'; warnings: string[] } {
    if (base !== undefined && base !== this.definitionText(vm)) {
      throw new ProtocolFailure('WrongState', `the definition of VM ${vm.name} was changed by someone else while it was edited; nothing was saved`);
    }
    const def = parseVmDefinition(text, file, dirname(file), { keepName: vm.name });
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
    return { applies, warnings: prepared.warnings };
  }

  /**
   * `vmctl set`: new CPU shares and cap (a running VM gets them at once) or hart count (a stopped
   * VM only), checked as the YAML keys are (a bad value: ConfigError, nothing changed) and saved
   * in the definition.
   */
  set(vm: VmInstance, s: { cpuShares?: number; cpuCap?: number; cpus?: number }): void {
    const problems: string[] = [];
    const check = (spec: Spec<number>, key: string, v: number | undefined): number | undefined => {
      if (v === undefined) return undefined;
      const r = readSetting(spec, key, String(v));
      if (typeof r === 'string') problems.push(r);
      return typeof r === 'number' ? r : undefined;
    };
    const cpuShares = check(cpuSharesSpec, 'cpus.shares', s.cpuShares);
    const cpuCap = check(cpuCapSpec, 'cpus.cap', s.cpuCap);
    const cpus = check(cpuCountSpec, 'cpus.count', s.cpus);
    if (problems.length > 0) throw new ProtocolFailure('ConfigError', problems.join('\n'));
    if (cpuShares === undefined && cpuCap === undefined && cpus === undefined) throw new ProtocolFailure('InvalidParams', 'vm.set: nothing to set; give cpuShares, cpuCap or cpus');
    if (cpus !== undefined && vm.active) {
      throw new ProtocolFailure('WrongState', `VM ${vm.name} is ${vm.state}; the number of harts changes on a stopped VM (stop it first)`);
    }
    const stored = vm.storedDefinition();
    const next: VmDefinition = { ...stored, cpuShares: cpuShares ?? stored.cpuShares, cpuCap: cpuCap ?? stored.cpuCap, cpus: cpus ?? stored.cpus };
    const text = serializeVmDefinition(next);
    // The whole definition again, as create would check it (more harts make a larger device tree).
    parseVmDefinition(text, join(vm.dir, 'vm.yaml'), vm.dir, { keepName: vm.name });
    writeFileAtomic(join(vm.dir, 'vm.yaml'), text);
    vm.setCpu(next);
    this.env.scheduler?.update(vm.name, vm.def.cpuShares, vm.def.cpuCap);
    this.env.log(`vm ${vm.name}: cpus ${next.cpus}, shares ${next.cpuShares}, cap ${next.cpuCap}%`);
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

  delete(vm: VmInstance): void {
    // Check first, so a refused delete leaves the VM registered.
    for (const p of vm.persisted.createdDisks) {
      const others = readDiskLocks(p).filter((h) => h.vm !== vm.name).map((h) => h.vm);
      if (others.length > 0) {
        throw new ProtocolFailure('WrongState', `disk ${p} of VM ${vm.name} is in use by ${others.length === 1 ? 'VM' : 'VMs'} ${others.join(', ')}; stop ${others.length === 1 ? 'that VM' : 'them'} first`);
      }
    }
    this.vms.delete(vm.name);
    this.removeFiles(vm);
    this.env.log(`vm ${vm.name}: deleted`);
  }

  private removeFiles(vm: VmInstance): void {
    try {
      // Only images vmctl created; refused while another VM holds one (its lock).
      deleteCreatedDisks(vm.persisted.createdDisks);
    } catch (e) {
      this.env.log(`vm ${vm.name}: keeping its disk images: ${(e as Error).message}`);
    }
    rmSync(vm.dir, { recursive: true, force: true });
  }
}
