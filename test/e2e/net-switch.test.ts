// Switch networks end to end: two Linux VMs on network "lab" (nat: true in config.yaml) take
// addresses from the daemon's DHCP, reach each other (ping, TCP) and the host through the
// network's gateway; a third on network "other" (no settings: 10.0.3.0/24, no NAT) gets its own
// DHCP and reaches neither them nor the host.

import { createHash, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { VmctlHome } from './harness.js';
import { createLinuxVm, findLinux, guestRun, startLinuxVm } from './linux-guest.js';

const LINUX = findLinux(['VIRTIO_NET', 'INET', 'PACKET']);
const h = new VmctlHome();
afterAll(() => h.cleanup());

const addr = async (name: string): Promise<string> => {
  const r = await guestRun(h, name, "ip -4 -o addr show dev eth0 | awk '{print $4}'");
  return r.out.trim().split('/')[0];
};

describe.skipIf(!LINUX)('switch networks with the Linux guest', () => {
  beforeAll(async () => {
    writeFileSync(join(h.home, 'config.yaml'), 'networks:\n  lab: { subnet: 10.0.3.0/24, nat: true }\n');
    const sw = (name: string): string[] => ['network:', '  - mode: switch', `    name: ${name}`];
    await createLinuxVm(h, LINUX!, 'a', sw('lab'));
    await createLinuxVm(h, LINUX!, 'b', sw('lab'));
    await createLinuxVm(h, LINUX!, 'c', sw('other'));
    // One after the other: three boots at once on two shared cores take longer than their sum.
    for (const n of ['a', 'b', 'c']) await startLinuxVm(h, n);
  }, 900_000);

  it('DHCP on each network: lab hands out two addresses, other its own', async () => {
    const [a, b, c] = [await addr('a'), await addr('b'), await addr('c')];
    expect(new Set([a, b])).toEqual(new Set(['10.0.3.15', '10.0.3.16']));
    expect(c).toBe('10.0.3.15');
    const route = await guestRun(h, 'a', 'ip -4 route show default; cat /etc/resolv.conf');
    expect(route.out).toContain('default via 10.0.3.2');
    expect(route.out).toContain('nameserver 10.0.3.3');
    // nat: false: no router, no DNS server handed out.
    expect((await guestRun(h, 'c', 'ip -4 route show default | wc -l')).out.trim()).toBe('0');
  }, 120_000);

  it('two VMs on one network talk: ping and a TCP stream checked by sha256', async () => {
    const b = await addr('b');
    expect((await guestRun(h, 'a', `ping -c 2 ${b}`)).status).toBe(0);
    // The listener's stdin stays open: busybox nc half-closes at stdin's end, and a sender that
    // sees the end of its peer's stream stops sending.
    const listen = await guestRun(h, 'b', '(sleep 600 | nc -l -p 7000 > /tmp/got) & sleep 1; echo listening');
    expect(listen.out).toContain('listening');
    const sent = await guestRun(h, 'a', `dd if=/dev/urandom of=/tmp/sent bs=1k count=512 2>/dev/null; sha256sum /tmp/sent; nc ${b} 7000 < /tmp/sent; echo sent`);
    expect(sent.out).toContain('sent');
    const sha = /([0-9a-f]{64}) {2}\/tmp\/sent/.exec(sent.out)![1];
    let got = '';
    for (let i = 0; i < 20 && !got.includes(sha); i++) got = (await guestRun(h, 'b', 'sha256sum /tmp/got')).out;
    expect(got).toContain(sha);
  }, 240_000);

  it('a VM on another network reaches neither of them; nat: true reaches the host, nat: false does not', async () => {
    const b = await addr('b');
    const a = await addr('a');
    // c's network has its own 10.0.3.0/24: whichever of a and b is not c's own address is nowhere.
    const other = a === '10.0.3.15' ? b : a;
    const ping = await guestRun(h, 'c', `ping -c 2 -W 2 ${other}`);
    expect(ping.status).not.toBe(0);
    expect(ping.out).toMatch(/0 packets received/);
    const data = randomBytes(64 * 1024);
    const srv = createServer((_q, res) => res.end(data));
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
    try {
      const port = (srv.address() as { port: number }).port;
      const viaLab = await guestRun(h, 'a', `wget -q -O - http://10.0.3.2:${port}/ | sha256sum`);
      expect(viaLab.out).toContain(createHash('sha256').update(data).digest('hex'));
      const viaOther = await guestRun(h, 'c', `wget -q -T 5 -O /dev/null http://10.0.3.2:${port}/ || echo refused`);
      expect(viaOther.out).toContain('refused');
    } finally {
      srv.close();
    }
  }, 240_000);
});
