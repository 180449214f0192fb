// Wire formats of the frames the user-mode stack handles: Ethernet II, ARP (RFC 826), IPv4
// (RFC 791), ICMP echo (RFC 792), UDP (RFC 768), TCP (RFC 9293). Parsers never trust a length
// field: everything is checked against the bytes actually there, and a frame that does not add
// up is reported as a problem (a string) rather than thrown. Addresses are uint32 numbers.

import { finishSum, foldSum, pseudoHeaderSum, sumBytes } from './checksum.js';
import { NET_HDR_F_NEEDS_CSUM, NET_HDR_GSO_NONE, NET_HDR_GSO_TCPV4, type FrameOffload } from './nic.js';

export const ETH_HLEN = 14;
export const ETHERTYPE_IPV4 = 0x0800;
export const ETHERTYPE_ARP = 0x0806;
export const IPPROTO_ICMP = 1;
export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;
export const IPV4_HLEN = 20;
export const UDP_HLEN = 8;
export const TCP_HLEN = 20;
export const BROADCAST_MAC = new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);

export const TCP_FIN = 0x01;
export const TCP_SYN = 0x02;
export const TCP_RST = 0x04;
export const TCP_PSH = 0x08;
export const TCP_ACK = 0x10;

export function ipToString(ip: number): string {
  return `${ip >>> 24}.${(ip >>> 16) & 255}.${(ip >>> 8) & 255}.${ip & 255}`;
}

/** "10.0.2.15" -> number, or null. */
export function parseIp(text: string): number | null {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(text);
  if (!m) return null;
  const p = m.slice(1).map(Number);
  if (p.some((x) => x > 255)) return null;
  return ((p[0] << 24) | (p[1] << 16) | (p[2] << 8) | p[3]) >>> 0;
}

const u16 = (b: Uint8Array, o: number): number => (b[o] << 8) | b[o + 1];
const u32 = (b: Uint8Array, o: number): number => ((b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]) >>> 0;
const put16 = (b: Uint8Array, o: number, v: number): void => { b[o] = (v >>> 8) & 255; b[o + 1] = v & 255; };
const put32 = (b: Uint8Array, o: number, v: number): void => { b[o] = v >>> 24; b[o + 1] = (v >>> 16) & 255; b[o + 2] = (v >>> 8) & 255; b[o + 3] = v & 255; };
export { u16 as readU16BE, u32 as readU32BE, put16 as writeU16BE, put32 as writeU32BE };

export function etherType(frame: Uint8Array): number {
  return frame.length >= ETH_HLEN ? u16(frame, 12) : -1;
}

// ------------------------------------------------------------------------------------ ARP --

export interface ArpPacket {
  op: number;           // 1 request, 2 reply
  senderMac: Uint8Array;
  senderIp: number;
  targetIp: number;
}

/** An Ethernet/IPv4 ARP packet (RFC 826: htype 1, ptype 0x0800, hlen 6, plen 4), or a problem. */
export function parseArp(frame: Uint8Array): ArpPacket | string {
  if (frame.length < ETH_HLEN + 28) return `ARP frame of ${frame.length} bytes is too short`;
  const a = ETH_HLEN;
  if (u16(frame, a) !== 1 || u16(frame, a + 2) !== ETHERTYPE_IPV4 || frame[a + 4] !== 6 || frame[a + 5] !== 4) return 'ARP for something other than Ethernet/IPv4';
  return { op: u16(frame, a + 6), senderMac: frame.slice(a + 8, a + 14), senderIp: u32(frame, a + 14), targetIp: u32(frame, a + 24) };
}

export function buildArp(op: number, srcMac: Uint8Array, srcIp: number, dstMac: Uint8Array, dstIp: number): Uint8Array {
  const f = new Uint8Array(ETH_HLEN + 28);
  f.set(op === 1 ? BROADCAST_MAC : dstMac, 0);
  f.set(srcMac, 6);
  put16(f, 12, ETHERTYPE_ARP);
  const a = ETH_HLEN;
  put16(f, a, 1);
  put16(f, a + 2, ETHERTYPE_IPV4);
  f[a + 4] = 6;
  f[a + 5] = 4;
  put16(f, a + 6, op);
  f.set(srcMac, a + 8);
  put32(f, a + 14, srcIp);
  if (op !== 1) f.set(dstMac, a + 18);
  put32(f, a + 24, dstIp);
  return f;
}

// ----------------------------------------------------------------------------------- IPv4 --

/** The IPv4 header of a frame, as offsets into it. */
export interface Ipv4Header {
  src: number;
  dst: number;
  protocol: number;
  /** Offset of the L4 payload and its end (the IP total length, not the frame's padding). */
  l4Start: number;
  l4End: number;
}

/** Parses the IPv4 header at ETH_HLEN, or returns why the frame is not a usable datagram. */
export function parseIpv4(frame: Uint8Array, out: Ipv4Header): string | null {
  const o = ETH_HLEN;
  if (frame.length < o + IPV4_HLEN) return `IPv4 frame of ${frame.length} bytes is too short for a header`;
  const vihl = frame[o];
  if (vihl >> 4 !== 4) return `IP version ${vihl >> 4} in an IPv4 frame`;
  const hlen = (vihl & 15) * 4;
  const total = u16(frame, o + 2);
  if (hlen < IPV4_HLEN || total < hlen || o + total > frame.length) return `IPv4 header length ${hlen} / total length ${total} do not fit the ${frame.length - o} bytes there`;
  if (finishSum(sumBytes(frame, o, o + hlen)) !== 0) return 'IPv4 header checksum is wrong';
  // Fragments are not reassembled: the stack drops them (a guest with the 1500-byte MTU we give
  // it only fragments datagrams larger than that).
  if ((u16(frame, o + 6) & 0x3fff) !== 0) return 'IPv4 fragment (not reassembled)';
  out.src = u32(frame, o + 12);
  out.dst = u32(frame, o + 16);
  out.protocol = frame[o + 9];
  out.l4Start = o + hlen;
  out.l4End = o + total;
  return null;
}

let ipId = 1;

/** A frame with Ethernet and IPv4 headers (no options, DF set) around `l4Len` bytes of payload
 *  for the caller to fill from the returned offset. */
export function buildIpv4(dstMac: Uint8Array, srcMac: Uint8Array, src: number, dst: number, protocol: number, l4Len: number): Uint8Array {
  const f = new Uint8Array(ETH_HLEN + IPV4_HLEN + l4Len);
  f.set(dstMac, 0);
  f.set(srcMac, 6);
  put16(f, 12, ETHERTYPE_IPV4);
  const o = ETH_HLEN;
  f[o] = 0x45;
  put16(f, o + 2, IPV4_HLEN + l4Len);
  put16(f, o + 4, ipId);
  ipId = (ipId + 1) & 0xffff;
  put16(f, o + 6, 0x4000); // DF
  f[o + 8] = 64;           // TTL
  f[o + 9] = protocol;
  put32(f, o + 12, src);
  put32(f, o + 16, dst);
  put16(f, o + 10, finishSum(sumBytes(f, o, o + IPV4_HLEN)));
  return f;
}

/**
 * Fills the L4 checksum of a frame built by buildIpv4. With `offload` (the guest takes partial
 * checksums), only the pseudo-header sum goes in and the frame is marked NEEDS_CSUM (as a host
 * kernel's CHECKSUM_PARTIAL packet), so nothing is summed over the payload and a guest that
 * forwards the frame still completes it; otherwise the full checksum is computed.
 */
export function finishL4Checksum(frame: Uint8Array, protocol: number, offload: FrameOffload | null): void {
  const l4 = ETH_HLEN + IPV4_HLEN;
  const len = frame.length - l4;
  const at = l4 + (protocol === IPPROTO_TCP ? 16 : 6);
  const pseudo = pseudoHeaderSum(u32(frame, ETH_HLEN + 12), u32(frame, ETH_HLEN + 16), protocol, len);
  put16(frame, at, 0);
  if (offload) {
    put16(frame, at, foldSum(pseudo));
    offload.flags = NET_HDR_F_NEEDS_CSUM;
    offload.csumStart = l4;
    offload.csumOffset = at - l4;
    return;
  }
  let c = finishSum(sumBytes(frame, l4, frame.length, pseudo));
  // RFC 768: a computed UDP checksum of 0 is sent as all ones (0 means "none").
  if (c === 0 && protocol === IPPROTO_UDP) c = 0xffff;
  put16(frame, at, c);
}

/** Whether the L4 checksum of a received datagram is right (a zero UDP checksum means none). */
export function l4ChecksumOk(frame: Uint8Array, ip: Ipv4Header): boolean {
  if (ip.protocol === IPPROTO_UDP && u16(frame, ip.l4Start + 6) === 0) return true;
  const sum = sumBytes(frame, ip.l4Start, ip.l4End, pseudoHeaderSum(ip.src, ip.dst, ip.protocol, ip.l4End - ip.l4Start));
  return finishSum(sum) === 0;
}

// ------------------------------------------------------------------------------------ UDP --

export interface UdpHeader { srcPort: number; dstPort: number; dataStart: number; dataEnd: number }

export function parseUdp(frame: Uint8Array, ip: Ipv4Header, out: UdpHeader): string | null {
  const o = ip.l4Start;
  if (ip.l4End - o < UDP_HLEN) return 'UDP datagram shorter than its header';
  const len = u16(frame, o + 4);
  if (len < UDP_HLEN || o + len > ip.l4End) return `UDP length ${len} does not fit the ${ip.l4End - o} bytes there`;
  out.srcPort = u16(frame, o);
  out.dstPort = u16(frame, o + 2);
  out.dataStart = o + UDP_HLEN;
  out.dataEnd = o + len;
  return null;
}

export function buildUdp(dstMac: Uint8Array, srcMac: Uint8Array, src: number, srcPort: number, dst: number, dstPort: number,
  data: Uint8Array, offload: FrameOffload | null): Uint8Array {
  const f = buildIpv4(dstMac, srcMac, src, dst, IPPROTO_UDP, UDP_HLEN + data.length);
  const o = ETH_HLEN + IPV4_HLEN;
  put16(f, o, srcPort);
  put16(f, o + 2, dstPort);
  put16(f, o + 4, UDP_HLEN + data.length);
  f.set(data, o + UDP_HLEN);
  finishL4Checksum(f, IPPROTO_UDP, offload);
  return f;
}

// ----------------------------------------------------------------------------------- ICMP --

/** An ICMP echo reply (type 0) answering the echo request (type 8) in `frame`, or null. */
export function buildEchoReply(frame: Uint8Array, ip: Ipv4Header, ourMac: Uint8Array): Uint8Array | null {
  const o = ip.l4Start;
  const len = ip.l4End - o;
  if (len < 8 || frame[o] !== 8 || frame[o + 1] !== 0) return null;
  if (finishSum(sumBytes(frame, o, ip.l4End)) !== 0) return null;
  const f = buildIpv4(frame.subarray(6, 12), ourMac, ip.dst, ip.src, IPPROTO_ICMP, len);
  const r = ETH_HLEN + IPV4_HLEN;
  f.set(frame.subarray(o, ip.l4End), r);
  f[r] = 0;
  put16(f, r + 2, 0);
  put16(f, r + 2, finishSum(sumBytes(f, r, r + len)));
  return f;
}

// ------------------------------------------------------------------------------------ TCP --

export interface TcpHeader {
  srcPort: number;
  dstPort: number;
  seq: number;
  ack: number;
  flags: number;
  window: number;
  dataStart: number;
  dataEnd: number;
  /** Options (SYN segments): MSS, or 0; window scale shift, or -1. */
  mss: number;
  wscale: number;
}

export function parseTcp(frame: Uint8Array, ip: Ipv4Header, out: TcpHeader): string | null {
  const o = ip.l4Start;
  if (ip.l4End - o < TCP_HLEN) return 'TCP segment shorter than its header';
  const hlen = (frame[o + 12] >> 4) * 4;
  if (hlen < TCP_HLEN || o + hlen > ip.l4End) return `TCP header length ${hlen} does not fit the ${ip.l4End - o} bytes there`;
  out.srcPort = u16(frame, o);
  out.dstPort = u16(frame, o + 2);
  out.seq = u32(frame, o + 4);
  out.ack = u32(frame, o + 8);
  out.flags = frame[o + 13];
  out.window = u16(frame, o + 14);
  out.dataStart = o + hlen;
  out.dataEnd = ip.l4End;
  out.mss = 0;
  out.wscale = -1;
  // RFC 9293 3.2: options are kind (1 byte), or kind, length, data; 0 ends the list, 1 is a pad.
  for (let i = o + TCP_HLEN; i < o + hlen;) {
    const kind = frame[i];
    if (kind === 0) break;
    if (kind === 1) { i++; continue; }
    if (i + 1 >= o + hlen) break;
    const len = frame[i + 1];
    if (len < 2 || i + len > o + hlen) break;
    if (kind === 2 && len === 4) out.mss = u16(frame, i + 2);
    if (kind === 3 && len === 3) out.wscale = Math.min(frame[i + 2], 14); // RFC 7323 2.3
    i += len;
  }
  return null;
}

export interface TcpSegmentSpec {
  dstMac: Uint8Array;
  srcMac: Uint8Array;
  src: number;
  srcPort: number;
  dst: number;
  dstPort: number;
  seq: number;
  ack: number;
  flags: number;
  window: number;
  /** SYN options: MSS to announce (0: none) and window scale shift (-1: none). */
  mss?: number;
  wscale?: number;
}

/**
 * A TCP segment toward the guest; `fill(frame, at)` copies `dataLen` payload bytes in. With
 * `offload`, the checksum is left partial (see finishL4Checksum) and a payload larger than
 * `gsoMss` is marked as one TSO frame of MSS-sized segments (the guest took GUEST_TSO4).
 */
export function buildTcp(s: TcpSegmentSpec, dataLen = 0, fill: ((frame: Uint8Array, at: number) => void) | null = null,
  offload: FrameOffload | null = null, gsoMss = 0): Uint8Array {
  const optLen = s.flags & TCP_SYN ? (s.mss ? 4 : 0) + (s.wscale !== undefined && s.wscale >= 0 ? 4 : 0) : 0;
  const hlen = TCP_HLEN + optLen;
  const f = buildIpv4(s.dstMac, s.srcMac, s.src, s.dst, IPPROTO_TCP, hlen + dataLen);
  const o = ETH_HLEN + IPV4_HLEN;
  put16(f, o, s.srcPort);
  put16(f, o + 2, s.dstPort);
  put32(f, o + 4, s.seq);
  put32(f, o + 8, s.ack);
  f[o + 12] = (hlen / 4) << 4;
  f[o + 13] = s.flags;
  put16(f, o + 14, Math.max(0, Math.min(0xffff, s.window)));
  let p = o + TCP_HLEN;
  if (optLen) {
    if (s.mss) { f[p] = 2; f[p + 1] = 4; put16(f, p + 2, s.mss); p += 4; }
    if (s.wscale !== undefined && s.wscale >= 0) { f[p] = 1; f[p + 1] = 3; f[p + 2] = 3; f[p + 3] = s.wscale; p += 4; }
  }
  if (fill && dataLen > 0) fill(f, o + hlen);
  finishL4Checksum(f, IPPROTO_TCP, offload);
  if (offload) {
    offload.hdrLen = o + hlen;
    if (gsoMss > 0 && dataLen > gsoMss) {
      offload.gsoType = NET_HDR_GSO_TCPV4;
      offload.gsoSize = gsoMss;
    } else {
      offload.gsoType = NET_HDR_GSO_NONE;
      offload.gsoSize = 0;
    }
  }
  return f;
}
