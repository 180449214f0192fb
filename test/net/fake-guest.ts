// A guest's network card played by a test: it builds the frames a guest would send (Ethernet,
// IPv4, UDP, TCP with real checksums), hands them to a UserNetwork, and records and parses what
// the network delivers back. It can refuse deliveries (a full receive ring) and drop them (a
// guest that loses a frame).

import { buildIpv4, buildTcp, buildUdp, ETH_HLEN, IPPROTO_ICMP, IPV4_HLEN, parseIp, parseIpv4, parseTcp, parseUdp, TCP_SYN, writeU16BE, type Ipv4Header, type TcpHeader, type UdpHeader } from '../../src/net/packet.js';
import { finishSum, sumBytes } from '../../src/net/checksum.js';
import type { FrameOffload, GuestNic } from '../../src/net/nic.js';
import type { UserNetwork } from '../../src/net/user-net.js';

export const GUEST_MAC = Uint8Array.from([0x52, 0x54, 0x00, 0x11, 0x22, 0x33]);
export const GW_MAC = Uint8Array.from([0x52, 0x55, 10, 0, 2, 2]);
export const GUEST_IP = parseIp('10.0.2.15')!;
export const GATEWAY = parseIp('10.0.2.2')!;
export const DNS = parseIp('10.0.2.3')!;

export interface Delivered {
  frame: Uint8Array;
  offload: FrameOffload | undefined;
  ip: Ipv4Header | null;
  tcp: TcpHeader | null;
  udp: UdpHeader | null;
  data: Uint8Array;
}

export class FakeGuest implements GuestNic {
  readonly mac = GUEST_MAC;
  rxCsumOffload = false;
  rxTso4 = false;
  /** false: deliver() refuses (no receive buffers). */
  accepting = true;
  /** Deliveries to pretend to lose (taken, then thrown away), counted down. */
  loseNext = 0;
  readonly inbox: Delivered[] = [];

  constructor(readonly net: UserNetwork) {
    net.attach(this);
  }

  deliver(frame: Uint8Array, offload?: FrameOffload): boolean {
    if (!this.accepting) return false;
    if (this.loseNext > 0) { this.loseNext--; return true; }
    const f = frame.slice();
    const ip: Ipv4Header = { src: 0, dst: 0, protocol: 0, l4Start: 0, l4End: 0 };
    const d: Delivered = { frame: f, offload: offload ? { ...offload } : undefined, ip: null, tcp: null, udp: null, data: new Uint8Array(0) };
    if (f[12] === 8 && f[13] === 0 && parseIpv4(f, ip) === null) {
      d.ip = ip;
      if (ip.protocol === 6) {
        const t = {} as TcpHeader;
        if (parseTcp(f, ip, t) === null) { d.tcp = t; d.data = f.slice(t.dataStart, t.dataEnd); }
      } else if (ip.protocol === 17) {
        const u = {} as UdpHeader;
        if (parseUdp(f, ip, u) === null) { d.udp = u; d.data = f.slice(u.dataStart, u.dataEnd); }
      }
    }
    this.inbox.push(d);
    return true;
  }

  /** Sends a frame as the card would (one transmit burst). */
  send(frame: Uint8Array, offload: FrameOffload | null = null): void {
    this.net.transmit(frame, offload);
    this.net.txDone();
  }

  tcp(opts: { dst: number; dport: number; sport: number; seq: number; ack?: number; flags: number; window?: number; data?: Uint8Array; mss?: number; wscale?: number; src?: number }): void {
    const data = opts.data ?? new Uint8Array(0);
    this.send(buildTcp({
      dstMac: GW_MAC, srcMac: GUEST_MAC, src: opts.src ?? GUEST_IP, srcPort: opts.sport, dst: opts.dst, dstPort: opts.dport,
      seq: opts.seq >>> 0, ack: (opts.ack ?? 0) >>> 0, flags: opts.flags, window: opts.window ?? 65535,
      mss: opts.flags & TCP_SYN ? opts.mss : undefined, wscale: opts.flags & TCP_SYN ? opts.wscale : undefined,
    }, data.length, (f, at) => f.set(data, at)));
  }

  udp(dst: number, dport: number, sport: number, data: Uint8Array, src = GUEST_IP): void {
    this.send(buildUdp(GW_MAC, GUEST_MAC, src, sport, dst, dport, data, null));
  }

  ping(dst: number, id: number, seq: number): void {
    const f = buildIpv4(GW_MAC, GUEST_MAC, GUEST_IP, dst, IPPROTO_ICMP, 16);
    const o = ETH_HLEN + IPV4_HLEN;
    f[o] = 8;
    writeU16BE(f, o + 4, id);
    writeU16BE(f, o + 6, seq);
    f.set([1, 2, 3, 4, 5, 6, 7, 8], o + 8);
    writeU16BE(f, o + 2, finishSum(sumBytes(f, o, f.length)));
    this.send(f);
  }

  /** Removes and returns what was delivered so far. */
  take(): Delivered[] {
    return this.inbox.splice(0);
  }

  /** Waits until a delivered frame satisfies `pred`; returns it (and leaves later ones queued). */
  async waitFor(pred: (d: Delivered) => boolean, timeoutMs = 5000, what = 'a frame'): Promise<Delivered> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.inbox.findIndex(pred);
      if (i >= 0) return this.inbox.splice(0, i + 1)[i];
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; have ${this.inbox.length} other frames`);
      await new Promise((r) => setTimeout(r, 5));
    }
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
