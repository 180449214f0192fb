// An Ethernet switch (IEEE 802.1D learning bridge, without spanning tree: it is the only bridge):
// frames go to the port where their destination MAC was last seen as a source, and to every
// other port when it was not seen yet or is a broadcast or multicast address. A switch network
// is one of these in the daemon, with a port per NIC of the VMs that joined it and one for the
// daemon's own stack on it (DHCP, and NAT with `nat: true`).

/** Where a switch delivers frames for one port. The frame is the switch's own copy for it. */
export interface SwitchPort {
  readonly id: number;
  send(frame: Uint8Array): void;
}

/** Frames shorter than an Ethernet header, or longer than a VLAN-tagged 1500-byte MTU frame,
 *  are not Ethernet frames a switch forwards. */
export const MIN_FRAME = 14;
export const MAX_FRAME = 1518;

/** A 48-bit MAC address as a number (exact in a double): a map key without a string. */
function macAt(frame: Uint8Array, at: number): number {
  return frame[at] * 2 ** 40 + frame[at + 1] * 2 ** 32 + ((frame[at + 2] << 24) >>> 0) + (frame[at + 3] << 16) + (frame[at + 4] << 8) + frame[at + 5];
}

export class L2Switch {
  private readonly ports = new Map<number, SwitchPort>();
  /** MAC (as a number) -> port id, learned from source addresses. */
  private readonly table = new Map<number, number>();
  /** Frames refused for their length, for the log. */
  dropped = 0;

  /** At most this many learned addresses (a guest inventing source MACs cannot grow it). */
  constructor(private readonly maxAddresses = 4096) {}

  add(port: SwitchPort): void {
    this.ports.set(port.id, port);
  }

  remove(id: number): void {
    this.ports.delete(id);
    for (const [mac, p] of this.table) if (p === id) this.table.delete(mac);
  }

  get size(): number {
    return this.ports.size;
  }

  /** A frame that arrived on port `from`. */
  input(from: number, frame: Uint8Array): void {
    if (frame.length < MIN_FRAME || frame.length > MAX_FRAME || !this.ports.has(from)) {
      this.dropped++;
      return;
    }
    const src = macAt(frame, 6);
    // A multicast source is not an address anyone has (802.3); it is not learned.
    if ((frame[6] & 1) === 0 && (this.table.has(src) || this.table.size < this.maxAddresses)) this.table.set(src, from);
    if ((frame[0] & 1) === 0) {
      const to = this.table.get(macAt(frame, 0));
      if (to !== undefined) {
        if (to !== from) this.ports.get(to)?.send(frame.slice());
        return;
      }
    }
    for (const p of this.ports.values()) if (p.id !== from) p.send(frame.slice());
  }
}
