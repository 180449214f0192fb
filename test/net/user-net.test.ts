// The user-mode network's services, seen from a guest (FakeGuest): ARP, ping to the gateway and
// DNS addresses, DHCP, DNS through the host resolver, UDP NAT and UDP forwards, restrict mode.

import { createSocket } from 'node:dgram';
import { createServer } from 'node:net';
import { hostname } from 'node:os';
import { afterEach, describe, expect, it } from 'vitest';
import { buildDnsAnswer, parseDnsQuery } from '../../src/net/dns.js';
import { buildArp, ETH_HLEN, IPV4_HLEN, parseArp, parseIp, readU16BE, readU32BE, TCP_SYN } from '../../src/net/packet.js';
import { UserNetwork } from '../../src/net/user-net.js';
import { DNS, FakeGuest, GATEWAY, GUEST_IP, GUEST_MAC, sleep } from './fake-guest.js';

const cleanups: (() => void)[] = [];
afterEach(() => { for (const c of cleanups.splice(0)) c(); });

function network(restrict = false): { net: UserNetwork; guest: FakeGuest; logs: string[] } {
  const logs: string[] = [];
  const net = new UserNetwork({ name: 'nic0', log: (m) => logs.push(m), restrict });
  const guest = new FakeGuest(net);
  cleanups.push(() => net.close());
  return { net, guest, logs };
}

/** A DHCP message from the guest (RFC 2131 2), type 1 DISCOVER or 3 REQUEST. */
function dhcpMessage(type: number, xid: number, mac: Uint8Array, requested = 0): Uint8Array {
  const m = new Uint8Array(300);
  m[0] = 1; m[1] = 1; m[2] = 6;
  m[4] = xid >>> 24; m[5] = (xid >>> 16) & 255; m[6] = (xid >>> 8) & 255; m[7] = xid & 255;
  m[10] = 0x80; // broadcast flag
  m.set(mac, 28);
  m.set([0x63, 0x82, 0x53, 0x63], 236);
  let o = 240;
  m.set([53, 1, type], o); o += 3;
  if (requested) { m.set([50, 4, requested >>> 24, (requested >>> 16) & 255, (requested >>> 8) & 255, requested & 255], o); o += 6; }
  m[o] = 255;
  return m;
}

function dhcpReply(d: { data: Uint8Array }): { type: number; yiaddr: number; options: Map<number, Uint8Array> } {
  const options = new Map<number, Uint8Array>();
  for (let i = 240; i < d.data.length && d.data[i] !== 255;) {
    if (d.data[i] === 0) { i++; continue; }
    options.set(d.data[i], d.data.slice(i + 2, i + 2 + d.data[i + 1]));
    i += 2 + d.data[i + 1];
  }
  return { type: options.get(53)![0], yiaddr: readU32BE(d.data, 16), options };
}

function dnsQuery(id: number, name: string, type: number): Uint8Array {
  const labels = name.split('.').flatMap((l) => [l.length, ...Buffer.from(l)]);
  return Uint8Array.from([id >> 8, id & 255, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, ...labels, 0, 0, type, 0, 1]);
}

describe('user-mode network services', () => {
  it('answers ARP for the gateway and DNS addresses (and only those) with its MAC', async () => {
    const { guest } = network();
    for (const target of [GATEWAY, DNS, parseIp('10.0.2.99')!]) {
      guest.send(buildArp(1, GUEST_MAC, GUEST_IP, new Uint8Array(6), target));
    }
    const replies = guest.take().map((d) => parseArp(d.frame));
    expect(replies).toHaveLength(2);
    for (const r of replies) {
      if (typeof r === 'string') throw new Error(r);
      expect(r.op).toBe(2);
      expect([...r.senderMac]).toEqual([0x52, 0x55, 10, 0, 2, 2]);
    }
  });

  it('answers ping to 10.0.2.2 and 10.0.2.3 (payload echoed), not to outside addresses', async () => {
    const { guest } = network();
    guest.ping(GATEWAY, 7, 1);
    guest.ping(DNS, 7, 2);
    guest.ping(parseIp('192.0.2.1')!, 7, 3);
    const r = guest.take();
    expect(r).toHaveLength(2);
    for (const d of r) {
      const o = ETH_HLEN + IPV4_HLEN;
      expect(d.frame[o]).toBe(0); // echo reply
      expect(readU16BE(d.frame, o + 4)).toBe(7);
      expect([...d.frame.subarray(o + 8, o + 16)]).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    }
    expect(r.map((d) => d.ip!.src)).toEqual([GATEWAY, DNS]);
  });

  it('DHCP: DISCOVER -> OFFER of 10.0.2.15 with mask, router, DNS, lease; REQUEST -> ACK; a second MAC gets 10.0.2.16', async () => {
    const { guest } = network();
    guest.udp(0xffffffff, 67, 68, dhcpMessage(1, 0x1234, GUEST_MAC), 0);
    const offer = dhcpReply(await guest.waitFor((d) => d.udp?.dstPort === 68));
    expect(offer.type).toBe(2);
    expect(offer.yiaddr).toBe(GUEST_IP);
    expect([...offer.options.get(1)!]).toEqual([255, 255, 255, 0]);
    expect([...offer.options.get(3)!]).toEqual([10, 0, 2, 2]);
    expect([...offer.options.get(6)!]).toEqual([10, 0, 2, 3]);
    expect(readU32BE(offer.options.get(51)!, 0)).toBe(86400);
    guest.udp(0xffffffff, 67, 68, dhcpMessage(3, 0x1235, GUEST_MAC, GUEST_IP), 0);
    const ack = dhcpReply(await guest.waitFor((d) => d.udp?.dstPort === 68));
    expect(ack).toMatchObject({ type: 5, yiaddr: GUEST_IP });
    // Asking for someone else's address is refused; another client gets the next one.
    const other = Uint8Array.from([0x52, 0x54, 0, 9, 9, 9]);
    guest.udp(0xffffffff, 67, 68, dhcpMessage(3, 0x1236, other, GUEST_IP), 0);
    expect(dhcpReply(await guest.waitFor((d) => d.udp?.dstPort === 68)).type).toBe(6); // NAK
    guest.udp(0xffffffff, 67, 68, dhcpMessage(1, 0x1237, other), 0);
    expect(dhcpReply(await guest.waitFor((d) => d.udp?.dstPort === 68)).yiaddr).toBe(parseIp('10.0.2.16'));
  });

  it('DNS at 10.0.2.3 answers localhost and the host\'s own name through the host resolver', async () => {
    const { guest } = network();
    guest.udp(DNS, 53, 5353, dnsQuery(0x4242, 'localhost', 1));
    const a = await guest.waitFor((d) => d.udp?.srcPort === 53, 5000, 'DNS answer');
    expect(a.ip!.src).toBe(DNS);
    expect(readU16BE(a.data, 0)).toBe(0x4242);
    expect(readU16BE(a.data, 2) & 0x800f).toBe(0x8000);   // a response, NOERROR
    expect(readU16BE(a.data, 6)).toBeGreaterThanOrEqual(1); // answers
    expect([...a.data.subarray(a.data.length - 4)]).toEqual([127, 0, 0, 1]);
    guest.udp(DNS, 53, 5353, dnsQuery(0x4243, hostname(), 1));
    const b = await guest.waitFor((d) => d.udp?.srcPort === 53, 5000, 'DNS answer for the host name');
    expect(readU16BE(b.data, 6)).toBeGreaterThanOrEqual(1);
    // AAAA for a name that exists: NOERROR (with or without addresses), never NXDOMAIN.
    guest.udp(DNS, 53, 5353, dnsQuery(0x4244, hostname(), 28));
    const c = await guest.waitFor((d) => d.udp?.srcPort === 53, 5000, 'AAAA answer');
    expect(readU16BE(c.data, 2) & 0x000f).toBe(0);
  });

  it('DNS wire format: one question only, opcode QUERY only, NXDOMAIN and TC encoded', () => {
    expect(parseDnsQuery(Uint8Array.from([0, 1, 1, 0, 0, 2, 0, 0, 0, 0, 0, 0]))).toBe(1);       // FORMERR
    expect(parseDnsQuery(Uint8Array.from([0, 1, 0x28, 0, 0, 1, 0, 0, 0, 0, 0, 0]))).toBe(4);    // NOTIMP (UPDATE)
    expect(parseDnsQuery(Uint8Array.from([0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 70]))).toBe(1);   // label too long
    const q = parseDnsQuery(dnsQuery(9, 'a.b', 28));
    if (q === null || typeof q === 'number') throw new Error('query not parsed');
    expect(q).toMatchObject({ id: 9, name: 'a.b', type: 28, qclass: 1 });
    const nx = buildDnsAnswer(9, q.flags, q, 3, []);
    expect(readU16BE(nx, 2) & 0x800f).toBe(0x8003);
    const many = buildDnsAnswer(9, q.flags, q, 0, Array.from({ length: 40 }, () => ({ type: 28, bytes: new Uint8Array(16) })));
    expect(many.length).toBeLessThanOrEqual(512);
    expect(readU16BE(many, 2) & 0x0200).toBe(0x0200);
  });

  it('UDP NAT: a datagram to 10.0.2.2:PORT reaches the host\'s 127.0.0.1:PORT and the answer comes back', async () => {
    const { guest, net } = network();
    const srv = createSocket('udp4');
    cleanups.push(() => srv.close());
    srv.on('message', (m, r) => srv.send(Buffer.concat([Buffer.from('echo:'), m]), r.port, r.address));
    await new Promise<void>((r) => srv.bind(0, '127.0.0.1', () => r()));
    const port = srv.address().port;
    guest.udp(GATEWAY, port, 6000, Buffer.from('ping over udp'));
    const d = await guest.waitFor((x) => x.udp?.dstPort === 6000, 5000, 'UDP answer');
    expect(d.ip!.src).toBe(GATEWAY);
    expect(d.udp!.srcPort).toBe(port);
    expect(Buffer.from(d.data).toString()).toBe('echo:ping over udp');
    expect(net.stats().udp).toBe(1);
  });

  it('UDP flows expire after 2 minutes idle (their host sockets closed); a flow in use stays', async () => {
    const { guest, net } = network();
    const srv = createSocket('udp4');
    cleanups.push(() => srv.close());
    srv.on('message', (m, r) => srv.send(m, r.port, r.address));
    await new Promise<void>((r) => srv.bind(0, '127.0.0.1', () => r()));
    const port = srv.address().port;
    // The network's clock, moved on by the test (its sweep runs on the real timer).
    let skew = 0;
    net.now = () => Date.now() + skew;
    guest.udp(GATEWAY, port, 6001, Buffer.from('idle'));
    guest.udp(GATEWAY, port, 6002, Buffer.from('busy'));
    await guest.waitFor((x) => x.udp?.dstPort === 6001, 5000, 'answer 1');
    await guest.waitFor((x) => x.udp?.dstPort === 6002, 5000, 'answer 2');
    expect(net.stats().udp).toBe(2);
    skew = 100_000;
    guest.udp(GATEWAY, port, 6002, Buffer.from('still busy'));
    await guest.waitFor((x) => x.udp?.dstPort === 6002, 5000, 'answer 3');
    skew = 100_000 + 60_000; // 160 s after the first datagram, 60 s after the busy flow's last
    await sleep(300);
    expect(net.stats().udp).toBe(1);
    // The expired flow's host socket is gone: an answer to it now would not reach the guest,
    // and a new datagram from that guest port makes a new flow.
    guest.udp(GATEWAY, port, 6001, Buffer.from('again'));
    await guest.waitFor((x) => x.udp?.dstPort === 6001, 5000, 'answer on a new flow');
    expect(net.stats().udp).toBe(2);
  });

  it('UDP forward: a host datagram to the forward reaches the guest from 10.0.2.2, and the guest\'s answer returns', async () => {
    const { guest, net } = network();
    const fw = await net.addForward({ proto: 'udp', hostAddress: '127.0.0.1', hostPort: 0, guestPort: 5353 });
    const client = createSocket('udp4');
    cleanups.push(() => client.close());
    const answer = new Promise<string>((r) => client.on('message', (m) => r(m.toString())));
    client.send('question', fw.hostPort, '127.0.0.1');
    const d = await guest.waitFor((x) => x.udp?.dstPort === 5353, 5000, 'forwarded datagram');
    expect(d.ip!.dst).toBe(GUEST_IP);
    expect(Buffer.from(d.data).toString()).toBe('question');
    guest.udp(d.ip!.src, d.udp!.srcPort, 5353, Buffer.from('answer'));
    expect(await answer).toBe('answer');
  });

  it('restrict: DHCP, ping to the gateway and forwards work; connections and datagrams to the outside (the host too) are dropped', async () => {
    const { guest, net } = network(true);
    let connected = false;
    const srv = createServer(() => { connected = true; });
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
    cleanups.push(() => srv.close());
    const port = (srv.address() as { port: number }).port;
    guest.udp(0xffffffff, 67, 68, dhcpMessage(1, 1, GUEST_MAC), 0);
    expect(dhcpReply(await guest.waitFor((d) => d.udp?.dstPort === 68)).yiaddr).toBe(GUEST_IP);
    guest.ping(GATEWAY, 1, 1);
    await guest.waitFor((d) => d.ip?.protocol === 1, 2000, 'echo reply');
    guest.tcp({ dst: GATEWAY, dport: port, sport: 7000, seq: 1, flags: TCP_SYN });
    guest.udp(GATEWAY, port, 7001, Buffer.from('x'));
    guest.udp(DNS, 53, 7002, dnsQuery(1, 'localhost', 1));
    await sleep(300);
    expect(guest.take()).toEqual([]);
    expect(connected).toBe(false);
    expect(net.stats()).toMatchObject({ tcp: 0, udp: 0 });
    const fw = await net.addForward({ proto: 'tcp', hostAddress: '127.0.0.1', hostPort: 0, guestPort: 80 });
    const { connect } = await import('node:net');
    const c = connect(fw.hostPort, '127.0.0.1');
    c.on('error', () => {});
    cleanups.push(() => c.destroy());
    await guest.waitFor((d) => d.tcp !== null && d.tcp.dstPort === 80, 5000, 'forwarded SYN');
  });
});
