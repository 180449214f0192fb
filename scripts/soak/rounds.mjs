// npm run soak [-- --rounds 100 --vms 16 --settle-every 10]
//
// Memory that comes back: one daemon, VMS ticker VMs (fixtures/demo/loop.elf) started together,
// left running until each has printed "tick 2", and stopped, ROUNDS times. After each round the
// daemon's RSS is printed 1 s after the stop ("idle": the stopped VMs' threads are then kept for
// the next start, src/daemon/vm-threads.ts). After the first round and every SETTLE_EVERY rounds,
// the daemon is left alone until it has ended its idle threads, and its RSS is printed again
// ("settled": what a daemon with nothing running holds). The scenario passes when the settled
// figure plateaus: every settled figure of the last quarter of the rounds is within 20% of the
// first one. Exits 1 otherwise.
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { DEMO, mb, newHome, options, protocol, sleep, vmctl } from './lib.mjs';

const o = options({ rounds: 100, vms: 16, 'settle-every': 10, keep: '' });
const home = newHome('soak');
const names = Array.from({ length: o.vms }, (_, i) => `tick${i}`);
let failed = false;
try {
  await vmctl(home, ['daemon', 'start']);
  for (const n of names) await vmctl(home, ['create', '-f', join(DEMO, 'loop.yaml'), '--name', n]);
  const c = await protocol(home);
  const status = () => c.request('daemon.status');
  // Each VM's console, to see that every VM of a round really ran.
  const ticked = new Set();
  c.onEvent((e) => {
    if (e.event === 'console' && Buffer.from(e.data.data, 'base64').toString().includes('tick 2')) ticked.add(e.vm);
  });
  for (const n of names) await c.request('vm.subscribe', { name: n, console: true });

  const s0 = await status();
  // RSS is anonymous memory (the daemon's own) plus file pages mapped (the node binary's code and
  // data as it is touched, shared with every node process): both are shown, from /proc (Linux).
  const parts = () => {
    try {
      const t = readFileSync(`/proc/${s0.pid}/status`, 'utf8');
      const kb = (k) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(t)[1]) * 1024;
      return `anon ${mb(kb('RssAnon'))}, file ${mb(kb('RssFile'))}`;
    } catch {
      return 'anon -, file -';
    }
  };
  const settle = async (r) => {
    for (let i = 0; i < 120 && (await status()).idleVmThreads > 0; i++) await sleep(500);
    await sleep(1000);
    const s = await status();
    console.log(`      settled after round ${r}: RSS ${mb(s.memory.rss)} MB (${parts()}), heap used ${mb(s.memory.heapUsed)} MB, idle threads ${s.idleVmThreads}`);
    return s.memory.rss;
  };
  console.log(`soak: ${o.rounds} rounds of ${o.vms} VMs; daemon pid ${s0.pid}, home ${home}; RSS before the first round ${mb(s0.memory.rss)} MB (${parts()})`);
  console.log('round  running-RSS-MB  idle-RSS-MB  idle-threads  seconds');
  const settled = [];
  for (let r = 1; r <= o.rounds; r++) {
    const t0 = Date.now();
    ticked.clear();
    await Promise.all(names.map((name) => c.request('vm.start', { name })));
    for (let i = 0; i < 1200 && ticked.size < names.length; i++) await sleep(50);
    if (ticked.size < names.length) throw new Error(`round ${r}: only ${ticked.size} of ${names.length} VMs printed "tick 2"`);
    const running = await status();
    await Promise.all(names.map((name) => c.request('vm.stop', { name, force: true })));
    await sleep(1000);
    const s = await status();
    if (s.runningVms !== 0) throw new Error(`round ${r}: ${s.runningVms} VMs still running after stop`);
    console.log(`${String(r).padStart(5)}  ${mb(running.memory.rss).padStart(14)}  ${mb(s.memory.rss).padStart(11)}  ${String(s.idleVmThreads).padStart(12)}  ${((Date.now() - t0) / 1000).toFixed(1).padStart(7)}`);
    if (r === 1 || r % o['settle-every'] === 0 || r === o.rounds) settled.push({ r, rss: await settle(r) });
  }
  c.close();
  const first = settled[0].rss;
  const tail = settled.filter((x) => x.r > o.rounds * 0.75);
  const worst = Math.max(...tail.map((x) => x.rss));
  const ratio = worst / first;
  console.log(`soak: settled RSS after round 1 ${mb(first)} MB; in the last quarter ${tail.map((x) => `${mb(x.rss)} (round ${x.r})`).join(', ')} MB: at most ${((ratio - 1) * 100).toFixed(1)}% over the first`);
  if (ratio > 1.2) {
    failed = true;
    console.log('soak: FAILED: the settled RSS did not plateau within 20% of the first');
  } else console.log('soak: passed: the settled RSS plateaus within 20% of the first');
} catch (e) {
  failed = true;
  console.error(`soak: FAILED: ${e.message}`);
} finally {
  await vmctl(home, ['daemon', 'stop'], { allowFail: true });
  if (o.keep === '') rmSync(home, { recursive: true, force: true });
  else console.log(`soak: kept ${home}`);
}
process.exit(failed ? 1 : 0);
