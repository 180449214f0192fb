// Networking end to end: the Linux test guest on vmctl's default NIC (user-mode NAT), through
// the real CLI and daemon. Skipped when no Linux build with VIRTIO_NET is there.

import { createHash, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { get } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, fetchText, haveScript, onTty, VmctlHome } from './harness.js';
import { createLinuxVm, findLinux, guestRun, startLinuxVm } from './linux-guest.js';
import { NET_CHECKS, type NetGuest } from './net-checks.js';

const LINUX = findLinux(['VIRTIO_NET', 'INET', 'PACKET']);
// vmctl ssh needs the host's ssh client, and a guest build with dropbear in it.
const SSH = spawnSync('ssh', ['-V']).status === 0 && LINUX !== undefined && existsSync(join(LINUX, 'build-info.txt')) &&
  readFileSync(join(LINUX, 'build-info.txt'), 'utf8').includes('dropbear');
const h = new VmctlHome();
afterAll(() => h.cleanup());

describe.skipIf(!LINUX)('user-mode networking with the Linux guest', () => {
  beforeAll(async () => {
    await createLinuxVm(h, LINUX!, 'net1');
    await startLinuxVm(h, 'net1');
  }, 400_000);

  it('the guest\'s init brought eth0 up by DHCP at boot (its console says so)', async () => {
    const log = (await h.run(['logs', 'net1'])).stdout;
    expect(log).toContain('vmctl-linux: net eth0 10.0.2.15/24 via 10.0.2.2');
  }, 120_000);

  it('vmctl port: add a forward to the guest\'s busybox httpd, fetch through it from the host, list it, remove it', async () => {
    const page = randomBytes(200_000).toString('base64');
    const sha = createHash('sha256').update(page).digest('hex');
    writeFileSync(join(h.home, 'page.txt'), page);
    const up = await guestRun(h, 'net1', `mkdir -p /tmp/www2 && httpd -p 8082 -h /tmp/www2 && echo started`);
    expect(up.out).toContain('started');
    // The page goes in over the network too: the guest fetches it from a host server.
    const srv = createServer((_q, res) => res.end(page));
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
    const hp = (srv.address() as { port: number }).port;
    expect((await guestRun(h, 'net1', `wget -q -O /tmp/www2/page.txt http://10.0.2.2:${hp}/`)).status).toBe(0);
    srv.close();
    const add = await h.run(['port', 'add', 'net1', '0:8082', '--json']);
    expect(add.code, add.stderr).toBe(0);
    const fw = JSON.parse(add.stdout) as { hostAddress: string; hostPort: number; guestPort: number; proto: string };
    expect(fw).toMatchObject({ hostAddress: '127.0.0.1', guestPort: 8082, proto: 'tcp' });
    const body = await fetchText(`http://127.0.0.1:${fw.hostPort}/page.txt`);
    expect(createHash('sha256').update(body).digest('hex')).toBe(sha);
    const list = await h.run(['port', 'net1']);
    expect(list.stdout).toContain(`tcp  127.0.0.1:${fw.hostPort}`);
    expect(list.stdout).toContain('-> guest 8082');
    // A port that is taken: exit 5, naming it.
    const taken = await h.run(['port', 'add', 'net1', `${fw.hostPort}:22`]);
    expect(taken.code).toBe(5);
    expect(taken.stderr).toContain(`127.0.0.1:${fw.hostPort}`);
    expect((await h.run(['port', 'remove', 'net1', String(fw.hostPort)])).code).toBe(0);
    expect((await h.run(['port', 'net1'])).stdout).toContain('no port forwards');
    await expect(fetchText(`http://127.0.0.1:${fw.hostPort}/page.txt`)).rejects.toThrow();
    const again = await h.run(['port', 'remove', 'net1', String(fw.hostPort)]);
    expect(again.code).toBe(2);
    expect(again.stderr).toContain('has no tcp forward');
  }, 180_000);

  it.skipIf(!SSH)('vmctl ssh NAME -- COMMAND runs it in the guest with the host\'s ssh and returns its exit status', async () => {
    const u = await h.run(['ssh', 'net1', '--', 'uname', '-a'], { timeoutMs: 200_000 });
    expect(u.code, u.stderr).toBe(0);
    expect(u.stdout).toMatch(/^Linux .* 6\.1\.\d+ .*riscv64/);
    const s = await h.run(['ssh', 'net1', '--', 'echo on-stderr >&2; exit 7']);
    expect(s.code).toBe(7);
    expect(s.stderr).toContain('on-stderr');
    // stdin goes to the remote shell.
    const i = await h.run(['ssh', 'net1'], { input: 'echo piped-$((6*7)); exit 3\n' });
    expect(i.code).toBe(3);
    expect(i.stdout).toContain('piped-42');
    // The forward it made is an ordinary one, to guest port 22 on loopback.
    expect((await h.run(['port', 'net1'])).stdout).toMatch(/tcp {2}127\.0\.0\.1:\d+ +-> guest 22/);
  }, 300_000);

  it.skipIf(!SSH || !haveScript)('vmctl ssh NAME on a terminal: an interactive shell with a pseudo-terminal', async () => {
    const r = await onTty(h, ['ssh', 'net1'], [{ waitFor: /vmctl-guest:~# /, send: 'tty; echo tty-$((40+2)); exit 5\n', timeoutMs: 200_000 }]);
    expect(r.code).toBe(5);
    expect(r.out).toMatch(/\/dev\/pts\/\d+/);
    expect(r.out).toContain('tty-42');
  }, 300_000);

  // The commands net-qemu.test.ts runs on QEMU's slirp too; after vmctl port's test, which
  // expects no forwards left (these leave theirs).
  const forwards = new Map<number, number>();
  const guest: NetGuest = {
    run: (script, timeoutMs) => guestRun(h, 'net1', script, timeoutMs),
    forward: async (guestPort) => {
      if (!forwards.has(guestPort)) {
        const r = await h.run(['port', 'add', 'net1', `0:${guestPort}`, '--json']);
        expect(r.code, r.stderr).toBe(0);
        forwards.set(guestPort, (JSON.parse(r.stdout) as { hostPort: number }).hostPort);
      }
      return forwards.get(guestPort)!;
    },
  };
  for (const c of NET_CHECKS) it(c.name, () => c.check(guest), c.timeoutMs);
});
