// validate: check a VM file without creating anything (no daemon needed).

import type { Command } from 'commander';
import { formatSize } from '../../config/units.js';
import { loadDefinitionOrExit } from '../cli-helpers.js';
import { out, printJson } from '../output.js';

export function register(program: Command): void {
  program
    .command('validate')
    .description('check a VM definition; errors as FILE:LINE:COL, exit 2')
    .requiredOption('-f, --file <FILE>', 'VM definition')
    .option('--json', 'print the resolved definition as JSON')
    .action((o: { file: string; json?: boolean }) => {
      const { def } = loadDefinitionOrExit(o.file);
      if (o.json) return printJson(def);
      process.stdout.write(`${o.file}: ${out.green('ok')} (VM ${def.name}: ${def.cpus} cpu, ${formatSize(def.memoryBytes)}, ${def.disks.length} disk${def.disks.length === 1 ? '' : 's'})\n`);
    });
}
