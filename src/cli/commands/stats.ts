// stats (`top` for VMs: host CPU and guest MIPS per VM and hart, host and guest memory, disk
// I/O), events (the daemon's event stream).

import type { Command } from 'commander';
import { humanDuration, humanSize } from '../../config/units.js';
import type { EventMessage, VmInfo } from '../../protocol/messages.js';
import { durationOption } from '../cli-helpers.js';
import { connectDaemon } from '../daemon-link.js';
import { CliError, EXIT } from '../exit-codes.js';
import { columns, stateColor } from '../output.js';

/** The figures `stats --json` prints per VM (also in `info --json`): stable camelCase keys. */
function statsOf(v: VmInfo): Record<string, unknown> {
  return {
    name: v.name,
    state: v.state,
    cpus: v.cpus,
    cpuShares: v.cpuShares,
    cpuCap: v.cpuCap,
    cpuPercent: v.cpuPercent,
    hartCpuPercent: v.hartCpuPercent,
    mips: v.mips,
    hartMips: v.hartMips,
    heldBack: v.heldBack,
    uptimeSeconds: v.uptimeSeconds,
    memory: v.memory,
    disks: v.disks,
  };
}

const size = (n: number | null): string => (n === null ? '-' : humanSize(n));
const pair = (a: number | null, b: number | null): string => (a === null && b === null ? '-' : `${a ?? '-'}/${b ?? '-'}`);
const io = (n: number | null, bytes: number | null): string => (n === null ? '-' : `${n} (${size(bytes)})`);

/** One row per VM (CPU, then memory), then one per disk when there are disks. */
function statsTable(vms: readonly VmInfo[]): string {
  const n = (x: number | null): string => (x === null ? '-' : x.toFixed(1));
  const table = columns(
    ['NAME', 'STATE', 'CPU%', 'PER HART', 'MIPS', 'SHARES', 'CAP', 'HELD', 'UPTIME',
      'CONFIGURED', 'RESIDENT', 'TARGET', 'ACTUAL', 'GUEST FREE', 'AVAILABLE', 'FAULTS MAJ/MIN', 'SWAP IN/OUT'],
    vms.map((v) => {
      const m = v.memory;
      return [
        v.name, stateColor(v.state), n(v.cpuPercent), v.hartCpuPercent ? v.hartCpuPercent.map((x) => x.toFixed(0)).join(' ') : '-',
        n(v.mips), String(v.cpuShares), `${v.cpuCap}%`, v.heldBack ?? '-', v.uptimeSeconds > 0 ? humanDuration(v.uptimeSeconds) : '-',
        humanSize(m.configuredBytes), size(m.residentBytes), size(m.targetBytes), size(m.actualBytes),
        size(m.guestFreeBytes), size(m.guestAvailableBytes), pair(m.majorFaults, m.minorFaults), pair(m.swapIns, m.swapOuts),
      ];
    }));
  const disks = vms.flatMap((v) => v.disks.map((d) => [
    v.name, d.name, size(d.virtualBytes), size(d.allocatedBytes), d.readonly ? 'ro' : 'rw',
    io(d.reads, d.readBytes), io(d.writes, d.writtenBytes), d.flushes === null ? '-' : String(d.flushes),
  ]));
  return disks.length === 0 ? table : `${table}\n${columns(['VM', 'DISK', 'VIRTUAL', 'ALLOCATED', 'MODE', 'READS', 'WRITES', 'FLUSHES'], disks)}`;
}

export function register(program: Command): void {
  program
    .command('stats [NAME...]')
    .description('live figures per VM: state, host CPU % (and per hart), guest MIPS, shares, cap, uptime; memory (configured, resident, balloon target/actual, the guest\'s free/available, faults, swap); each disk\'s size and I/O')
    .option('--json', 'one JSON object per VM and line (NDJSON): the CPU figures, memory and disks as info --json has them')
    .option('--watch [INTERVAL]', 'repeat every INTERVAL (default 2s) until interrupted')
    .action(async (names: string[], o: { json?: boolean; watch?: string | boolean }) => {
      const interval = o.watch === undefined || o.watch === false ? null : o.watch === true ? 2000 : durationOption(o.watch, '--watch')!;
      if (interval !== null && interval < 100) throw new CliError(EXIT.usage, `--watch: ${JSON.stringify(o.watch)} is too short; expected at least 100ms`);
      const c = await connectDaemon();
      const fetch = async (): Promise<VmInfo[]> => (names.length === 0
        ? c.request<VmInfo[]>('vm.list')
        : Promise.all(names.map((name) => c.request<VmInfo>('vm.info', { name }))));
      const show = (vms: VmInfo[]): void => {
        if (o.json) {
          const timestamp = new Date().toISOString();
          for (const v of vms) process.stdout.write(`${JSON.stringify({ ...statsOf(v), timestamp })}\n`);
          return;
        }
        if (interval !== null && process.stdout.isTTY) process.stdout.write('\x1b[H\x1b[2J');
        process.stdout.write(vms.length === 0 ? 'No VMs. Create one with: vmctl create -f vm.yaml\n' : statsTable(vms));
      };
      show(await fetch());
      if (interval === null) { c.close(); return; }
      for (;;) {
        await new Promise((r) => setTimeout(r, interval));
        show(await fetch());
      }
    });

  program
    .command('events [NAME]')
    .description('print the daemon\'s events as they happen: state changes, power, host memory, scheduling (all VMs, or one)')
    .option('--json', 'the events as NDJSON, as the socket carries them')
    .action(async (name: string | undefined, o: { json?: boolean }) => {
      const c = await connectDaemon();
      c.onEvent((e: EventMessage) => {
        if (o.json) { process.stdout.write(`${JSON.stringify(e)}\n`); return; }
        const d = Object.entries(e.data).filter(([k]) => k !== 'data').map(([k, v]) => `${k}=${typeof v === 'object' ? JSON.stringify(v) : String(v)}`).join(' ');
        process.stdout.write(`${e.timestamp}  ${e.vm}  ${e.event}${d ? `  ${d}` : ''}\n`);
      });
      await c.request('events.subscribe', name === undefined ? {} : { name });
      // Until interrupted, or until the daemon goes away.
      await new Promise<void>((resolve) => c.onClose(() => resolve()));
      throw new CliError(EXIT.unreachable, 'the daemon closed the connection');
    });
}
