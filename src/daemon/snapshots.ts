// A VM's snapshots: the tree (vms/NAME/snapshots.json) and the files of its layers and states
// (vms/NAME/snapshots/). External snapshots, as libvirt's and VirtualBox's differencing images:
//
//   take      every writable disk's top layer becomes read-only for good (the snapshot's layer)
//             and the VM goes on on a new qcow2 overlay backed by it; a running or paused VM's
//             machine state is captured at the same instant (src/vm/run-loop.ts `snapshot`).
//   restore   the VM gets new overlays over the snapshot's layers and the snapshot's definition;
//             a snapshot with a machine state resumes from it (running or paused, as taken).
//   delete    the snapshot goes from the tree (its children move up to its parent) and its
//             layers are merged into their neighbours (src/disk/layers.ts): a layer with one
//             child takes that child's clusters and replaces it; a layer with several children
//             is pulled into each; a layer nothing is built on is removed. What any other
//             snapshot or the VM shows stays exactly as it was.
//
// Crash safety: every operation first records what it is about to do in snapshots.json
// (`pending`), then changes files, then writes the finished tree. A daemon killed at any instant
// leaves a pending record that the next daemon completes or undoes (recover()), depending on
// whether the VM's definition already names the new top layers: a snapshot is never half taken,
// and nothing in another snapshot is lost.

import { randomBytes } from 'node:crypto';
import { existsSync, linkSync, mkdirSync, readdirSync, readFileSync, statSync, unlinkSync, copyFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { VmDefinition } from '../config/vm-definition.js';
import { DiskError } from '../disk/errors.js';
import { createImage, imageChain } from '../disk/image.js';
import { backingOf, commitLayer, ownExtents, pullLayer, rebaseImage } from '../disk/layers.js';
import { canonicalImagePath, removeStaleLocks } from '../disk/lock.js';
import { ProtocolFailure } from '../protocol/messages.js';
import { renameIntoPlace, tempPathFor, writeFileAtomic } from './atomic.js';

export const SNAPSHOT_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

export interface SnapshotDisk {
  readonly name: string;
  /** The layer holding this disk as it was at the snapshot (read-only from then on). */
  path: string;
}

export interface Snapshot {
  readonly id: string;
  readonly name: string;
  parent: string | null;
  readonly createdAt: string;
  readonly description: string;
  /** What the VM was doing: a running or paused VM's snapshot has its machine state. */
  readonly vmState: 'stopped' | 'running' | 'paused' | 'saved';
  state: { readonly file: string; readonly bytes: number } | null;
  /** The VM's definition as it was (its writable disks at their layers). */
  readonly definition: VmDefinition;
  readonly disks: SnapshotDisk[];
  /** How long the guest was held for the capture (running VMs). */
  readonly pauseMs: number | null;
}

/** What an operation is about to do, recorded before any file changes (see recover()). */
export type PendingOp =
  | { readonly op: 'take'; readonly snapshot: Snapshot; readonly newTops: string[] }
  | { readonly op: 'restore'; readonly target: string; readonly newTops: string[]; readonly oldTops: string[] }
  | { readonly op: 'delete'; readonly target: string; readonly plan: MergeStep[] };

/** One step of merging a deleted snapshot's layer (each can be repeated). */
export type MergeStep =
  /** `top` (backed by `base`) is committed into `base`, then replaces it everywhere, and goes. */
  | { readonly kind: 'commit'; readonly top: string; readonly base: string; readonly rebase: string[] }
  /** `layer` is pulled into each child, which is rebased onto `backing`; then `layer` goes. */
  | { readonly kind: 'pull'; readonly layer: string; readonly children: string[]; readonly backing: string }
  /** Nothing is built on `file` any more: it goes. */
  | { readonly kind: 'drop'; readonly file: string };

interface TreeFile {
  version: 1;
  /** The snapshot the VM's current state descends from (the parent of the next one). */
  current: string | null;
  snapshots: Snapshot[];
  pending: PendingOp | null;
}

/** The VM as the snapshot tree needs to see and change it (implemented by VmInstance). */
export interface SnapshotVm {
  readonly name: string;
  readonly dir: string;
  /** The definition the VM runs with (or will start with). */
  readonly def: VmDefinition;
  /** Makes `def` the VM's definition now (vm.yaml written atomically). */
  setDefinition(def: VmDefinition): void;
}

export class SnapshotTree {
  private t: TreeFile;

  constructor(private readonly vm: SnapshotVm) {
    this.t = SnapshotTree.read(this.file);
  }

  get file(): string { return join(this.vm.dir, 'snapshots.json'); }
  get layerDir(): string { return join(this.vm.dir, 'snapshots'); }

  private static read(file: string): TreeFile {
    if (!existsSync(file)) return { version: 1, current: null, snapshots: [], pending: null };
    const t = JSON.parse(readFileSync(file, 'utf8')) as TreeFile;
    if (t.version !== 1 || !Array.isArray(t.snapshots)) throw new Error(`${file}: not a snapshot tree this vmctl reads`);
    return t;
  }

  private save(): void {
    writeFileAtomic(this.file, `${JSON.stringify(this.t, null, 2)}\n`);
  }

  get snapshots(): readonly Snapshot[] { return this.t.snapshots; }
  get current(): string | null { return this.t.current; }
  get pending(): PendingOp | null { return this.t.pending; }

  find(name: string): Snapshot {
    const s = this.t.snapshots.find((x) => x.name === name);
    if (!s) throw new ProtocolFailure('NoSuchSnapshot', `VM ${this.vm.name} has no snapshot named ${JSON.stringify(name)}${this.t.snapshots.length ? ` (it has ${this.t.snapshots.map((x) => x.name).join(', ')})` : ''}`);
    return s;
  }

  children(id: string | null): Snapshot[] {
    return this.t.snapshots.filter((s) => s.parent === id);
  }

  statePath(s: Snapshot): string | null {
    return s.state ? join(this.layerDir, s.state.file) : null;
  }

  /** The first free name snap1, snap2, ... */
  freeName(): string {
    for (let i = 1; ; i++) if (!this.t.snapshots.some((s) => s.name === `snap${i}`)) return `snap${i}`;
  }

  /** Is this file one of the VM's own layers (made by vmctl in the VM's folder)? */
  ownsLayer(path: string): boolean {
    return dirname(canonicalImagePath(path)) === canonicalImagePath(this.layerDir);
  }

  /** Files any snapshot keeps (layers and states). */
  private referenced(): Set<string> {
    const r = new Set<string>();
    for (const s of this.t.snapshots) for (const d of s.disks) r.add(canonicalImagePath(d.path));
    return r;
  }

  private newLayerPath(disk: string): string {
    mkdirSync(this.layerDir, { recursive: true, mode: 0o700 });
    return join(this.layerDir, `${disk}.${randomBytes(4).toString('hex')}.qcow2`);
  }

  /** The writable disks of a definition, with their virtio slot. */
  static writable(def: VmDefinition): { index: number; name: string; path: string }[] {
    return def.disks.flatMap((d, index) => (d.readonly ? [] : [{ index, name: d.name, path: d.path }]));
  }

  private withPaths(def: VmDefinition, paths: Map<string, string>): VmDefinition {
    return { ...def, disks: def.disks.map((d) => (!d.readonly && paths.has(d.name) ? { ...d, path: paths.get(d.name)! } : d)) };
  }

  private topsNow(): string[] {
    return SnapshotTree.writable(this.vm.def).map((d) => canonicalImagePath(d.path));
  }

  private sameTops(paths: readonly string[]): boolean {
    const now = this.topsNow();
    return now.length === paths.length && paths.every((p, i) => canonicalImagePath(p) === now[i]);
  }

  // ---- take ----

  /**
   * First half of `take`: new overlays over the writable disks' top layers, the pending record,
   * and the VM's definition switched to the overlays (from here on the snapshot stands, with or
   * without a machine state). Returns the switches for a running machine.
   */
  beginTake(name: string, description: string, vmState: Snapshot['vmState']): { snapshot: Snapshot; switches: { index: number; path: string }[] } {
    if (!SNAPSHOT_NAME_RE.test(name)) throw new ProtocolFailure('InvalidParams', `snapshot name ${JSON.stringify(name)} is not valid; expected letters, digits, ".", "_" or "-" (1..63 characters, starting with a letter or digit)`);
    if (this.t.snapshots.some((s) => s.name === name)) throw new ProtocolFailure('AlreadyExists', `VM ${this.vm.name} already has a snapshot named ${JSON.stringify(name)}`);
    const def = this.vm.def;
    const writable = SnapshotTree.writable(def);
    const created: string[] = [];
    try {
      for (const d of writable) {
        const p = this.newLayerPath(d.name);
        createImage(p, { format: 'qcow2', backing: d.path });
        created.push(p);
      }
    } catch (e) {
      for (const p of created) try { unlinkSync(p); } catch { /* gone */ }
      if (e instanceof DiskError) throw new ProtocolFailure('Internal', `VM ${this.vm.name}: cannot create the snapshot's overlays: ${e.message}`);
      throw e;
    }
    const snapshot: Snapshot = {
      id: randomBytes(6).toString('hex'), name, parent: this.t.current, createdAt: new Date().toISOString(), description,
      vmState, state: null, definition: def, disks: writable.map((d) => ({ name: d.name, path: d.path })), pauseMs: null,
    };
    this.t.pending = { op: 'take', snapshot, newTops: created };
    this.save();
    this.vm.setDefinition(this.withPaths(def, new Map(writable.map((d, i) => [d.name, created[i]]))));
    return { snapshot, switches: writable.map((d, i) => ({ index: d.index, path: created[i] })) };
  }

  /** The running machine could not switch to the overlays (or a killed daemon's take wrote
   *  nothing on them): the VM goes on on its old tops. */
  abortTake(): void {
    const p = this.t.pending;
    if (p?.op !== 'take') return;
    this.vm.setDefinition(p.snapshot.definition);
    for (const f of p.newTops) removeLayerFile(f);
    this.t.pending = null;
    this.save();
  }

  /** Where a snapshot's machine state goes, and a temporary name to write it under first. */
  stateFileFor(s: Snapshot): { final: string; tmp: string } {
    const final = join(this.layerDir, `${s.id}.vmstate`);
    return { final, tmp: tempPathFor(final) };
  }

  /** Last half of `take`: the machine state (written to `stateTmp`, or null) goes into place and
   *  the snapshot into the tree. */
  finishTake(stateTmp: string | null, bytes: number, pauseMs: number | null): Snapshot {
    const p = this.t.pending;
    if (p?.op !== 'take') throw new Error('no snapshot is being taken');
    let state: Snapshot['state'] = null;
    if (stateTmp !== null) {
      const { final } = this.stateFileFor(p.snapshot);
      renameIntoPlace(stateTmp, final);
      state = { file: `${p.snapshot.id}.vmstate`, bytes };
    }
    const s: Snapshot = { ...p.snapshot, state, pauseMs };
    this.t.snapshots.push(s);
    this.t.current = s.id;
    this.t.pending = null;
    this.save();
    return s;
  }

  /** A saved VM's state file becomes the snapshot's too (a hard link: no copy). */
  linkState(savedState: string, tmp: string): number {
    try { linkSync(savedState, tmp); } catch { copyFileSync(savedState, tmp); }
    return statSync(tmp).size;
  }

  // ---- restore ----

  /**
   * Puts the VM back at snapshot `s`: its definition, with new overlays over the snapshot's
   * layers (the VM's current top layers, which no snapshot keeps, are removed). The caller
   * resumes the snapshot's machine state, if it has one.
   */
  restore(s: Snapshot): void {
    const writable = SnapshotTree.writable(s.definition);
    const created: string[] = [];
    try {
      for (const d of writable) {
        // The snapshot's disks name its layers (they move when a neighbour is merged away).
        const layer = s.disks.find((x) => x.name === d.name);
        if (!layer) throw new Error(`the snapshot has no layer for disk ${d.name}`);
        const p = this.newLayerPath(d.name);
        createImage(p, { format: 'qcow2', backing: layer.path });
        created.push(p);
      }
    } catch (e) {
      for (const p of created) try { unlinkSync(p); } catch { /* gone */ }
      throw new ProtocolFailure('Internal', `VM ${this.vm.name}: cannot create overlays for snapshot ${s.name}: ${(e as Error).message}`);
    }
    const keep = this.referenced();
    const oldTops = SnapshotTree.writable(this.vm.def).map((d) => d.path).filter((p) => this.ownsLayer(p) && !keep.has(canonicalImagePath(p)));
    this.t.pending = { op: 'restore', target: s.id, newTops: created, oldTops };
    this.save();
    this.vm.setDefinition(this.withPaths(s.definition, new Map(writable.map((d, i) => [d.name, created[i]]))));
    this.finishRestore();
  }

  private finishRestore(): void {
    const p = this.t.pending;
    if (p?.op !== 'restore') return;
    this.t.current = p.target;
    this.t.pending = null;
    this.save();
    for (const f of p.oldTops) removeLayerFile(f);
  }

  // ---- delete ----

  /**
   * Plans the deletion of `s`: for each of its layers, what is built on it (other snapshots'
   * layers, the VM's current top) decides how it is merged. `inUseElsewhere` names other VMs
   * (linked clones) whose disks are built on a file the merge would change: refused then.
   */
  planDelete(s: Snapshot, inUseElsewhere: (files: string[]) => string[]): MergeStep[] {
    const plan: MergeStep[] = [];
    const touched: string[] = [];
    // Every image of the VM that could be built on a layer: its snapshots' layers and current tops.
    const images = new Set<string>([
      ...this.t.snapshots.filter((x) => x !== s).flatMap((x) => x.disks.map((d) => d.path)),
      ...SnapshotTree.writable(this.vm.def).map((d) => d.path),
    ].map(canonicalImagePath));
    for (const d of s.disks) {
      const layer = canonicalImagePath(d.path);
      const children = [...images].filter((f) => existsSync(f) && backingOf(f) === layer);
      const below = existsSync(layer) ? backingOf(layer) : null;
      if (children.length === 0) {
        if (this.ownsLayer(layer)) plan.push({ kind: 'drop', file: layer });
        touched.push(layer);
      } else if (children.length === 1) {
        const top = children[0];
        // Whatever is built on the child is rebased onto the layer, which takes its place.
        const rebase = [...images].filter((f) => f !== top && existsSync(f) && backingOf(f) === top);
        plan.push({ kind: 'commit', top, base: layer, rebase });
        touched.push(layer, top, ...rebase);
      } else if (below !== null && this.ownsLayer(layer)) {
        plan.push({ kind: 'pull', layer, children, backing: below });
        touched.push(layer, ...children);
      }
      // Several children on a base of the user's (no backing file, not the VM's own layer): it
      // stays as their shared base; only the snapshot goes.
    }
    const others = inUseElsewhere(touched);
    if (others.length > 0) {
      throw new ProtocolFailure('WrongState', `snapshot ${s.name} of VM ${this.vm.name} cannot be deleted: its layers back the disks of ${others.length === 1 ? 'VM' : 'VMs'} ${others.join(', ')} (linked clones); delete or flatten ${others.length === 1 ? 'it' : 'them'} first`);
    }
    return plan;
  }

  /** Files of the VM's current disks a plan changes (a running VM must let go of them first). */
  planTouchesCurrent(plan: readonly MergeStep[]): boolean {
    const current = new Set(this.vm.def.disks.flatMap((d) => imageChain(d.path).map((l) => canonicalImagePath(l.path))));
    const files = plan.flatMap((p) => (p.kind === 'commit' ? [p.top, p.base, ...p.rebase] : p.kind === 'pull' ? [p.layer, ...p.children] : [p.file]));
    return files.some((f) => current.has(f));
  }

  /** Deletes `s` along `plan` (recorded first, so a crash part-way is completed by recover()). */
  delete(s: Snapshot, plan: MergeStep[]): void {
    this.t.pending = { op: 'delete', target: s.id, plan };
    this.save();
    this.finishDelete();
  }

  private finishDelete(): void {
    const p = this.t.pending;
    if (p?.op !== 'delete') return;
    const s = this.t.snapshots.find((x) => x.id === p.target);
    for (const step of p.plan) this.runStep(step);
    if (s) {
      for (const c of this.children(s.id)) c.parent = s.parent;
      if (this.t.current === s.id) this.t.current = s.parent;
      this.t.snapshots = this.t.snapshots.filter((x) => x !== s);
    }
    this.t.pending = null;
    this.save();
    const state = s ? this.statePath(s) : null;
    if (state) try { unlinkSync(state); } catch { /* gone */ }
  }

  /** One merge step; repeatable: a step a crash interrupted is run again from its start. */
  private runStep(step: MergeStep): void {
    switch (step.kind) {
      case 'drop':
        removeLayerFile(step.file);
        return;
      case 'commit': {
        if (existsSync(step.top)) {
          commitLayer(step.top, step.base);
          for (const f of step.rebase) if (existsSync(f)) rebaseImage(f, step.base);
        }
        // The base now shows what the top showed: it replaces the top in the snapshots and the VM.
        for (const x of this.t.snapshots) for (const d of x.disks) if (canonicalImagePath(d.path) === step.top) d.path = step.base;
        if (SnapshotTree.writable(this.vm.def).some((d) => canonicalImagePath(d.path) === step.top)) {
          this.vm.setDefinition({ ...this.vm.def, disks: this.vm.def.disks.map((d) => (canonicalImagePath(d.path) === step.top ? { ...d, path: step.base } : d)) });
        }
        this.save();
        if (this.ownsLayer(step.top)) removeLayerFile(step.top);
        return;
      }
      case 'pull':
        if (existsSync(step.layer)) {
          for (const c of step.children) {
            if (backingOf(c) === step.layer) {
              pullLayer(step.layer, c);
              rebaseImage(c, step.backing);
            }
          }
          removeLayerFile(step.layer);
        }
        return;
    }
  }

  // ---- recovery ----

  /** Completes or undoes an operation a killed daemon left pending, and removes temporary files. */
  recover(log: (m: string) => void): void {
    const p = this.t.pending;
    if (p) {
      if (p.op === 'take') {
        const { final } = this.stateFileFor(p.snapshot);
        if (this.sameTops(p.newTops) && !existsSync(final) && p.newTops.every((f) => !existsSync(f) || ownExtents(f).length === 0)) {
          // The VM was named on the new overlays but nothing was written to them (the machine had
          // not switched, or wrote nothing since) and no state went into place: undoing the take
          // loses nothing, and leaves the VM and the tree exactly as they were before it.
          this.abortTake();
          log(`snapshot ${p.snapshot.name} was being taken when the daemon ended, before anything was written on its overlays; undone`);
        } else if (this.sameTops(p.newTops)) {
          const bytes = existsSync(final) ? statSync(final).size : 0;
          const s: Snapshot = { ...p.snapshot, state: existsSync(final) ? { file: `${p.snapshot.id}.vmstate`, bytes } : null };
          this.t.snapshots.push(s);
          this.t.current = s.id;
          this.t.pending = null;
          this.save();
          log(`snapshot ${s.name} was being taken when the daemon ended; completed${s.state ? '' : ' (disks only: its machine state was not written)'}`);
        } else {
          for (const f of p.newTops) removeLayerFile(f);
          this.t.pending = null;
          this.save();
          log(`snapshot ${p.snapshot.name} was being taken when the daemon ended, before the VM moved to it; undone`);
        }
      } else if (p.op === 'restore') {
        if (this.sameTops(p.newTops)) {
          this.finishRestore();
          log('a snapshot restore was under way when the daemon ended; completed');
        } else {
          for (const f of p.newTops) removeLayerFile(f);
          this.t.pending = null;
          this.save();
          log('a snapshot restore was under way when the daemon ended, before the VM moved to it; undone');
        }
      } else {
        this.finishDelete();
        log('a snapshot delete was under way when the daemon ended; completed');
      }
    }
    // Machine states being written when the daemon ended (tempPathFor names): never taken for good.
    if (existsSync(this.layerDir)) {
      for (const n of readdirSync(this.layerDir)) {
        if (n.startsWith('.') && n.endsWith('.tmp')) try { unlinkSync(join(this.layerDir, n)); } catch { /* gone */ }
      }
    }
  }
}

function removeLayerFile(f: string): void {
  try { unlinkSync(f); } catch { /* gone */ }
  removeStaleLocks(f);
}
