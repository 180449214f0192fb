// The DNS server at 10.0.2.3 (RFC 1035 wire format): A and AAAA questions are answered through
// the host's own resolver (Node's dns.lookup, i.e. getaddrinfo: /etc/hosts first, so
// `localhost` and the host's name resolve even with no outside network). Other question types
// get an empty answer. Queries are parsed defensively; a bounded number of lookups run at once.

import { lookup } from 'node:dns';
import { readU16BE, writeU16BE, writeU32BE } from './packet.js';

export const DNS_PORT = 53;
const HEADER = 12;
const TYPE_A = 1;
const TYPE_AAAA = 28;
const CLASS_IN = 1;
const RCODE_FORMERR = 1, RCODE_SERVFAIL = 2, RCODE_NXDOMAIN = 3, RCODE_NOTIMP = 4;
/** RFC 1035 4.2.1: a UDP answer without EDNS fits 512 bytes. */
const MAX_UDP_ANSWER = 512;
const TTL_SECONDS = 60;

export interface DnsQuestion {
  id: number;
  /** Flags word of the query (opcode, RD). */
  flags: number;
  name: string;
  type: number;
  qclass: number;
  /** The question section as sent (echoed in the answer). */
  question: Uint8Array;
}

/** Parses a query with exactly one question, or returns an RCODE to answer with (or null: drop). */
export function parseDnsQuery(msg: Uint8Array): DnsQuestion | number | null {
  if (msg.length < HEADER) return null;
  const flags = readU16BE(msg, 2);
  if (flags & 0x8000) return null;                       // a response, not a query
  if (((flags >> 11) & 15) !== 0) return RCODE_NOTIMP;   // only standard queries (opcode 0)
  if (readU16BE(msg, 4) !== 1) return RCODE_FORMERR;     // one question (RFC 9619)
  // The name: labels of 1..63 bytes, at most 255 in all; a query has no compression pointers.
  const labels: string[] = [];
  let i = HEADER;
  let total = 0;
  for (;;) {
    if (i >= msg.length) return RCODE_FORMERR;
    const len = msg[i];
    if (len === 0) { i++; break; }
    if (len > 63) return RCODE_FORMERR;
    if (i + 1 + len > msg.length) return RCODE_FORMERR;
    total += len + 1;
    if (total > 255) return RCODE_FORMERR;
    labels.push(String.fromCharCode(...msg.subarray(i + 1, i + 1 + len)));
    i += 1 + len;
  }
  if (i + 4 > msg.length) return RCODE_FORMERR;
  return {
    id: readU16BE(msg, 0), flags, name: labels.join('.'), type: readU16BE(msg, i), qclass: readU16BE(msg, i + 2),
    question: msg.slice(HEADER, i + 4),
  };
}

/** A response to `q` (or to the bare query id/flags when the question could not be read). */
export function buildDnsAnswer(id: number, queryFlags: number, q: DnsQuestion | null, rcode: number, addresses: { type: number; bytes: Uint8Array }[]): Uint8Array {
  const parts: number[] = [];
  let count = 0;
  let truncated = false;
  const base = HEADER + (q ? q.question.length : 0);
  for (const a of addresses) {
    // name (pointer to the question's name at offset 12), type, class, TTL, rdlength, rdata
    const rr = 2 + 2 + 2 + 4 + 2 + a.bytes.length;
    if (base + parts.length + rr > MAX_UDP_ANSWER) { truncated = true; break; }
    const r = new Uint8Array(rr);
    writeU16BE(r, 0, 0xc000 | HEADER);
    writeU16BE(r, 2, a.type);
    writeU16BE(r, 4, CLASS_IN);
    writeU32BE(r, 6, TTL_SECONDS);
    writeU16BE(r, 10, a.bytes.length);
    r.set(a.bytes, 12);
    parts.push(...r);
    count++;
  }
  const out = new Uint8Array(base + parts.length);
  writeU16BE(out, 0, id);
  // QR, opcode and RD from the query, RA (we recurse through the host), TC if cut.
  writeU16BE(out, 2, 0x8000 | (queryFlags & 0x7900) | 0x0080 | (truncated ? 0x0200 : 0) | rcode);
  writeU16BE(out, 4, q ? 1 : 0);
  writeU16BE(out, 6, count);
  if (q) out.set(q.question, HEADER);
  out.set(parts, base);
  return out;
}

export class DnsServer {
  private inFlight = 0;
  private dropped = 0;

  constructor(private readonly maxInFlight: number, private readonly log: (m: string) => void) {}

  /** Answers a query through the host resolver; `reply` is called once, later (or never, for a
   *  message that is not a query or when too many lookups are running). */
  query(msg: Uint8Array, reply: (answer: Uint8Array) => void): void {
    const q = parseDnsQuery(msg);
    if (q === null) return;
    if (typeof q === 'number') {
      reply(buildDnsAnswer(readU16BE(msg, 0), readU16BE(msg, 2), null, q, []));
      return;
    }
    if (q.qclass !== CLASS_IN || (q.type !== TYPE_A && q.type !== TYPE_AAAA)) {
      reply(buildDnsAnswer(q.id, q.flags, q, 0, [])); // no data of that type
      return;
    }
    if (this.inFlight >= this.maxInFlight) {
      if (this.dropped++ % 100 === 0) this.log(`dns: ${this.maxInFlight} lookups already running; dropping queries (${this.dropped} so far)`);
      return;
    }
    this.inFlight++;
    const family = q.type === TYPE_A ? 4 : 6;
    lookup(q.name, { family, all: true }, (err, addrs) => {
      if (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code !== 'ENOTFOUND') {
          this.inFlight--;
          // ENODATA: the name exists without addresses of that family (an empty answer).
          reply(buildDnsAnswer(q.id, q.flags, q, code === 'ENODATA' ? 0 : RCODE_SERVFAIL, []));
          return;
        }
        // getaddrinfo says "not found" for a name that only has the other family (a name in
        // /etc/hosts with an IPv4 address only, asked for AAAA): that is an empty answer, not
        // NXDOMAIN (RFC 2308 2.2, "NODATA").
        lookup(q.name, { family: family === 4 ? 6 : 4 }, (err2) => {
          this.inFlight--;
          reply(buildDnsAnswer(q.id, q.flags, q, err2 ? RCODE_NXDOMAIN : 0, []));
        });
        return;
      }
      this.inFlight--;
      const seen = new Set<string>();
      const answers = addrs.filter((a) => !seen.has(a.address) && seen.add(a.address)).map((a) => ({ type: q.type, bytes: addressBytes(a.address, family) }));
      reply(buildDnsAnswer(q.id, q.flags, q, 0, answers));
    });
  }
}

function addressBytes(addr: string, family: 4 | 6): Uint8Array {
  if (family === 4) return Uint8Array.from(addr.split('.').map(Number));
  // Expand "::" then read eight 16-bit groups (an embedded dotted quad is not produced by lookup
  // for family 6 except in ::ffff:a.b.c.d, handled too).
  let text = addr;
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (dotted) {
    const b = dotted[1].split('.').map(Number);
    text = text.slice(0, -dotted[1].length) + `${((b[0] << 8) | b[1]).toString(16)}:${((b[2] << 8) | b[3]).toString(16)}`;
  }
  const [head, tail] = text.split('::');
  const h = head ? head.split(':') : [];
  const t = tail !== undefined && tail !== '' ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
  const out = new Uint8Array(16);
  groups.forEach((g, i) => writeU16BE(out, 2 * i, Number.parseInt(g, 16)));
  return out;
}
