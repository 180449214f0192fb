// `npm run bench:ram -- [access|tear|alloc|rss|limits|wake]`: the measured prototype behind
// docs/guest-ram.md. Candidate ways for harts on several threads to share guest RAM, and what the
// host does with it:
//   access  cost of one aligned 64-bit load + store per path (ns, loop subtracted)
//   tear    a writer thread flips doublewords between two values; do readers see them torn?
//   alloc   does a path allocate (garbage collections during 3 M accesses)?
//   rss     are untouched chunks free, and does RSS fall when chunks are dropped (also after
//           churn, and when another thread held them)? SharedArrayBuffer vs WebAssembly.Memory
//   limits  how many 2 MiB shared wasm memories, how big one memory can be, memory64
//   wake    cross-thread round trip through Atomics.wait/notify and Atomics.waitAsync, against
//           an uncontended lock on one's own thread (where device models should run)
import { Worker, isMainThread, workerData, parentPort } from 'node:worker_threads';
import { readFileSync } from 'node:fs';
import { PerformanceObserver } from 'node:perf_hooks';
import { atomics64, type Atomics64 } from '../memory/atomics64.js';
import { CHUNK_SIZE, newChunkMemory } from '../memory/ram.js';

const NCHUNK = 8;
const HOT = 0x3ff8; // 16 KiB of hot doublewords per chunk (cache-resident, like a stack or page tables)
const gc = (globalThis as { gc?: () => void }).gc;

interface Chunk { buf: SharedArrayBuffer; mem?: WebAssembly.Memory }
function chunks(kind: 'sab' | 'wasm', n = NCHUNK): Chunk[] {
  const out: Chunk[] = [];
  for (let i = 0; i < n; i++) {
    if (kind === 'wasm') { const mem = newChunkMemory(); out.push({ buf: mem.buffer as unknown as SharedArrayBuffer, mem }); } else out.push({ buf: new SharedArrayBuffer(CHUNK_SIZE) });
  }
  return out;
}

// ---------------------------------------------------------------- access paths
const sF = new Float64Array(1), sI = new Int32Array(sF.buffer);
const SEQ = new Int32Array(new SharedArrayBuffer(4096 * 4));
type Loop = (n: number) => number;

const variants: Record<string, { wasm?: boolean; make: (cs: Chunk[]) => Loop }> = {
  // what the hart did before: DataView, a doubleword as two 32-bit halves
  dataview: { make(cs) { const v = cs.map((c) => new DataView(c.buf)); return (n) => { let x = 0x2545f491, acc = 0;
    for (let k = 0; k < n; k++) { x ^= x << 13; x ^= x >>> 17; x ^= x << 5; const d = v[x & 7], o = (x >>> 3) & HOT, o2 = (x >>> 9) & HOT;
      const lo = d.getInt32(o, true), hi = d.getInt32(o + 4, true); acc = (acc + lo) ^ hi; d.setInt32(o2, lo + 1, true); d.setInt32(o2 + 4, hi, true); } return acc; }; } },
  // Int32Array halves: each half tear-free by spec, the doubleword not
  int32: { make(cs) { const v = cs.map((c) => new Int32Array(c.buf)); return (n) => { let x = 0x2545f491, acc = 0;
    for (let k = 0; k < n; k++) { x ^= x << 13; x ^= x >>> 17; x ^= x << 5; const d = v[x & 7], o = ((x >>> 3) & HOT) >> 2, o2 = ((x >>> 9) & HOT) >> 2;
      const lo = d[o], hi = d[o + 1]; acc = (acc + lo) ^ hi; d[o2] = lo + 1; d[o2 + 1] = hi; } return acc; }; } },
  // Atomics on each Int32 half (sequentially consistent halves; the doubleword still not atomic)
  int32atomics: { make(cs) { const v = cs.map((c) => new Int32Array(c.buf)); return (n) => { let x = 0x2545f491, acc = 0;
    for (let k = 0; k < n; k++) { x ^= x << 13; x ^= x >>> 17; x ^= x << 5; const d = v[x & 7], o = ((x >>> 3) & HOT) >> 2, o2 = ((x >>> 9) & HOT) >> 2;
      const lo = Atomics.load(d, o), hi = Atomics.load(d, o + 1); acc = (acc + lo) ^ hi; Atomics.store(d, o2, lo + 1); Atomics.store(d, o2 + 1, hi); } return acc; }; } },
  // Float64Array: one 64-bit machine access; split and joined through a scratch
  float64: { make(cs) { const v = cs.map((c) => new Float64Array(c.buf)); return (n) => { let x = 0x2545f491, acc = 0;
    for (let k = 0; k < n; k++) { x ^= x << 13; x ^= x >>> 17; x ^= x << 5; const d = v[x & 7], o = ((x >>> 3) & HOT) >> 3, o2 = ((x >>> 9) & HOT) >> 3;
      sF[0] = d[o]; const lo = sI[0], hi = sI[1]; acc = (acc + lo) ^ hi; sI[0] = lo + 1; sI[1] = hi; d[o2] = sF[0]; } return acc; }; } },
  // BigInt64Array with Atomics: atomic by spec, BigInt conversions
  bigint64atomics: { make(cs) { const v = cs.map((c) => new BigInt64Array(c.buf)); return (n) => { let x = 0x2545f491, acc = 0;
    for (let k = 0; k < n; k++) { x ^= x << 13; x ^= x >>> 17; x ^= x << 5; const d = v[x & 7], o = ((x >>> 3) & HOT) >> 3, o2 = ((x >>> 9) & HOT) >> 3;
      const b = Atomics.load(d, o); const lo = Number(BigInt.asIntN(32, b)), hi = Number(b >> 32n); acc = (acc + lo) ^ hi;
      Atomics.store(d, o2, (BigInt(hi) << 32n) | BigInt((lo + 1) >>> 0)); } return acc; }; } },
  // seqlock: 4096 striped sequence words, halves read with Atomics (ordered on weak hosts too)
  seqlock: { make(cs) { const v = cs.map((c) => new Int32Array(c.buf)); return (n) => { let x = 0x2545f491, acc = 0;
    for (let k = 0; k < n; k++) { x ^= x << 13; x ^= x >>> 17; x ^= x << 5; const c = x & 7, d = v[c], o = ((x >>> 3) & HOT) >> 2, o2 = ((x >>> 9) & HOT) >> 2;
      let lo: number, hi: number; const s = ((c << 9) ^ (o >> 1)) & 4095;
      for (;;) { const s1 = Atomics.load(SEQ, s); lo = Atomics.load(d, o); hi = Atomics.load(d, o + 1); if ((s1 & 1) === 0 && Atomics.load(SEQ, s) === s1) break; }
      acc = (acc + lo) ^ hi;
      const t = ((c << 9) ^ (o2 >> 1)) & 4095;
      for (;;) { const s1 = Atomics.load(SEQ, t); if ((s1 & 1) === 0 && Atomics.compareExchange(SEQ, t, s1, s1 + 1) === s1) break; }
      d[o2] = lo + 1; d[o2 + 1] = hi; Atomics.add(SEQ, t, 1); } return acc; }; } },
  // wasm helper per chunk (src/memory/atomics64.ts): i64.atomic.load / i64.atomic.store
  wasm: { wasm: true, make(cs) { const v: Atomics64[] = cs.map((c) => atomics64(c.mem!)); return (n) => { let x = 0x2545f491, acc = 0;
    for (let k = 0; k < n; k++) { x ^= x << 13; x ^= x >>> 17; x ^= x << 5; const w = v[x & 7], o = (x >>> 3) & HOT, o2 = (x >>> 9) & HOT;
      const lo = w.load(o), hi = w.hi(); acc = (acc + lo) ^ hi; w.store(o2, lo + 1, hi); } return acc; }; } },
  // the same through one instance only (a monomorphic call site): a bound on the call cost
  wasm1: { wasm: true, make(cs) { const w = atomics64(cs[0].mem!); return (n) => { let x = 0x2545f491, acc = 0;
    for (let k = 0; k < n; k++) { x ^= x << 13; x ^= x >>> 17; x ^= x << 5; const o = (x >>> 3) & HOT, o2 = (x >>> 9) & HOT;
      const lo = w.load(o), hi = w.hi(); acc = (acc + lo) ^ hi; w.store(o2, lo + 1, hi); } return acc; }; } },
  // the loop alone (random numbers, no memory): subtracted from the others
  empty: { make() { return (n) => { let x = 0x2545f491, acc = 0;
    for (let k = 0; k < n; k++) { x ^= x << 13; x ^= x >>> 17; x ^= x << 5; acc = (acc + x) ^ (x >>> 3); } return acc; }; } },
};

function access(): void {
  const N = 5_000_000;
  const res: Record<string, number[]> = {};
  for (let round = 0; round < 3; round++) {
    for (const [name, v] of Object.entries(variants)) {
      const fn = v.make(chunks(v.wasm ? 'wasm' : 'sab'));
      fn(200_000); fn(200_000);
      const t = performance.now();
      fn(N);
      (res[name] ??= []).push((performance.now() - t) * 1e6 / N);
    }
  }
  const med = (a: number[]): number => [...a].sort((p, q) => p - q)[1];
  const base = med(res.empty);
  console.log('one aligned 64-bit load + one 64-bit store at random doublewords of 8 chunks: ns per pair, median of 3, loop subtracted');
  for (const [name, a] of Object.entries(res)) if (name !== 'empty') console.log(`  ${name.padEnd(16)} ${(med(a) - base).toFixed(1)}`);
  console.log(`  (the loop alone: ${base.toFixed(1)} ns)`);
}

// ---------------------------------------------------------------- tearing
const A_LO = 0x11111111, A_HI = 0x22222222, B_LO = -0x11111112 | 0, B_HI = -0x22222223 | 0;
const TEAR_KINDS = ['dataview', 'int32', 'float64', 'bigint64atomics', 'wasm'];

function tearWriter(kind: string, mem: WebAssembly.Memory, stop: Int32Array): void {
  const buf = mem.buffer as unknown as SharedArrayBuffer;
  if (kind === 'wasm') {
    const w = atomics64(mem);
    for (let r = 0; Atomics.load(stop, 0) === 0; r++) for (let i = 0; i < 1024; i++) { if ((r + i) & 1) w.store(i * 8, A_LO, A_HI); else w.store(i * 8, B_LO, B_HI); }
  } else if (kind === 'float64') {
    const d = new Float64Array(buf); const f = new Float64Array(2), fi = new Int32Array(f.buffer);
    fi[0] = A_LO; fi[1] = A_HI; fi[2] = B_LO; fi[3] = B_HI; const a = f[0], b = f[1];
    for (let r = 0; Atomics.load(stop, 0) === 0; r++) for (let i = 0; i < 1024; i++) d[i] = ((r + i) & 1) ? a : b;
  } else if (kind === 'bigint64atomics') {
    const d = new BigInt64Array(buf); const a = (BigInt(A_HI) << 32n) | BigInt(A_LO >>> 0), b = (BigInt(B_HI) << 32n) | BigInt(B_LO >>> 0);
    for (let r = 0; Atomics.load(stop, 0) === 0; r++) for (let i = 0; i < 1024; i++) Atomics.store(d, i, ((r + i) & 1) ? a : b);
  } else if (kind === 'dataview') {
    const d = new DataView(buf);
    for (let r = 0; Atomics.load(stop, 0) === 0; r++) for (let i = 0; i < 1024; i++) { const x = (r + i) & 1; d.setInt32(8 * i, x ? A_LO : B_LO, true); d.setInt32(8 * i + 4, x ? A_HI : B_HI, true); }
  } else {
    const d = new Int32Array(buf);
    for (let r = 0; Atomics.load(stop, 0) === 0; r++) for (let i = 0; i < 1024; i++) { const x = (r + i) & 1; d[2 * i] = x ? A_LO : B_LO; d[2 * i + 1] = x ? A_HI : B_HI; }
  }
}

async function tear(): Promise<void> {
  console.log('a writer thread stores A and B alternately into 1024 doublewords; this thread reads them for 1 s');
  for (const kind of TEAR_KINDS) {
    const mem = newChunkMemory();
    const buf = mem.buffer as unknown as SharedArrayBuffer, stop = new Int32Array(new SharedArrayBuffer(4));
    const w = new Worker(new URL(import.meta.url), { workerData: { role: 'tear', kind, mem, stop } });
    await new Promise((r) => setTimeout(r, 200));
    let torn = 0, reads = 0;
    const dv = new DataView(buf), i32 = new Int32Array(buf), f64 = new Float64Array(buf), b64 = new BigInt64Array(buf);
    const at = atomics64(mem);
    const t = performance.now();
    while (performance.now() - t < 1000) {
      for (let i = 0; i < 1024; i++) {
        let lo: number, hi: number;
        switch (kind) {
          case 'dataview': lo = dv.getInt32(8 * i, true); hi = dv.getInt32(8 * i + 4, true); break;
          case 'int32': lo = i32[2 * i]; hi = i32[2 * i + 1]; break;
          case 'float64': sF[0] = f64[i]; lo = sI[0]; hi = sI[1]; break;
          case 'bigint64atomics': { const b = Atomics.load(b64, i); lo = Number(BigInt.asIntN(32, b)); hi = Number(b >> 32n); break; }
          default: lo = at.load(8 * i); hi = at.hi();
        }
        reads++;
        if (lo === 0 && hi === 0) continue; // not written yet
        if (!((lo === A_LO && hi === A_HI) || (lo === B_LO && hi === B_HI))) torn++;
      }
    }
    Atomics.store(stop, 0, 1);
    await new Promise((r) => w.on('exit', r));
    console.log(`  ${kind.padEnd(16)} ${torn} torn of ${(reads / 1e6).toFixed(1)} M reads`);
  }
}

// ---------------------------------------------------------------- allocation
async function alloc(): Promise<void> {
  for (const name of ['int32', 'float64', 'seqlock', 'wasm', 'bigint64atomics']) {
    const v = variants[name];
    const fn = v.make(chunks(v.wasm ? 'wasm' : 'sab'));
    fn(200_000);
    await new Promise((r) => setTimeout(r, 100));
    let gcs = 0;
    const obs = new PerformanceObserver((l) => { gcs += l.getEntries().length; });
    obs.observe({ entryTypes: ['gc'] });
    fn(3_000_000);
    await new Promise((r) => setTimeout(r, 100));
    obs.disconnect();
    console.log(`  ${name.padEnd(16)} ${gcs} garbage collections during 3 M load+store pairs`);
  }
}

// ---------------------------------------------------------------- RSS
const rss = (): number => Number(readFileSync('/proc/self/statm', 'utf8').split(' ')[1]) * 4096 / 2 ** 20;
async function settle(): Promise<void> { for (let i = 0; i < 4; i++) { gc?.(); await new Promise((r) => setTimeout(r, 50)); } }

async function rssTest(kind: 'sab' | 'wasm'): Promise<void> {
  if (!gc) throw new Error('run with node --expose-gc');
  const N = 256; // 512 MiB of chunks
  await settle();
  const r0 = rss();
  let cs: Chunk[] | null = chunks(kind, N);
  const r1 = rss();
  for (let i = 0; i < N / 2; i++) new Uint8Array(cs[i].buf).fill(1); // touch half
  const r2 = rss();
  // a second thread holds the first quarter
  const holder = new Worker(new URL(import.meta.url), { workerData: { role: 'hold' } });
  holder.postMessage(cs.slice(0, N / 4).map((c) => c.buf));
  await new Promise((r) => holder.once('message', r));
  cs = null;
  await settle();
  const r3 = rss();
  holder.postMessage('drop');
  await new Promise((r) => holder.once('message', r));
  await settle();
  const r4 = rss();
  await holder.terminate();
  // churn: make N chunks, touch one byte of each, drop them; 4 times over
  for (let k = 0; k < 4; k++) { let c: Chunk[] | null = chunks(kind, N); for (const x of c) new Uint8Array(x.buf)[0] = 1; c = null; await settle(); }
  const r5 = rss();
  let again: Chunk[] | null = chunks(kind, N);
  for (const x of again) new Uint8Array(x.buf)[0] = 1;
  const r6 = rss();
  again = null;
  console.log(`  ${kind}: RSS MiB: start ${r0.toFixed(0)}; ${N} chunks (512 MiB) made ${r1.toFixed(0)}; half of them filled ${r2.toFixed(0)}; ` +
    `all dropped, a quarter still held by a worker ${r3.toFixed(0)}; worker dropped them too ${r4.toFixed(0)}; ` +
    `after 4 rounds of make/touch one byte/drop ${r5.toFixed(0)}; ${N} made again, one byte touched in each ${r6.toFixed(0)}`);
}

function limits(): void {
  const ms: WebAssembly.Memory[] = [];
  try { while (ms.length < 8192) ms.push(newChunkMemory()); console.log('  8192 shared 2 MiB wasm memories (16 GiB of guest RAM): made'); } catch (e) { console.log(`  shared 2 MiB wasm memories: failed after ${ms.length}: ${(e as Error).message}`); }
  ms.length = 0;
  for (const pages of [65536, 65537]) {
    try { new WebAssembly.Memory({ initial: 1, maximum: pages, shared: true }); console.log(`  one shared wasm memory with maximum ${pages} pages: ok`); }
    catch (e) { console.log(`  one shared wasm memory with maximum ${pages} pages: ${(e as Error).message}`); }
  }
  // two memories imported by one module (multi-memory)
  const two = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 2, 19, 2, 1, 109, 1, 97, 2, 0, 1, 1, 109, 1, 98, 2, 0, 1]);
  console.log(`  a module importing two memories (multi-memory): ${WebAssembly.validate(two) ? 'valid' : 'invalid'}`);
  let t = performance.now();
  const all: WebAssembly.Memory[] = []; for (let i = 0; i < 512; i++) all.push(newChunkMemory());
  console.log(`  making 512 chunk memories (1 GiB): ${(performance.now() - t).toFixed(1)} ms`);
  const big = new WebAssembly.Memory({ initial: 8192, maximum: 8192, shared: true });
  const dst = new Uint8Array(big.buffer);
  for (let i = 0; i < 256; i++) new Uint8Array(all[i].buffer).fill(i & 255);
  t = performance.now();
  for (let i = 0; i < 256; i++) dst.set(new Uint8Array(all[i].buffer), i * CHUNK_SIZE);
  console.log(`  copying 512 MiB of chunks into one fresh memory (compaction): ${(performance.now() - t).toFixed(0)} ms`);
}

// ---------------------------------------------------------------- wake-up latency
const WAKES = 2000;
function wakeResponder(mode: string, w: Int32Array): void {
  parentPort!.postMessage('ready');
  if (mode === 'sync') {
    for (let i = 0; i < WAKES; i++) { Atomics.wait(w, 0, 0); Atomics.store(w, 0, 0); Atomics.store(w, 1, 1); Atomics.notify(w, 1); }
    return;
  }
  let i = 0;
  const arm = (): void => {
    // (not in TypeScript's ES2022 lib; Node 20 has it)
    const r = (Atomics as unknown as { waitAsync(a: Int32Array, i: number, v: number, t: number): { async: boolean; value: Promise<string> | string } }).waitAsync(w, 0, 0, 1000);
    void (typeof r.value === 'string' ? Promise.resolve(r.value) : r.value).then(() => { Atomics.store(w, 0, 0); Atomics.store(w, 1, 1); Atomics.notify(w, 1); if (++i < WAKES) arm(); });
  };
  arm();
}

async function wake(): Promise<void> {
  for (const mode of ['sync', 'async']) {
    const w = new Int32Array(new SharedArrayBuffer(8));
    const t = new Worker(new URL(import.meta.url), { workerData: { role: 'wake', mode, w } });
    await new Promise((r) => t.once('message', r));
    await new Promise((r) => setTimeout(r, 50));
    const lat: number[] = [];
    let lost = 0;
    for (let i = 0; i < WAKES && lost < 3; i++) {
      const t0 = performance.now();
      Atomics.store(w, 0, 1); Atomics.notify(w, 0);
      if (Atomics.wait(w, 1, 0, 1000) === 'timed-out') lost++;
      Atomics.store(w, 1, 0);
      lat.push((performance.now() - t0) * 1000);
    }
    await t.terminate();
    lat.sort((a, b) => a - b);
    const name = mode === 'sync' ? 'responder blocked in Atomics.wait     ' : 'responder on its event loop (waitAsync)';
    if (lost) console.log(`  ${name}: ${lost} wake-ups lost (1 s timeouts) in ${lat.length} round trips`);
    else console.log(`  ${name}: round trip median ${lat[lat.length >> 1].toFixed(1)} us, p90 ${lat[Math.floor(lat.length * 0.9)].toFixed(1)} us, p99 ${lat[Math.floor(lat.length * 0.99)].toFixed(1)} us`);
  }
  const lock = new Int32Array(new SharedArrayBuffer(4));
  let x = 0;
  const t0 = performance.now();
  for (let i = 0; i < 1e6; i++) { while (Atomics.compareExchange(lock, 0, 0, 1) !== 0) { /* spin */ } x += i & 7; Atomics.store(lock, 0, 0); }
  console.log(`  uncontended lock + unlock on the caller's thread: ${((performance.now() - t0) * 1e6 / 1e6).toFixed(0)} ns (${x & 1})`);
}

if (!isMainThread) {
  const d = workerData as { role: string; kind: string; mode: string; mem: WebAssembly.Memory; stop: Int32Array; w: Int32Array };
  if (d.role === 'tear') tearWriter(d.kind, d.mem, d.stop);
  else if (d.role === 'wake') wakeResponder(d.mode, d.w);
  else if (d.role === 'hold') {
    let held: Uint8Array[] | null = null;
    parentPort!.once('message', (bufs: SharedArrayBuffer[]) => { held = bufs.map((b) => new Uint8Array(b)); parentPort!.postMessage('held'); });
    parentPort!.on('message', (m) => {
      if (m !== 'drop') return;
      held = null;
      void settle().then(() => parentPort!.postMessage(held === null ? 'dropped' : 'held'));
    });
  }
} else {
  const what = process.argv[2] ?? 'access';
  console.log(`node ${process.version}, V8 ${process.versions.v8}, ${process.arch}: ${what}`);
  if (what === 'access') access();
  else if (what === 'tear') await tear();
  else if (what === 'alloc') await alloc();
  else if (what === 'rss') { await rssTest((process.argv[3] ?? 'sab') as 'sab' | 'wasm'); }
  else if (what === 'limits') limits();
  else if (what === 'wake') await wake();
  else { console.error(`unknown measurement ${what}`); process.exitCode = 2; }
}
