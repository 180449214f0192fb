// npm run soak [-- --rounds 100 --vms 16]
//
// Memory that comes back: one daemon, VMS ticker VMs (fixtures/demo/loop.elf) started together,
// left running a moment, and stopped, ROUNDS times. After each round, with nothing running, the
// daemon's RSS is printed; the scenario passes when it plateaus: every idle figure of the last
// quarter of the rounds stays within 20% of the first round's idle figure. Exits 1 otherwise.
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { DEMO, mb, newHome, options, protocol, sleep, vmctl } from './lib.mjs';

const o = options({ rounds: 100, vms: 16, keep: '' });
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
  console.log(`soak: ${o.rounds} rounds of ${o.vms} VMs; daemon pid ${s0.pid}, home ${home}; idle RSS before the first round ${mb(s0.memory.rss)} MB`);
  console.log('round  running-RSS-MB  idle-RSS-MB  idle-heap-used-MB  seconds');
  const idle = [];
  for (let r = 1; r <= o.rounds; r++) {
    const t0 = Date.now();
    ticked.clear();
    await Promise.all(names.map((name) => c.request('vm.start', { name })));
    for (let i = 0; i < 600 && ticked.size < names.length; i++) await sleep(50);
    if (ticked.size < names.length) throw new Error(`round ${r}: only ${ticked.size} of ${names.length} VMs printed "tick 2"`);
    const running = await status();
    await Promise.all(names.map((name) => c.request('vm.stop', { name, force: true })));
    await sleep(1000); // idle: workers gone, nothing running
    const s = await status();
    if (s.runningVms !== 0) throw new Error(`round ${r}: ${s.runningVms} VMs still running after stop`);
    idle.push(s.memory.rss);
    console.log(`${String(r).padStart(5)}  ${mb(running.memory.rss).padStart(14)}  ${mb(s.memory.rss).padStart(11)}  ${mb(s.memory.heapUsed).padStart(17)}  ${((Date.now() - t0) / 1000).toFixed(1).padStart(7)}`);
  }
  c.close();
  const first = idle[0];
  const tail = idle.slice(Math.floor(idle.length * 0.75));
  const worst = Math.max(...tail);
  const ratio = worst / first;
  console.log(`soak: first round idle ${mb(first)} MB; last ${tail.length} rounds idle ${mb(Math.min(...tail))}..${mb(worst)} MB (${((ratio - 1) * 100).toFixed(1)}% over the first); overall max ${mb(Math.max(...idle))} MB`);
  if (ratio > 1.2) {
    failed = true;
    console.log('soak: FAILED: the idle RSS did not plateau within 20% of the first round');
  } else console.log('soak: passed: the idle RSS plateaus within 20% of the first round');
} catch (e) {
  failed = true;
  console.error(`soak: FAILED: ${e.message}`);
} finally {
  await vmctl(home, ['daemon', 'stop'], { allowFail: true });
  if (o.keep === '') rmSync(home, { recursive: true, force: true });
  else console.log(`soak: kept ${home}`);
}
process.exit(failed ? 1 : 0);
