// network: in a VM definition through the real CLI and daemon, with a small bare-metal guest (no
// networking inside it is needed): forwards bound at start and listed, a taken port refusing the
// start with exit 5 naming it, network: none, the port commands on a stopped VM.

import { writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DEMO, VmctlHome } from './harness.js';

const h = new VmctlHome();
afterAll(() => h.cleanup());

function vmFile(name: string, network: string[]): string {
  const f = join(h.home, `${name}.yaml`);
  writeFileSync(f, [`name: ${name}`, 'memory: 16MiB', 'boot:', `  kernel: ${join(DEMO, 'loop.elf')}`, ...network, ''].join('\n'));
  return f;
}

describe('network: in the VM definition', () => {
  it('forwards are bound at start (port 0: a free one) and listed by vmctl port; stop releases them', async () => {
    const f = vmFile('fw', ['network:', '  - forwards:', '      - { host: 0, guest: 22 }', '      - { proto: udp, host: 0, guest: 53 }']);
    expect((await h.run(['create', '-f', f])).code).toBe(0);
    expect((await h.run(['port', 'fw'])).stdout).toMatch(/tcp {2}127\.0\.0\.1:0 +-> guest 22/); // not bound yet
    expect((await h.run(['start', 'fw'])).code).toBe(0);
    const list = JSON.parse((await h.run(['port', 'fw', '--json'])).stdout) as { proto: string; hostPort: number; guestPort: number }[];
    expect(list.map((x) => [x.proto, x.guestPort])).toEqual([['tcp', 22], ['udp', 53]]);
    const tcp = list[0].hostPort;
    expect(tcp).toBeGreaterThan(0);
    // Something listens there now (the forward).
    await new Promise<void>((resolve, reject) => {
      const s = createServer();
      s.once('error', (e: NodeJS.ErrnoException) => (e.code === 'EADDRINUSE' ? resolve() : reject(e)));
      s.listen(tcp, '127.0.0.1', () => { s.close(); reject(new Error('the forward\'s port was free')); });
    });
    expect((await h.run(['stop', 'fw', '--force'])).code).toBe(0);
    await new Promise<void>((resolve, reject) => {
      const s = createServer();
      s.once('error', reject);
      s.listen(tcp, '127.0.0.1', () => s.close(() => resolve()));
    });
  });

  it('a forward whose host port is taken: start fails with exit 5 naming it, the VM stays stopped', async () => {
    const taken = createServer();
    await new Promise<void>((r) => taken.listen(0, '127.0.0.1', () => r()));
    const port = (taken.address() as { port: number }).port;
    try {
      const f = vmFile('busy', ['network:', `  - forwards: [{ host: ${port}, guest: 80 }]`]);
      expect((await h.run(['create', '-f', f])).code).toBe(0);
      const r = await h.run(['start', 'busy']);
      expect(r.code).toBe(5);
      expect(r.stderr).toContain(`127.0.0.1:${port}`);
      expect(r.stderr).toContain('EADDRINUSE');
      expect(JSON.parse((await h.run(['info', 'busy', '--json'])).stdout).state).toBe('stopped');
    } finally {
      taken.close();
    }
  });

  it('port add/remove need a running VM (exit 5); a bad forward is a usage error (exit 2)', async () => {
    vmFile('idle', []);
    expect((await h.run(['create', '-f', join(h.home, 'idle.yaml')])).code).toBe(0);
    const r = await h.run(['port', 'add', 'idle', '8080:80']);
    expect(r.code).toBe(5);
    expect(r.stderr).toMatch(/VM idle is stopped/);
    expect((await h.run(['port', 'add', 'idle', '8080'])).code).toBe(2);
    expect((await h.run(['port', 'add', 'idle', 'x:80'])).code).toBe(2);
  });

  it('validate: network: none, a NIC beyond the slots, and the default NIC left out with a warning', async () => {
    const none = vmFile('none', ['network: none']);
    const v = await h.run(['validate', '-f', none]);
    expect(v.code).toBe(0);
    expect(v.stdout).toContain('0 NICs');
    for (let i = 0; i < 8; i++) writeFileSync(join(h.home, `d${i}.img`), Buffer.alloc(4096));
    const disks = ['disks:', ...Array.from({ length: 8 }, (_, i) => `  - path: d${i}.img`)];
    const full = vmFile('full', disks);
    const w = await h.run(['validate', '-f', full]);
    expect(w.code).toBe(0);
    expect(w.stderr).toMatch(/warning: no NIC: the 8 disks take all 8 virtio slots/);
    const over = vmFile('over', [...disks, 'network: user']);
    const o = await h.run(['validate', '-f', over]);
    expect(o.code).toBe(2);
    expect(o.stderr).toMatch(/over\.yaml:\d+:\d+: network\[0\]: no virtio slot left for this NIC: 8 disks and 1 NIC;/);
  });
});
