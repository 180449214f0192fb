// validate: check a VM file without creating anything (no daemon needed).

import type { Command } from 'commander';
import { formatSize } from '../../config/units.js';
import { cpusText, loadDefinitionOrExit } from '../cli-helpers.js';
import { err, out, printJson } from '../output.js';

export function register(program: Command): void {
  program
    .command('validate')
    .description('check a VM definition; errors as FILE:LINE:COL, exit 2')
    .requiredOption('-f, --file <FILE>', 'VM definition')
    .option('--json', 'print the resolved definition as JSON')
    .action((o: { file: string; json?: boolean }) => {
      const { def } = loadDefinitionOrExit(o.file);
      for (const w of def.warnings ?? []) process.stderr.write(`${err.yellow('warning:')} ${w}\n`);
      if (o.json) {
        // The house JSON shape: camelCase, sizes in bytes, durations in seconds.
        return printJson({
          name: def.name,
          cpus: def.cpus,
          memoryBytes: def.memoryBytes,
          memoryMinBytes: def.memoryMinBytes,
          balloon: def.balloon.enabled
            ? { deflateOnOom: def.balloon.deflateOnOom, statsIntervalSeconds: def.balloon.statsIntervalMs / 1000, freePageReporting: def.balloon.freePageReporting }
            : null,
          boot: {
            firmware: def.boot.firmware.kind === 'file' ? def.boot.firmware.path : def.boot.firmware.kind,
            kernel: def.boot.kernel ?? null,
            initrd: def.boot.initrd ?? null,
            cmdline: def.boot.cmdline,
          },
          disks: def.disks.map((d) => ({ name: d.name, path: d.path, sizeBytes: d.sizeBytes ?? null, readonly: d.readonly })),
          shutdown: {
            console: def.shutdown.console ?? null,
            timeoutSeconds: def.shutdown.timeoutMs !== undefined ? def.shutdown.timeoutMs / 1000 : null,
          },
          // The MAC of a NIC without mac: comes from the VM's UUID, made on create: null here.
          network: def.network.nics.map((n) => ({ ...n, mac: n.mac ?? null })),
        });
      }
      const nics = def.network.nics.length;
      process.stdout.write(`${o.file}: ${out.green('ok')} (VM ${def.name}: ${cpusText(def.cpus)}, ${formatSize(def.memoryBytes)}, ${def.disks.length} disk${def.disks.length === 1 ? '' : 's'}, ${nics} NIC${nics === 1 ? '' : 's'})\n`);
    });
}
