// port: the port forwards of a VM's user-mode network, listed, and changed while it runs (as
// QEMU's hostfwd_add / hostfwd_remove). Forwards added this way last until the VM stops; the
// definition's `network:` sets those bound at every start.

import type { Command } from 'commander';
import { parseForwardArg, parseHostEndpoint } from '../../net/forward-spec.js';
import type { PortInfo } from '../../protocol/messages.js';
import { connectDaemon } from '../daemon-link.js';
import { CliError, EXIT } from '../exit-codes.js';
import { out, printJson } from '../output.js';

const line = (f: PortInfo): string => `${f.proto}  ${`${f.hostAddress}:${f.hostPort}`.padEnd(21)}  -> guest ${f.guestPort}${f.nic !== 0 ? `  (nic${f.nic})` : ''}`;

async function list(name: string, json: boolean): Promise<void> {
  const c = await connectDaemon();
  const r = await c.request<{ forwards: PortInfo[] }>('vm.port.list', { name });
  c.close();
  if (json) return printJson(r.forwards);
  if (r.forwards.length === 0) process.stdout.write(`VM ${name} has no port forwards\n`);
  for (const f of r.forwards) process.stdout.write(`${line(f)}\n`);
}

export function register(program: Command): void {
  const port = program
    .command('port')
    .description('list or change the port forwards of a VM (user-mode network)')
    .argument('<NAME>', 'the VM')
    .option('--json', 'print a JSON array')
    .action((name: string, o: { json?: boolean }) => list(name, o.json === true))
    .addHelpText('after', `
  vmctl port NAME                                   list the forwards
  vmctl port add NAME [ADDRESS:]HOSTPORT:GUESTPORT  e.g. 8080:80, 0.0.0.0:2222:22, 0:80 (any free port)
  vmctl port remove NAME [ADDRESS:]HOSTPORT
Forwards listen on 127.0.0.1 unless an address is given; --udp for UDP. A port that cannot be
bound is exit 5.`);

  port
    .command('add <NAME> <FORWARD>')
    .description('forward [ADDRESS:]HOSTPORT on the host to GUESTPORT in the running VM')
    .option('--udp', 'a UDP forward (default TCP)')
    .option('--nic <N>', 'the NIC whose user-mode network gets it (default the first)')
    .option('--json', 'print the forward as JSON')
    // --json is also the parent's option (vmctl port NAME --json): take it from either.
    .action(async (name: string, spec: string, _o: unknown, cmd: Command) => {
      const o = cmd.optsWithGlobals<{ udp?: boolean; nic?: string; json?: boolean }>();
      const f = parseForwardArg(spec);
      if (typeof f === 'string') throw new CliError(EXIT.usage, `port add: ${f}`);
      let nic: number | undefined;
      if (o.nic !== undefined) {
        nic = Number(o.nic);
        if (!/^\d+$/.test(o.nic)) throw new CliError(EXIT.usage, `--nic: ${JSON.stringify(o.nic)} is not a NIC number (0, 1, ...)`);
      }
      const c = await connectDaemon();
      const r = await c.request<{ forward: PortInfo }>('vm.port.add', {
        name, proto: o.udp ? 'udp' : 'tcp', hostAddress: f.address, hostPort: f.hostPort, guestPort: f.guestPort, ...(nic !== undefined ? { nic } : {}),
      });
      c.close();
      if (o.json) return printJson(r.forward);
      process.stdout.write(`Forwarding ${out.bold(`${r.forward.hostAddress}:${r.forward.hostPort}`)} (${r.forward.proto}) to port ${r.forward.guestPort} of ${name}\n`);
    });

  port
    .command('remove <NAME> <HOST>')
    .alias('rm')
    .description('stop forwarding [ADDRESS:]HOSTPORT')
    .option('--udp', 'a UDP forward (default TCP)')
    .action(async (name: string, spec: string, o: { udp?: boolean }) => {
      const h = parseHostEndpoint(spec);
      if (typeof h === 'string') throw new CliError(EXIT.usage, `port remove: ${h}`);
      const c = await connectDaemon();
      await c.request('vm.port.remove', { name, proto: o.udp ? 'udp' : 'tcp', hostAddress: h.address, hostPort: h.port });
      c.close();
      process.stdout.write(`Removed the ${o.udp ? 'udp' : 'tcp'} forward ${h.address}:${h.port} of ${name}\n`);
    });

  port
    .command('list <NAME>')
    .description('list the forwards (as vmctl port NAME)')
    .option('--json', 'print a JSON array')
    .action((name: string, _o: unknown, cmd: Command) => list(name, cmd.optsWithGlobals<{ json?: boolean }>().json === true));
}
