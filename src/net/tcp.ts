// One TCP connection of the user-mode network, terminated in the stack: toward the guest a real
// TCP endpoint (RFC 9293), toward the host a Node socket carrying the same byte stream.
//
// Guest side: sequence numbers and acknowledgements, the guest's window (with RFC 7323 window
// scaling) limiting what is sent, our window telling the guest how much the host socket can
// still take, MSS from the SYN, FIN and RST both ways, retransmission with an RTT-based timeout
// (RFC 6298) when the guest did not acknowledge, and zero-window probes. The link is a virtqueue,
// so nothing is reordered or lost in transit; what the guest drops is sent again.
// Host side: data the host sends is buffered up to SND_BUF (then the socket is paused until the
// guest acknowledges); data the guest sends is written to the socket, and our window is what the
// socket has not yet flushed subtracted from RCV_BUF: a slow host peer closes the guest's window,
// a fast one opens it. Both directions also draw on the VM's ByteBudget; when it is spent, each
// connection still keeps FLOOR_BUF each way, so the connections holding it cannot stop the others.

import { connect, type Socket } from 'node:net';
import { ByteBudget, ByteQueue } from './byte-queue.js';
import type { FrameOffload } from './nic.js';
import { buildTcp, ipToString, TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN, type TcpHeader, type TcpSegmentSpec } from './packet.js';

/** Data from the host kept for the guest (unacknowledged or not yet sent), per connection. */
export const SND_BUF = 512 * 1024;
/** Data from the guest the host socket may have pending, per connection: our window. */
export const RCV_BUF = 512 * 1024;
/** Bytes a connection may still hold each way when the VM's byte budget is spent: connections
 *  that hold the budget (a guest keeping zero windows forever, host peers that stop reading) slow
 *  the others down but never stop them. At most tcpConnections * 2 * FLOOR_BUF beyond the budget. */
export const FLOOR_BUF = 16 * 1024;
/** Delayed acknowledgement (RFC 9293 3.8.6.3, RFC 1122 4.2.3.2): in-order data from the guest is
 *  acknowledged once two full-sized segments are unacknowledged, with data or a FIN toward it, or
 *  after this long. An ACK for each small segment kept the guest's Nagle algorithm from ever
 *  holding anything back: a program writing 1 KiB at a time (busybox nc) sent 1 KiB segments,
 *  each with its own ACK and interrupt. */
export const DELACK_MS = 40;
/** Our window scale shift (RFC 7323): windows up to 4 MiB. */
const RCV_WSCALE = 6;
/** The MSS we announce: a 1500-byte MTU minus IPv4 and TCP headers. */
export const OUR_MSS = 1460;
/** RFC 9293 3.7.1: the MSS to assume when the guest announces none. */
const DEFAULT_MSS = 536;
/** Largest payload of one TSO frame toward the guest (an IPv4 datagram is at most 64 KiB). */
const MAX_GSO_PAYLOAD = 64000;
const RTO_INITIAL_MS = 1000;
const RTO_MIN_MS = 300;
const RTO_MAX_MS = 30_000;
/** Retransmissions of one segment before the connection is given up (~2 min with backoff). */
const MAX_RETRIES = 10;
const PERSIST_MIN_MS = 250;
const PERSIST_MAX_MS = 10_000;
/** How long a host connect may take before the guest gets a reset. */
export const CONNECT_TIMEOUT_MS = 30_000;
/** After both FINs, the connection still answers a retransmitted FIN for this long. */
const LINGER_MS = 2_000;

export type TcpState = 'connecting' | 'syn-sent' | 'syn-received' | 'established' | 'closed';

const seqLt = (a: number, b: number): boolean => ((a - b) | 0) < 0;
const seqLe = (a: number, b: number): boolean => ((a - b) | 0) <= 0;
const seqAdd = (a: number, n: number): number => (a + n) >>> 0;
const seqSub = (a: number, b: number): number => (a - b) | 0;

/** What a connection needs from the network it belongs to. */
export interface TcpNetwork {
  readonly budget: ByteBudget;
  /** Queues a segment without payload (ACK, SYN, FIN, RST); it may be dropped if the queue is full. */
  sendControl(frame: Uint8Array, offload: FrameOffload | null): void;
  /** Delivers a data segment now, or returns false: the guest has no room (then blocked()). */
  sendData(frame: Uint8Array, offload: FrameOffload | null): boolean;
  /** The connection waits for the guest to post receive buffers (call pump() then). */
  blocked(conn: TcpConnection): void;
  /** The connection wants its acknowledgement sent at the end of the guest's transmit burst. */
  ackLater(conn: TcpConnection): void;
  /** The connection's acknowledgement may wait: call flushAck() within DELACK_MS. */
  delayAck(conn: TcpConnection): void;
  /** The connection is over: forget it. */
  removed(conn: TcpConnection): void;
  /** A fresh offload record for a data segment when the guest takes partial checksums, else
   *  null (segments without payload always carry their full checksum: it costs nothing). */
  offload(): FrameOffload | null;
  /** The guest takes TSO frames (GUEST_TSO4). */
  readonly rxTso4: boolean;
  /** Ethernet addresses for a segment to the guest at `ip`. */
  macs(ip: number): { dst: Uint8Array; src: Uint8Array };
  now(): number;
  log(message: string): void;
}

export interface TcpEndpoints {
  readonly guestIp: number;
  readonly guestPort: number;
  /** The peer as the guest sees it (10.0.2.2 for the host, or an outside address). */
  readonly remoteIp: number;
  readonly remotePort: number;
}

/** A connection as a restored guest still believes in it: where a probe must come from and its
 *  sequence numbers (UserNetwork.openConnections / probeRestored). */
export interface TcpProbe extends TcpEndpoints {
  /** SND.UNA - 1: below anything the guest can still accept, so it answers with an ACK. */
  readonly seq: number;
  readonly ack: number;
}

export function tcpKey(guestIp: number, guestPort: number, remoteIp: number, remotePort: number): string {
  return `${guestIp}:${guestPort}-${remoteIp}:${remotePort}`;
}

export class TcpConnection {
  state: TcpState;
  readonly key: string;
  socket: Socket | null = null;

  // Toward the guest (RFC 9293 3.3.1 send sequence variables).
  private readonly iss: number;
  private sndUna: number;
  private sndNxt: number;
  private sndWnd = 0;
  private sndWscale = 0;
  private mss = DEFAULT_MSS;
  private readonly sendBuf = new ByteQueue();
  private hostEof = false;
  private finSent = false;
  private finSeq = 0;
  private socketPaused = false;

  // From the guest (receive sequence variables).
  private rcvNxt = 0;
  private rcvWscale = 0;
  private rcvRightEdge = 0;
  private guestFin = false;
  /** The window we last advertised was small: announce it when the host socket drains. */
  private windowClosed = false;
  ackPending = false;
  /** The acknowledgement number we last sent. */
  private rcvAcked = 0;
  /** The pending ACK must not be delayed (duplicate data: the guest may be recovering a loss). */
  private quickAck = false;

  // Timers (absolute ms, 0 = off).
  private rtoAt = 0;
  private rto = RTO_INITIAL_MS;
  private retries = 0;
  private dupAcks = 0;
  private srtt = 0;
  private rttvar = 0;
  private rttSeq = 0;
  private rttStart = 0;
  private persistAt = 0;
  private persistMs = PERSIST_MIN_MS;
  private deadline = 0;

  constructor(private readonly net: TcpNetwork, readonly ends: TcpEndpoints, state: 'connecting' | 'syn-sent') {
    this.key = tcpKey(ends.guestIp, ends.guestPort, ends.remoteIp, ends.remotePort);
    this.state = state;
    this.iss = (Math.random() * 0x1_0000_0000) >>> 0;
    this.sndUna = this.iss;
    this.sndNxt = this.iss;
    if (state === 'connecting') this.deadline = net.now() + CONNECT_TIMEOUT_MS;
  }

  describe(): string {
    const e = this.ends;
    return `${ipToString(e.guestIp)}:${e.guestPort} <-> ${ipToString(e.remoteIp)}:${e.remotePort}`;
  }

  // ------------------------------------------------------------------ opening --

  /** Outbound: the guest's SYN. The host connection starts; the guest is answered (SYN-ACK,
   *  or a reset) once it succeeds or fails, as slirp does. */
  acceptSyn(seg: TcpHeader, host: string, port: number): void {
    this.rcvNxt = seqAdd(seg.seq, 1);
    this.rcvRightEdge = this.rcvNxt;
    this.takeSynOptions(seg);
    this.sndWnd = seg.window; // RFC 7323 2.2: the window in a SYN is never scaled
    const s = connect({ host, port, allowHalfOpen: true });
    this.attachSocket(s);
    s.once('connect', () => {
      if (this.state !== 'connecting') return;
      this.state = 'syn-received';
      this.deadline = 0;
      this.sendSyn();
    });
  }

  /** Inbound (a port forward): the host socket is there; open toward the guest. */
  openToGuest(socket: Socket): void {
    this.attachSocket(socket);
    socket.pause(); // no data until the guest accepts
    this.socketPaused = true;
    this.sendSyn();
  }

  private takeSynOptions(seg: TcpHeader): void {
    if (seg.mss > 0) this.mss = Math.max(64, Math.min(seg.mss, OUR_MSS));
    if (seg.wscale >= 0) {
      this.sndWscale = seg.wscale;
      this.rcvWscale = RCV_WSCALE;
    }
  }

  private sendSyn(): void {
    const synAck = this.state === 'syn-received';
    // Our SYN offers window scaling; in a SYN-ACK only if the guest offered it (RFC 7323 1.3).
    const wscale = synAck ? (this.rcvWscale > 0 ? RCV_WSCALE : -1) : RCV_WSCALE;
    const window = Math.min(0xffff, this.receiveWindowBytes());
    if (synAck) this.rcvRightEdge = seqAdd(this.rcvNxt, window);
    const spec = this.spec(this.iss, synAck ? TCP_SYN | TCP_ACK : TCP_SYN, window);
    spec.mss = OUR_MSS;
    spec.wscale = wscale;
    this.net.sendControl(buildTcp(spec), null);
    this.sndNxt = seqAdd(this.iss, 1);
    this.armRto();
  }

  private attachSocket(socket: Socket): void {
    this.socket = socket;
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.hostData(chunk));
    socket.on('end', () => { this.hostEof = true; this.pump(); });
    socket.on('drain', () => this.maybeWindowUpdate());
    socket.on('error', () => { /* 'close' follows with hadError */ });
    socket.on('close', (hadError: boolean) => this.hostClosed(hadError));
  }

  // --------------------------------------------------------------- host side --

  private hostData(chunk: Buffer): void {
    if (this.state === 'closed') return;
    this.sendBuf.push(chunk);
    this.net.budget.add(chunk.length);
    if (this.sendBuf.length >= SND_BUF || (this.net.budget.free() === 0 && this.sendBuf.length >= FLOOR_BUF)) this.pauseSocket(true);
    this.pump();
  }

  private pauseSocket(pause: boolean): void {
    if (!this.socket || this.socketPaused === pause) return;
    this.socketPaused = pause;
    if (pause) this.socket.pause(); else this.socket.resume();
  }

  private hostClosed(hadError: boolean): void {
    this.socket = null;
    if (this.state === 'closed') return;
    if (hadError || this.state === 'connecting' || this.state === 'syn-sent') {
      // The host peer reset (or never answered): so does the guest's connection.
      this.reset();
      return;
    }
    // A clean close: whatever was read is still sent, then our FIN.
    this.hostEof = true;
    this.pump();
  }

  /** Writes guest data to the host socket. What the socket could not hand to the host kernel at
   *  once stays in its buffer (socket.writableLength) and closes our window by as much; the
   *  window reopens as the socket flushes it. */
  private toHost(data: Uint8Array): void {
    const s = this.socket;
    if (!s || s.destroyed) return;
    const n = data.length;
    this.net.budget.add(n);
    s.write(data, () => {
      this.net.budget.sub(n);
      this.maybeWindowUpdate();
    });
  }

  /** RFC 9293 3.8.6.2.2: once the window we closed has opened by a useful amount, say so. */
  private maybeWindowUpdate(): void {
    if (this.windowClosed && this.state === 'established' && this.receiveWindowBytes() >= this.windowUseful()) {
      this.windowClosed = false;
      this.sendAck();
    }
  }

  // -------------------------------------------------------------- guest side --

  /** A segment from the guest for this connection. */
  input(seg: TcpHeader, frame: Uint8Array): void {
    const f = seg.flags;
    if (this.state === 'closed') {
      // Lingering: answer a retransmitted FIN, reset anything else.
      if (f & TCP_RST) return;
      if (f & TCP_FIN) this.sendAck();
      else this.sendReset(seg);
      return;
    }
    if (this.state === 'connecting') return; // the guest retransmits its SYN: we are still connecting
    if (this.state === 'syn-sent') {
      if (f & TCP_ACK && seg.ack !== this.sndNxt) {
        if (!(f & TCP_RST)) this.sendReset(seg);
        return;
      }
      if (f & TCP_RST) { if (f & TCP_ACK) this.abort('the guest refused the connection'); return; }
      if (!(f & TCP_SYN) || !(f & TCP_ACK)) return;
      this.rcvNxt = seqAdd(seg.seq, 1);
      this.rcvRightEdge = this.rcvNxt;
      this.takeSynOptions(seg);
      this.sndUna = seg.ack;
      this.sndWnd = seg.window;
      this.established();
      this.sendAck();
      this.pump();
      return;
    }

    // RFC 9293 3.10.7.4, first: is the segment in sequence?
    const dataLen = seg.dataEnd - seg.dataStart;
    const segLen = dataLen + (f & TCP_FIN ? 1 : 0) + (f & TCP_SYN ? 1 : 0);
    if (f & TCP_RST) {
      // RFC 5961 3.2: a reset counts only at exactly the next expected sequence number.
      if (seg.seq === this.rcvNxt) this.abort(null);
      else this.ackNow();
      return;
    }
    if (f & TCP_SYN) {
      // A SYN in a synchronized state: the guest's SYN was retransmitted, or it is confused.
      if (this.state === 'syn-received' && seg.seq === seqAdd(this.rcvNxt, -1)) this.sendSynAgain();
      else this.ackNow(); // RFC 5961 4.2: a challenge ACK
      return;
    }
    if (!(f & TCP_ACK)) return;

    if (this.state === 'syn-received') {
      if (seg.ack !== seqAdd(this.iss, 1)) { this.sendReset(seg); return; }
      this.sndUna = seg.ack;
      this.established();
    }

    // Acknowledgement of what we sent.
    if (seqLt(this.sndNxt, seg.ack)) {
      // It acknowledges something not yet sent (we went back to retransmit): take it up to
      // what had been sent before, else ignore it (RFC 9293: send an ACK and drop it).
      if (seqLe(seg.ack, this.sentMax())) this.sndNxt = seg.ack;
      else { this.ackNow(); return; }
    }
    if (seqLt(this.sndUna, seg.ack)) {
      this.acked(seg.ack);
      this.dupAcks = 0;
    } else if (seg.ack === this.sndUna && segLen === 0 && this.sndNxt !== this.sndUna && (seg.window << this.sndWscale) === this.sndWnd) {
      // RFC 5681 3.2 fast retransmit: the third duplicate ACK says a segment was lost in the
      // guest; send again from there now rather than at the timeout.
      if (++this.dupAcks === 3) this.goBack();
    }
    // Window update (RFC 9293 3.10.7.4, SND.WL1/WL2 simplified: in-order segments only).
    if (seqLe(seg.seq, this.rcvNxt)) {
      const wasZero = this.sndWnd === 0;
      this.sndWnd = seg.window << this.sndWscale;
      if (wasZero && this.sndWnd > 0) { this.persistAt = 0; this.persistMs = PERSIST_MIN_MS; }
    }

    // Payload and FIN.
    if (segLen > 0) {
      let start = seg.dataStart;
      let seq = seg.seq;
      if (seqLt(seq, this.rcvNxt)) {
        const dup = seqSub(this.rcvNxt, seq);
        if (dup >= segLen) { this.quickAck = true; this.ackLater(); this.afterInput(); return; } // all old: re-acknowledge
        start += Math.min(dup, dataLen);
        seq = this.rcvNxt;
      }
      if (seq !== this.rcvNxt) {
        // Out of order (something before it was dropped): acknowledge what we have.
        this.ackNow();
        return;
      }
      const avail = seg.dataEnd - start;
      const room = Math.max(0, seqSub(this.rcvRightEdge, this.rcvNxt));
      const take = Math.min(avail, room);
      if (take > 0 && !this.guestFin) {
        // Copied: the frame is the card's buffer and the socket keeps what it is given.
        this.toHost(frame.slice(start, start + take));
        this.rcvNxt = seqAdd(this.rcvNxt, take);
      }
      if (f & TCP_FIN && take === avail && !this.guestFin) {
        this.guestFin = true;
        this.rcvNxt = seqAdd(this.rcvNxt, 1);
        this.socket?.end();
      }
      this.ackLater();
    }
    this.afterInput();
  }

  private afterInput(): void {
    this.pump();
    this.maybeFinished();
  }

  private established(): void {
    this.state = 'established';
    this.rcvAcked = this.rcvNxt;
    this.retries = 0;
    this.rtoAt = 0;
    this.rttStart = 0;
    this.pauseSocket(false);
  }

  /** A keepalive-style probe for this connection (RFC 9293 3.8.4: SEG.SEQ = SND.NXT - 1, taken
   *  from SND.UNA so it is old whatever the guest received): after a restore the guest answers it
   *  with an ACK, which meets no connection and is reset. Null before the handshake is done. */
  probe(): TcpProbe | null {
    if (this.state !== 'established') return null;
    const e = this.ends;
    return { guestIp: e.guestIp, guestPort: e.guestPort, remoteIp: e.remoteIp, remotePort: e.remotePort, seq: seqAdd(this.sndUna, -1), ack: this.rcvNxt };
  }

  /** Highest sequence number sent so far (sndNxt may have gone back for a retransmission). */
  private sentMax(): number {
    return seqAdd(this.sndUna, this.sendBuf.length + (this.finSent ? 1 : 0));
  }

  private acked(ack: number): void {
    const n = seqSub(ack, this.sndUna);
    const dataAcked = Math.min(n, this.sendBuf.length);
    this.sendBuf.drop(dataAcked);
    this.net.budget.sub(dataAcked);
    this.sndUna = ack;
    if (this.rttStart !== 0 && seqLe(this.rttSeq, ack)) {
      this.rttSample(this.net.now() - this.rttStart);
      this.rttStart = 0;
    }
    this.retries = 0;
    if (this.sndUna === this.sndNxt) this.rtoAt = 0; else this.armRto();
    if (this.socketPaused && this.state === 'established' && this.sendBuf.length < SND_BUF / 2 &&
      (this.net.budget.free() > 0 || this.sendBuf.length < FLOOR_BUF)) this.pauseSocket(false);
  }

  /** RFC 6298 2.2-2.3. */
  private rttSample(r: number): void {
    if (this.srtt === 0) {
      this.srtt = r;
      this.rttvar = r / 2;
    } else {
      this.rttvar = 0.75 * this.rttvar + 0.25 * Math.abs(this.srtt - r);
      this.srtt = 0.875 * this.srtt + 0.125 * r;
    }
    this.rto = Math.min(RTO_MAX_MS, Math.max(RTO_MIN_MS, this.srtt + 4 * this.rttvar));
  }

  private armRto(): void {
    this.rtoAt = this.net.now() + this.rto;
  }

  // ---------------------------------------------------------------- sending --

  /** Our receive window in bytes: what the host socket can still take, and the VM's budget
   *  (FLOOR_BUF even when it is spent). */
  private receiveWindowBytes(): number {
    const pending = this.socket ? this.socket.writableLength : 0;
    return Math.max(0, Math.min(RCV_BUF - pending, Math.max(this.net.budget.free(), FLOOR_BUF - pending)));
  }

  /** A window below this is closed: the guest is told when it opens again. */
  private windowUseful(): number {
    return Math.min(RCV_BUF / 4, 16 * this.mss, FLOOR_BUF);
  }

  /** The window field for a segment we send now; moves our right edge (never to the left). */
  private advertise(): number {
    let wnd = this.receiveWindowBytes();
    const promised = seqSub(this.rcvRightEdge, this.rcvNxt);
    if (wnd < promised) wnd = promised;
    const field = Math.min(0xffff, Math.floor(wnd / (1 << this.rcvWscale)));
    this.rcvRightEdge = seqAdd(this.rcvNxt, field << this.rcvWscale);
    this.windowClosed = (field << this.rcvWscale) < this.windowUseful();
    return field;
  }

  private spec(seq: number, flags: number, window: number): TcpSegmentSpec {
    const m = this.net.macs(this.ends.guestIp);
    return {
      dstMac: m.dst, srcMac: m.src, src: this.ends.remoteIp, srcPort: this.ends.remotePort,
      dst: this.ends.guestIp, dstPort: this.ends.guestPort, seq, ack: this.rcvNxt, flags, window,
    };
  }

  private ackLater(): void {
    if (!this.ackPending) {
      this.ackPending = true;
      this.net.ackLater(this);
    }
  }

  private ackNow(): void {
    this.ackPending = true;
    this.sendAck();
  }

  /** A segment without payload carrying our ACK and window. */
  sendAck(): void {
    if (this.state === 'connecting' || this.state === 'syn-sent') return;
    this.ackSent();
    this.net.sendControl(buildTcp(this.spec(this.sndNxt, TCP_ACK, this.advertise())), null);
  }

  /** A segment carrying our acknowledgement of everything received went out. */
  private ackSent(): void {
    this.ackPending = false;
    this.quickAck = false;
    this.rcvAcked = this.rcvNxt;
  }

  /** The delayed acknowledgement's time is up. */
  flushAck(): void {
    if (this.ackPending && this.state !== 'closed') this.sendAck();
  }

  private sendSynAgain(): void {
    const nxt = this.sndNxt;
    this.sendSyn();
    this.sndNxt = nxt;
  }

  /**
   * Sends what the window allows: data, then our FIN once the host is done and everything is
   * out; otherwise a pending ACK. Stops (and waits for rxSpace) when the guest has no room.
   */
  pump(): void {
    if (this.state !== 'established') return;
    const net = this.net;
    const maxSeg = net.rxTso4 ? Math.floor(MAX_GSO_PAYLOAD / this.mss) * this.mss : this.mss;
    for (;;) {
      const inFlight = seqSub(this.sndNxt, this.sndUna);
      // Where sndNxt is in sendBuf: the bytes in flight, less our FIN if it is among them.
      const finInFlight = this.finSent && seqLe(this.sndUna, this.finSeq) && seqLt(this.finSeq, this.sndNxt);
      const offset = inFlight - (finInFlight ? 1 : 0);
      const unsent = this.sendBuf.length - offset;
      const usable = this.sndWnd - inFlight;
      if (unsent > 0 && usable > 0) {
        const len = Math.min(unsent, usable, maxSeg);
        // Sender silly-window avoidance (RFC 9293 3.8.6.2.1): no runt segments while data is in flight.
        if (len < unsent && len < this.mss && inFlight > 0) break;
        const flags = TCP_ACK | (len === unsent ? TCP_PSH : 0);
        const seq = this.sndNxt;
        const off = net.offload();
        const buf = this.sendBuf;
        const frame = buildTcp(this.spec(seq, flags, this.advertise()), len, (f, at) => buf.copyTo(f, at, offset, len), off, this.mss);
        if (!net.sendData(frame, off)) {
          net.blocked(this);
          return;
        }
        this.ackSent();
        this.sndNxt = seqAdd(seq, len);
        if (this.rttStart === 0 && seqLe(this.sentMax(), this.sndNxt)) {
          this.rttSeq = this.sndNxt;
          this.rttStart = net.now();
        }
        if (this.rtoAt === 0) this.armRto();
        continue;
      }
      if (unsent > 0 && this.sndWnd === 0 && inFlight === 0 && this.persistAt === 0) {
        this.persistAt = net.now() + this.persistMs; // zero window: probe it (RFC 9293 3.8.6.1)
      }
      if (unsent === 0 && this.hostEof && (!this.finSent || this.sndNxt === this.finSeq)) {
        // All data is out: our FIN (sent again after a retransmission timeout went back).
        const frame = buildTcp(this.spec(this.sndNxt, TCP_FIN | TCP_ACK, this.advertise()));
        if (!net.sendData(frame, null)) {
          net.blocked(this);
          return;
        }
        this.ackSent();
        this.finSent = true;
        this.finSeq = this.sndNxt;
        this.sndNxt = seqAdd(this.sndNxt, 1);
        if (this.rtoAt === 0) this.armRto();
      }
      break;
    }
    if (!this.ackPending) return;
    if (this.quickAck || this.guestFin || seqSub(this.rcvNxt, this.rcvAcked) >= 2 * OUR_MSS) this.sendAck();
    else this.net.delayAck(this);
  }

  private maybeFinished(): void {
    if (this.state === 'closed') return;
    const finAcked = this.finSent && seqLt(this.finSeq, this.sndUna);
    if (finAcked && this.guestFin) this.close();
  }

  // ----------------------------------------------------------------- timers --

  tick(now: number): void {
    if (this.state === 'closed') {
      if (now >= this.deadline) this.net.removed(this);
      return;
    }
    if (this.state === 'connecting') {
      if (now >= this.deadline) {
        this.net.log(`tcp ${this.describe()}: the host did not connect in ${CONNECT_TIMEOUT_MS / 1000} s`);
        this.socket?.destroy();
        this.reset();
      }
      return;
    }
    if (this.rtoAt !== 0 && now >= this.rtoAt) this.retransmit();
    if (this.persistAt !== 0 && now >= this.persistAt) {
      this.persistAt = 0;
      if (this.sndWnd === 0 && this.sendBuf.length > 0) {
        // A probe the guest must answer with its current window: one already-acknowledged
        // sequence number (RFC 9293 3.10.7.4: an unacceptable segment is answered with an ACK).
        this.net.sendControl(buildTcp(this.spec(seqAdd(this.sndUna, -1), TCP_ACK, this.advertise())), null);
        this.persistMs = Math.min(PERSIST_MAX_MS, this.persistMs * 2);
        this.persistAt = now + this.persistMs;
      }
    }
  }

  private retransmit(): void {
    if (++this.retries > MAX_RETRIES) {
      this.net.log(`tcp ${this.describe()}: the guest did not acknowledge after ${MAX_RETRIES} retransmissions; resetting`);
      this.abort(null, true);
      return;
    }
    this.rto = Math.min(RTO_MAX_MS, this.rto * 2);   // RFC 6298 5.5
    this.rttStart = 0;                                // Karn: no sample from a retransmission
    if (this.state === 'syn-sent' || this.state === 'syn-received') {
      this.sendSynAgain();
      return;
    }
    this.goBack();
  }

  /** Goes back to the first unacknowledged byte and sends again (the guest drops duplicates). */
  private goBack(): void {
    this.sndNxt = this.sndUna;
    if (this.finSent && !seqLt(this.finSeq, this.sndUna)) this.finSent = false;
    this.rttStart = 0;
    this.armRto();
    this.pump();
  }

  // ---------------------------------------------------------------- closing --

  /** Both directions are finished: linger briefly for retransmitted FINs, then go. */
  private close(): void {
    this.state = 'closed';
    this.deadline = this.net.now() + LINGER_MS;
    this.rtoAt = this.persistAt = 0;
    this.releaseBuffers();
    this.socket?.end();
  }

  /** Ends the connection with a reset toward the guest (the host side failed or timed out). */
  reset(): void {
    if (this.state === 'closed') return;
    if (this.state !== 'syn-sent') {
      // RFC 9293 3.10.7: RST with our next sequence number, acknowledging all we received.
      const spec = this.spec(this.sndNxt, TCP_RST | TCP_ACK, 0);
      this.net.sendControl(buildTcp(spec), null);
    }
    this.finish();
  }

  /** Ends the connection toward the host (the guest reset, or gave up): the host peer sees a reset. */
  abort(reason: string | null, resetGuest = false): void {
    if (reason) this.net.log(`tcp ${this.describe()}: ${reason}`);
    const s = this.socket;
    this.socket = null;
    if (s && !s.destroyed) s.resetAndDestroy();
    if (resetGuest) this.reset(); else this.finish();
  }

  private finish(): void {
    this.state = 'closed';
    this.deadline = 0; // removed at the next tick
    this.rtoAt = this.persistAt = 0;
    this.releaseBuffers();
    const s = this.socket;
    if (s && !s.destroyed) s.destroy();
  }

  private releaseBuffers(): void {
    this.net.budget.sub(this.sendBuf.length);
    this.sendBuf.clear();
  }

  /** The VM is going away: drop the host side without ceremony. */
  destroy(): void {
    this.releaseBuffers();
    this.state = 'closed';
    const s = this.socket;
    this.socket = null;
    if (s && !s.destroyed) s.resetAndDestroy();
  }

  /** A reset answering a segment that does not belong to a connection (RFC 9293 3.10.7.1). */
  private sendReset(seg: TcpHeader): void {
    this.net.sendControl(resetFor(seg, this.ends, this.net), null);
  }
}

/** The RST answering `seg` from the guest when no connection takes it (RFC 9293 3.10.7.1). */
export function resetFor(seg: TcpHeader, ends: TcpEndpoints, net: Pick<TcpNetwork, 'macs'>): Uint8Array {
  const m = net.macs(ends.guestIp);
  const dataLen = seg.dataEnd - seg.dataStart;
  const spec: TcpSegmentSpec = {
    dstMac: m.dst, srcMac: m.src, src: ends.remoteIp, srcPort: ends.remotePort, dst: ends.guestIp, dstPort: ends.guestPort,
    seq: seg.flags & TCP_ACK ? seg.ack : 0,
    ack: seg.flags & TCP_ACK ? 0 : seqAdd(seg.seq, dataLen + (seg.flags & TCP_SYN ? 1 : 0) + (seg.flags & TCP_FIN ? 1 : 0)),
    flags: seg.flags & TCP_ACK ? TCP_RST : TCP_RST | TCP_ACK,
    window: 0,
  };
  return buildTcp(spec);
}
