// `npm run bench:memory`: host memory of a Linux guest with `memory: 1GiB` (and `--cpus N` harts) and its balloon, on
// vmctl (the real CLI, daemon and worker thread) and on QEMU (`-device virtio-balloon-device`
// with free page reporting, `balloon` in the monitor) with the same kernel and initramfs, in the
// same run. vmctl's figure is the daemon's RSS (VmRSS) minus an idle daemon's, QEMU's its process
// RSS. The steps (issue 13):
//   boot          the guest's shell is up;
//   fill          the guest writes 600 MiB to a tmpfs;
//   freed         it deletes the file: with free page reporting the host's memory falls (sampled
//                 every second for 10 s; the first second at which it is within 100 MiB of boot);
//   target 128MiB the balloon is inflated to leave the guest 128 MiB (`vmctl set --memory-target`,
//                 QEMU `balloon 128`): the guest's free and available memory, and the host's;
//   refill        the target goes back to 1 GiB and the guest fills 600 MiB again (it must work).
//   overcommit    four 1 GiB guests on host: { memory: 2GiB, overcommit: 2 } read 500 MiB each
//                 (src/bench/memory-overcommit.ts); PASS or FAIL per criterion, exit 1 on a FAIL.
// Needs the Linux test guest (fixtures/linux/build.sh; VMCTL_LINUX_DIR or ~/.cache/vmctl/linux/out).

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { qemuLinuxMissing, QemuLinux } from './qemu-linux.js';
import { hmpCommand } from './qemu.js';
import { rssOf, sleep, until, vmctlIn, vmctlOk } from './vmctl-proc.js';
import { overcommitScenario } from './memory-overcommit.js';

const LINUX = process.env.VMCTL_LINUX_DIR ?? join(homedir(), '.cache/vmctl/linux/out');
const MiB = 1024 * 1024;
const CMDLINE = 'console=ttyS0 vmctl=shell';

/** One guest under test: how to type a command, move the balloon, and read the host's memory. */
interface Guest {
  run(cmd: string): Promise<string>;
  /** Moves the balloon so the guest keeps `mib`; resolves once the guest has done it. */
  target(mib: number): Promise<void>;
  /** Host memory this guest costs now, bytes. */
  hostBytes(): number;
}

interface Row { step: string; hostMiB: number; guestFreeMiB?: number; guestAvailMiB?: number; note?: string }

/** free -m's Mem: free and available. */
async function guestFree(g: Guest): Promise<{ free: number; avail: number }> {
  const line = (await g.run('free -m')).split('\n').find((l) => l.trim().startsWith('Mem:'));
  if (!line) throw new Error('free -m printed no Mem: line');
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  return { free: f[2], avail: f[5] };
}

/** The scenario; the same on both. */
async function scenario(g: Guest): Promise<Row[]> {
  const rows: Row[] = [];
  const mib = (): number => Math.round(g.hostBytes() / MiB);
  await g.run('dmesg -n 1; mount -t tmpfs none /mnt');
  await sleep(2000);
  const boot = mib();
  rows.push({ step: 'after boot', hostMiB: boot });
  const out = await g.run('dd if=/dev/zero of=/mnt/f bs=1M count=600 2>&1 | tail -1; sync');
  if (!out.includes('600+0 records out')) throw new Error(`filling 600 MiB failed: ${out}`);
  rows.push({ step: 'tmpfs filled with 600 MiB', hostMiB: mib() });
  await g.run('rm /mnt/f');
  const t0 = Date.now();
  let fellAt: number | null = null;
  for (let s = 1; s <= 10; s++) {
    await sleep(t0 + s * 1000 - Date.now());
    if (fellAt === null && mib() <= boot + 100) fellAt = s;
  }
  rows.push({ step: 'file deleted, 10 s later', hostMiB: mib(), note: fellAt === null ? 'not back within 100 MiB of boot in 10 s' : `within 100 MiB of boot after ${fellAt} s` });
  await g.target(128);
  await sleep(2000);
  const low = await guestFree(g);
  rows.push({ step: 'balloon target 128 MiB', hostMiB: mib(), guestFreeMiB: low.free, guestAvailMiB: low.avail });
  await g.target(1024);
  const again = await g.run('dd if=/dev/zero of=/mnt/h bs=1M count=600 2>&1 | tail -1; rm /mnt/h');
  rows.push({ step: 'target 1 GiB, 600 MiB filled again', hostMiB: mib(), note: again.includes('600+0 records out') ? 'ok' : `failed: ${again.trim()}` });
  return rows;
}

async function onVmctl(cpus: number): Promise<{ idleMiB: number; rows: Row[] }> {
  const home = mkdtempSync(join(tmpdir(), 'vmctl-bench-memory-'));
  const vmctl = (args: string[]): Promise<string> => vmctlOk(home, args);
  try {
    await vmctl(['daemon', 'start']);
    const pid = (JSON.parse(await vmctl(['daemon', 'status', '--json'])) as { pid: number }).pid;
    await sleep(3000);
    const idle = rssOf(pid);
    writeFileSync(join(home, 'm.yaml'), [
      'name: mem', `cpus: ${cpus}`, 'memory: {size: 1GiB, min: 96MiB}', 'boot:', '  firmware: builtin', `  kernel: ${join(LINUX, 'Image')}`,
      `  initrd: ${join(LINUX, 'initramfs.cpio.gz')}`, `  cmdline: "${CMDLINE}"`, 'balloon:', '  statsInterval: 1s', '',
    ].join('\n'));
    await vmctl(['create', '-f', join(home, 'm.yaml')]);
    await vmctl(['start', 'mem', '--wait-for', 'shell on console', '--timeout', '10m']);
    const info = async (): Promise<{ balloonBytes: number | null; targetBytes: number | null }> =>
      (JSON.parse(await vmctl(['info', 'mem', '--json'])) as { memory: { balloonBytes: number | null; targetBytes: number | null } }).memory;
    const rows = await scenario({
      run: (cmd) => vmctl(['exec', 'mem', '--timeout', '10m', '--', cmd]),
      target: async (m) => {
        await vmctl(['set', 'mem', '--memory-target', `${m}MiB`]);
        await until(async () => ((await info()).balloonBytes === (1024 - m) * MiB ? true : null), 300_000, `the balloon to leave ${m} MiB`);
      },
      hostBytes: () => rssOf(pid) - idle,
    });
    return { idleMiB: Math.round(idle / MiB), rows };
  } finally {
    await vmctlIn(home, ['daemon', 'stop', '--force']);
    rmSync(home, { recursive: true, force: true });
  }
}

async function onQemu(cpus: number): Promise<Row[] | null> {
  if (qemuLinuxMissing() !== null) return null;
  const dir = mkdtempSync(join(tmpdir(), 'vmctl-bench-memory-qemu-'));
  const monitor = join(dir, 'monitor.sock');
  const hmp = (cmd: string): Promise<string> => hmpCommand(monitor, cmd);
  let q: QemuLinux | null = null;
  try {
    q = await QemuLinux.boot({
      guest: LINUX, forwards: [], memoryMiB: 1024, cpus, monitorSocket: monitor,
      devices: ['virtio-balloon-device,deflate-on-oom=on,free-page-reporting=on'],
    });
    const vm = q;
    return await scenario({
      run: async (cmd) => (await vm.run(cmd, 600_000)).out,
      target: async (m) => {
        await hmp(`balloon ${m}`);
        await until(async () => (new RegExp(`actual=${m}\\b`).test(await hmp('info balloon')) ? true : null), 300_000, `QEMU's balloon to leave ${m} MiB`);
      },
      hostBytes: () => rssOf(vm.pid),
    });
  } finally {
    q?.kill();
    rmSync(dir, { recursive: true, force: true });
  }
}

function table(rows: Row[]): string {
  return rows.map((r) => `  ${r.step.padEnd(36)} ${String(r.hostMiB).padStart(5)} MiB` +
    (r.guestFreeMiB !== undefined ? `   guest free ${r.guestFreeMiB} MiB, available ${r.guestAvailMiB} MiB` : '') +
    (r.note ? `   (${r.note})` : '')).join('\n');
}

// Arguments: --only single|overcommit (default both), --cpus N (harts of the single guest, and
// QEMU's -smp; default 1), --no-qemu, --no-compare (the overcommit scenario without its
// autoBalloon: false run).
const args = process.argv.slice(2);
const only = args.includes('--only') ? args[args.indexOf('--only') + 1] : null;
const cpusArg = args.includes('--cpus') ? args[args.indexOf('--cpus') + 1] : '1';
const cpus = Number(cpusArg);
const config = ((): string => { try { return readFileSync(join(LINUX, 'kernel.config'), 'utf8'); } catch { return ''; } })();
if (!config.includes('\nCONFIG_VIRTIO_BALLOON=y')) {
  console.log(`bench:memory: ${LINUX} has no Linux build with VIRTIO_BALLOON (run fixtures/linux/build.sh, or set VMCTL_LINUX_DIR)`);
  process.exitCode = 1;
} else if (only !== null && only !== 'single' && only !== 'overcommit') {
  console.log(`bench:memory: --only ${only}: expected single or overcommit`);
  process.exitCode = 2;
} else if (!/^[1-8]$/.test(cpusArg ?? '')) {
  console.log(`bench:memory: --cpus ${cpusArg}: expected a number of harts, 1 to 8`);
  process.exitCode = 2;
} else {
  const qemu = !args.includes('--no-qemu');
  if (only !== 'overcommit') {
    console.log(`Host memory of the Linux test guest, memory: 1GiB, balloon with free page reporting (${cpus} hart${cpus === 1 ? '' : 's'})`);
    const v = await onVmctl(cpus);
    console.log(`vmctl (daemon RSS minus an idle daemon's ${v.idleMiB} MiB):\n${table(v.rows)}`);
    const q = qemu ? await onQemu(cpus) : null;
    if (q) console.log(`qemu (process RSS; -device virtio-balloon-device,free-page-reporting=on, monitor balloon):\n${table(q)}`);
    else console.log(`qemu: not run (${qemu ? qemuLinuxMissing() : '--no-qemu'})`);
  }
  if (only !== 'single') {
    const dir = mkdtempSync(join(tmpdir(), 'vmctl-bench-overcommit-'));
    try {
      if (!await overcommitScenario(LINUX, dir, { noPolicy: !args.includes('--no-compare'), qemu })) process.exitCode = 1;
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
}
