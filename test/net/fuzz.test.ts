// Hostile frames against the user-mode network: random and mutated frames must never throw,
// hang or make it hold more than its limits; floods of SYNs, UDP flows and frames the guest
// never takes stop at the per-network limits, with a log line; the network keeps working.

import { createServer, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { finishSum, sumBytes } from '../../src/net/checksum.js';
import { parseDhcp } from '../../src/net/dhcp.js';
import { parseDnsQuery } from '../../src/net/dns.js';
import {
  buildArp, buildTcp, buildUdp, ETH_HLEN, parseArp, parseIpv4, parseTcp, parseUdp, TCP_ACK, TCP_RST, TCP_SYN, writeU16BE,
  type Ipv4Header, type TcpHeader, type UdpHeader,
} from '../../src/net/packet.js';
import { UserNetwork, type NetLimits } from '../../src/net/user-net.js';
import { DNS, FakeGuest, GATEWAY, GUEST_IP, GUEST_MAC, GW_MAC, sleep } from './fake-guest.js';

const cleanups: (() => void)[] = [];
afterEach(() => { for (const c of cleanups.splice(0)) c(); });

function network(limits: Partial<NetLimits> = {}, restrict = false): { net: UserNetwork; guest: FakeGuest; logs: string[] } {
  const logs: string[] = [];
  const net = new UserNetwork({ name: 'nic0', log: (m) => logs.push(m), limits, restrict });
  const guest = new FakeGuest(net);
  cleanups.push(() => net.close());
  return { net, guest, logs };
}

let seed = 0x9e3779b9;
function rnd(n: number): number {
  seed ^= seed << 13; seed >>>= 0;
  seed ^= seed >>> 17;
  seed ^= seed << 5; seed >>>= 0;
  return seed % n;
}

/** A few valid frames a guest sends, as material for mutation. */
function samples(): Uint8Array[] {
  const dhcp = new Uint8Array(300);
  dhcp.set([1, 1, 6], 0);
  dhcp.set(GUEST_MAC, 28);
  dhcp.set([0x63, 0x82, 0x53, 0x63, 53, 1, 1, 255], 236);
  const dns = Uint8Array.from([0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 9, ...Buffer.from('localhost'), 0, 0, 1, 0, 1]);
  const ping = buildUdp(GW_MAC, GUEST_MAC, GUEST_IP, 1, GATEWAY, 2, new Uint8Array(8), null);
  ping[ETH_HLEN + 9] = 1;
  ping[ETH_HLEN + 20] = 8;
  return [
    buildArp(1, GUEST_MAC, GUEST_IP, new Uint8Array(6), GATEWAY),
    buildUdp(GW_MAC, GUEST_MAC, 0, 68, 0xffffffff, 67, dhcp, null),
    buildUdp(GW_MAC, GUEST_MAC, GUEST_IP, 5000, DNS, 53, dns, null),
    buildTcp({ dstMac: GW_MAC, srcMac: GUEST_MAC, src: GUEST_IP, srcPort: 40000, dst: GATEWAY, dstPort: 1, seq: 1, ack: 0, flags: TCP_SYN, window: 100, mss: 1460, wscale: 7 }),
    buildTcp({ dstMac: GW_MAC, srcMac: GUEST_MAC, src: GUEST_IP, srcPort: 40000, dst: GATEWAY, dstPort: 1, seq: 1, ack: 5, flags: 0x10, window: 100 }, 10, (f, at) => f.fill(7, at)),
    ping,
  ];
}

function fixIpChecksum(f: Uint8Array): void {
  if (f.length < ETH_HLEN + 20) return;
  const hl = Math.max(20, Math.min((f[ETH_HLEN] & 15) * 4, f.length - ETH_HLEN));
  writeU16BE(f, ETH_HLEN + 10, 0);
  writeU16BE(f, ETH_HLEN + 10, finishSum(sumBytes(f, ETH_HLEN, ETH_HLEN + hl)));
}

describe('hostile frames', () => {
  it('parsers: random bytes never throw and every offset they return lies inside the frame', () => {
    const ip: Ipv4Header = { src: 0, dst: 0, protocol: 0, l4Start: 0, l4End: 0 };
    const t = {} as TcpHeader;
    const u = {} as UdpHeader;
    for (let i = 0; i < 10_000; i++) {
      const f = Uint8Array.from({ length: rnd(200) }, () => rnd(256));
      if (f.length > 14) { f[12] = 8; f[13] = rnd(4) === 0 ? 6 : 0; f[14] = 0x45 + rnd(3); }
      expect(() => parseArp(f)).not.toThrow();
      if (parseIpv4(f, ip) === null) {
        expect(ip.l4Start).toBeGreaterThanOrEqual(34);
        expect(ip.l4End).toBeLessThanOrEqual(f.length);
        expect(ip.l4Start).toBeLessThanOrEqual(ip.l4End);
        if (parseTcp(f, ip, t) === null) expect(t.dataStart).toBeLessThanOrEqual(t.dataEnd);
        if (parseUdp(f, ip, u) === null) expect(u.dataEnd).toBeLessThanOrEqual(ip.l4End);
      }
      expect(() => parseDhcp(f)).not.toThrow();
      expect(() => parseDnsQuery(f)).not.toThrow();
    }
  });

  // restrict: mutated ports must not make the stack connect to whatever listens on this host's
  // loopback; the frames are parsed all the same (connections are fuzzed below, to our server).
  it('the network: 30 000 mutated frames (bits flipped, truncated, lengths lied about) never throw; it still answers afterwards', async () => {
    const { net, guest } = network({}, true);
    const base = samples();
    const t0 = Date.now();
    for (let i = 0; i < 30_000; i++) {
      const src = base[rnd(base.length)];
      let f = src.slice();
      const kind = rnd(5);
      if (kind === 0) f = f.subarray(0, rnd(f.length + 1));                         // truncated
      else if (kind === 1) for (let k = 0; k < 1 + rnd(4); k++) f[rnd(f.length)] = rnd(256); // bytes changed
      else if (kind === 2) { writeU16BE(f, ETH_HLEN + 2, rnd(65536)); }           // IP total length
      else if (kind === 3) { f[ETH_HLEN] = 0x40 | rnd(16); }                       // IP header length
      else { const g = new Uint8Array(f.length + rnd(100)); g.set(f); f = g; }     // trailing junk
      if (rnd(2) === 0) fixIpChecksum(f);                                           // get past the IP check
      expect(() => guest.send(f)).not.toThrow();
    }
    expect(Date.now() - t0).toBeLessThan(30_000);
    const s = net.stats();
    expect(s.tcp).toBeLessThanOrEqual(512);
    expect(s.udp).toBeLessThanOrEqual(256);
    guest.take();
    guest.ping(GATEWAY, 1, 1);
    expect(guest.take().length).toBe(1);
  });

  it('segments with mutated sequence numbers, flags, windows, options and payload inside connections to our server never throw', async () => {
    const received: number[] = [];
    const server = createServer((s) => { s.on('error', () => {}); s.on('data', (b) => received.push(b.length)); s.write('x'.repeat(5000)); });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    cleanups.push(() => server.close());
    const port = (server.address() as { port: number }).port;
    const { net, guest } = network();
    for (let c = 0; c < 20; c++) {
      const sport = 41000 + c;
      guest.tcp({ dst: GATEWAY, dport: port, sport, seq: 100, flags: TCP_SYN, mss: 1000 + c, wscale: c % 16 });
      const synAck = await guest.waitFor((d) => d.tcp !== null && d.tcp.dstPort === sport && (d.tcp.flags & 0x12) === 0x12, 5000, 'SYN-ACK');
      const ack = (synAck.tcp!.seq + 1) >>> 0;
      for (let i = 0; i < 300; i++) {
        const len = rnd(3) === 0 ? 0 : rnd(3000);
        const seg = buildTcp({ dstMac: GW_MAC, srcMac: GUEST_MAC, src: GUEST_IP, srcPort: sport, dst: GATEWAY, dstPort: port,
          seq: (101 + rnd(4000) - 1000) >>> 0, ack: (ack + rnd(6000) - 1000) >>> 0, flags: rnd(64), window: rnd(65536), mss: rnd(2) ? rnd(65536) : undefined, wscale: rnd(2) ? rnd(256) : undefined },
        len, (f, at) => f.fill(rnd(256), at));
        expect(() => guest.send(seg)).not.toThrow();
      }
      guest.take();
    }
    await sleep(200);
    expect(net.stats().tcp).toBeLessThanOrEqual(20);
  });

  it('a SYN flood stops at the connection limits with a log line; the host sees no more connections than that', async () => {
    const held: Socket[] = [];
    const server = createServer((s) => { s.on('error', () => {}); held.push(s); });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    cleanups.push(() => { for (const s of held) s.destroy(); server.close(); });
    const port = (server.address() as { port: number }).port;
    const { net, guest, logs } = network({ tcpConnections: 16, tcpConnecting: 8 });
    for (let i = 0; i < 2000; i++) guest.tcp({ dst: GATEWAY, dport: port, sport: 10000 + i, seq: i, flags: TCP_SYN });
    expect(net.stats().tcp).toBeLessThanOrEqual(16);
    await sleep(300);
    expect(net.stats().tcp).toBeLessThanOrEqual(16);
    expect(logs.join('\n')).toMatch(/(16 TCP connections open|8 TCP connections being set up), the limit/);
    expect(held.length).toBeLessThanOrEqual(16);
  });

  it('thousands of UDP flows stop at the limit with a log line', async () => {
    const { net, guest, logs } = network({ udpFlows: 32 });
    for (let i = 0; i < 3000; i++) guest.udp(GATEWAY, 20000 + (i % 1000), 30000 + i, new Uint8Array(10));
    expect(net.stats().udp).toBe(32);
    expect(logs.join('\n')).toMatch(/32 UDP flows open, the limit/);
  });

  it('a guest that never takes its frames: the queue stops at its limit with a log line (bounded memory)', async () => {
    const { net, guest, logs } = network({ queuedFrames: 100 });
    guest.accepting = false;
    for (let i = 0; i < 10_000; i++) guest.send(buildArp(1, GUEST_MAC, GUEST_IP, new Uint8Array(6), GATEWAY));
    expect(net.stats().queued).toBe(100);
    expect(logs.join('\n')).toMatch(/100 frames .* waiting for the guest's receive buffers, the limit/);
    guest.accepting = true;
    net.rxSpace();
    expect(guest.take()).toHaveLength(100);
    expect(net.stats()).toMatchObject({ queued: 0, bufferedBytes: 0 });
  });

  it('fragments, bad checksums and bad lengths are dropped, never answered', () => {
    const { guest } = network();
    const [arp, , , syn] = samples();
    void arp;
    const frag = syn.slice(); writeU16BE(frag, ETH_HLEN + 6, 0x2000); fixIpChecksum(frag); // MF
    const badIp = syn.slice(); badIp[ETH_HLEN + 10] ^= 0xff;
    const badTcp = syn.slice(); badTcp[ETH_HLEN + 20 + 16] ^= 0xff;
    const longer = syn.slice(); writeU16BE(longer, ETH_HLEN + 2, 1500); fixIpChecksum(longer);
    for (const f of [frag, badIp, badTcp, longer]) guest.send(f);
    expect(guest.take()).toEqual([]);
  });
});

describe('hostile connections', () => {
  /** A host server on 127.0.0.1 whose connections `onConn` serves; closed after the test. */
  async function hostServer(onConn: (s: Socket) => void): Promise<number> {
    const socks: Socket[] = [];
    const server = createServer({ allowHalfOpen: true }, (s) => { s.on('error', () => {}); socks.push(s); onConn(s); });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    cleanups.push(() => { for (const s of socks) s.destroy(); server.close(); });
    return (server.address() as { port: number }).port;
  }

  /** The guest's side of a handshake from `sport` to 10.0.2.2:`port`; the sequence numbers. */
  async function open(guest: FakeGuest, port: number, sport: number, window: number): Promise<{ seq: number; ack: number }> {
    guest.tcp({ dst: GATEWAY, dport: port, sport, seq: 1000, flags: TCP_SYN, window, mss: 1460 });
    const synAck = await guest.waitFor((d) => d.tcp !== null && d.tcp.dstPort === sport && (d.tcp.flags & 0x12) === 0x12, 5000, 'SYN-ACK');
    const ack = (synAck.tcp!.seq + 1) >>> 0;
    guest.tcp({ dst: GATEWAY, dport: port, sport, seq: 1001, ack, flags: TCP_ACK, window });
    return { seq: 1001, ack };
  }

  it('zero windows held forever on many connections: what is buffered stops at the byte budget (logged), the connections live on, and another connection still carries data', async () => {
    const budget = 2 << 20;
    const { net, guest, logs } = network({ bufferedBytes: budget });
    const big = Buffer.alloc(4 << 20, 0x61);
    const port = await hostServer((s) => { s.write(big); });
    const n = 16;
    for (let i = 0; i < n; i++) await open(guest, port, 42000 + i, 0);
    // The guest answers every probe with a zero window, for 3 s (as long as the test cares to).
    const until = Date.now() + 3000;
    let probes = 0;
    while (Date.now() < until) {
      for (const d of guest.take()) {
        if (d.tcp === null || d.tcp.dstPort < 42000 || d.tcp.dstPort >= 42000 + n) continue;
        expect(d.data.length).toBeLessThanOrEqual(1); // nothing beyond a one-byte probe
        probes++;
        guest.tcp({ dst: GATEWAY, dport: port, sport: d.tcp.dstPort, seq: 1001, ack: (d.tcp.seq + (d.data.length > 0 ? 0 : 1)) >>> 0, flags: TCP_ACK, window: 0 });
      }
      // Beyond the budget: what each socket had read when it was paused (a read or two).
      expect(net.stats().bufferedBytes).toBeLessThanOrEqual(budget + n * 192 * 1024);
      await sleep(20);
    }
    expect(logs.join('\n')).toMatch(/buffers: \d+ bytes buffered, at the limit of 2097152; holding senders back/);
    expect(net.stats().tcp).toBe(n);
    // Probes back off: no flood toward the guest.
    expect(probes).toBeLessThan(n * 20);
    // A connection of a guest that reads still gets its data, budget or no budget.
    const want = Buffer.alloc(200_000, 0x62);
    const port2 = await hostServer((s) => { s.end(want); });
    const sport = 43000;
    let { ack } = await open(guest, port2, sport, 65535);
    let got = 0;
    const deadline = Date.now() + 20_000;
    while (got < want.length && Date.now() < deadline) {
      for (const d of guest.take()) {
        if (d.tcp === null || d.tcp.dstPort !== sport || d.data.length === 0 || d.tcp.seq !== ack) continue;
        got += d.data.length;
        ack = (ack + d.data.length) >>> 0;
        guest.tcp({ dst: GATEWAY, dport: port2, sport, seq: 1001, ack, flags: TCP_ACK, window: 65535 });
      }
      await sleep(5);
    }
    expect(got).toBe(want.length);
  });

  it('a host peer that stops reading closes only its own connection\'s window; a connection beside it carries 1 MiB', async () => {
    const { guest } = network();
    const stalled = await hostServer((s) => s.pause());
    const { seq, ack } = await open(guest, stalled, 44000, 65535);
    let next = seq;
    let window = -1;
    for (let i = 0; i < 2000 && window !== 0; i++) {
      guest.tcp({ dst: GATEWAY, dport: stalled, sport: 44000, seq: next, ack, flags: TCP_ACK, data: Buffer.alloc(60000, 1) });
      await sleep(1);
      for (const d of guest.take()) if (d.tcp && d.tcp.dstPort === 44000) { next = d.tcp.ack; window = d.tcp.window; }
    }
    expect(window).toBe(0);
    let received = 0;
    const ok = await hostServer((s) => s.on('data', (b: Buffer) => { received += b.length; }));
    const c = await open(guest, ok, 44001, 65535);
    let sent = 0;
    let wnd = 65535;
    const deadline = Date.now() + 20_000;
    while (sent < (1 << 20) && Date.now() < deadline) {
      const len = Math.min(wnd, 1460, (1 << 20) - sent);
      if (len > 0) guest.tcp({ dst: GATEWAY, dport: ok, sport: 44001, seq: (c.seq + sent) >>> 0, ack: c.ack, flags: TCP_ACK, data: Buffer.alloc(len, 2) });
      await sleep(0);
      for (const d of guest.take()) {
        if (!d.tcp || d.tcp.dstPort !== 44001) continue;
        sent = (d.tcp.ack - c.seq) >>> 0;
        wnd = d.tcp.window << 6;
      }
    }
    expect(sent).toBe(1 << 20);
    await sleep(200);
    expect(received).toBe(1 << 20);
  });

  it('thousands of connections to a listening host: they stop at the limit with a log line, and closing them frees the room', async () => {
    const port = await hostServer(() => {});
    const { net, guest, logs } = network({ tcpConnections: 64, tcpConnecting: 64 });
    for (let i = 0; i < 3000; i++) guest.tcp({ dst: GATEWAY, dport: port, sport: 20000 + i, seq: 1000, flags: TCP_SYN, mss: 1460 });
    // The handshakes complete on the host; the guest acknowledges each SYN-ACK.
    const deadline = Date.now() + 10_000;
    let established = 0;
    while (established < 64 && Date.now() < deadline) {
      for (const d of guest.take()) {
        if (d.tcp && (d.tcp.flags & 0x12) === 0x12) {
          established++;
          guest.tcp({ dst: GATEWAY, dport: port, sport: d.tcp.dstPort, seq: 1001, ack: (d.tcp.seq + 1) >>> 0, flags: TCP_ACK });
        }
      }
      await sleep(5);
    }
    expect(established).toBe(64);
    expect(net.stats().tcp).toBe(64);
    expect(logs.join('\n')).toMatch(/64 TCP connections open, the limit; refusing new ones/);
    // The guest resets them all: the room comes back for a new one.
    for (let i = 0; i < 3000; i++) guest.tcp({ dst: GATEWAY, dport: port, sport: 20000 + i, seq: 1001, flags: TCP_RST });
    await sleep(300); // closed connections are forgotten at the next tick
    expect(net.stats().tcp).toBe(0);
    guest.take();
    guest.tcp({ dst: GATEWAY, dport: port, sport: 30000, seq: 5, flags: TCP_SYN, mss: 1460 });
    await guest.waitFor((d) => d.tcp !== null && d.tcp.dstPort === 30000 && (d.tcp.flags & 0x12) === 0x12, 5000, 'SYN-ACK after the flood');
  });
});
