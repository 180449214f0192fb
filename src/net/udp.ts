// UDP flows of the user-mode network: each (guest address and port, peer address and port) pair
// the guest talks to is carried by a host datagram socket, which ends when the flow has been idle
// for FLOW_IDLE_MS. Outbound flows have their own socket, connected to the peer (so only that
// peer's datagrams come back); flows of a UDP port forward share the forward's listening socket
// and remember the host peer they came from.

import { createSocket, type Socket as DgramSocket } from 'node:dgram';
import { ipToString } from './packet.js';

export const FLOW_IDLE_MS = 120_000;
/** Datagrams handed to a host socket and not yet sent, per flow: more are dropped. */
const MAX_PENDING_SENDS = 64;

export interface UdpEnds {
  readonly guestIp: number;
  readonly guestPort: number;
  /** The peer as the guest sees it. */
  readonly remoteIp: number;
  readonly remotePort: number;
}

export function udpKey(guestIp: number, guestPort: number, remoteIp: number, remotePort: number): string {
  return `${guestIp}:${guestPort}-${remoteIp}:${remotePort}`;
}

export class UdpFlow {
  readonly key: string;
  lastUsed: number;
  private pending = 0;
  private dropped = 0;
  private closed = false;
  /** Datagrams from the guest before the outbound socket is connected (counted in `pending`). */
  private early: Uint8Array[] | null = null;

  private constructor(
    readonly ends: UdpEnds,
    private readonly socket: DgramSocket,
    /** For a forward's flow: the host peer to answer; null for an outbound flow (connected). */
    readonly peer: { address: string; port: number } | null,
    private readonly owned: boolean,
    now: number,
    private readonly log: (m: string) => void,
  ) {
    this.key = udpKey(ends.guestIp, ends.guestPort, ends.remoteIp, ends.remotePort);
    this.lastUsed = now;
  }

  /** A flow the guest opens toward `host:port` (host is 127.0.0.1 for the gateway address). */
  static outbound(ends: UdpEnds, host: string, port: number, now: number, toGuest: (flow: UdpFlow, data: Uint8Array) => void,
    log: (m: string) => void): UdpFlow {
    const socket = createSocket('udp4');
    const flow = new UdpFlow(ends, socket, null, true, now, log);
    flow.early = [];
    socket.on('message', (msg) => toGuest(flow, msg)); // toGuest marks the flow used, on the network's clock
    socket.on('error', (e) => { flow.report(`socket error: ${e.message}`); flow.close(); });
    // Toward the host itself the socket is bound to loopback: nothing else can reach it.
    const bindTo = host === '127.0.0.1' ? '127.0.0.1' : undefined;
    socket.bind({ address: bindTo, port: 0 }, () => {
      if (flow.closed) return;
      socket.connect(port, host, (err?: Error) => {
        if (err) { flow.report(`cannot reach ${host}:${port}: ${err.message}`); flow.close(); return; }
        const early = flow.early ?? [];
        flow.early = null;
        flow.pending -= early.length;
        for (const d of early) flow.send(d, flow.lastUsed);
      });
    });
    return flow;
  }

  /** A flow of a UDP port forward: datagrams from `peer` through the forward's `listener`. */
  static forwarded(ends: UdpEnds, listener: DgramSocket, peer: { address: string; port: number }, now: number, log: (m: string) => void): UdpFlow {
    return new UdpFlow(ends, listener, peer, false, now, log);
  }

  describe(): string {
    return `${ipToString(this.ends.guestIp)}:${this.ends.guestPort} <-> ${ipToString(this.ends.remoteIp)}:${this.ends.remotePort}`;
  }

  /** A datagram from the guest. */
  send(data: Uint8Array, now: number): void {
    if (this.closed) return;
    this.lastUsed = now;
    if (this.pending >= MAX_PENDING_SENDS) {
      if (this.dropped++ % 1000 === 0) this.report(`host socket is not keeping up; dropped ${this.dropped} datagrams`);
      return;
    }
    this.pending++;
    const copy = data.slice();
    if (this.early) {
      this.early.push(copy);
      return;
    }
    const done = (): void => { this.pending--; };
    try {
      if (this.peer) this.socket.send(copy, this.peer.port, this.peer.address, done);
      else this.socket.send(copy, done);
    } catch (e) {
      this.pending--;
      this.report(`send failed: ${(e as Error).message}`);
    }
  }

  get isClosed(): boolean { return this.closed; }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.owned) try { this.socket.close(); } catch { /* already closed */ }
  }

  private report(what: string): void {
    this.log(`udp ${this.describe()}: ${what}`);
  }
}
