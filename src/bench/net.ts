// The network section of `npm run bench` (alone: `npm run bench:net`): TCP throughput between the
// Linux test guest and the host, guest -> host and host -> guest, on vmctl (the real CLI, daemon
// and worker, default user-mode NIC) and on QEMU (`-netdev user` with hostfwd, slirp) with the
// same kernel and initramfs. guest -> host: the host fetches a file from the guest's busybox
// httpd (sendfile) through a port forward; host -> guest: the guest fetches from a host HTTP
// server at 10.0.2.2 with busybox wget. BENCH_NET_MIB sets the size of each transfer (64).

import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, get as httpGet } from 'node:http';
import { join } from 'node:path';
import { Vmctl, VMCTL, vmYaml } from './linux.js';
import { processCpuSeconds, type Row, type Timing } from './measure.js';
import { freePort, QemuLinux } from './qemu-linux.js';

export const NET_MIB = Number(process.env.BENCH_NET_MIB ?? 64);

/** Each transfer's wall seconds, and the CPU seconds of the process running the guest and its
 *  network (vmctl's daemon, with the VM's worker thread; QEMU) meanwhile: steadier than wall time
 *  on a shared machine. */
interface Figures { g2h: Timing; h2g: Timing }

export interface NetBenchOptions {
  /** Folder with Image, initramfs.cpio.gz and kernel.config. */
  guest: string;
  /** Scratch folder (removed by the caller). */
  tmp: string;
  qemu: boolean;
  log: (s: string) => void;
}

/** Why the guest cannot run the network bench (no VIRTIO_NET in its kernel), or null. */
export function checkNetGuest(dir: string): string | null {
  let cfg = '';
  try { cfg = readFileSync(join(dir, 'kernel.config'), 'utf8'); } catch { /* checked below */ }
  return cfg.includes('\nCONFIG_VIRTIO_NET=y') ? null : `${dir} has no Linux build with VIRTIO_NET: run fixtures/linux/build.sh`;
}

/** host -> guest: the guest fetches `bytes` from a host HTTP server with wget; seconds from the
 *  request to the end of the command. */
async function hostToGuest(bytes: number, run: (cmd: string) => Promise<string>): Promise<number> {
  let t0 = 0;
  const chunk = Buffer.alloc(1 << 20, 0x5a);
  const server = createHttpServer((_req, res) => {
    t0 = performance.now();
    res.writeHead(200, { 'content-length': bytes });
    let sent = 0;
    const pump = (): void => {
      while (sent < bytes) {
        sent += chunk.length;
        if (!res.write(chunk)) { res.once('drain', pump); return; }
      }
      res.end();
    };
    pump();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  try {
    // To /dev/null: a pipe to another process would measure the guest's context switches.
    // wget fails when fewer bytes than the Content-Length arrive.
    const out = await run(`wget -q -O /dev/null http://10.0.2.2:${(server.address() as { port: number }).port}/ && echo fetched-ok`);
    const secs = (performance.now() - t0) / 1000;
    if (!out.includes('fetched-ok')) throw new Error(`host->guest: wget failed: ${out.trim()}`);
    return secs;
  } finally {
    server.close();
  }
}

/** guest -> host: the host fetches `bytes` from the guest's busybox httpd (sendfile) through
 *  the forward at 127.0.0.1:`port`; seconds from the request to the last byte. */
function guestToHost(bytes: number, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    httpGet(`http://127.0.0.1:${port}/big`, (res) => {
      let got = 0;
      res.on('data', (b: Buffer) => { got += b.length; });
      res.on('end', () => {
        if (got !== bytes) reject(new Error(`guest->host: ${got} of ${bytes} bytes arrived (HTTP ${res.statusCode})`));
        else resolve((performance.now() - t0) / 1000);
      });
    }).on('error', reject);
  });
}

/** Both directions: `run` types a command into the guest and returns its output; the guest's
 *  port 8080 is forwarded to the host's 127.0.0.1:`fwdPort`. */
async function measure(run: (cmd: string) => Promise<string>, fwdPort: number, cpuPid: number): Promise<Figures> {
  const bytes = NET_MIB * 1048576;
  await run(`mkdir -p /tmp/www && dd if=/dev/zero of=/tmp/www/big bs=1M count=${NET_MIB} 2>/dev/null && httpd -p 8080 -h /tmp/www && echo ok`);
  const timed = async (f: () => Promise<number>): Promise<Timing> => {
    const c0 = processCpuSeconds(cpuPid);
    const wall = await f();
    const c1 = processCpuSeconds(cpuPid);
    return { wall, cpu: c0 === null || c1 === null ? null : c1 - c0 };
  };
  const g2h = await timed(() => guestToHost(bytes, fwdPort));
  const h2g = await timed(() => hostToGuest(bytes, run));
  return { g2h, h2g };
}

async function onVmctl(o: NetBenchOptions): Promise<Figures> {
  const dir = join(o.tmp, 'net');
  mkdirSync(dir, { recursive: true });
  const v = new Vmctl(dir);
  const file = join(dir, 'net.yaml');
  writeFileSync(file, vmYaml(o.guest, { name: 'net', cpus: 1, firmware: 'builtin', cmdline: 'console=ttyS0 vmctl=shell' }));
  try {
    v.must(['create', '-f', file]);
    v.must(['start', 'net', '--wait-for', 'shell on console', '--timeout', '5m']);
    v.must(['exec', 'net', '--', 'dmesg -n 1']);
    const fwdPort = (JSON.parse(v.must(['port', 'add', 'net', '0:8080', '--json'])) as { hostPort: number }).hostPort;
    // The host servers need this process's event loop while the guest runs a command.
    return await measure(async (cmd) => {
      let out = '';
      const code = await new Promise<number | null>((res) => {
        const c = spawn(process.execPath, [VMCTL, 'exec', 'net', '--timeout', '10m', '--', cmd], { env: v.env, stdio: ['ignore', 'pipe', 'inherit'] });
        c.stdout.on('data', (b: Buffer) => { out += b.toString(); });
        c.on('close', (c2) => res(c2));
      });
      if (code !== 0) throw new Error(`vmctl exec ${cmd}: exit ${code}`);
      return out;
    }, fwdPort, v.daemonPid());
  } finally {
    v.run(['daemon', 'stop'], 60_000);
  }
}

async function onQemu(o: NetBenchOptions): Promise<Figures> {
  const fwdPort = await freePort();
  const q = await QemuLinux.boot({ guest: o.guest, forwards: [{ proto: 'tcp', hostPort: fwdPort, guestPort: 8080 }] });
  try {
    return await measure(async (cmd) => (await q.run(cmd, 600_000)).out, fwdPort, q.pid);
  } finally {
    q.kill();
  }
}

/** Both directions on vmctl, then on QEMU: a row per direction (seconds per transfer, so the
 *  ratio is vmctl's time / QEMU's as in every other row), and the throughputs in MiB/s logged
 *  (per wall second, and per CPU second of the emulator). */
export async function benchNet(o: NetBenchOptions): Promise<Row[]> {
  const mibs = (t: Timing): string => `${(NET_MIB / t.wall).toFixed(1)} MiB/s${t.cpu === null || t.cpu <= 0 ? '' : ` (${(NET_MIB / t.cpu).toFixed(1)} per CPU s)`}`;
  const line = (f: Figures): string => `guest->host ${mibs(f.g2h)}, host->guest ${mibs(f.h2g)}`;
  const ratio = (a: number | null, b: number | null): string => (a === null || b === null || a <= 0 ? '-' : (b / a).toFixed(2));
  o.log(`  TCP through user-mode NAT, ${NET_MIB} MiB each way, 1 hart: guest->host the host fetches from the guest's httpd through a forward, host->guest the guest's wget from 10.0.2.2`);
  const v = await onVmctl(o);
  o.log(`  vmctl: ${line(v)}`);
  const q = o.qemu ? await onQemu(o) : null;
  if (q !== null) {
    o.log(`  QEMU:  ${line(q)}  (-netdev user, virtio-net-device)`);
    o.log(`  throughput vmctl / QEMU: guest->host ${ratio(v.g2h.wall, q.g2h.wall)}, host->guest ${ratio(v.h2g.wall, q.h2g.wall)}; ` +
      `per CPU second: guest->host ${ratio(v.g2h.cpu, q.g2h.cpu)}, host->guest ${ratio(v.h2g.cpu, q.h2g.cpu)}`);
  }
  const row = (name: string, k: keyof Figures): Row => ({ group: 'linux network', name, vmctl: v[k], qemu: q === null ? null : q[k] });
  return [row(`TCP guest->host ${NET_MIB} MiB`, 'g2h'), row(`TCP host->guest ${NET_MIB} MiB`, 'h2g')];
}
