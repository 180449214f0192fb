// Network commands run in the Linux test guest, the same on vmctl (net.test.ts) and on QEMU with
// `-netdev user,hostfwd=...` (net-qemu.test.ts): the same commands must succeed on both, with
// the same results. Each check gets a shell in the guest and the host ports forwarded to its
// TCP ports; big transfers are checked by sha256 on both ends.

import { createHash, randomBytes } from 'node:crypto';
import { createServer as createHttpServer, get } from 'node:http';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { hostname } from 'node:os';
import { expect } from 'vitest';

export interface NetGuest {
  /** Runs a one-line shell script in the guest: its output and exit status. */
  run(script: string, timeoutMs?: number): Promise<{ out: string; status: number }>;
  /** The port on the host's 127.0.0.1 forwarded to the guest's TCP port `guestPort`. */
  forward(guestPort: number): Promise<number>;
}

/** The guest ports the checks need forwarded (QEMU's hostfwd is fixed at boot). */
export const FORWARDED_PORTS = [8080, 8081] as const;

/** Size of each nc transfer. */
export const NC_BYTES = 50 * 1024 * 1024;

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

async function listen(server: Server): Promise<number> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return (server.address() as AddressInfo).port;
}

function fetchBody(url: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    get(url, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('end', () => (res.statusCode === 200 ? resolve(Buffer.concat(parts)) : reject(new Error(`HTTP ${res.statusCode}`))));
    }).on('error', reject);
  });
}

/** Connects to 127.0.0.1:`port` (retrying while the guest's listener is not up yet) and reads
 *  until the guest closes; the bytes read. */
async function readFrom(port: number): Promise<Buffer> {
  for (let attempt = 0; ; attempt++) {
    const got = await new Promise<Buffer>((resolve, reject) => {
      const parts: Buffer[] = [];
      const s: Socket = connect({ host: '127.0.0.1', port, allowHalfOpen: true });
      s.on('data', (b: Buffer) => parts.push(b));
      s.on('end', () => { s.end(); resolve(Buffer.concat(parts)); });
      s.on('error', reject);
    }).catch(() => Buffer.alloc(0));
    if (got.length > 0 || attempt >= 20) return got;
    await new Promise((r) => setTimeout(r, 500));
  }
}

/** What the host -> guest nc check left in the guest's /tmp/nc.bin (checked there by the guest's
 *  sha256sum); the later checks send that file back. */
let ncSent: Buffer | null = null;
function sent(): Buffer {
  if (ncSent === null) throw new Error('the nc host -> guest check did not leave /tmp/nc.bin');
  return ncSent;
}

/** Bytes of it sent back through a forward (the host-initiated direction; the 50 MiB runs are
 *  the guest-initiated ones, and a busybox nc in an emulated guest is not fast). */
const FORWARD_NC_BYTES = 8 * 1024 * 1024;

export interface NetCheck {
  readonly name: string;
  readonly timeoutMs: number;
  readonly check: (g: NetGuest) => Promise<void>;
  /** Why QEMU's slirp is not held to this check (a difference the issue asks for). */
  readonly notOnQemu?: string;
}

/** The checks, in order (later ones use files earlier ones left in the guest's /tmp). */
export const NET_CHECKS: readonly NetCheck[] = [
  {
    name: 'udhcpc got 10.0.2.15/24 with gateway 10.0.2.2 and DNS 10.0.2.3',
    timeoutMs: 120_000,
    check: async (g) => {
      const r = await g.run('ip -4 addr show dev eth0; ip -4 route show default; cat /etc/resolv.conf');
      expect(r.status).toBe(0);
      expect(r.out).toContain('inet 10.0.2.15/24');
      expect(r.out).toContain('default via 10.0.2.2 dev eth0');
      expect(r.out).toContain('nameserver 10.0.2.3');
    },
  },
  {
    name: 'ping reaches the gateway and the DNS address',
    timeoutMs: 120_000,
    check: async (g) => {
      const r = await g.run('ping -c 2 10.0.2.2 && ping -c 2 10.0.2.3');
      expect(r.status, r.out).toBe(0);
      expect(r.out).toMatch(/2 packets transmitted, 2 packets received/);
    },
  },
  {
    name: 'wget of a file served on the host\'s 127.0.0.1, through 10.0.2.2, arrives whole (sha256)',
    timeoutMs: 180_000,
    check: async (g) => {
      const data = randomBytes(512 * 1024);
      const srv = createHttpServer((_req, res) => res.end(data));
      const port = await listen(srv);
      try {
        const r = await g.run(`wget -q -O /tmp/f http://10.0.2.2:${port}/file && sha256sum /tmp/f`);
        expect(r.status, r.out).toBe(0);
        expect(r.out).toContain(sha256(data));
      } finally {
        srv.close();
      }
    },
  },
  {
    name: 'nslookup resolves localhost and the host\'s own name through 10.0.2.3',
    timeoutMs: 120_000,
    notOnQemu: 'slirp relays DNS to the host\'s nameserver, which need not know localhost or /etc/hosts (NXDOMAIN on a host ' +
      'whose nameserver does not); vmctl answers through the host\'s resolver (dns.lookup), as issue 15 asks',
    check: async (g) => {
      const r = await g.run(`nslookup localhost 10.0.2.3; nslookup ${hostname()} 10.0.2.3`);
      expect(r.out).toMatch(/Name:\s+localhost\s+Address: 127\.0\.0\.1/);
      expect(r.out).toMatch(new RegExp(`Name:\\s+${hostname()}\\s+Address: \\d+\\.\\d+\\.\\d+\\.\\d+`));
      expect(r.out).not.toMatch(/can't find localhost: NXDOMAIN/);
    },
  },
  {
    name: 'the guest\'s busybox httpd, reached from the host through a forward (sha256)',
    timeoutMs: 180_000,
    check: async (g) => {
      const page = randomBytes(300_000);
      const srv = createHttpServer((_q, res) => res.end(page));
      const hp = await listen(srv);
      try {
        const r = await g.run(`mkdir -p /tmp/www && wget -q -O /tmp/www/page.bin http://10.0.2.2:${hp}/ && httpd -p 8080 -h /tmp/www && echo started`);
        expect(r.out).toContain('started');
      } finally {
        srv.close();
      }
      const port = await g.forward(8080);
      expect(sha256(await fetchBody(`http://127.0.0.1:${port}/page.bin`))).toBe(sha256(page));
    },
  },
  {
    name: `nc host -> guest: ${NC_BYTES >> 20} MiB from a host server arrive whole (sha256 in the guest)`,
    timeoutMs: 600_000,
    check: async (g) => {
      const data = randomBytes(NC_BYTES);
      // Half-open: nc closes its sending side at once (its stdin is /dev/null); we send on.
      const srv = createServer({ allowHalfOpen: true }, (s) => { s.on('error', () => {}); s.end(data); });
      const port = await listen(srv);
      try {
        const r = await g.run(`nc 10.0.2.2 ${port} </dev/null >/tmp/nc.bin && sha256sum /tmp/nc.bin`, 540_000);
        expect(r.status, r.out).toBe(0);
        expect(r.out).toContain(sha256(data));
        ncSent = data;
      } finally {
        srv.close();
      }
    },
  },
  {
    name: `nc guest -> host: ${NC_BYTES >> 20} MiB to a host server arrive whole (sha256 on the host)`,
    timeoutMs: 600_000,
    check: async (g) => {
      const sum = sha256(sent());
      const hash = createHash('sha256');
      let bytes = 0;
      let ended!: () => void;
      const end = new Promise<void>((r) => { ended = r; });
      const srv = createServer({ allowHalfOpen: true }, (s) => {
        s.on('error', () => {});
        s.on('data', (b: Buffer) => { hash.update(b); bytes += b.length; });
        s.on('end', () => { s.end(); ended(); });
      });
      const port = await listen(srv);
      try {
        // nc sends its stdin, half-closes, and exits at our FIN (sent once all has arrived).
        const r = await g.run(`nc 10.0.2.2 ${port} </tmp/nc.bin && echo sent`, 540_000);
        expect(r.out).toContain('sent');
        await end;
      } finally {
        srv.close();
      }
      expect(bytes).toBe(NC_BYTES);
      expect(hash.digest('hex')).toBe(sum);
    },
  },
  {
    name: `nc through a forward: the host connects to the guest's nc -l and reads ${FORWARD_NC_BYTES >> 20} MiB (sha256)`,
    timeoutMs: 600_000,
    check: async (g) => {
      const sum = sha256(sent().subarray(0, FORWARD_NC_BYTES));
      const cmd = `(dd if=/tmp/nc.bin bs=65536 count=${FORWARD_NC_BYTES / 65536} 2>/dev/null | nc -l -p 8081 >/dev/null 2>&1 &) ; sleep 1; echo listening`;
      expect((await g.run(cmd)).out).toContain('listening');
      const got = await readFrom(await g.forward(8081));
      expect(got.length).toBe(FORWARD_NC_BYTES);
      expect(sha256(got)).toBe(sum);
      await g.run('rm -f /tmp/nc.bin');
    },
  },
];
