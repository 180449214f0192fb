// set: change a VM's settings at run time.

import type { Command } from 'commander';
import { formatSize, humanSize, parseSize } from '../../config/units.js';
import type { VmInfo } from '../../protocol/messages.js';
import { connectDaemon } from '../daemon-link.js';
import { CliError, EXIT } from '../exit-codes.js';
import { out, printJson } from '../output.js';

export function register(program: Command): void {
  program
    .command('set <NAME>')
    .description('change a running VM: --memory-target moves its balloon')
    .option('--memory-target <SIZE>', 'memory the balloon leaves the guest (memory.min .. memory.size), e.g. 512MiB')
    .option('--json', 'print the VM as JSON')
    .action(async (name: string, o: { memoryTarget?: string; json?: boolean }) => {
      if (o.memoryTarget === undefined) throw new CliError(EXIT.usage, 'nothing to set; expected --memory-target SIZE');
      const bytes = parseSize(o.memoryTarget);
      if (bytes === null) throw new CliError(EXIT.usage, `--memory-target: ${JSON.stringify(o.memoryTarget)} is not a size; expected something like 512MiB or 1GiB`);
      const c = await connectDaemon();
      const info = await c.request<VmInfo>('vm.set', { name, memoryTarget: bytes });
      c.close();
      if (o.json) return printJson(info);
      const m = info.memory;
      process.stdout.write(`VM ${out.bold(name)}: memory target ${formatSize(bytes)} (the balloon asks the guest for ${humanSize(m.configuredBytes - bytes)}; it has ${m.balloonBytes === null ? 'none' : humanSize(m.balloonBytes)} now)\n`);
    });
}
