// snapshot take / list / restore / delete (src/daemon/snapshots.ts does the work), and clone.

import type { Command } from 'commander';
import { humanSize } from '../../config/units.js';
import type { SnapshotInfo, VmInfo } from '../../protocol/messages.js';
import { connectDaemon } from '../daemon-link.js';
import { columns, err, out, printJson, spinner, stateColor } from '../output.js';

/** "2025-12-07 10:04:31" in local time. */
function localTime(iso: string): string {
  const d = new Date(iso);
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

/** The snapshots in tree order, each with the box-drawing prefix that shows its place. */
function treeRows(list: readonly SnapshotInfo[]): { s: SnapshotInfo; prefix: string }[] {
  const rows: { s: SnapshotInfo; prefix: string }[] = [];
  const byName = new Map(list.map((s) => [s.name, s]));
  const walk = (s: SnapshotInfo, lead: string, last: boolean, root: boolean) => {
    rows.push({ s, prefix: root ? '' : `${lead}${last ? '└─ ' : '├─ '}` });
    const kids = s.children.map((c) => byName.get(c)!).filter(Boolean);
    kids.forEach((k, i) => walk(k, root ? '' : `${lead}${last ? '   ' : '│  '}`, i === kids.length - 1, false));
  };
  for (const r of list.filter((s) => s.parent === null)) walk(r, '', true, true);
  return rows;
}

export function register(program: Command): void {
  const snap = program.command('snapshot').description('snapshots of a VM: take, list, restore, delete');

  snap
    .command('take <NAME> [SNAP]')
    .description('snapshot the disks (and a running or paused VM\'s machine state, at the same instant)')
    .option('--description <TEXT>', 'what the snapshot is for')
    .option('--json', 'print the snapshot as JSON')
    .action(async (name: string, snapName: string | undefined, o: { description?: string; json?: boolean }) => {
      const c = await connectDaemon();
      const sp = spinner(`taking a snapshot of ${name}`, !o.json);
      let r: { snapshot: SnapshotInfo & { warning?: string }; vm: VmInfo; warning?: string };
      try {
        r = await c.request('snapshot.take', { name, ...(snapName !== undefined ? { snapshot: snapName } : {}), ...(o.description !== undefined ? { description: o.description } : {}) });
      } finally {
        sp.stop();
      }
      c.close();
      if (r.warning) process.stderr.write(`${err.yellow('warning:')} ${r.warning}\n`);
      if (o.json) return printJson(r.snapshot);
      const s = r.snapshot;
      const what = s.withState ? `disks and machine state (${humanSize(s.stateBytes)})` : 'disks';
      const held = s.pauseSeconds !== null ? `; the guest was held ${(s.pauseSeconds * 1000).toFixed(0)} ms` : '';
      process.stdout.write(`Took snapshot ${out.bold(s.name)} of VM ${name} (${s.vmState}): ${what}${held}\n`);
    });

  snap
    .command('list <NAME>')
    .alias('ls')
    .description('the snapshot tree: parent and children, time, what the VM was doing, size, description')
    .option('--json', 'print {current, snapshots: [...]} as JSON')
    .action(async (name: string, o: { json?: boolean }) => {
      const c = await connectDaemon();
      const r = await c.request<{ current: string | null; snapshots: SnapshotInfo[] }>('snapshot.list', { name });
      c.close();
      if (o.json) return printJson(r);
      if (r.snapshots.length === 0) {
        process.stdout.write(`VM ${name} has no snapshots. Take one with: vmctl snapshot take ${name}\n`);
        return;
      }
      process.stdout.write(columns(['SNAPSHOT', 'TAKEN', 'VM WAS', 'STATE', 'SIZE', 'DESCRIPTION'], treeRows(r.snapshots).map(({ s, prefix }) => [
        `${prefix}${s.current ? out.bold(s.name) : s.name}${s.current ? ' (current)' : ''}`,
        localTime(s.createdAt), stateColor(s.vmState), s.withState ? 'yes' : '-', humanSize(s.sizeBytes), s.description,
      ])));
    });

  snap
    .command('restore <NAME> <SNAP>')
    .description('go back to a snapshot (disks and definition; a running VM\'s snapshot restores to running)')
    .option('--force', 'a running or paused VM is powered off first, a saved one loses its saved state')
    .option('--json', 'print the VM as JSON')
    .action(async (name: string, snapName: string, o: { force?: boolean; json?: boolean }) => {
      const c = await connectDaemon();
      const sp = spinner(`restoring ${name} to ${snapName}`, !o.json);
      let info: VmInfo;
      try {
        info = await c.request<VmInfo>('snapshot.restore', { name, snapshot: snapName, ...(o.force ? { force: true } : {}) });
      } finally {
        sp.stop();
      }
      c.close();
      if (o.json) return printJson(info);
      process.stdout.write(`Restored VM ${out.bold(name)} to snapshot ${snapName}, state ${stateColor(info.state)}\n`);
    });

  program
    .command('clone <SRC> <NEW>')
    .description('a new VM from SRC\'s disks (a stopped VM, or a snapshot): new UUID, boots afresh')
    .option('--snapshot <SNAP>', 'clone the disks and definition of this snapshot (SRC may run)')
    .option('--linked', 'build the clone on SRC\'s disk layers (qcow2 overlays, instant) instead of copying them')
    .option('--json', 'print the new VM as JSON')
    .action(async (src: string, name: string, o: { snapshot?: string; linked?: boolean; json?: boolean }) => {
      const c = await connectDaemon();
      const sp = spinner(`cloning ${src}`, !o.json);
      let info: VmInfo;
      try {
        info = await c.request<VmInfo>('vm.clone', { name: src, newName: name, ...(o.snapshot !== undefined ? { snapshot: o.snapshot } : {}), ...(o.linked ? { linked: true } : {}) });
      } finally {
        sp.stop();
      }
      c.close();
      if (o.json) return printJson(info);
      const at = info.clonedFrom?.snapshot ? ` at snapshot ${info.clonedFrom.snapshot}` : '';
      process.stdout.write(`Created VM ${out.bold(name)}, a ${o.linked ? 'linked' : 'full'} clone of ${src}${at}, state ${stateColor(info.state)}\n`);
    });

  snap
    .command('delete <NAME> <SNAP>')
    .alias('rm')
    .description('delete a snapshot: its disk layers are merged into their neighbours, nothing of another snapshot is lost')
    .action(async (name: string, snapName: string) => {
      const c = await connectDaemon();
      const sp = spinner(`deleting snapshot ${snapName} of ${name}`);
      try {
        await c.request('snapshot.delete', { name, snapshot: snapName });
      } finally {
        sp.stop();
      }
      c.close();
      process.stdout.write(`Deleted snapshot ${snapName} of VM ${name}\n`);
    });
}
