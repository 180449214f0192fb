// The network side of a VM inside its worker: one host backend per NIC (src/net), chosen from
// the NIC's definition, and the port forwards of its user-mode networks, which `vmctl port`
// changes while the VM runs.

import type { NicAttachment, PortForward } from '../board/machine-types.js';
import type { NetBackend } from '../net/nic.js';
import type { TcpProbe } from '../net/tcp.js';
import { UserNetwork } from '../net/user-net.js';
import { SwitchPortBackend } from '../net/switch-port.js';
import type { MessagePort } from 'node:worker_threads';

/** A forward as listed by `vmctl port`: which NIC, and the host port actually bound. */
export interface ForwardInfo extends PortForward {
  readonly nic: number;
}

/** The guest's TCP connections through each user-mode NIC, recorded with a machine state. */
export type NatConnections = readonly { readonly nic: number; readonly tcp: readonly TcpProbe[] }[];

export class VmNetworks {
  private readonly user = new Map<number, { net: UserNetwork; forwards: readonly PortForward[] }>();

  constructor(private readonly log: (message: string) => void, private readonly switchPorts: readonly (MessagePort | null)[] = []) {}

  /** MachineHost.openNic: the backend of NIC `index`. */
  open(index: number, nic: NicAttachment): NetBackend {
    const n = nic.network;
    if (n.mode === 'user') {
      const net = new UserNetwork({ name: `nic${index}`, log: this.log, restrict: n.restrict });
      this.user.set(index, { net, forwards: n.forwards });
      return net;
    }
    const port = this.switchPorts[index];
    if (!port) throw new Error(`nic${index}: switch network ${JSON.stringify(n.name)}: the daemon gave no port for it`);
    return new SwitchPortBackend(port, this.log, `nic${index} (switch ${n.name})`);
  }

  /** Binds the forwards of the definition; rejects naming the first that cannot be bound. */
  async start(): Promise<void> {
    for (const { net, forwards } of this.user.values()) {
      for (const f of forwards) await net.addForward(f);
    }
  }

  /** What a machine state records of the user-mode networks: the guest's open connections. */
  connections(): NatConnections {
    return [...this.user].map(([nic, { net }]) => ({ nic, tcp: net.openConnections() })).filter((n) => n.tcp.length > 0);
  }

  /** After a restore: the guest's connections of the state (`saved`) are reset (the host sides
   *  ended with the machine that was saved), so the guest sees them closed. */
  resetRestored(saved: NatConnections): void {
    for (const n of saved) {
      const u = this.user.get(n.nic);
      if (!u) continue;
      this.log(`nic${n.nic}: the restored guest had ${n.tcp.length} TCP connection(s) through the NAT; resetting them`);
      u.net.probeRestored(n.tcp);
    }
  }

  /** The user-mode network that `vmctl port` acts on: the given NIC's, or the first one. */
  private target(nicIndex?: number): { index: number; net: UserNetwork } {
    if (nicIndex !== undefined) {
      const u = this.user.get(nicIndex);
      if (!u) throw new Error(`NIC ${nicIndex} is not on a user-mode network`);
      return { index: nicIndex, net: u.net };
    }
    const first = [...this.user.keys()].sort((a, b) => a - b)[0];
    if (first === undefined) throw new Error('the VM has no NIC on a user-mode network (port forwards need one)');
    return { index: first, net: this.user.get(first)!.net };
  }

  list(): ForwardInfo[] {
    const out: ForwardInfo[] = [];
    for (const [index, { net }] of [...this.user].sort((a, b) => a[0] - b[0])) {
      for (const f of net.listForwards()) out.push({ nic: index, ...f });
    }
    return out;
  }

  async add(f: PortForward, nicIndex?: number): Promise<ForwardInfo> {
    const t = this.target(nicIndex);
    const bound = await t.net.addForward(f);
    return { nic: t.index, ...bound };
  }

  remove(proto: 'tcp' | 'udp', hostAddress: string, hostPort: number): boolean {
    for (const { net } of this.user.values()) if (net.removeForward(proto, hostAddress, hostPort)) return true;
    return false;
  }
}
