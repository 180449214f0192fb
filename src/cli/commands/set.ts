// set: change a VM's settings: CPU shares and cap (a running VM at once, and saved), its number of
// harts (a stopped VM), the balloon's memory target (a running VM).

import type { Command } from 'commander';
import { formatSize, humanSize, parseSize } from '../../config/units.js';
import { readSetting } from '../../config/vm-definition.js';
import { cpuCap, cpuCount, cpuShares } from '../../config/vm-schema.js';
import type { VmInfo } from '../../protocol/messages.js';
import { connectDaemon } from '../daemon-link.js';
import { CliError, EXIT } from '../exit-codes.js';
import { out, printJson } from '../output.js';

/** A command-line value checked as the VM file's key is (exit 2 naming the option). */
function setting(spec: Parameters<typeof readSetting>[0], option: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const v = readSetting(spec, option, text);
  if (typeof v === 'string') throw new CliError(EXIT.usage, v);
  return v;
}

export function register(program: Command): void {
  program
    .command('set <NAME>')
    .description('change a VM: CPU shares and cap (a running VM at once) and its number of harts (a stopped VM), saved in its definition; --memory-target moves a running VM\'s balloon')
    .option('--cpu-shares <N>', 'relative weight when harts of several VMs want more host cores than vmctl has (1..10000)')
    .option('--cpu-cap <P%>', 'the most of one host core each hart may take (1%..100%)')
    .option('--cpus <N>', 'number of harts (a stopped VM only)')
    .option('--memory-target <SIZE>', 'memory the balloon leaves the guest (memory.min .. memory.size), e.g. 512MiB; not saved')
    .option('--json', 'print the VM as JSON')
    .action(async (name: string, o: { cpuShares?: string; cpuCap?: string; cpus?: string; memoryTarget?: string; json?: boolean }) => {
      let memoryTarget: number | undefined;
      if (o.memoryTarget !== undefined) {
        const bytes = parseSize(o.memoryTarget);
        if (bytes === null) throw new CliError(EXIT.usage, `--memory-target: ${JSON.stringify(o.memoryTarget)} is not a size; expected something like 512MiB or 1GiB`);
        memoryTarget = bytes;
      }
      const params = {
        cpuShares: setting(cpuShares, '--cpu-shares', o.cpuShares),
        cpuCap: setting(cpuCap, '--cpu-cap', o.cpuCap),
        cpus: setting(cpuCount, '--cpus', o.cpus),
        memoryTarget,
      };
      if (Object.values(params).every((v) => v === undefined)) throw new CliError(EXIT.usage, 'nothing to set; give --cpu-shares, --cpu-cap, --cpus or --memory-target');
      const c = await connectDaemon();
      const v = await c.request<VmInfo>('vm.set', { name, ...Object.fromEntries(Object.entries(params).filter(([, x]) => x !== undefined)) });
      c.close();
      if (o.json) return printJson(v);
      if (params.cpuShares !== undefined || params.cpuCap !== undefined || params.cpus !== undefined) {
        process.stdout.write(`VM ${out.bold(v.name)}: ${v.cpus} cpu, shares ${v.cpuShares}, cap ${v.cpuCap}%${v.state === 'running' || v.state === 'paused' ? ' (in effect now)' : ''}\n`);
      }
      if (memoryTarget !== undefined) {
        const m = v.memory;
        process.stdout.write(`VM ${out.bold(v.name)}: memory target ${formatSize(memoryTarget)} (the balloon asks the guest for ${humanSize(m.configuredBytes - memoryTarget)}; it has ${m.balloonBytes === null ? 'none' : humanSize(m.balloonBytes)} now)\n`);
      }
    });
}
