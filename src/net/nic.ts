// The contract between a guest's network card (virtio-net, src/devices/virtio/net.ts) and what
// carries its frames on the host (the user-mode stack in src/net/user-net.ts, or a port on a
// daemon switch): Ethernet frames both ways, plus the checksum and segmentation work one side
// leaves to the other (virtio 1.2 5.1.6, struct virtio_net_hdr).

/** virtio_net_hdr.flags (5.1.6). */
export const NET_HDR_F_NEEDS_CSUM = 1;
export const NET_HDR_F_DATA_VALID = 2;
/** virtio_net_hdr.gso_type (5.1.6). */
export const NET_HDR_GSO_NONE = 0;
export const NET_HDR_GSO_TCPV4 = 1;
export const NET_HDR_GSO_ECN = 0x80;

/** The work attached to one frame. From the guest: a checksum it left partial (NEEDS_CSUM at
 *  csumStart, stored at csumStart + csumOffset) and a TCP segment larger than the MSS it left
 *  unsegmented (gsoType TCPV4, gsoSize = MSS). Toward the guest: the same, or DATA_VALID (the
 *  checksums were verified, the guest need not). */
export interface FrameOffload {
  flags: number;
  gsoType: number;
  gsoSize: number;
  hdrLen: number;
  csumStart: number;
  csumOffset: number;
}

/** The card as the host side sees it. */
export interface GuestNic {
  /** The card's MAC address (6 bytes). */
  readonly mac: Uint8Array;
  /** The guest takes frames with partial checksums / DATA_VALID (it negotiated GUEST_CSUM). */
  readonly rxCsumOffload: boolean;
  /** The guest takes TCP frames larger than the MSS (it negotiated GUEST_TSO4). */
  readonly rxTso4: boolean;
  /** Hands a frame to the guest. False when it cannot take it now (no receive buffer posted,
   *  driver not ready, VM paused): the caller keeps it and tries again at rxSpace(). The bytes
   *  are copied before this returns. */
  deliver(frame: Uint8Array, offload?: FrameOffload): boolean;
}

/** The host side of one card. */
export interface NetBackend {
  /** Whether this backend takes frames with partial checksums and unsegmented TCP (and so the
   *  card may offer CSUM/HOST_TSO4 and GUEST_CSUM/GUEST_TSO4). A switch port does not: other
   *  guests on the switch may not have negotiated them. */
  readonly offloads: boolean;
  /** Connects the card; called once, before any frame. */
  attach(nic: GuestNic): void;
  /** A frame from the guest. `frame` is only valid during the call (the card reuses it). */
  transmit(frame: Uint8Array, offload: FrameOffload | null): void;
  /** The guest posted receive buffers, or became able to receive: deliver what waits. */
  rxSpace(): void;
  /** The guest's current transmit burst is over (the frames of one notify): a stack that
   *  acknowledges data sends its ACKs now, one per connection rather than one per frame. */
  txDone?(): void;
  /** The VM is powering off: release host sockets and timers. */
  close(): void;
}

/** A card with no cable: what it sends goes nowhere, nothing arrives. Used where a machine is
 *  built but never run (its device tree) or the host gave no backend. */
export class UnpluggedBackend implements NetBackend {
  readonly offloads = false;
  attach(): void {}
  transmit(): void {}
  rxSpace(): void {}
  close(): void {}
}
