// `npm run bench:net`: TCP throughput between the Linux test guest and the host, guest -> host and
// host -> guest, on vmctl (the real CLI, daemon and worker, default user-mode NIC) and on QEMU
// (`-netdev user`, slirp) with the same kernel and initramfs. In both the guest connects to
// 10.0.2.2 (the host's 127.0.0.1) with busybox nc; the host side counts bytes and time, from the
// first byte to the guest's end of stream. Needs a build of fixtures/linux/build.sh with
// networking (VMCTL_LINUX_DIR, or ~/.cache/vmctl/linux/out). BENCH_NET_MIB sets the size (64).

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { homedir, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const LINUX = process.env.VMCTL_LINUX_DIR ?? join(homedir(), '.cache/vmctl/linux/out');
const MIB = Number(process.env.BENCH_NET_MIB ?? 64);
const BIN = resolve('bin/vmctl');
const QEMU_CPU = 'rv64,h=false,zba=false,zbb=false,zbc=false,zbs=false';
const OPENSBI = '/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_jump.bin';

interface Figures { g2h: number; h2g: number }

/**
 * A host server for one transfer. `sink` counts what the guest sends and resolves at its end of
 * stream; `source` sends `bytes` and ends, and resolves (with the time since the guest
 * connected) once the guest has reported, after its end of stream, how much it read.
 */
async function transfer(mode: 'sink' | 'source', bytes: number, guest: (port: number) => Promise<string>): Promise<number> {
  let t0 = 0;
  let got = 0;
  let endAt = 0;
  const server: Server = createServer({ allowHalfOpen: true }, (s) => {
    t0 = performance.now();
    s.on('error', () => {});
    if (mode === 'sink') {
      s.on('data', (b) => { got += b.length; });
      s.on('end', () => { endAt = performance.now(); s.end(); });
      return;
    }
    const chunk = Buffer.alloc(1 << 20, 0x5a);
    let sent = 0;
    const pump = (): void => {
      while (sent < bytes) {
        sent += chunk.length;
        if (!s.write(chunk)) { s.once('drain', pump); return; }
      }
      s.end();
    };
    pump();
    s.on('data', () => {});
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  try {
    const out = await guest((server.address() as { port: number }).port);
    if (mode === 'source') {
      endAt = performance.now();
      got = Number(/(\d+)\s*$/.exec(out.trim())?.[1] ?? -1);
    }
    if (got !== bytes) throw new Error(`${mode}: ${got} of ${bytes} bytes arrived`);
    return bytes / 1048576 / ((endAt - t0) / 1000);
  } finally {
    server.close();
  }
}

/** Both directions, with `run` typing a command into the guest and returning its output. */
async function measure(run: (cmd: string) => Promise<string>): Promise<Figures> {
  const bytes = MIB * 1048576;
  const g2h = await transfer('sink', bytes, (port) => run(`dd if=/dev/zero bs=64k count=${MIB * 16} 2>/dev/null | nc 10.0.2.2 ${port}`));
  const h2g = await transfer('source', bytes, (port) => run(`nc 10.0.2.2 ${port} | wc -c`));
  return { g2h, h2g };
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
    });
  } finally {
    vmctl(home, ['daemon', 'stop']);
    rmSync(home, { recursive: true, force: true });
  }
}

async function onQemu(): Promise<Figures | null> {
  const have = spawnSync('qemu-system-riscv64', ['--version']).status === 0;
  if (!have || !existsSync(OPENSBI)) return null;
  const q: ChildProcess = spawn('qemu-system-riscv64', [
    '-machine', 'virt', '-cpu', QEMU_CPU, '-m', '256M', '-smp', '1', '-nographic', '-monitor', 'none', '-serial', 'stdio',
    '-bios', OPENSBI, '-kernel', join(LINUX, 'Image'), '-initrd', join(LINUX, 'initramfs.cpio.gz'),
    '-append', 'console=ttyS0 vmctl=shell', '-global', 'virtio-mmio.force-legacy=false',
    '-netdev', 'user,id=n0', '-device', 'virtio-net-device,netdev=n0',
  ], { stdio: ['pipe', 'pipe', 'inherit'] });
  let text = '';
  q.stdout!.on('data', (b: Buffer) => { text += b.toString('latin1'); });
  const waitFor = async (re: RegExp, ms: number): Promise<void> => {
    const deadline = Date.now() + ms;
    while (!re.test(text)) {
      if (Date.now() > deadline || q.exitCode !== null) throw new Error(`qemu: no ${re} in ${ms} ms`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  let n = 0;
  try {
    await waitFor(/shell on console/, 300_000);
    await new Promise((r) => setTimeout(r, 500));
    q.stdin!.write('dmesg -n 1\n');
    return await measure(async (cmd) => {
      const k = ++n;
      const from = text.length;
      q.stdin!.write(`${cmd}; echo "bench-done-$((${k}*7))"\n`);
      await waitFor(new RegExp(`bench-done-${k * 7}`), 600_000);
      const seen = text.slice(from);
      return seen.slice(seen.indexOf('\n') + 1, seen.lastIndexOf(`bench-done-${k * 7}`));
    });
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
  console.log(`TCP through user-mode NAT, ${MIB} MiB each way, Linux test guest (1 hart), busybox nc`);
  const v = await onVmctl();
  console.log(`vmctl: ${fmt(v)}`);
  const q = await onQemu();
  if (q) {
    console.log(`qemu:  ${fmt(q)}  (-netdev user, virtio-net-device)`);
    console.log(`ratio: vmctl/qemu guest->host ${(v.g2h / q.g2h).toFixed(2)}, host->guest ${(v.h2g / q.h2g).toFixed(2)}`);
  } else console.log('qemu:  not run (qemu-system-riscv64 or OpenSBI missing)');
}
