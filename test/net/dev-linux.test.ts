// TEMP exploration
import { createHash, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { describe, expect, it } from 'vitest';
import { runGuest } from '../helpers/run-guest.js';
import { UserNetwork } from '../../src/net/user-net.js';

const LINUX = process.env.VMCTL_LINUX_DIR ?? '/tmp/vmctl-linux-net/out';
describe('dev', () => {
  it('boots with a NIC', async () => {
    const data = randomBytes(Number(process.env.SIZE ?? 1 << 20));
    const sha = createHash('sha256').update(data).digest('hex');
    const { createServer: tcpServer } = await import('node:net');
    let got = 0; let t0 = 0;
    const srv = tcpServer((s) => { s.on('data', (b) => { if (!t0) t0 = Date.now(); got += b.length; }); s.on('end', () => { console.log('SINK', got, 'bytes in', Date.now() - t0, 'ms'); s.end(); }); });
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const port = (srv.address() as { port: number }).port;
    const nets: UserNetwork[] = [];
    let t1 = 0;
    const r = await runGuest({
      kernelPath: `${LINUX}/Image`, initrdPath: `${LINUX}/initramfs.cpio.gz`, firmware: { kind: 'builtin' },
      memoryBytes: 256 * 1024 * 1024, cmdline: 'console=ttyS0 vmctl=shell',
      nics: [{ mac: '52:54:00:12:34:56', network: { mode: 'user', forwards: [], restrict: false } }],
    }, {
      timeoutMs: 240_000,
      onOutput: (t) => { process.stdout.write(t);  },
      onLog: (m) => console.log('LOG', m),
      openNic: () => {
        const n = new UserNetwork({ name: 'nic0', log: (m) => console.log('NET', m) }); nets.push(n);
        const st = { ok: 0, fail: 0, bytes: 0, big: 0, tx: 0, rxspace: 0 };
        (globalThis as any).ST = st;
        const origAttach = n.attach.bind(n);
        n.attach = (nic) => origAttach({ get mac() { return nic.mac; }, get rxCsumOffload() { return nic.rxCsumOffload; }, get rxTso4() { return nic.rxTso4; }, deliver: (f, o) => { const ok = nic.deliver(f, o); if (ok) { st.ok++; st.bytes += f.length; if (f.length > 2000) st.big++; } else st.fail++; return ok; } });
        const origTx = n.transmit.bind(n);
        n.transmit = (f, o) => { st.tx++; if (f.length > 2000) st.big++; (st as any).txBytes = ((st as any).txBytes ?? 0) + f.length; origTx(f, o); };
        const origRx = n.rxSpace.bind(n);
        n.rxSpace = () => { st.rxspace++; origRx(); };
        setInterval(() => console.log('STAT', JSON.stringify(st)), 5000).unref();
        return n;
      },
      script: [
        { when: 'vmctl-guest:/# ', send: `dmesg -n 1; cat /proc/uptime; dd if=/dev/zero bs=64k count=320 | nc 10.0.2.2 ${port}; cat /proc/uptime; sleep 1; poweroff -f\n` },
      ],
    });
    for (const n of nets) n.close();
    srv.close();
    console.log('expected', sha);
    
  }, 300_000);
});
