// TCP through the user-mode network, guest side played by FakeGuest, host side real sockets on
// 127.0.0.1 (reached as 10.0.2.2): handshakes, data both ways with windows and flow control,
// retransmission, FIN and RST both ways, port forwards.

import { createServer, connect, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN } from '../../src/net/packet.js';
import { UserNetwork } from '../../src/net/user-net.js';
import { DELACK_MS, OUR_MSS, RCV_BUF, SND_BUF } from '../../src/net/tcp.js';
import { FakeGuest, GATEWAY, GUEST_IP, sleep, type Delivered } from './fake-guest.js';

const cleanups: (() => void)[] = [];
afterEach(() => { for (const c of cleanups.splice(0)) c(); });

function network(opts: Partial<ConstructorParameters<typeof UserNetwork>[0]> = {}): { net: UserNetwork; guest: FakeGuest; logs: string[] } {
  const logs: string[] = [];
  const net = new UserNetwork({ name: 'nic0', log: (m) => logs.push(m), ...opts });
  const guest = new FakeGuest(net);
  cleanups.push(() => net.close());
  return { net, guest, logs };
}

async function hostServer(onConn: (s: Socket) => void): Promise<{ server: Server; port: number }> {
  const server = createServer({ allowHalfOpen: true }, (s) => { s.on('error', () => {}); onConn(s); });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  cleanups.push(() => server.close());
  return { server, port: (server.address() as { port: number }).port };
}

const isTcp = (flags: number) => (d: Delivered): boolean => d.tcp !== null && (d.tcp.flags & flags) === flags;

/** Opens a connection from the guest's port `sport` to 10.0.2.2:port; returns its sequence state. */
async function open(guest: FakeGuest, port: number, sport: number, opts: { window?: number; wscale?: number; mss?: number } = {}):
  Promise<{ seq: number; ack: number; synAck: Delivered }> {
  const iss = 1000;
  guest.tcp({ dst: GATEWAY, dport: port, sport, seq: iss, flags: TCP_SYN, window: opts.window ?? 65535, mss: opts.mss ?? 1460, wscale: opts.wscale });
  const synAck = await guest.waitFor(isTcp(TCP_SYN | TCP_ACK), 5000, 'SYN-ACK');
  expect(synAck.tcp!.ack).toBe(iss + 1);
  const seq = iss + 1;
  const ack = (synAck.tcp!.seq + 1) >>> 0;
  guest.tcp({ dst: GATEWAY, dport: port, sport, seq, ack, flags: TCP_ACK, window: opts.window ?? 65535 });
  return { seq, ack, synAck };
}

/** Collects data segments for (sport), acknowledging each as a guest would, until `n` bytes came. */
async function receive(guest: FakeGuest, port: number, sport: number, seq: number, n: number, ack0: number, window = 65535): Promise<Buffer> {
  const parts: Buffer[] = [];
  let ack = ack0;
  let got = 0;
  const deadline = Date.now() + 20_000;
  while (got < n) {
    if (Date.now() > deadline) throw new Error(`received ${got} of ${n} bytes`);
    for (const d of guest.take()) {
      if (!d.tcp || d.tcp.dstPort !== sport) continue;
      if (d.data.length > 0 && d.tcp.seq === ack) {
        parts.push(Buffer.from(d.data));
        got += d.data.length;
        ack = (ack + d.data.length) >>> 0;
      }
      guest.tcp({ dst: GATEWAY, dport: port, sport, seq, ack, flags: TCP_ACK, window });
    }
    await sleep(2);
  }
  return Buffer.concat(parts);
}

describe('TCP through the user-mode network', () => {
  it('connects to the host through 10.0.2.2, announces MSS and window scale, carries data both ways, closes with FINs', async () => {
    const { guest, net } = network();
    let host!: Socket;
    const fromGuest: Buffer[] = [];
    let resolveEnd!: () => void;
    const ended = new Promise<void>((r) => { resolveEnd = r; });
    const { port } = await hostServer((s) => { host = s; s.on('data', (b) => fromGuest.push(b)); s.on('end', () => resolveEnd()); });
    const { seq, ack, synAck } = await open(guest, port, 40000, { wscale: 7 });
    expect(synAck.tcp!.mss).toBe(OUR_MSS);
    expect(synAck.tcp!.wscale).toBe(6);
    expect(synAck.ip!.src).toBe(GATEWAY);
    guest.tcp({ dst: GATEWAY, dport: port, sport: 40000, seq, ack, flags: TCP_ACK | TCP_PSH, data: Buffer.from('hello host') });
    const a = await guest.waitFor((d) => d.tcp !== null && d.tcp.ack === seq + 10, 5000, 'ACK of the data');
    expect(a.tcp!.window << 6).toBeGreaterThan(60_000);
    await sleep(50);
    expect(Buffer.concat(fromGuest).toString()).toBe('hello host');
    host.write('hello guest');
    const got = await receive(guest, port, 40000, seq + 10, 11, ack);
    expect(got.toString()).toBe('hello guest');
    // The guest closes first; the host sees the end, closes too; the guest gets its FIN.
    guest.tcp({ dst: GATEWAY, dport: port, sport: 40000, seq: seq + 10, ack: ack + 11, flags: TCP_FIN | TCP_ACK });
    await ended;
    host.end();
    const fin = await guest.waitFor(isTcp(TCP_FIN), 5000, 'FIN from the host side');
    expect(fin.tcp!.seq).toBe(ack + 11);
    guest.tcp({ dst: GATEWAY, dport: port, sport: 40000, seq: seq + 11, ack: ack + 12, flags: TCP_ACK });
    await sleep(50);
    expect(net.stats().tcp).toBeLessThanOrEqual(1); // lingering for a retransmitted FIN at most
  });

  it('delayed ACK: a small segment is acknowledged after DELACK_MS (or with data), two full-sized ones at once, a duplicate at once', async () => {
    const { guest } = network();
    let host!: Socket;
    const { port } = await hostServer((s) => { host = s; });
    const { seq, ack } = await open(guest, port, 40005);
    const acks = (): Delivered[] => guest.take().filter((d) => d.tcp !== null && d.tcp.dstPort === 40005);
    // A 1 KiB write: no ACK at the end of the burst; one within DELACK_MS (the guest's Nagle
    // algorithm holds its next small write back meanwhile).
    guest.tcp({ dst: GATEWAY, dport: port, sport: 40005, seq, ack, flags: TCP_ACK | TCP_PSH, data: Buffer.alloc(1024, 1) });
    expect(acks()).toEqual([]);
    const late = await guest.waitFor((d) => d.tcp !== null && d.tcp.ack === seq + 1024, DELACK_MS * 20, 'the delayed ACK');
    expect(late.data.length).toBe(0);
    // Two full-sized segments in one burst: acknowledged at once.
    guest.tcp({ dst: GATEWAY, dport: port, sport: 40005, seq: seq + 1024, ack, flags: TCP_ACK, data: Buffer.alloc(OUR_MSS, 2) });
    guest.tcp({ dst: GATEWAY, dport: port, sport: 40005, seq: seq + 1024 + OUR_MSS, ack, flags: TCP_ACK, data: Buffer.alloc(OUR_MSS, 3) });
    expect(acks().map((d) => d.tcp!.ack)).toContain(seq + 1024 + 2 * OUR_MSS);
    // A segment it already acknowledged (the guest missed our ACK): acknowledged again at once.
    guest.tcp({ dst: GATEWAY, dport: port, sport: 40005, seq, ack, flags: TCP_ACK, data: Buffer.alloc(1024, 1) });
    expect(acks().map((d) => d.tcp!.ack)).toContain(seq + 1024 + 2 * OUR_MSS);
    // A small segment the host answers: the answer acknowledges it (riding on it when it comes
    // within DELACK_MS).
    host.once('data', () => host.write('answer'));
    const next = seq + 1024 + 2 * OUR_MSS;
    guest.tcp({ dst: GATEWAY, dport: port, sport: 40005, seq: next, ack, flags: TCP_ACK | TCP_PSH, data: Buffer.from('question') });
    const answer = await guest.waitFor((d) => d.data.length > 0, DELACK_MS * 20, 'the answer');
    expect(answer.tcp!.ack).toBe(next + 8);
    expect(Buffer.from(answer.data).toString()).toBe('answer');
  });

  it('a closed host port answers the SYN with a reset (connection refused)', async () => {
    const { guest } = network();
    const { server, port } = await hostServer(() => {});
    await new Promise<void>((r) => server.close(() => r()));
    guest.tcp({ dst: GATEWAY, dport: port, sport: 40001, seq: 5000, flags: TCP_SYN });
    const rst = await guest.waitFor(isTcp(TCP_RST), 5000, 'RST');
    expect(rst.tcp!.flags & TCP_ACK).toBe(TCP_ACK);
    expect(rst.tcp!.ack).toBe(5001);
  });

  it('a segment for no connection gets a reset; a local address nobody serves refuses', async () => {
    const { guest } = network();
    guest.tcp({ dst: GATEWAY, dport: 9, sport: 40002, seq: 1, ack: 777, flags: TCP_ACK });
    const r1 = await guest.waitFor(isTcp(TCP_RST));
    expect(r1.tcp!.seq).toBe(777);
    guest.tcp({ dst: GATEWAY + 50, dport: 80, sport: 40003, seq: 1, flags: TCP_SYN });
    expect((await guest.waitFor(isTcp(TCP_RST))).tcp!.ack).toBe(2);
  });

  it('host -> guest: 2 MiB arrive whole and in order, never beyond the guest window, and survive lost and refused deliveries', async () => {
    const { guest } = network();
    const payload = Buffer.alloc(2 * 1024 * 1024);
    for (let i = 0; i < payload.length; i++) payload[i] = (i * 31 + (i >> 9)) & 0xff;
    const { port } = await hostServer((s) => s.end(payload));
    const window = 20000;
    const { seq, ack } = await open(guest, port, 40010, { window });
    let ackNo = ack;
    let maxEnd = 0;
    const parts: Buffer[] = [];
    let got = 0;
    let step = 0;
    const deadline = Date.now() + 30_000;
    while (got < payload.length) {
      expect(Date.now()).toBeLessThan(deadline);
      step++;
      // Now and then the ring is full for a while, or a frame is lost in the guest.
      guest.accepting = step % 7 !== 0;
      if (step % 41 === 0) guest.loseNext = 1;
      for (const d of guest.take()) {
        if (!d.tcp || d.data.length === 0) continue;
        const end = ((d.tcp.seq - ack) >>> 0) + d.data.length;
        maxEnd = Math.max(maxEnd, end);
        // Never beyond what the guest's window allowed (window is not scaled: no wscale offered).
        expect(end).toBeLessThanOrEqual(((ackNo - ack) >>> 0) + window);
        if (d.tcp.seq === ackNo) {
          parts.push(Buffer.from(d.data));
          got += d.data.length;
          ackNo = (ackNo + d.data.length) >>> 0;
        }
      }
      guest.accepting = true;
      guest.tcp({ dst: GATEWAY, dport: port, sport: 40010, seq, ack: ackNo, flags: TCP_ACK, window });
      await sleep(1);
    }
    expect(Buffer.concat(parts).equals(payload)).toBe(true);
    await guest.waitFor(isTcp(TCP_FIN), 5000, 'FIN after the data');
  }, 40_000);

  it('host -> guest with TSO: segments up to 64 KiB marked with the MSS and a partial checksum', async () => {
    const { guest } = network();
    guest.rxTso4 = true;
    guest.rxCsumOffload = true;
    const payload = Buffer.alloc(300_000, 7);
    const { port } = await hostServer((s) => s.end(payload));
    const { seq, ack } = await open(guest, port, 40011, { wscale: 7, mss: 1400 });
    const big = await guest.waitFor((d) => d.data.length > 1400, 5000, 'a TSO frame');
    expect(big.data.length).toBeLessThanOrEqual(64000);
    expect(big.offload).toMatchObject({ flags: 1, gsoType: 1, gsoSize: 1400, csumStart: 34, csumOffset: 16, hdrLen: 54 });
    guest.inbox.unshift(big);
    const got = await receive(guest, port, 40011, seq, payload.length, ack, 65535);
    expect(got.equals(payload)).toBe(true);
  });

  it('guest -> host flow control: when the host does not read, the window closes and nothing more is taken', async () => {
    const { guest, net } = network();
    let host!: Socket;
    const { port } = await hostServer((s) => { host = s; s.pause(); });
    const { seq, ack } = await open(guest, port, 40020, { wscale: 7 });
    let next = seq;
    let lastWindow = -1;
    // Segments as large as a TSO guest sends, until the stack stops accepting (window 0). The
    // host kernel's socket buffers take some megabytes first.
    for (let i = 0; i < 2000 && lastWindow !== 0; i++) {
      const room = lastWindow < 0 ? 60000 : Math.min(60000, lastWindow << 6);
      if (room > 0) guest.tcp({ dst: GATEWAY, dport: port, sport: 40020, seq: next, ack, flags: TCP_ACK, data: Buffer.alloc(room, i & 255) });
      await sleep(1);
      for (const d of guest.take()) if (d.tcp) { next = d.tcp.ack; lastWindow = d.tcp.window; }
    }
    expect(lastWindow).toBe(0);
    const accepted = (next - seq) >>> 0;
    // What was taken is bounded by our receive buffer plus the host kernel's socket buffers.
    expect(accepted).toBeGreaterThan(RCV_BUF / 2);
    expect(net.stats().bufferedBytes).toBeLessThanOrEqual(RCV_BUF + SND_BUF);
    // The host reads: the window opens again, and everything arrives in order.
    let read = 0;
    host.on('data', (b) => { read += b.length; });
    host.resume();
    const update = await guest.waitFor((d) => d.tcp !== null && d.tcp.window > 0, 10_000, 'window update');
    expect(update.tcp!.ack).toBe(next);
    await sleep(100);
    expect(read).toBe(accepted);
  });

  it('retransmits what the guest did not acknowledge after the retransmission timeout', async () => {
    const { guest } = network();
    const { port } = await hostServer((s) => s.write('data that gets lost'));
    const { ack } = await open(guest, port, 40030);
    const first = await guest.waitFor((d) => d.data.length > 0, 5000, 'data');
    expect(first.tcp!.seq).toBe(ack);
    // Never acknowledged: it comes again after the retransmission timeout (1 s initially).
    const t0 = Date.now();
    const again = await guest.waitFor((d) => d.data.length > 0, 5000, 'retransmission');
    expect(again.tcp!.seq).toBe(ack);
    expect(Buffer.from(again.data).toString()).toBe('data that gets lost');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(200);
  });

  it('fast retransmit: three duplicate ACKs bring the lost segment again at once', async () => {
    const { guest } = network();
    const payload = Buffer.alloc(5 * 1460, 3);
    const { port } = await hostServer((s) => s.write(payload));
    const { seq, ack } = await open(guest, port, 40031, { mss: 1460 });
    const segs: Delivered[] = [];
    while (segs.length < 5) segs.push(await guest.waitFor((d) => d.data.length > 0, 5000, 'data'));
    // The first one was lost: every later one is answered with a duplicate ACK of its start.
    for (let i = 0; i < 3; i++) guest.tcp({ dst: GATEWAY, dport: port, sport: 40031, seq, ack, flags: TCP_ACK });
    const again = await guest.waitFor((d) => d.data.length > 0, 500, 'fast retransmission');
    expect(again.tcp!.seq).toBe(ack);
  });

  it('zero window: the stack waits and probes; a window update lets the data through', async () => {
    const { guest } = network();
    const { port } = await hostServer((s) => s.write('waiting for room'));
    const { seq, ack } = await open(guest, port, 40032, { window: 0 });
    const probe = await guest.waitFor((d) => d.tcp !== null, 3000, 'zero-window probe');
    expect(probe.data.length).toBe(0);
    expect(probe.tcp!.seq).toBe((ack - 1) >>> 0); // an old sequence number: the guest must answer
    guest.tcp({ dst: GATEWAY, dport: port, sport: 40032, seq, ack, flags: TCP_ACK, window: 4096 });
    const d = await guest.waitFor((x) => x.data.length > 0, 3000, 'data after the update');
    expect(Buffer.from(d.data).toString()).toBe('waiting for room');
  });

  it('RST both ways: a host reset resets the guest; a guest reset resets the host', async () => {
    const { guest } = network();
    let host!: Socket;
    const { port } = await hostServer((s) => { host = s; });
    const c1 = await open(guest, port, 40040);
    await sleep(20);
    host.resetAndDestroy();
    const rst = await guest.waitFor(isTcp(TCP_RST), 5000, 'RST from the host side');
    expect(rst.tcp!.dstPort).toBe(40040);
    // The other way.
    const hostErr = new Promise<string>((resolve) => {
      void hostServer((s) => { s.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message)); s.on('close', () => resolve('closed')); })
        .then(({ port: p2 }) => open(guest, p2, 40041).then(({ seq }) => guest.tcp({ dst: GATEWAY, dport: p2, sport: 40041, seq, flags: TCP_RST })));
    });
    expect(await hostErr).toMatch(/ECONNRESET|closed/);
    void c1;
  });

  it('a port forward: a host connection to 127.0.0.1:PORT reaches the guest port from 10.0.2.2, data both ways', async () => {
    const { guest, net } = network();
    const fw = await net.addForward({ proto: 'tcp', hostAddress: '127.0.0.1', hostPort: 0, guestPort: 22 });
    expect(fw.hostPort).toBeGreaterThan(0);
    expect(net.listForwards()).toEqual([fw]);
    const client = connect({ host: '127.0.0.1', port: fw.hostPort });
    cleanups.push(() => client.destroy());
    const syn = await guest.waitFor(isTcp(TCP_SYN), 5000, 'SYN to the guest');
    expect(syn.ip!.dst).toBe(GUEST_IP);
    expect(syn.ip!.src).toBe(GATEWAY);
    expect(syn.tcp!.dstPort).toBe(22);
    const gport = syn.tcp!.srcPort;
    const giss = 9000;
    guest.tcp({ dst: GATEWAY, dport: gport, sport: 22, seq: giss, ack: syn.tcp!.seq + 1, flags: TCP_SYN | TCP_ACK, mss: 1460 });
    const ack3 = await guest.waitFor(isTcp(TCP_ACK), 5000, 'third ACK');
    expect(ack3.tcp!.ack).toBe(giss + 1);
    guest.tcp({ dst: GATEWAY, dport: gport, sport: 22, seq: giss + 1, ack: syn.tcp!.seq + 1, flags: TCP_ACK | TCP_PSH, data: Buffer.from('SSH-2.0-guest\r\n') });
    const banner = await new Promise<string>((r) => client.once('data', (b) => r(b.toString())));
    expect(banner).toBe('SSH-2.0-guest\r\n');
    client.write('SSH-2.0-host\r\n');
    const d = await guest.waitFor((x) => x.data.length > 0, 5000, 'client data');
    expect(Buffer.from(d.data).toString()).toBe('SSH-2.0-host\r\n');
    expect(net.removeForward('tcp', '127.0.0.1', fw.hostPort)).toBe(true);
    expect(net.listForwards()).toEqual([]);
  });

  it('a forward whose port is taken fails, naming the address', async () => {
    const { net } = network();
    const { port } = await hostServer(() => {});
    await expect(net.addForward({ proto: 'tcp', hostAddress: '127.0.0.1', hostPort: port, guestPort: 80 }))
      .rejects.toThrow(new RegExp(`cannot listen on tcp 127.0.0.1:${port} \\(forward to guest port 80\\): .*EADDRINUSE`));
  });
});

describe('a restored guest\'s connections (machine state)', () => {
  it('openConnections records each established connection; a fresh network probes them and resets the guest\'s answer exactly', async () => {
    const { guest, net } = network();
    const { port } = await hostServer(() => {});
    const { seq, ack } = await open(guest, port, 40100);
    await sleep(50);
    const saved = net.openConnections();
    expect(saved).toEqual([{ guestIp: GUEST_IP, guestPort: 40100, remoteIp: GATEWAY, remotePort: port, seq: (ack - 1) >>> 0, ack: seq }]);

    // The machine is restored on a new network that has none of these connections.
    const fresh = network();
    fresh.net.probeRestored(saved);
    const probe = await fresh.guest.waitFor((d) => d.tcp !== null && d.tcp.dstPort === 40100, 5000, 'the probe');
    expect(probe.tcp!.flags).toBe(TCP_ACK);
    expect(probe.tcp!.seq).toBe((ack - 1) >>> 0); // old: a guest answers it with an ACK of what it has
    expect(probe.ip!.src).toBe(GATEWAY);
    expect(probe.tcp!.srcPort).toBe(port);
    fresh.guest.tcp({ dst: GATEWAY, dport: port, sport: 40100, seq, ack, flags: TCP_ACK });
    const rst = await fresh.guest.waitFor(isTcp(TCP_RST), 5000, 'the reset');
    expect(rst.tcp!.seq).toBe(ack); // exactly the guest's RCV.NXT: accepted (RFC 5961 3.2)
    // A connection the new network has (the guest reconnected from that port) is left alone.
    const again = network();
    await open(again.guest, port, 40100);
    again.guest.take();
    again.net.probeRestored(saved);
    await sleep(50);
    expect(again.guest.take().filter((d) => d.tcp !== null && (d.tcp.flags & TCP_RST) === 0 && d.tcp.seq === ((ack - 1) >>> 0))).toEqual([]);
  });
});
