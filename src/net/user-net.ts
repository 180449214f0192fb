// User-mode networking (QEMU's `-netdev user`, slirp; passt and gvisor-tap-vsock work the same
// way): a TCP/IP stack in TypeScript that answers the guest as a router would and carries its
// connections on ordinary host sockets. No root, no TAP device, no native code.
//
// Layout, as slirp's so guides and habits carry over:
//   10.0.2.0/24   the network        10.0.2.2   gateway, and the host: its 127.0.0.1
//   10.0.2.3      DNS (host resolver) 10.0.2.15  the address DHCP gives the (first) guest
// Served here: ARP for the gateway and DNS addresses, DHCP, ICMP echo to the gateway and DNS
// addresses, DNS over UDP, and NAT of the guest's TCP and UDP to any address (10.0.2.2 meaning
// the host's loopback). Not served: IPv6, IP fragments (dropped), ICMP to other addresses,
// DNS over TCP. With `restrict`, only DHCP, ARP, ping to the gateway/DNS addresses and the port
// forwards work; every other packet the guest sends toward the outside is dropped.
//
// Where it runs: in the VM's worker thread, next to its virtio-net card. A frame is a function
// call away from the device (no copy across threads, and "the guest has no receive buffer" is
// known at once, which is what TCP flow control toward the guest needs), the network's CPU time
// is the VM's own (a busy network slows its VM, not the daemon or other VMs), and a failure in
// the stack stays in that VM. Switch networks, which join NICs of VMs in different workers, pass
// frames through the daemon instead (src/daemon/switch.ts); with `nat: true` the daemon runs one
// of these stacks on the switch, serving every guest on it (multi-guest mode).
//
// Hostile guests: every parser checks lengths; per-network limits cap TCP connections (and
// connections still being set up, against a SYN flood), UDP flows, queued frames, DNS lookups
// and buffered bytes (ByteBudget); reaching a limit is logged once per episode.

import { createServer, type Server, type Socket } from 'node:net';
import { createSocket, type Socket as DgramSocket } from 'node:dgram';
import { ByteBudget } from './byte-queue.js';
import { DHCP_CLIENT_PORT, DHCP_SERVER_PORT, DhcpServer } from './dhcp.js';
import { DNS_PORT, DnsServer } from './dns.js';
import { formatMac } from './mac.js';
import { NET_HDR_F_DATA_VALID, NET_HDR_F_NEEDS_CSUM, type FrameOffload, type GuestNic, type NetBackend } from './nic.js';
import {
  BROADCAST_MAC, buildArp, buildEchoReply, buildTcp, buildUdp, ETHERTYPE_ARP, ETHERTYPE_IPV4, etherType, ipToString, IPPROTO_ICMP,
  IPPROTO_TCP, IPPROTO_UDP, l4ChecksumOk, parseArp, parseIp, parseIpv4, parseTcp, parseUdp, TCP_ACK, TCP_RST, TCP_SYN,
  type Ipv4Header, type TcpHeader, type UdpHeader,
} from './packet.js';
import { DELACK_MS, resetFor, TcpConnection, tcpKey, type TcpNetwork, type TcpProbe } from './tcp.js';
import { FLOW_IDLE_MS, UdpFlow, udpKey } from './udp.js';

export interface NetLayout {
  /** Network address and prefix length (10.0.2.0/24). */
  readonly network: number;
  readonly prefix: number;
  readonly gateway: number;
  /** The DNS address (10.0.2.3); null: no DNS server (a switch network without NAT). */
  readonly dns: number | null;
  readonly dhcpStart: number;
  readonly dhcpCount: number;
  /** Route the guests' traffic out to the host and beyond (user mode; `nat: true` switches). */
  readonly nat: boolean;
}

export const SLIRP_LAYOUT: NetLayout = {
  network: parseIp('10.0.2.0')!, prefix: 24, gateway: parseIp('10.0.2.2')!, dns: parseIp('10.0.2.3')!,
  dhcpStart: parseIp('10.0.2.15')!, dhcpCount: 16, nat: true,
};

export interface NetLimits {
  /** TCP connections at once (either direction). */
  readonly tcpConnections: number;
  /** Outbound TCP connections still connecting on the host (a SYN flood costs no more). */
  readonly tcpConnecting: number;
  readonly udpFlows: number;
  /** Bytes held on the host: TCP data both ways plus queued frames. */
  readonly bufferedBytes: number;
  /** Frames waiting for guest receive buffers (ARP, ACKs, UDP, ...). */
  readonly queuedFrames: number;
  readonly dnsLookups: number;
}

export const DEFAULT_LIMITS: NetLimits = {
  tcpConnections: 512, tcpConnecting: 64, udpFlows: 256, bufferedBytes: 32 * 1024 * 1024, queuedFrames: 1024, dnsLookups: 16,
};

/** A port forward as configured; `hostPort` 0 picks a free port. */
export interface ForwardSpec {
  readonly proto: 'tcp' | 'udp';
  readonly hostAddress: string;
  readonly hostPort: number;
  readonly guestPort: number;
}

export interface UserNetOptions {
  /** For log lines, e.g. "nic0". */
  readonly name: string;
  readonly log: (message: string) => void;
  readonly restrict?: boolean;
  readonly layout?: NetLayout;
  readonly limits?: Partial<NetLimits>;
  /** Several guests (a switch): frames go to the MAC learned for each address, by ARP. */
  readonly multiGuest?: boolean;
}

interface Forward {
  readonly spec: ForwardSpec;
  /** The port actually bound (spec.hostPort, or the one the OS picked for 0). */
  port: number;
  server: Server | null;
  udp: DgramSocket | null;
}

/** The gateway's MAC, slirp style: 52:55 then the gateway's IPv4 address. */
function gatewayMac(gw: number): Uint8Array {
  return Uint8Array.from([0x52, 0x55, gw >>> 24, (gw >>> 16) & 255, (gw >>> 8) & 255, gw & 255]);
}

const TICK_MS = 100;
/** How often idle UDP flows are closed and counts of dropped frames are logged. */
const SWEEP_MS = 30_000;
const EPHEMERAL_FIRST = 49152;

export class UserNetwork implements NetBackend, TcpNetwork {
  readonly offloads: boolean;
  readonly budget: ByteBudget;
  private nic: GuestNic | null = null;
  private readonly layout: NetLayout;
  private readonly limits: NetLimits;
  private readonly mask: number;
  private readonly ourMac: Uint8Array;
  private readonly restrict: boolean;
  private readonly dhcp: DhcpServer;
  private readonly dns: DnsServer;
  /** Guest IPv4 address -> MAC, learned from the guests' frames and DHCP. */
  private readonly arp = new Map<number, Uint8Array>();
  /** The single guest's last source address (user mode). */
  private guestAddr = 0;
  private readonly tcp = new Map<string, TcpConnection>();
  private readonly udp = new Map<string, UdpFlow>();
  private readonly forwards: Forward[] = [];
  /** Flow of a UDP forward by the host peer it came from ("fwdIndex|addr:port"). */
  private readonly udpByPeer = new Map<string, UdpFlow>();
  private connecting = 0;
  private nextPort = EPHEMERAL_FIRST;
  private readonly queue: { frame: Uint8Array; offload: FrameOffload | null }[] = [];
  private queuedBytes = 0;
  private readonly blockedConns = new Set<TcpConnection>();
  private readonly ackConns = new Set<TcpConnection>();
  private readonly delayedAcks = new Set<TcpConnection>();
  private delackTimer: ReturnType<typeof setTimeout> | null = null;
  private timer: ReturnType<typeof setInterval> | null = null;
  private lastSweep = 0;
  private closed = false;
  // Scratch headers (one frame at a time).
  private readonly ip: Ipv4Header = { src: 0, dst: 0, protocol: 0, l4Start: 0, l4End: 0 };
  private readonly tcpHdr: TcpHeader = { srcPort: 0, dstPort: 0, seq: 0, ack: 0, flags: 0, window: 0, dataStart: 0, dataEnd: 0, mss: 0, wscale: -1 };
  private readonly udpHdr: UdpHeader = { srcPort: 0, dstPort: 0, dataStart: 0, dataEnd: 0 };
  /** Counters of frames dropped, by reason, reported in batches. */
  private readonly drops = new Map<string, number>();
  private readonly limitHit = new Set<string>();

  constructor(private readonly opts: UserNetOptions) {
    this.layout = opts.layout ?? SLIRP_LAYOUT;
    this.limits = { ...DEFAULT_LIMITS, ...opts.limits };
    this.mask = this.layout.prefix === 0 ? 0 : (~0 << (32 - this.layout.prefix)) >>> 0;
    this.ourMac = gatewayMac(this.layout.gateway);
    this.restrict = opts.restrict ?? false;
    this.offloads = !opts.multiGuest;
    this.budget = new ByteBudget(this.limits.bufferedBytes, (m) => this.log(m), 'buffers');
    const l = this.layout;
    this.dhcp = new DhcpServer({
      serverIp: l.gateway, netmask: this.mask, router: l.nat ? l.gateway : null, dns: l.nat ? l.dns : null,
      poolStart: l.dhcpStart, poolSize: l.dhcpCount, leaseSeconds: 86400,
    }, (m) => this.log(m));
    this.dns = new DnsServer(this.limits.dnsLookups, (m) => this.log(m));
  }

  // ----------------------------------------------------------- NetBackend --

  attach(nic: GuestNic): void {
    this.nic = nic;
    if (!this.timer) {
      this.timer = setInterval(() => this.tickAll(), TICK_MS);
      this.timer.unref();
    }
  }

  transmit(frame: Uint8Array, offload: FrameOffload | null): void {
    if (this.closed) return;
    const type = etherType(frame);
    if (type === ETHERTYPE_ARP) this.arpInput(frame);
    else if (type === ETHERTYPE_IPV4) this.ipInput(frame, offload);
    else this.drop(`ethertype 0x${type.toString(16)}`);
  }

  rxSpace(): void {
    if (this.closed) return;
    if (!this.flushQueue()) return;
    // Connections that stopped for want of room, in turn, until room runs out again.
    for (const c of [...this.blockedConns]) {
      this.blockedConns.delete(c);
      c.pump();
      if (this.blockedConns.has(c)) break;
    }
  }

  /** The guest's transmit burst is over: acknowledge what it sent, once per connection. */
  txDone(): void {
    for (const c of this.ackConns) if (c.ackPending) c.pump();
    this.ackConns.clear();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    if (this.delackTimer) clearTimeout(this.delackTimer);
    for (const c of this.tcp.values()) c.destroy();
    this.tcp.clear();
    for (const f of this.udp.values()) f.close();
    this.udp.clear();
    for (const f of this.forwards) this.unbind(f);
    this.forwards.length = 0;
    this.queue.length = 0;
  }

  // ----------------------------------------------------------- forwards --

  /** Binds a forward; rejects with an error naming the address when it cannot be bound. */
  async addForward(spec: ForwardSpec): Promise<ForwardSpec> {
    const fw: Forward = { spec, port: spec.hostPort, server: null, udp: null };
    const where = `${spec.hostAddress}:${spec.hostPort}`;
    try {
      if (spec.proto === 'tcp') {
        const server = createServer({ allowHalfOpen: true, pauseOnConnect: true }, (s) => this.forwardedTcp(fw, s));
        await new Promise<void>((resolve, reject) => {
          server.once('error', reject);
          server.listen({ host: spec.hostAddress, port: spec.hostPort, exclusive: true }, () => { server.off('error', reject); resolve(); });
        });
        server.on('error', (e) => this.log(`forward tcp ${where}: ${e.message}`));
        fw.server = server;
        fw.port = (server.address() as { port: number }).port;
      } else {
        const sock = createSocket('udp4');
        await new Promise<void>((resolve, reject) => {
          sock.once('error', reject);
          sock.bind({ address: spec.hostAddress, port: spec.hostPort, exclusive: true }, () => { sock.off('error', reject); resolve(); });
        });
        sock.on('error', (e) => this.log(`forward udp ${where}: ${e.message}`));
        sock.on('message', (msg, rinfo) => this.forwardedUdp(fw, msg, rinfo));
        fw.udp = sock;
        fw.port = sock.address().port;
      }
    } catch (e) {
      throw new Error(`cannot listen on ${spec.proto} ${where} (forward to guest port ${spec.guestPort}): ${(e as Error).message}`);
    }
    if (this.closed) {
      this.unbind(fw);
      throw new Error('the network is closed');
    }
    this.forwards.push(fw);
    return { ...spec, hostPort: fw.port };
  }

  /** Removes the forward bound at proto/address/port; false when there is none. */
  removeForward(proto: 'tcp' | 'udp', hostAddress: string, hostPort: number): boolean {
    const i = this.forwards.findIndex((f) => f.spec.proto === proto && f.port === hostPort && f.spec.hostAddress === hostAddress);
    if (i < 0) return false;
    this.unbind(this.forwards[i]);
    this.forwards.splice(i, 1);
    return true;
  }

  listForwards(): ForwardSpec[] {
    return this.forwards.map((f) => ({ ...f.spec, hostPort: f.port }));
  }

  private unbind(f: Forward): void {
    f.server?.close();
    if (f.udp) try { f.udp.close(); } catch { /* closed */ }
    for (const [k, flow] of this.udpByPeer) {
      if (k.startsWith(`${this.forwards.indexOf(f)}|`)) { flow.close(); this.udpByPeer.delete(k); }
    }
  }

  private forwardedTcp(fw: Forward, sock: Socket): void {
    if (this.closed || !this.nic || !this.underLimit('tcp', this.tcp.size < this.limits.tcpConnections)) {
      sock.destroy();
      return;
    }
    const ends = { guestIp: this.guestIp(), guestPort: fw.spec.guestPort, remoteIp: this.layout.gateway, remotePort: this.allocatePort() };
    const conn = new TcpConnection(this, ends, 'syn-sent');
    this.tcp.set(conn.key, conn);
    conn.openToGuest(sock);
  }

  private forwardedUdp(fw: Forward, msg: Buffer, rinfo: { address: string; port: number }): void {
    if (this.closed || !this.nic) return;
    const peerKey = `${this.forwards.indexOf(fw)}|${rinfo.address}:${rinfo.port}`;
    let flow = this.udpByPeer.get(peerKey);
    if (!flow || flow.isClosed) {
      if (!this.underLimit('udp', this.udp.size < this.limits.udpFlows)) return;
      const ends = { guestIp: this.guestIp(), guestPort: fw.spec.guestPort, remoteIp: this.layout.gateway, remotePort: this.allocatePort() };
      flow = UdpFlow.forwarded(ends, fw.udp!, { address: rinfo.address, port: rinfo.port }, this.now(), (m) => this.log(m));
      this.udp.set(flow.key, flow);
      this.udpByPeer.set(peerKey, flow);
    }
    this.udpToGuest(flow, msg);
  }

  /** A gateway-side port for a forwarded connection, unused by any flow of the network. */
  private allocatePort(): number {
    for (let i = 0; i < 65536 - EPHEMERAL_FIRST; i++) {
      const p = this.nextPort;
      this.nextPort = p === 65535 ? EPHEMERAL_FIRST : p + 1;
      let used = false;
      for (const c of this.tcp.values()) if (c.ends.remotePort === p && c.ends.remoteIp === this.layout.gateway) { used = true; break; }
      if (!used) for (const f of this.udp.values()) if (f.ends.remotePort === p && f.ends.remoteIp === this.layout.gateway) { used = true; break; }
      if (!used) return p;
    }
    return this.nextPort;
  }

  // -------------------------------------------------------------- guests --

  /** The guest a forward goes to: the single guest's address (its lease, or what it uses). */
  private guestIp(): number {
    const lease = this.nic && this.nic.mac ? this.dhcp.leaseOf(this.nic.mac) : undefined;
    return this.guestAddr || lease || this.layout.dhcpStart;
  }

  private inSubnet(ip: number): boolean {
    return ((ip & this.mask) >>> 0) === this.layout.network;
  }

  private isOurs(ip: number): boolean {
    return ip === this.layout.gateway || (this.layout.dns !== null && ip === this.layout.dns);
  }

  private learn(ip: number, mac: Uint8Array): void {
    if (ip === 0 || !this.inSubnet(ip) || this.isOurs(ip) || (mac[0] & 1) !== 0) return;
    const have = this.arp.get(ip);
    if (!have || formatMac(have) !== formatMac(mac)) this.arp.set(ip, mac.slice());
    if (!this.opts.multiGuest) this.guestAddr = ip;
  }

  macs(ip: number): { dst: Uint8Array; src: Uint8Array } {
    const known = this.arp.get(ip);
    if (known) return { dst: known, src: this.ourMac };
    if (!this.opts.multiGuest && this.nic) return { dst: this.nic.mac, src: this.ourMac };
    // A switch guest we have not heard from: ask (the frame itself goes out to everyone).
    this.sendControl(buildArp(1, this.ourMac, this.layout.gateway, BROADCAST_MAC, ip), null);
    return { dst: BROADCAST_MAC, src: this.ourMac };
  }

  // ----------------------------------------------------------------- ARP --

  private arpInput(frame: Uint8Array): void {
    const a = parseArp(frame);
    if (typeof a === 'string') { this.drop(a); return; }
    this.learn(a.senderIp, a.senderMac);
    if (a.op === 1 && this.isOurs(a.targetIp)) {
      this.sendControl(buildArp(2, this.ourMac, a.targetIp, a.senderMac, a.senderIp), null);
    }
  }

  // ---------------------------------------------------------------- IPv4 --

  private ipInput(frame: Uint8Array, offload: FrameOffload | null): void {
    const ip = this.ip;
    const problem = parseIpv4(frame, ip);
    if (problem !== null) { this.drop(problem); return; }
    this.learn(ip.src, frame.subarray(6, 12));
    // Checksums the guest left to us (NEEDS_CSUM) or vouched for are not checked.
    const verified = offload !== null && (offload.flags & (NET_HDR_F_NEEDS_CSUM | NET_HDR_F_DATA_VALID)) !== 0;
    switch (ip.protocol) {
      case IPPROTO_ICMP: this.icmpInput(frame, ip); return;
      case IPPROTO_UDP:
        if (!verified && !l4ChecksumOk(frame, ip)) { this.drop('UDP checksum is wrong'); return; }
        this.udpInput(frame, ip);
        return;
      case IPPROTO_TCP:
        if (!verified && !l4ChecksumOk(frame, ip)) { this.drop('TCP checksum is wrong'); return; }
        this.tcpInput(frame, ip);
        return;
      default:
        this.drop(`IP protocol ${ip.protocol}`);
    }
  }

  private icmpInput(frame: Uint8Array, ip: Ipv4Header): void {
    // Echo is answered for the gateway and DNS addresses only (the host cannot send ICMP
    // without privileges), in restricted mode too.
    if (!this.isOurs(ip.dst)) { this.drop('ICMP to an outside address'); return; }
    const reply = buildEchoReply(frame, ip, this.ourMac);
    if (reply) this.sendControl(reply, null);
  }

  // ----------------------------------------------------------------- UDP --

  private udpInput(frame: Uint8Array, ip: Ipv4Header): void {
    const u = this.udpHdr;
    const problem = parseUdp(frame, ip, u);
    if (problem !== null) { this.drop(problem); return; }
    const data = frame.subarray(u.dataStart, u.dataEnd);
    if (u.dstPort === DHCP_SERVER_PORT && (ip.dst === 0xffffffff || ip.dst === this.layout.gateway)) {
      this.dhcpInput(frame, data);
      return;
    }
    const l = this.layout;
    if (l.dns !== null && ip.dst === l.dns && u.dstPort === DNS_PORT && l.nat) {
      if (this.restrict) { this.drop('DNS query (restricted network)'); return; }
      const src = ip.src;
      const sport = u.srcPort;
      this.dns.query(data, (answer) => {
        if (this.closed) return;
        const m = this.macs(src);
        this.sendControl(buildUdp(m.dst, m.src, l.dns!, DNS_PORT, src, sport, answer, null), null);
      });
      return;
    }
    const key = udpKey(ip.src, u.srcPort, ip.dst, u.dstPort);
    let flow = this.udp.get(key);
    if (flow && !flow.isClosed) {
      flow.send(data, this.now());
      return;
    }
    // A new flow: outbound NAT.
    const host = this.hostAddressFor(ip.dst);
    if (host === null) { this.drop(this.restrict ? 'UDP to the outside (restricted network)' : `UDP to ${ipToString(ip.dst)}`); return; }
    if (!this.underLimit('udp', this.udp.size < this.limits.udpFlows)) return;
    flow = UdpFlow.outbound({ guestIp: ip.src, guestPort: u.srcPort, remoteIp: ip.dst, remotePort: u.dstPort }, host, u.dstPort, this.now(),
      (f, msg) => this.udpToGuest(f, msg), (m) => this.log(m));
    this.udp.set(key, flow);
    flow.send(data, this.now());
  }

  private udpToGuest(flow: UdpFlow, msg: Uint8Array): void {
    if (this.closed) return;
    flow.lastUsed = this.now();
    const e = flow.ends;
    // Datagrams that cannot make a frame within the MTU would need fragmenting: dropped.
    if (msg.length > 1500 - 28) { this.drop('UDP datagram from the host larger than the MTU'); return; }
    const m = this.macs(e.guestIp);
    this.sendControl(buildUdp(m.dst, m.src, e.remoteIp, e.remotePort, e.guestIp, e.guestPort, msg, null), null);
  }

  private dhcpInput(frame: Uint8Array, data: Uint8Array): void {
    const r = this.dhcp.handle(data);
    if (!r) return;
    const client = frame.subarray(6, 12);
    if (r.dstIp !== 0xffffffff) this.learn(r.dstIp, client);
    const dstMac = r.broadcast ? BROADCAST_MAC : client;
    this.sendControl(buildUdp(dstMac, this.ourMac, this.layout.gateway, DHCP_SERVER_PORT, r.dstIp, DHCP_CLIENT_PORT, r.data, null), null);
  }

  /** The host address NAT sends a guest packet for `dst` to, or null when it may not go. */
  private hostAddressFor(dst: number): string | null {
    if (this.restrict || !this.layout.nat) return null;
    if (dst === this.layout.gateway) return '127.0.0.1';
    if (this.inSubnet(dst) || dst === 0xffffffff || dst >>> 28 === 14 || dst === 0) return null; // ours, broadcast, multicast
    return ipToString(dst);
  }

  // ----------------------------------------------------------------- TCP --

  /** The guest's TCP connections through this network, as a machine state records them. */
  openConnections(): TcpProbe[] {
    const out: TcpProbe[] = [];
    for (const c of this.tcp.values()) {
      const p = c.probe();
      if (p !== null) out.push(p);
    }
    return out;
  }

  /**
   * A restored guest still has the connections `saved` with it, but their host sides ended with
   * the machine that was saved: each gets a probe from its peer, which the guest answers with an
   * ACK that no connection here takes, so it is reset (tcpInput) and the guest sees the
   * connection closed at once, instead of when it next sends (or never, if it only waits).
   */
  probeRestored(saved: readonly TcpProbe[]): void {
    for (const p of saved) {
      if (this.tcp.has(tcpKey(p.guestIp, p.guestPort, p.remoteIp, p.remotePort))) continue;
      const m = this.macs(p.guestIp);
      this.sendControl(buildTcp({
        dstMac: m.dst, srcMac: m.src, src: p.remoteIp, srcPort: p.remotePort, dst: p.guestIp, dstPort: p.guestPort,
        seq: p.seq, ack: p.ack, flags: TCP_ACK, window: 0xffff,
      }), null);
    }
  }

  private tcpInput(frame: Uint8Array, ip: Ipv4Header): void {
    const t = this.tcpHdr;
    const problem = parseTcp(frame, ip, t);
    if (problem !== null) { this.drop(problem); return; }
    const key = tcpKey(ip.src, t.srcPort, ip.dst, t.dstPort);
    const conn = this.tcp.get(key);
    if (conn) {
      conn.input(t, frame);
      return;
    }
    const ends = { guestIp: ip.src, guestPort: t.srcPort, remoteIp: ip.dst, remotePort: t.dstPort };
    const isSyn = (t.flags & (TCP_SYN | TCP_ACK | TCP_RST)) === TCP_SYN;
    const host = isSyn ? this.hostAddressFor(ip.dst) : null;
    if (!isSyn || (host === null && !this.restrict && this.inSubnet(ip.dst))) {
      // Not a connection we have (or one to a local address nobody serves): reset it.
      if (!(t.flags & TCP_RST)) this.sendControl(resetFor(t, ends, this), null);
      return;
    }
    if (host === null) { this.drop(this.restrict ? 'TCP connection to the outside (restricted network)' : `TCP to ${ipToString(ip.dst)}`); return; }
    if (!this.underLimit('tcp', this.tcp.size < this.limits.tcpConnections) ||
        !this.underLimit('connecting', this.connecting < this.limits.tcpConnecting)) return; // the guest retries or times out
    const c = new TcpConnection(this, ends, 'connecting');
    this.tcp.set(c.key, c);
    this.connecting++;
    c.acceptSyn(t, host, t.dstPort);
  }

  // ------------------------------------------------- TcpNetwork (for tcp.ts) --

  sendControl(frame: Uint8Array, offload: FrameOffload | null): void {
    if (this.closed) return;
    if (this.queue.length === 0 && this.nic && this.nic.deliver(frame, offload ?? undefined)) return;
    if (this.queue.length >= this.limits.queuedFrames || this.budget.free() < frame.length) {
      this.underLimit('queue', false);
      return;
    }
    this.queue.push({ frame, offload });
    this.queuedBytes += frame.length;
    this.budget.add(frame.length);
  }

  sendData(frame: Uint8Array, offload: FrameOffload | null): boolean {
    if (this.closed || !this.nic) return false;
    if (this.queue.length > 0 && !this.flushQueue()) return false;
    return this.nic.deliver(frame, offload ?? undefined);
  }

  blocked(conn: TcpConnection): void {
    this.blockedConns.add(conn);
  }

  ackLater(conn: TcpConnection): void {
    this.ackConns.add(conn);
  }

  delayAck(conn: TcpConnection): void {
    this.delayedAcks.add(conn);
    this.delackTimer ??= setTimeout(() => {
      this.delackTimer = null;
      if (this.closed) return;
      for (const c of this.delayedAcks) c.flushAck();
      this.delayedAcks.clear();
    }, DELACK_MS);
  }

  removed(conn: TcpConnection): void {
    if (this.tcp.get(conn.key) === conn) this.tcp.delete(conn.key);
    this.blockedConns.delete(conn);
    this.ackConns.delete(conn);
    this.delayedAcks.delete(conn);
  }

  offload(): FrameOffload | null {
    return this.nic && this.nic.rxCsumOffload ? { flags: 0, gsoType: 0, gsoSize: 0, hdrLen: 0, csumStart: 0, csumOffset: 0 } : null;
  }

  get rxTso4(): boolean {
    return this.nic !== null && this.nic.rxTso4;
  }

  now(): number {
    return Date.now();
  }

  log(message: string): void {
    this.opts.log(`${this.opts.name}: ${message}`);
  }

  // ------------------------------------------------------------ internals --

  /** Delivers queued frames; true when the queue is empty. */
  private flushQueue(): boolean {
    const nic = this.nic;
    if (!nic) return false;
    while (this.queue.length > 0) {
      const q = this.queue[0];
      if (!nic.deliver(q.frame, q.offload ?? undefined)) return false;
      this.queue.shift();
      this.queuedBytes -= q.frame.length;
      this.budget.sub(q.frame.length);
    }
    return true;
  }

  private tickAll(): void {
    if (this.closed) return;
    const now = this.now();
    let connecting = 0;
    for (const c of [...this.tcp.values()]) {
      c.tick(now);
      if (c.state === 'connecting') connecting++;
    }
    this.connecting = connecting;
    if (now - this.lastSweep >= SWEEP_MS) {
      this.lastSweep = now;
      for (const [k, f] of this.udp) {
        if (f.isClosed || now - f.lastUsed > FLOW_IDLE_MS) {
          f.close();
          this.udp.delete(k);
        }
      }
      for (const [k, f] of this.udpByPeer) if (f.isClosed || !this.udp.has(f.key)) this.udpByPeer.delete(k);
      this.reportDrops();
      for (const what of this.limitHit) if (this.belowLimit(what)) this.limitHit.delete(what);
    }
  }

  private belowLimit(what: string): boolean {
    const l = this.limits;
    switch (what) {
      case 'tcp': return this.tcp.size < l.tcpConnections * 0.9;
      case 'connecting': return this.connecting < l.tcpConnecting * 0.9;
      case 'udp': return this.udp.size < l.udpFlows * 0.9;
      default: return this.queue.length < l.queuedFrames / 2;
    }
  }

  /** Returns `ok`; the first time a limit is hit (per episode) says so in the log. */
  private underLimit(what: string, ok: boolean): boolean {
    if (!ok && !this.limitHit.has(what)) {
      this.limitHit.add(what);
      const l = this.limits;
      const text: Record<string, string> = {
        tcp: `${l.tcpConnections} TCP connections open, the limit; refusing new ones`,
        connecting: `${l.tcpConnecting} TCP connections being set up, the limit; ignoring further SYNs`,
        udp: `${l.udpFlows} UDP flows open, the limit; dropping datagrams of new ones`,
        queue: `${l.queuedFrames} frames (or the byte budget) waiting for the guest's receive buffers, the limit; dropping frames`,
      };
      this.log(text[what] ?? what);
    }
    return ok;
  }

  private drop(reason: string): void {
    this.drops.set(reason, (this.drops.get(reason) ?? 0) + 1);
  }

  private reportDrops(): void {
    if (this.drops.size === 0) return;
    const parts = [...this.drops].map(([r, n]) => `${n} × ${r}`);
    this.drops.clear();
    this.log(`dropped frames from the guest: ${parts.join('; ')}`);
  }

  /** For tests and `vmctl info`: what the network holds now. */
  stats(): { tcp: number; udp: number; queued: number; bufferedBytes: number } {
    return { tcp: this.tcp.size, udp: this.udp.size, queued: this.queue.length, bufferedBytes: this.budget.used };
  }
}
