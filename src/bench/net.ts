// `npm run bench:net`: TCP throughput between the Linux test guest and the host, guest -> host and
// host -> guest, on vmctl (the real CLI, daemon and worker, default user-mode NIC) and on QEMU
// (`-netdev user` with hostfwd, slirp) with the same kernel and initramfs. guest -> host: the host
// fetches a file from the guest's busybox httpd (sendfile) through a port forward; host -> guest:
// the guest fetches from a host HTTP server at 10.0.2.2 with busybox wget. Needs a build of
// fixtures/linux/build.sh with networking (VMCTL_LINUX_DIR, or ~/.cache/vmctl/linux/out).
// BENCH_NET_MIB sets the size of each transfer (64).

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, get as httpGet } from 'node:http';
import { createServer } from 'node:net';
import { homedir, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { QEMU_CPU, qemuShell } from './qemu.js';

const LINUX = process.env.VMCTL_LINUX_DIR ?? join(homedir(), '.cache/vmctl/linux/out');
const MIB = Number(process.env.BENCH_NET_MIB ?? 64);
const BIN = resolve('bin/vmctl');
const OPENSBI = '/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_jump.bin';

interface Figures { g2h: number; h2g: number }

/** host -> guest: the guest fetches `bytes` from a host HTTP server with wget; MiB/s from the
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
    return bytes / 1048576 / secs;
  } finally {
    server.close();
  }
}

/** guest -> host: the host fetches `bytes` from the guest's busybox httpd (sendfile) through
 *  the forward at 127.0.0.1:`port`; MiB/s from the request to the last byte. */
function guestToHost(bytes: number, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    httpGet(`http://127.0.0.1:${port}/big`, (res) => {
      let got = 0;
      res.on('data', (b: Buffer) => { got += b.length; });
      res.on('end', () => {
        if (got !== bytes) reject(new Error(`guest->host: ${got} of ${bytes} bytes arrived (HTTP ${res.statusCode})`));
        else resolve(bytes / 1048576 / ((performance.now() - t0) / 1000));
      });
    }).on('error', reject);
  });
}

/** Both directions: `run` types a command into the guest and returns its output; the guest's
 *  port 8080 is forwarded to the host's 127.0.0.1:`fwdPort`. */
async function measure(run: (cmd: string) => Promise<string>, fwdPort: number): Promise<Figures> {
  const bytes = MIB * 1048576;
  await run(`mkdir -p /tmp/www && dd if=/dev/zero of=/tmp/www/big bs=1M count=${MIB} 2>/dev/null && httpd -p 8080 -h /tmp/www && echo ok`);
  const g2h = await guestToHost(bytes, fwdPort);
  const h2g = await hostToGuest(bytes, run);
  return { g2h, h2g };
}

/** A free TCP port on 127.0.0.1 (for QEMU's hostfwd, which needs a number). */
async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const p = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return p;
}

function vmctl(home: string, args: string[]): { code: number | null; out: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], { env: { ...process.env, VMCTL_HOME: home }, encoding: 'utf8', timeout: 600_000 });
  return { code: r.status, out: `${r.stdout}${r.stderr}` };
}

async function onVmctl(): Promise<Figures> {
  const home = mkdtempSync(join(tmpdir(), 'vmctl-bench-net-'));
  try {
    writeFileSync(join(home, 'b.yaml'), [
      'name: bench', 'cpus: 1', 'memory: 256MiB', 'boot:', '  firmware: builtin', `  kernel: ${join(LINUX, 'Image')}`,
      `  initrd: ${join(LINUX, 'initramfs.cpio.gz')}`, '  cmdline: "console=ttyS0 vmctl=shell"', '',
    ].join('\n'));
    for (const args of [['create', '-f', join(home, 'b.yaml')], ['start', 'bench', '--wait-for', 'shell on console', '--timeout', '5m'], ['exec', 'bench', '--', 'dmesg -n 1']]) {
      const r = vmctl(home, args);
      if (r.code !== 0) throw new Error(`vmctl ${args.join(' ')}: ${r.out}`);
    }
    const fwd = vmctl(home, ['port', 'add', 'bench', '0:8080', '--json']);
    if (fwd.code !== 0) throw new Error(`vmctl port add: ${fwd.out}`);
    const fwdPort = (JSON.parse(fwd.out) as { hostPort: number }).hostPort;
    // exec runs synchronously in this process; the host servers need the event loop meanwhile.
    return await measure(async (cmd) => {
      let out = '';
      const code = await new Promise<number | null>((res) => {
        const c = spawn(process.execPath, [BIN, 'exec', 'bench', '--timeout', '10m', '--', cmd], { env: { ...process.env, VMCTL_HOME: home }, stdio: ['ignore', 'pipe', 'inherit'] });
        c.stdout.on('data', (b: Buffer) => { out += b.toString(); });
        c.on('close', (c2) => res(c2));
      });
      if (code !== 0) throw new Error(`vmctl exec ${cmd}: exit ${code}`);
      return out;
    }, fwdPort);
  } finally {
    vmctl(home, ['daemon', 'stop']);
    rmSync(home, { recursive: true, force: true });
  }
}

async function onQemu(): Promise<Figures | null> {
  const have = spawnSync('qemu-system-riscv64', ['--version']).status === 0;
  if (!have || !existsSync(OPENSBI)) return null;
  const fwdPort = await freePort();
  const q: ChildProcess = spawn('qemu-system-riscv64', [
    '-machine', 'virt', '-cpu', QEMU_CPU, '-m', '256M', '-smp', '1', '-nographic', '-monitor', 'none', '-serial', 'stdio',
    '-bios', OPENSBI, '-kernel', join(LINUX, 'Image'), '-initrd', join(LINUX, 'initramfs.cpio.gz'),
    '-append', 'console=ttyS0 vmctl=shell', '-global', 'virtio-mmio.force-legacy=false',
    '-netdev', `user,id=n0,hostfwd=tcp:127.0.0.1:${fwdPort}-:8080`, '-device', 'virtio-net-device,netdev=n0',
  ], { stdio: ['pipe', 'pipe', 'inherit'] });
  const { waitFor, run } = qemuShell(q);
  try {
    await waitFor(/shell on console/, 300_000);
    await new Promise((r) => setTimeout(r, 500));
    q.stdin!.write('dmesg -n 1\n');
    return await measure(run, fwdPort);
  } finally {
    q.kill('SIGKILL');
  }
}

function config(): string {
  try { return readFileSync(join(LINUX, 'kernel.config'), 'utf8'); } catch { return ''; }
}

if (!config().includes('\nCONFIG_VIRTIO_NET=y')) {
  console.log(`bench:net: ${LINUX} has no Linux build with VIRTIO_NET (run fixtures/linux/build.sh, or set VMCTL_LINUX_DIR)`);
  process.exitCode = 1;
} else {
  const fmt = (f: Figures): string => `guest->host ${f.g2h.toFixed(1)} MiB/s, host->guest ${f.h2g.toFixed(1)} MiB/s`;
  console.log(`TCP through user-mode NAT, ${MIB} MiB each way, Linux test guest (1 hart): guest->host httpd to the host, host->guest wget from the host`);
  const v = await onVmctl();
  console.log(`vmctl: ${fmt(v)}`);
  const q = await onQemu();
  if (q) {
    console.log(`qemu:  ${fmt(q)}  (-netdev user, virtio-net-device)`);
    console.log(`ratio: vmctl/qemu guest->host ${(v.g2h / q.g2h).toFixed(2)}, host->guest ${(v.h2g / q.h2g).toFixed(2)}`);
  } else console.log('qemu:  not run (qemu-system-riscv64 or OpenSBI missing)');
}
