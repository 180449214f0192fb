// npm run soak:long [-- --minutes 60 --tickers 18]
//
// A long day for one daemon: TICKERS ticker VMs (fixtures/demo/loop.elf), one VM flooding its
// console (flood.elf: its serial log rotates all the time) and one Linux guest (fixtures/linux)
// writing files to an ext2 disk, all running for MINUTES; then all stopped (Linux through its
// shutdown.console, which unmounts the disk). It checks, and exits 1 unless:
//   - no VM was lost: every VM was running at every sample, and all end `stopped` (none aborted);
//   - the Linux guest kept writing, and its disk passes e2fsck -fn afterwards;
//   - the daemon's RSS is bounded: its largest sample in the second half of the run is at most 25%
//     above the largest of the first half;
//   - the daemon log holds no error (internal errors, crashes, failures, dropped clients).
// The Linux guest is built with fixtures/linux/build.sh when it is not cached yet.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { DEMO, mb, newHome, options, protocol, ROOT, sleep, vmctl } from './lib.mjs';

const o = options({ minutes: 60, tickers: 18, keep: '' });
const LINUX = process.env.VMCTL_LINUX_DIR ?? join(homedir(), '.cache', 'vmctl', 'linux', 'out');
const log = (m) => console.log(`${new Date().toISOString().slice(11, 19)} soak:long: ${m}`);

if (!existsSync(join(LINUX, 'Image')) || !existsSync(join(LINUX, 'initramfs.cpio.gz'))) {
  log(`building the Linux guest into ${LINUX} (fixtures/linux/build.sh)`);
  const b = spawnSync('bash', [join(ROOT, 'fixtures', 'linux', 'build.sh'), LINUX], { stdio: 'inherit' });
  if (b.status !== 0) throw new Error('fixtures/linux/build.sh failed');
}

const home = newHome('soak-long');
const tickers = Array.from({ length: o.tickers }, (_, i) => `tick${i}`);
const all = [...tickers, 'flood', 'linux'];
const problems = [];
try {
  await vmctl(home, ['daemon', 'start']);
  for (const n of tickers) await vmctl(home, ['create', '-f', join(DEMO, 'loop.yaml'), '--name', n]);
  await vmctl(home, ['create', '-f', join(DEMO, 'flood.yaml')]);

  // The Linux guest's disk: a fresh ext2 file system, checked on the host at the end.
  const disk = join(home, 'linux-disk.img');
  await vmctl(home, ['disk', 'create', disk, '--size', '64MiB']);
  const mk = spawnSync('mke2fs', ['-q', '-F', '-t', 'ext2', disk], { encoding: 'utf8' });
  if (mk.status !== 0) throw new Error(`mke2fs: ${mk.stderr}`);
  const lf = join(home, 'linux.yaml');
  writeFileSync(lf, [
    'name: linux', 'cpus: 1', 'memory: 128MiB', 'boot:', '  firmware: builtin',
    `  kernel: ${join(LINUX, 'Image')}`, `  initrd: ${join(LINUX, 'initramfs.cpio.gz')}`, '  cmdline: "console=ttyS0 vmctl=shell"',
    'disks:', `  - path: ${disk}`,
    // The writer (below) stops at /tmp/stop, unmounts, and says so in /tmp/done.
    'shutdown:', '  console: "touch /tmp/stop; while [ ! -e /tmp/done ]; do sleep 1; done; poweroff -f\\n"', '  timeout: 120s', '',
  ].join('\n'));
  await vmctl(home, ['create', '-f', lf]);

  const c = await protocol(home);
  for (const name of [...tickers, 'flood']) await c.request('vm.start', { name });
  log(`${tickers.length} tickers and the flood running; booting Linux`);
  await vmctl(home, ['start', 'linux', '--wait-for', 'shell on console', '--timeout', '10m']);
  // Every iteration writes 1 MiB of random data over one of 16 files, syncs, and says how far it got.
  const writer = 'mount -t ext2 /dev/vda /mnt && (i=0; while [ ! -e /tmp/stop ]; do i=$((i+1)); ' +
    'dd if=/dev/urandom of=/mnt/f$((i%16)) bs=64k count=16 2>/dev/null; sync; echo soak-wrote-$i; sleep 2; done; ' +
    'sync; umount /mnt && echo soak-unmounted; touch /tmp/done) &\n';
  await vmctl(home, ['console', 'linux'], { input: writer });

  const linuxWrites = async () => {
    const r = await c.request('vm.log', { name: 'linux' });
    const m = [...Buffer.from(r.data, 'base64').toString('latin1').matchAll(/soak-wrote-(\d+)/g)];
    return m.length ? Number(m[m.length - 1][1]) : 0;
  };
  const start = Date.now();
  const end = start + o.minutes * 60_000;
  const every = Math.min(30_000, Math.max(5_000, (o.minutes * 60_000) / 40));
  const samples = [];
  log('minute  rss-MB  heap-used-MB  running  linux-writes');
  for (;;) {
    const s = await c.request('daemon.status');
    const list = await c.request('vm.list');
    const running = list.filter((v) => v.state === 'running').length;
    for (const v of list) if (v.state !== 'running') problems.push(`at ${((Date.now() - start) / 60_000).toFixed(1)} min VM ${v.name} was ${v.state}${v.lastError ? ` (${v.lastError})` : ''}`);
    const writes = await linuxWrites();
    samples.push({ t: Date.now() - start, rss: s.memory.rss, writes });
    log(`${((Date.now() - start) / 60_000).toFixed(1).padStart(6)}  ${mb(s.memory.rss).padStart(6)}  ${mb(s.memory.heapUsed).padStart(12)}  ${String(running).padStart(7)}  ${String(writes).padStart(12)}`);
    if (running !== all.length) break;
    if (Date.now() >= end) break;
    await sleep(Math.min(every, end - Date.now()));
  }

  log('stopping every VM (Linux through its shutdown.console)');
  const stopLinux = vmctl(home, ['stop', 'linux', '--json'], { allowFail: true });
  await Promise.all([...tickers, 'flood'].map((name) => c.request('vm.stop', { name, force: true })));
  const ls = await stopLinux;
  if (ls.code !== 0 || JSON.parse(ls.stdout).path !== 'guest-poweroff') problems.push(`the Linux guest did not power off by itself: ${ls.stdout}${ls.stderr}`);
  const final = await c.request('vm.list');
  for (const n of all) {
    const v = final.find((x) => x.name === n);
    if (!v) problems.push(`VM ${n} is gone`);
    else if (v.state !== 'stopped') problems.push(`VM ${n} ended ${v.state}${v.lastError ? ` (${v.lastError})` : ''}`);
  }
  const linuxLog = Buffer.from((await c.request('vm.log', { name: 'linux' })).data, 'base64').toString('latin1');
  if (!linuxLog.includes('soak-unmounted')) problems.push('the Linux guest did not unmount its disk');
  await sleep(1000);
  const idle = await c.request('daemon.status');
  c.close();

  const fsck = spawnSync('e2fsck', ['-fn', disk], { encoding: 'utf8' });
  if (fsck.status !== 0) problems.push(`e2fsck -fn ${disk} exited ${fsck.status}:\n${fsck.stdout}${fsck.stderr}`);
  const writes = samples[samples.length - 1].writes;
  if (writes === 0) problems.push('the Linux guest wrote nothing');
  for (let i = 1; i < samples.length; i++) if (samples[i].writes < samples[i - 1].writes) problems.push('the Linux writes went backwards');

  const half = samples.length >> 1;
  const firstMax = Math.max(...samples.slice(1, Math.max(2, half)).map((s) => s.rss));
  const secondMax = Math.max(...samples.slice(Math.max(2, half)).map((s) => s.rss));
  log(`RSS: first half max ${mb(firstMax)} MB, second half max ${mb(secondMax)} MB, after stopping every VM ${mb(idle.memory.rss)} MB; Linux wrote ${writes} MiB in ${samples.length} samples`);
  if (samples.length >= 4 && secondMax > firstMax * 1.25) problems.push(`RSS grew: second half max ${mb(secondMax)} MB > 1.25 x first half max ${mb(firstMax)} MB`);

  const daemonLog = ['vmd.log.1', 'vmd.log'].filter((f) => existsSync(join(home, f))).map((f) => readFileSync(join(home, f), 'utf8')).join('');
  const bad = daemonLog.split('\n').filter((l) => /error|fail|uncaught|unhandled|crash|abort|cannot|dropping|suppressed/i.test(l));
  if (bad.length > 0) problems.push(`the daemon log has ${bad.length} error lines:\n${bad.slice(0, 20).join('\n')}`);
} catch (e) {
  problems.push(`${e.stack ?? e.message}`);
} finally {
  await vmctl(home, ['daemon', 'stop'], { allowFail: true });
  if (o.keep === '') rmSync(home, { recursive: true, force: true });
  else log(`kept ${home}`);
}
if (problems.length > 0) {
  log(`FAILED:\n${problems.join('\n')}`);
  process.exit(1);
}
log(`passed: ${all.length} VMs for ${o.minutes} min, none lost, disk clean, RSS bounded, daemon log clean`);
