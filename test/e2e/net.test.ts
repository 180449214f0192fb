// Networking end to end: the Linux test guest on vmctl's default NIC (user-mode NAT), through
// the real CLI and daemon. Skipped when no Linux build with VIRTIO_NET is there.

import { createHash, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { hostname } from 'node:os';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { VmctlHome } from './harness.js';
import { createLinuxVm, findLinux, guestRun, startLinuxVm } from './linux-guest.js';

const LINUX = findLinux(['VIRTIO_NET', 'INET', 'PACKET']);
const h = new VmctlHome();
afterAll(() => h.cleanup());

describe.skipIf(!LINUX)('user-mode networking with the Linux guest', () => {
  beforeAll(async () => {
    await createLinuxVm(h, LINUX!, 'net1');
    await startLinuxVm(h, 'net1');
  }, 400_000);

  it('the guest got 10.0.2.15 with gateway 10.0.2.2 and DNS 10.0.2.3 by DHCP at boot', async () => {
    const log = (await h.run(['logs', 'net1'])).stdout;
    expect(log).toContain('vmctl-linux: net eth0 10.0.2.15/24 via 10.0.2.2');
    const r = await guestRun(h, 'net1', 'cat /etc/resolv.conf; ip -4 route show default');
    expect(r.out).toContain('nameserver 10.0.2.3');
    expect(r.out).toContain('default via 10.0.2.2 dev eth0');
  }, 120_000);

  it('wget of a file served on the host\'s 127.0.0.1, through 10.0.2.2, arrives whole (sha256)', async () => {
    const data = randomBytes(512 * 1024);
    const sha = createHash('sha256').update(data).digest('hex');
    const srv = createServer((_req, res) => res.end(data));
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
    try {
      const port = (srv.address() as { port: number }).port;
      const r = await guestRun(h, 'net1', `wget -q -O /tmp/f http://10.0.2.2:${port}/file && sha256sum /tmp/f`);
      expect(r.status).toBe(0);
      expect(r.out).toContain(sha);
    } finally {
      srv.close();
    }
  }, 180_000);

  it('nslookup resolves localhost and the host\'s own name through 10.0.2.3 (the host resolver)', async () => {
    const r = await guestRun(h, 'net1', `nslookup localhost 10.0.2.3; nslookup ${hostname()} 10.0.2.3`);
    expect(r.out).toMatch(/Name:\s+localhost\s+Address: 127\.0\.0\.1/);
    expect(r.out).toMatch(new RegExp(`Name:\\s+${hostname()}\\s+Address: \\d+\\.\\d+\\.\\d+\\.\\d+`));
    expect(r.out).not.toMatch(/can't find localhost: NXDOMAIN/);
  }, 120_000);

  it('ping reaches the gateway and the DNS address', async () => {
    const r = await guestRun(h, 'net1', 'ping -c 2 10.0.2.2 && ping -c 2 10.0.2.3');
    expect(r.status).toBe(0);
    expect(r.out).toMatch(/2 packets transmitted, 2 packets received/);
  }, 120_000);
});
