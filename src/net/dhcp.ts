// A DHCP server (RFC 2131, options RFC 2132) for the guests of one network: it hands out
// addresses from a small pool, one per client MAC and stable while the network exists, with the
// gateway, DNS server and a lease time. Messages are parsed defensively (a guest controls them).

import { formatMac } from './mac.js';
import { readU16BE, readU32BE, writeU16BE, writeU32BE } from './packet.js';

export const DHCP_SERVER_PORT = 67;
export const DHCP_CLIENT_PORT = 68;
const MAGIC = 0x63825363;
const FIXED_LEN = 236; // op .. file, before the magic cookie
const BROADCAST_FLAG = 0x8000;

// Message types (option 53).
export const DHCPDISCOVER = 1;
export const DHCPOFFER = 2;
export const DHCPREQUEST = 3;
export const DHCPDECLINE = 4;
export const DHCPACK = 5;
export const DHCPNAK = 6;
export const DHCPRELEASE = 7;
export const DHCPINFORM = 8;

const OPT_PAD = 0, OPT_SUBNET = 1, OPT_ROUTER = 3, OPT_DNS = 6, OPT_BROADCAST = 28, OPT_REQUESTED_IP = 50,
  OPT_LEASE_TIME = 51, OPT_MSG_TYPE = 53, OPT_SERVER_ID = 54, OPT_END = 255;

export interface DhcpConfig {
  /** The server's own address (the gateway, as slirp). */
  readonly serverIp: number;
  readonly netmask: number;
  /** Router and DNS server to announce; null: none (a switch network without NAT). */
  readonly router: number | null;
  readonly dns: number | null;
  /** First address of the pool and how many. */
  readonly poolStart: number;
  readonly poolSize: number;
  readonly leaseSeconds: number;
}

export interface DhcpRequest {
  type: number;
  xid: number;
  flags: number;
  ciaddr: number;
  chaddr: Uint8Array;
  requestedIp: number;
  serverId: number;
}

/** Parses a DHCP message from a client, or returns why it is not one we answer. */
export function parseDhcp(data: Uint8Array): DhcpRequest | string {
  if (data.length < FIXED_LEN + 4) return `DHCP message of ${data.length} bytes is too short`;
  if (data[0] !== 1) return 'not a BOOTREQUEST';
  if (data[1] !== 1 || data[2] !== 6) return 'hardware type is not Ethernet';
  if (readU32BE(data, FIXED_LEN) !== MAGIC) return 'no DHCP magic cookie';
  const req: DhcpRequest = {
    type: 0, xid: readU32BE(data, 4), flags: readU16BE(data, 10), ciaddr: readU32BE(data, 12),
    chaddr: data.slice(28, 34), requestedIp: 0, serverId: 0,
  };
  // RFC 2132 2: options are code, length, data; 0 pads, 255 ends. Overloaded sname/file are not used.
  for (let i = FIXED_LEN + 4; i < data.length;) {
    const code = data[i];
    if (code === OPT_END) break;
    if (code === OPT_PAD) { i++; continue; }
    if (i + 1 >= data.length) break;
    const len = data[i + 1];
    const v = i + 2;
    if (v + len > data.length) return 'DHCP option runs past the end of the message';
    if (code === OPT_MSG_TYPE && len === 1) req.type = data[v];
    if (code === OPT_REQUESTED_IP && len === 4) req.requestedIp = readU32BE(data, v);
    if (code === OPT_SERVER_ID && len === 4) req.serverId = readU32BE(data, v);
    i = v + len;
  }
  if (req.type === 0) return 'BOOTP without a DHCP message type';
  return req;
}

export interface DhcpReply {
  data: Uint8Array;
  /** Where the reply goes: the client's new address, or broadcast (0xffffffff). */
  dstIp: number;
  /** Send to the broadcast MAC instead of the client's. */
  broadcast: boolean;
}

export class DhcpServer {
  /** MAC (as text) -> leased address. */
  private readonly leases = new Map<string, number>();

  constructor(private readonly cfg: DhcpConfig, private readonly log: (m: string) => void) {}

  /** The address leased to this MAC, if any. */
  leaseOf(mac: Uint8Array): number | undefined {
    return this.leases.get(formatMac(mac));
  }

  handle(data: Uint8Array): DhcpReply | null {
    const req = parseDhcp(data);
    if (typeof req === 'string') return null;
    const mac = formatMac(req.chaddr);
    switch (req.type) {
      case DHCPDISCOVER: {
        const ip = this.allocate(mac, req.requestedIp);
        if (ip === null) return null;
        return this.reply(req, DHCPOFFER, ip);
      }
      case DHCPREQUEST: {
        // Selecting another server's offer: nothing for us to do (RFC 2131 4.3.2).
        if (req.serverId !== 0 && req.serverId !== this.cfg.serverIp) return null;
        const wanted = req.requestedIp || req.ciaddr;
        const ip = this.allocate(mac, wanted);
        if (ip === null || (wanted !== 0 && wanted !== ip)) return this.reply(req, DHCPNAK, 0);
        return this.reply(req, DHCPACK, ip);
      }
      case DHCPINFORM:
        return this.reply(req, DHCPACK, 0);
      case DHCPRELEASE:
        this.leases.delete(mac);
        return null;
      default:
        return null; // DECLINE and the rest: nothing to answer
    }
  }

  /** The lease for `mac`: its current one, else the requested address if free, else the next free. */
  private allocate(mac: string, requested: number): number | null {
    const have = this.leases.get(mac);
    if (have !== undefined) return have;
    const { poolStart, poolSize } = this.cfg;
    const taken = new Set(this.leases.values());
    const inPool = (ip: number): boolean => ip >= poolStart && ip < poolStart + poolSize;
    let ip: number | null = null;
    if (inPool(requested) && !taken.has(requested)) ip = requested;
    for (let i = 0; ip === null && i < poolSize; i++) if (!taken.has(poolStart + i)) ip = poolStart + i;
    if (ip === null) {
      this.log(`dhcp: no free address for ${mac} (the pool of ${poolSize} is taken)`);
      return null;
    }
    this.leases.set(mac, ip);
    return ip;
  }

  private reply(req: DhcpRequest, type: number, yiaddr: number): DhcpReply {
    const c = this.cfg;
    const opts: number[] = [OPT_MSG_TYPE, 1, type, OPT_SERVER_ID, 4, ...be32(c.serverIp)];
    if (type !== DHCPNAK) {
      if (type !== DHCPACK || yiaddr !== 0) opts.push(OPT_LEASE_TIME, 4, ...be32(c.leaseSeconds));
      opts.push(OPT_SUBNET, 4, ...be32(c.netmask));
      opts.push(OPT_BROADCAST, 4, ...be32((c.serverIp & c.netmask) | ~c.netmask));
      if (c.router !== null) opts.push(OPT_ROUTER, 4, ...be32(c.router));
      if (c.dns !== null) opts.push(OPT_DNS, 4, ...be32(c.dns));
    }
    opts.push(OPT_END);
    const data = new Uint8Array(Math.max(300, FIXED_LEN + 4 + opts.length)); // BOOTP's 300-byte minimum
    data[0] = 2; // BOOTREPLY
    data[1] = 1;
    data[2] = 6;
    writeU32BE(data, 4, req.xid);
    writeU16BE(data, 10, req.flags);
    writeU32BE(data, 12, req.ciaddr);
    writeU32BE(data, 16, yiaddr);
    writeU32BE(data, 20, c.serverIp);
    data.set(req.chaddr, 28);
    writeU32BE(data, FIXED_LEN, MAGIC);
    data.set(opts, FIXED_LEN + 4);
    // RFC 2131 4.1: to the client's address if it has one; broadcast if it asks or for a NAK;
    // otherwise unicast to the new address at its hardware address.
    if (type === DHCPNAK) return { data, dstIp: 0xffffffff, broadcast: true };
    if (req.ciaddr !== 0) return { data, dstIp: req.ciaddr, broadcast: false };
    if (req.flags & BROADCAST_FLAG) return { data, dstIp: 0xffffffff, broadcast: true };
    return { data, dstIp: yiaddr, broadcast: false };
  }
}

function be32(v: number): number[] {
  return [(v >>> 24) & 255, (v >>> 16) & 255, (v >>> 8) & 255, v & 255];
}
