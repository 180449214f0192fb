// list, info, dtb.

import { writeFileSync } from 'node:fs';
import type { Command } from 'commander';
import { formatSize, humanDuration, humanSize } from '../../config/units.js';
import type { VmInfo } from '../../protocol/messages.js';
import { unb64 } from '../cli-helpers.js';
import { connectDaemon } from '../daemon-link.js';
import { CliError, EXIT } from '../exit-codes.js';
import { columns, out, printJson, stateColor } from '../output.js';

export function register(program: Command): void {
  program
    .command('list')
    .alias('ls')
    .description('list VMs')
    .option('--json', 'print a JSON array')
    .option('-q, --quiet', 'print names only')
    .action(async (o: { json?: boolean; quiet?: boolean }) => {
      const c = await connectDaemon();
      const vms = await c.request<VmInfo[]>('vm.list');
      c.close();
      if (o.json) return printJson(vms);
      if (o.quiet) {
        for (const v of vms) process.stdout.write(`${v.name}\n`);
        return;
      }
      const rows = vms.map((v) => [
        v.name, v.savedState ? `${stateColor(v.state)} (${humanSize(v.savedState.bytes)})` : stateColor(v.state),
        String(v.cpus), humanSize(v.memoryBytes), v.uptimeSeconds > 0 ? humanDuration(v.uptimeSeconds) : '-',
      ]);
      process.stdout.write(vms.length === 0 ? 'No VMs. Create one with: vmctl create -f vm.yaml\n' : columns(['NAME', 'STATE', 'CPUS', 'MEMORY', 'UPTIME'], rows));
    });

  program
    .command('info <NAME>')
    .description('show one VM')
    .option('--json', 'print a JSON object')
    .action(async (name: string, o: { json?: boolean }) => {
      const c = await connectDaemon();
      const v = await c.request<VmInfo>('vm.info', { name });
      c.close();
      if (o.json) return printJson(v);
      const rows: [string, string][] = [
        ['Name', out.bold(v.name)],
        ['UUID', v.uuid],
        ['State', `${stateColor(v.state)}${v.pauseReason === 'memory' ? ' (waiting for host memory)' : ''}`],
        ...(v.savedState ? [['Saved state', `${humanSize(v.savedState.bytes)} (${v.savedState.bytes} bytes), saved ${v.savedState.savedAt}`] as [string, string]] : []),
        ['CPUs', `${v.cpus}, shares ${v.cpuShares}, cap ${v.cpuCap}%`],
        ...(v.cpuPercent !== null ? [['Host CPU', `${v.cpuPercent.toFixed(1)}% (harts: ${v.hartCpuPercent!.map((x) => `${x.toFixed(0)}%`).join(' ')})${v.heldBack ? `, held back by ${v.heldBack}` : ''}`] as [string, string]] : []),
        ...(v.mips !== null ? [['Guest MIPS', v.mips.toFixed(1)] as [string, string]] : []),
        ['Memory', `${humanSize(v.memoryBytes)} (${v.memoryBytes} bytes)`],
        ...memoryRows(v),
        ['Uptime', v.uptimeSeconds > 0 ? humanDuration(v.uptimeSeconds) : '-'],
        ['Boots', String(v.bootId)],
        ['Firmware', v.firmware],
        ['Kernel', v.kernel ?? '-'],
      ];
      if (v.initrd) rows.push(['Initrd', v.initrd]);
      if (v.cmdline) rows.push(['Cmdline', v.cmdline]);
      for (const d of v.disks) {
        const sizes = d.virtualBytes === null ? out.red('missing or unreadable') : `${formatSize(d.virtualBytes)} virtual, ${humanSize(d.allocatedBytes ?? 0)} allocated`;
        rows.push([`Disk ${d.name}`, `${d.path} (${sizes})${d.readonly ? ' (read-only)' : ''}${d.createdByVmctl ? ' (created by vmctl)' : ''}`]);
      }
      if (v.clonedFrom) rows.push(['Cloned from', `${v.clonedFrom.vm}${v.clonedFrom.snapshot ? ` at snapshot ${v.clonedFrom.snapshot}` : ''} (${v.clonedFrom.linked ? 'linked' : 'full copy'})`]);
      if (v.snapshots > 0) rows.push(['Snapshots', `${v.snapshots}${v.currentSnapshot ? ` (current: ${v.currentSnapshot})` : ''}`]);
      if (v.shutdownConsole) rows.push(['Shutdown', `types ${JSON.stringify(v.shutdownConsole)}`]);
      if (v.lastPower) rows.push(['Last power', v.lastPower.kind === 'poweroff' ? `poweroff code ${v.lastPower.code}${v.lastPower.failed ? ' (failure)' : ''} via ${v.lastPower.source} at ${v.lastPower.at}` : `reset via ${v.lastPower.source} at ${v.lastPower.at}`]);
      if (v.lastError) rows.push(['Last error', out.red(v.lastError.split('\n')[0])]);
      if (v.instructionsRetired !== null) rows.push(['Instructions', v.instructionsRetired.toLocaleString('en-US')]);
      rows.push(['Created', v.createdAt]);
      rows.push(['Folder', v.directory]);
      const w = Math.max(...rows.map((r) => r[0].length));
      for (const [k, val] of rows) process.stdout.write(`${`${k}:`.padEnd(w + 2)}${val}\n`);
    });

  program
    .command('dtb <NAME>')
    .description("write the VM's flattened device tree (decompile with: dtc -I dtb -O dts)")
    .option('-o, --output <FILE>', 'file to write, "-" for stdout (without -o: stdout when it is not a terminal, else NAME.dtb)')
    .action(async (name: string, o: { output?: string }) => {
      const c = await connectDaemon();
      const r = await c.request<{ data: string }>('vm.dtb', { name });
      c.close();
      const bytes = unb64(r.data);
      // `vmctl dtb N > board.dtb` (as the README shows) must get the tree, not a sentence.
      const file = o.output ?? (process.stdout.isTTY ? `${name}.dtb` : '-');
      if (file === '-') {
        process.stdout.write(bytes);
        return;
      }
      try {
        // A file the user named with -o is theirs to replace; the default name never replaces one.
        writeFileSync(file, bytes, { flag: o.output === undefined ? 'wx' : 'w' });
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'EEXIST') throw new CliError(EXIT.failed, `${file} already exists; not replacing it (choose a file with -o FILE, or -o - for stdout)`);
        throw new CliError(EXIT.failed, `cannot write ${file}: ${(e as Error).message}`);
      }
      process.stdout.write(`Wrote ${bytes.length} bytes of device tree to ${file}\n`);
    });
}

/** `info`'s memory lines while the VM runs: host side, balloon, and what the guest says. */
function memoryRows(v: VmInfo): [string, string][] {
  const m = v.memory;
  const rows: [string, string][] = [];
  const size = (n: number | null): string => (n === null ? '-' : humanSize(n));
  if (m.residentBytes !== null) rows.push(['Resident', `${size(m.residentBytes)} of host memory`]);
  if (m.targetBytes !== null) {
    rows.push(['Balloon', `target ${size(m.targetBytes)}, actual ${size(m.actualBytes)} (${size(m.balloonBytes)} in the balloon; min ${size(m.minBytes)})`]);
  }
  if (m.guestTotalBytes !== null || m.guestFreeBytes !== null) {
    rows.push(['Guest memory', `total ${size(m.guestTotalBytes)}, free ${size(m.guestFreeBytes)}, available ${size(m.guestAvailableBytes)}`]);
  }
  return rows;
}
