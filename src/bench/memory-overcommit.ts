// `npm run bench:memory` (issue 13), the overcommit scenario: with config.yaml `host: { memory:
// 2GiB, overcommit: 2 }`, four Linux test guests with `memory: 1GiB` start and a fifth is refused
// (exit 5, with the figures). Each of the four has its own disk (linked clones of one sparse ext2
// image holding a 500 MiB file of random bytes) and reads the file (`cat f >/dev/null`; the guest
// keeps it as page cache, as guests hoard cache in real life): 2 GiB of cache in all, more than
// the host gives the VMs. Printed: the daemon's RSS over time and its maximum, each VM's resident
// memory, balloon target and actual size and the guest's own figures (`vmctl stats --json`),
// whether every guest still answers a command, and whether a guest that needs memory back gets it
// (one guest fills 400 MiB of /tmp, a ramfs, which cannot be dropped: no OOM lines in its dmesg).
// Run with the balloon policy (autoBalloon: true) and without it for comparison; then the same
// four guests on QEMU (no policy there: `-device virtio-balloon-device` alone) for their RSS sum.

import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { qemuLinuxMissing, QemuLinux } from './qemu-linux.js';
import { rssOf, sleep, vmctlIn, vmctlOk } from './vmctl-proc.js';

const MiB = 1024 * 1024;
const FILE_MIB = 500;
const FILL_MIB = 400;
const NAMES = ['o1', 'o2', 'o3', 'o4'];
/** How long the four reads may take in all (four guests share the machine's cores). */
const READ_TIMEOUT_MS = 25 * 60_000;
/** Without the policy, VMs end up paused for memory: the reads are given up once every VM that
 *  has not finished has been paused this long. */
const STUCK_MS = 90_000;

interface Stat {
  name: string; state: string;
  memory: { residentBytes: number | null; targetBytes: number | null; actualBytes: number | null; guestFreeBytes: number | null; guestAvailableBytes: number | null; guestCachesBytes: number | null };
}

const mib = (b: number | null | undefined): string => (b === null || b === undefined ? '-' : String(Math.round(b / MiB)));

/** A sparse raw ext2 image with `data`, FILE_MIB MiB of random bytes (mke2fs -d). */
export function buildDataImage(dir: string): string {
  const stage = join(dir, 'stage');
  mkdirSync(stage, { recursive: true });
  const data = join(stage, 'data');
  const r = spawnSync('sh', ['-c', `head -c ${FILE_MIB}M /dev/urandom > '${data}'`]);
  if (r.status !== 0) throw new Error(`writing ${data} failed: ${r.stderr}`);
  const img = join(dir, 'base.img');
  const m = spawnSync('mke2fs', ['-q', '-F', '-t', 'ext2', '-b', '4096', '-d', stage, img, `${FILE_MIB + 40}M`], { encoding: 'utf8' });
  if (m.status !== 0) throw new Error(`mke2fs -d failed: ${m.stderr}`);
  rmSync(stage, { recursive: true, force: true });
  return img;
}

function statsTable(stats: readonly Stat[]): string {
  const rows = stats.map((s) => `    ${s.name.padEnd(4)} ${s.state.padEnd(8)} resident ${mib(s.memory.residentBytes).padStart(4)}  target ${mib(s.memory.targetBytes).padStart(4)}  actual ${mib(s.memory.actualBytes).padStart(4)}` +
    `  guest free ${mib(s.memory.guestFreeBytes).padStart(4)}  available ${mib(s.memory.guestAvailableBytes).padStart(4)}  caches ${mib(s.memory.guestCachesBytes).padStart(4)}  (MiB)`);
  return rows.join('\n');
}

/** The scenario on vmctl; its report lines (printed as they come). */
/** What the scenario shows on vmctl: the criteria the bench judges. */
export interface OvercommitResult {
  /** The fifth VM's start: exit 5 with the figures. */
  readonly refused: boolean;
  /** Every guest read its whole file. */
  readonly read: boolean;
  readonly maxRssMiB: number;
  /** Every guest answered a command after the reads and after the fill. */
  readonly healthy: boolean;
  /** o1 filled FILL_MIB MiB of /tmp without an OOM line in its kernel log. */
  readonly filled: boolean;
}

export async function overcommitOnVmctl(o: { linux: string; dir: string; image: string; autoBalloon: boolean; log: (s: string) => void }): Promise<OvercommitResult> {
  const home = join(o.dir, `home-${o.autoBalloon ? 'policy' : 'nopolicy'}`);
  mkdirSync(home, { recursive: true });
  const log = o.log;
  writeFileSync(join(home, 'config.yaml'), `host:\n  memory: 2GiB\n  overcommit: 2\n  autoBalloon: ${o.autoBalloon}\n`);
  const vmctl = (args: string[]): Promise<string> => vmctlOk(home, args);
  let pid = 0;
  let maxRss = 0;
  const timeline: string[] = [];
  const t0 = Date.now();
  const sample = (): number => {
    const r = rssOf(pid);
    maxRss = Math.max(maxRss, r);
    return r;
  };
  const stats = async (): Promise<Stat[]> => (await vmctl(['stats', '--json', ...NAMES])).trim().split('\n').map((l) => JSON.parse(l) as Stat);
  const exec = (name: string, cmd: string, timeout: string): Promise<{ code: number | null; out: string }> =>
    vmctlIn(home, ['exec', name, '--shell-timeout', '2m', '--timeout', timeout, '--', cmd]);
  try {
    await vmctl(['daemon', 'start']);
    pid = (JSON.parse(await vmctl(['daemon', 'status', '--json'])) as { pid: number }).pid;
    await sleep(3000);
    const idle = rssOf(pid);
    log(`  idle daemon RSS ${mib(idle)} MiB`);
    writeFileSync(join(home, 'o1.yaml'), [
      'name: o1', 'cpus: 1', 'memory: 1GiB', 'boot:', '  firmware: builtin', `  kernel: ${join(o.linux, 'Image')}`,
      `  initrd: ${join(o.linux, 'initramfs.cpio.gz')}`, '  cmdline: "console=ttyS0 vmctl=shell"', 'network: none',
      'disks:', `  - path: ${o.image}`, '    name: data', 'shutdown:', '  console: "poweroff -f\\n"', '',
    ].join('\n'));
    await vmctl(['create', '-f', join(home, 'o1.yaml')]);
    for (const n of [...NAMES.slice(1), 'o5']) await vmctl(['clone', 'o1', n, '--linked']);
    const sampler = setInterval(() => {
      const r = sample();
      const s = Math.round((Date.now() - t0) / 1000);
      if (timeline.length === 0 || s >= Number(timeline[timeline.length - 1].split('s')[0]) + 15) timeline.push(`${s}s ${mib(r)}`);
    }, 500);
    try {
      const b0 = Date.now();
      for (const n of NAMES) await vmctl(['start', n, '--wait-for', 'shell on console', '--timeout', '10m']);
      log(`  four VMs started (booted to their shells in ${Math.round((Date.now() - b0) / 1000)} s); daemon RSS ${mib(sample())} MiB`);
      const fifth = await vmctlIn(home, ['start', 'o5']);
      log(`  start o5: exit ${fifth.code}: ${fifth.out.trim()}`);
      const refused = fifth.code === 5 && /not enough host memory to start VM o5: it asks for 1GiB, the running VMs are configured with 4GiB .*the limit is 4GiB/.test(fifth.out);

      // The four read their files at once.
      const r0 = Date.now();
      const done = new Map<string, { code: number | null; out: string; s: number }>();
      const reads = NAMES.map(async (n) => {
        const r = await exec(n, `mount -t ext2 -o ro /dev/vda /mnt && cat /mnt/data >/dev/null && echo read-ok`, `${READ_TIMEOUT_MS / 1000}s`);
        done.set(n, { ...r, s: Math.round((Date.now() - r0) / 1000) });
      });
      let stuckSince: number | null = null;
      while (done.size < NAMES.length && Date.now() - r0 < READ_TIMEOUT_MS) {
        await Promise.race([Promise.all(reads), sleep(5000)]);
        if (done.size === NAMES.length) break;
        const st = await stats();
        const pending = st.filter((s) => !done.has(s.name));
        const allPaused = pending.length > 0 && pending.every((s) => s.state === 'paused');
        stuckSince = allPaused ? stuckSince ?? Date.now() : null;
        if (stuckSince !== null && Date.now() - stuckSince > STUCK_MS) {
          log(`  reads given up after ${Math.round((Date.now() - r0) / 1000)} s: ${pending.map((s) => s.name).join(', ')} paused for ${STUCK_MS / 1000} s`);
          break;
        }
      }
      for (const n of NAMES) {
        const d = done.get(n);
        log(`  ${n} read its ${FILE_MIB} MiB file: ${d ? (d.out.includes('read-ok') ? `ok in ${d.s} s` : `exit ${d.code} after ${d.s} s: ${d.out.trim().slice(-200)}`) : 'not finished'}`);
      }
      const read = NAMES.every((n) => done.get(n)?.out.includes('read-ok') === true);
      await sleep(10_000); // the policy settles, the guests send statistics
      log(`  after the reads (daemon RSS ${mib(sample())} MiB, max so far ${mib(maxRss)} MiB):\n${statsTable(await stats())}`);

      const health = async (): Promise<boolean> => {
        const res = await Promise.all(NAMES.map(async (n) => ({ n, r: await exec(n, 'echo alive-$((6*7))', '3m') })));
        log(`  every guest answers a command: ${res.map(({ n, r }) => `${n} ${r.out.includes('alive-42') ? 'yes' : `no (exit ${r.code})`}`).join(', ')}`);
        return res.every(({ r }) => r.out.includes('alive-42'));
      };
      let healthy = await health();

      // A guest that needs memory back: o1 fills FILL_MIB MiB of ramfs (it cannot be dropped).
      const f0 = Date.now();
      const fill = await exec('o1', `dd if=/dev/zero of=/tmp/fill bs=1M count=${FILL_MIB} 2>&1 | tail -1; echo oom-lines $(dmesg | grep -ci -e 'out of memory' -e oom-kill)`, '5m');
      const filled = fill.out.includes(`${FILL_MIB}+0 records out`) && /oom-lines 0\b/.test(fill.out);
      log(`  o1 fills ${FILL_MIB} MiB of /tmp: ${filled ? 'ok' : 'FAILED'} in ${Math.round((Date.now() - f0) / 1000)} s (exit ${fill.code}: ${fill.out.trim().split('\n').slice(-2).join(' | ')})`);
      await sleep(10_000);
      log(`  after the fill (daemon RSS ${mib(sample())} MiB):\n${statsTable(await stats())}`);
      healthy = (await health()) && healthy;
      const vmd = readFileSync(join(home, 'vmd.log'), 'utf8');
      const moves = vmd.split('\n').filter((l) => l.includes('balloon policy:'));
      const waits = vmd.split('\n').filter((l) => /waits for host memory|paused until there is/.test(l));
      log(`  balloon policy moves: ${moves.length}; waits for host memory: ${waits.length}`);
      for (const l of moves.slice(0, 3)) log(`    ${l.replace(/^\S+\s+/, '')}`);
      log(`  daemon RSS over time (s MiB): ${timeline.join(', ')}`);
      log(`  daemon RSS max ${mib(maxRss)} MiB (idle ${mib(idle)} MiB); host.memory 2048 MiB: ${maxRss < 2048 * MiB ? 'under' : 'OVER'}`);
      return { refused, read, maxRssMiB: Math.round(maxRss / MiB), healthy, filled };
    } finally {
      clearInterval(sampler);
    }
  } finally {
    await vmctlIn(home, ['daemon', 'stop', '--force']);
  }
}

/** The four guests on QEMU, reading the same files (qcow2 overlays of the image): RSS sum. */
export async function overcommitOnQemu(o: { linux: string; dir: string; image: string; log: (s: string) => void }): Promise<void> {
  const missing = qemuLinuxMissing();
  if (missing !== null) { o.log(`  qemu: not run (${missing})`); return; }
  const vms: QemuLinux[] = [];
  try {
    for (const n of NAMES) {
      const overlay = join(o.dir, `${n}.qcow2`);
      const c = spawnSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', o.image, '-F', 'raw', overlay], { encoding: 'utf8' });
      if (c.status !== 0) throw new Error(`qemu-img create failed: ${c.stderr}`);
      vms.push(await QemuLinux.boot({
        guest: o.linux, forwards: [], memoryMiB: 1024,
        drives: [`file=${overlay},format=qcow2,if=none,id=d0`],
        devices: ['virtio-blk-device,drive=d0', 'virtio-balloon-device,deflate-on-oom=on,free-page-reporting=on'],
      }));
    }
    const sum = (): number => vms.reduce((a, q) => a + rssOf(q.pid), 0);
    o.log(`  four QEMU guests booted: RSS sum ${mib(sum())} MiB`);
    let max = 0;
    const t = setInterval(() => { max = Math.max(max, sum()); }, 500);
    const r0 = Date.now();
    const res = await Promise.all(vms.map((q) => q.run('mount -t ext2 -o ro /dev/vda /mnt && cat /mnt/data >/dev/null && echo read-ok', READ_TIMEOUT_MS)));
    o.log(`  each read its ${FILE_MIB} MiB file: ${res.every((r) => r.out.includes('read-ok')) ? 'ok' : 'FAILED'} in ${Math.round((Date.now() - r0) / 1000)} s; RSS sum ${mib(sum())} MiB`);
    const fill = await vms[0].run(`dd if=/dev/zero of=/tmp/fill bs=1M count=${FILL_MIB} 2>&1 | tail -1`, 600_000);
    await sleep(2000);
    clearInterval(t);
    o.log(`  guest 1 fills ${FILL_MIB} MiB of /tmp: ${fill.out.includes(`${FILL_MIB}+0 records out`) ? 'ok' : 'FAILED'}; RSS sum ${mib(sum())} MiB (per guest ${vms.map((q) => mib(rssOf(q.pid))).join(', ')}); max ${mib(max)} MiB`);
  } finally {
    for (const q of vms) q.kill();
  }
}

/** The whole scenario: with the policy (judged: PASS or FAIL per criterion), without it, on
 *  QEMU; whether every criterion passed. */
export async function overcommitScenario(linux: string, dir: string, opts: { noPolicy: boolean; qemu: boolean }): Promise<boolean> {
  const log = (s: string): void => { console.log(s); };
  const image = buildDataImage(dir);
  const du = spawnSync('du', ['-m', image], { encoding: 'utf8' }).stdout.split('\t')[0];
  log(`Overcommit: host: { memory: 2GiB, overcommit: 2 }; four 1 GiB Linux guests, each reading a ${FILE_MIB} MiB file from its own disk (linked clones of a sparse ext2 image, ${du} MiB allocated)`);
  log('vmctl, autoBalloon: true');
  const withPolicy = await overcommitOnVmctl({ linux, dir, image, autoBalloon: true, log });
  const criteria: [string, boolean][] = [
    ['a fifth 1 GiB VM is refused: exit 5 with the figures', withPolicy.refused],
    [`every guest reads its ${FILE_MIB} MiB file`, withPolicy.read],
    [`daemon RSS stays under host.memory 2 GiB (max ${withPolicy.maxRssMiB} MiB)`, withPolicy.maxRssMiB < 2048],
    ['every guest answers a command after the reads and after the fill', withPolicy.healthy],
    [`a guest that needs memory back gets it: o1 fills ${FILL_MIB} MiB of /tmp without OOM`, withPolicy.filled],
  ];
  for (const [what, ok] of criteria) log(`  ${ok ? 'PASS' : 'FAIL'} ${what}`);
  if (opts.noPolicy) {
    log('vmctl, autoBalloon: false (for comparison: no criteria)');
    const without = await overcommitOnVmctl({ linux, dir, image, autoBalloon: false, log });
    log(`  => every guest read its file: ${without.read}, daemon RSS max ${without.maxRssMiB} MiB, every guest healthy: ${without.healthy}, o1 got ${FILL_MIB} MiB back: ${without.filled}`);
  }
  if (opts.qemu) {
    log('QEMU (-device virtio-balloon-device,free-page-reporting=on, no policy)');
    await overcommitOnQemu({ linux, dir, image, log });
  }
  return criteria.every(([, ok]) => ok);
}
