// The daemon's switch networks (`mode: switch` NICs): one L2 switch per network name, alive while
// a VM on it runs, joining a MessagePort per NIC (the other end is in the VM's worker, see
// src/net/switch-port.ts) and the daemon's own stack on the network: a user-mode network in
// multi-guest mode that serves DHCP (and ARP and ping for its address) and, with `nat: true`,
// DNS and NAT out to the host and beyond, as a user-mode NIC has. A network's settings come from
// config.yaml `networks:`; VMs on different names, or on user-mode NAT, never share a frame.

import { MessageChannel, type MessagePort } from 'node:worker_threads';
import { SWITCH_DEFAULTS, type SwitchSettings } from '../config/daemon-settings.js';
import { ipToString } from '../net/packet.js';
import { L2Switch } from '../net/switch.js';
import { UserNetwork, type NetLayout } from '../net/user-net.js';

/** The switch port of the daemon's own stack on each network. */
const ROUTER_PORT = 0;
const NO_MAC = new Uint8Array(6);

interface Network {
  readonly sw: L2Switch;
  readonly router: UserNetwork;
  readonly ports: Map<number, MessagePort>;
}

/** The layout of a switch network: the daemon at .2 (gateway) and .3 (DNS, with NAT), DHCP from .15. */
export function switchLayout(s: SwitchSettings): NetLayout {
  const hosts = 2 ** (32 - s.prefix);
  return {
    network: s.network, prefix: s.prefix, gateway: s.network + 2, dns: s.nat ? s.network + 3 : null,
    dhcpStart: s.network + 15, dhcpCount: Math.min(200, hosts - 16), nat: s.nat,
  };
}

export class SwitchHub {
  private readonly networks = new Map<string, Network>();
  private nextPort = ROUTER_PORT + 1;

  constructor(private readonly settings: ReadonlyMap<string, SwitchSettings>, private readonly log: (m: string) => void) {}

  /** Plugs a NIC into network `name` (made on first use); returns the worker's end of its port
   *  (to transfer to the worker) and how to unplug it. */
  attach(name: string, label: string): { port: MessagePort; detach: () => void } {
    const net = this.networks.get(name) ?? this.create(name);
    const id = this.nextPort++;
    const { port1, port2 } = new MessageChannel();
    port1.on('message', (frame: unknown) => {
      if (frame instanceof Uint8Array) net.sw.input(id, frame);
    });
    net.ports.set(id, port1);
    // Each port gets a copy of its own, handed over (transferred) to the worker.
    net.sw.add({ id, send: (f) => port1.postMessage(f, [f.buffer as ArrayBuffer]) });
    this.log(`switch ${name}: ${label} joined (${net.sw.size - 1} NIC${net.sw.size === 2 ? '' : 's'} on it)`);
    let detached = false;
    return {
      port: port2,
      detach: () => {
        if (detached) return;
        detached = true;
        net.sw.remove(id);
        net.ports.delete(id);
        port1.close();
        this.log(`switch ${name}: ${label} left`);
        if (net.ports.size === 0) this.close(name, net);
      },
    };
  }

  /** Every network goes down (the daemon stops). */
  closeAll(): void {
    for (const [name, net] of [...this.networks]) {
      for (const p of net.ports.values()) p.close();
      this.close(name, net);
    }
  }

  private create(name: string): Network {
    const s = this.settings.get(name) ?? SWITCH_DEFAULTS;
    const layout = switchLayout(s);
    const sw = new L2Switch();
    const router = new UserNetwork({ name: `switch ${name}`, log: this.log, layout, multiGuest: true });
    router.attach({
      mac: NO_MAC, rxCsumOffload: false, rxTso4: false,
      deliver: (f) => { sw.input(ROUTER_PORT, f); return true; },
    });
    sw.add({ id: ROUTER_PORT, send: (f) => { router.transmit(f, null); router.txDone(); } });
    const net: Network = { sw, router, ports: new Map() };
    this.networks.set(name, net);
    this.log(`switch ${name}: up, ${ipToString(s.network)}/${s.prefix}, ${s.nat ? 'NAT to the host and beyond' : 'no way out (nat: false)'}${this.settings.has(name) ? '' : ' (not in config.yaml: defaults)'}`);
    return net;
  }

  private close(name: string, net: Network): void {
    net.router.close();
    this.networks.delete(name);
    if (net.sw.dropped > 0) this.log(`switch ${name}: ${net.sw.dropped} frames dropped (not Ethernet-sized)`);
    this.log(`switch ${name}: down`);
  }
}
