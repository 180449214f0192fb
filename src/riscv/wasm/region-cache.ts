// The translation cache of the WebAssembly tier (issue 16, docs/guest-ram.md (e), "A translation
// cache"): the compiled modules of the regions made on this thread (one per worker: the VM
// thread, each hart thread, which the daemon keeps for the next machines), looked up by the
// virtual address of the region's entry, so that a machine running the same code as one before
// it (the same kernel booting again, the same program) gets its regions without decoding,
// emitting or compiling them, and at a lower reach count (hart.ts WASM_PROBE) than making one
// costs. A module depends only on the halfwords its discovery read, the entry's page offset and
// `smp` (translate.ts WasmModule): an entry is used only when those halfwords are the same in
// the page being run now (a copy is kept), so a different program at the same address is a miss.
// V8 keeps what it compiled for a module (Liftoff's code, TurboFan's for the functions that got
// hot) with the module: a hit also finds the function already compiled, often optimized.
import type { WasmModule } from './translate.js';

/** Bytes of wasm held at most (the modules' wire bytes: V8's compiled code is about as big
 *  again; the daemon's RSS is issue 13's figure). Least recently used entries go first. */
export const CACHE_BYTES = 8 << 20;

interface Entry {
  readonly m: WasmModule;
  /** The page's halfwords at m.reads when it was made. */
  readonly vals: Uint16Array;
}

/** Entries by smp (0, 1), each a map from the entry's virtual address (Map order: least recently
 *  used first). */
const maps = [new Map<number, Entry>(), new Map<number, Entry>()];
let held = 0;
/** Lookups (statistics for tests). */
export const regionCacheStats = { hits: 0, misses: 0, stale: 0, evicted: 0 };

/** The cached module of the region at virtual address `va` (its page's halfwords from index
 *  `base` of `view`; its page offset is va's), null when none or made from other code. */
export function cachedRegion(va: number, view: Uint16Array, base: number, smp: boolean): WasmModule | null {
  const map = maps[smp ? 1 : 0];
  const e = map.get(va);
  if (e === undefined) { regionCacheStats.misses++; return null; }
  const r = e.m.reads, v = e.vals;
  for (let i = 0; i < r.length; i++) {
    if (view[base + r[i]] !== v[i]) { regionCacheStats.stale++; return null; }
  }
  regionCacheStats.hits++;
  map.delete(va); map.set(va, e); // most recently used
  return e.m;
}

/** Keeps the module of the region made at `va` from the page's halfwords (view from `base`). */
export function cacheRegion(va: number, view: Uint16Array, base: number, smp: boolean, m: WasmModule): void {
  const map = maps[smp ? 1 : 0];
  const old = map.get(va);
  if (old !== undefined) { map.delete(va); held -= old.m.bytes; }
  const r = m.reads, vals = new Uint16Array(r.length);
  for (let i = 0; i < r.length; i++) vals[i] = view[base + r[i]];
  map.set(va, { m, vals });
  held += m.bytes;
  while (held > CACHE_BYTES) {
    // the least recently used entry of one map: the other kind's when both hold entries (a
    // thread runs harts of one kind at a time, so that map holds the older machines' regions),
    // else the only non-empty one; not the oldest over both maps
    const a = maps[0].keys().next(), b = maps[1].keys().next();
    const from = a.done ? maps[1] : b.done ? maps[0] : maps[smp ? 0 : 1];
    const k = from.keys().next().value!;
    held -= from.get(k)!.m.bytes;
    from.delete(k);
    regionCacheStats.evicted++;
  }
}

/** The cache's entries, least recently used first, to post to another thread (structured
 *  clone: a WebAssembly.Module is shared, not copied, between the threads of a process). */
export interface CachedRegion { readonly va: number; readonly smp: boolean; readonly m: WasmModule; readonly vals: Uint16Array }
export function exportRegionCache(): CachedRegion[] {
  const out: CachedRegion[] = [];
  for (const smp of [false, true]) for (const [va, e] of maps[smp ? 1 : 0]) out.push({ va, smp, m: e.m, vals: e.vals });
  return out;
}

/** Adds entries exported by another thread (exportRegionCache) where this one has none for their
 *  address (a hart thread starting a hart takes its VM thread's cache: hart-threads.ts). */
export function importRegionCache(entries: readonly CachedRegion[]): void {
  for (const x of entries) {
    const map = maps[x.smp ? 1 : 0];
    if (map.has(x.va) || held + x.m.bytes > CACHE_BYTES) continue;
    map.set(x.va, { m: x.m, vals: x.vals });
    held += x.m.bytes;
  }
}

/** Empties the cache (tests). */
export function clearRegionCache(): void {
  maps[0].clear(); maps[1].clear(); held = 0;
  regionCacheStats.hits = 0; regionCacheStats.misses = 0; regionCacheStats.stale = 0; regionCacheStats.evicted = 0;
}

/** Bytes of wasm the cache holds. */
export function regionCacheBytes(): number { return held; }
