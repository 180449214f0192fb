// A full collection of this thread's JavaScript heap, on request. Node offers gc() only with the
// --expose-gc flag; setting the flag at run time makes it available to contexts created after, so
// one small context is made to fetch it. Used where memory is known to have just become garbage
// and no allocation would soon make V8 collect it: a VM thread whose machine closed (its guest
// RAM), a daemon that has just become idle, and a VM thread whose heap grew while its guest
// worked and whose guest now waits (collectIfGrown).
//
// Since V8 13 (Node 24) the pages a collection empties are not given back to the system but kept
// in a pool for the process's heaps to reuse; a plain gc() leaves them there, resident. Only a
// "last resort" collection (one that reduces the memory footprint) releases the pool, so a
// collection here ends with one. Measured on the 1 GiB Linux test guest, `npm run bench:memory
// -- --only single`, after boot: 93 -> 74-95 MiB, the rest varying with malloc (188 -> 120-139
// heap pages of 256 KiB resident in the daemon; docs/guest-ram.md (d)). Node 20's V8 takes the
// same options but does not free with them alone, hence the plain gc() before.

import { getHeapStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/** V8's gc extension; its options pick the kind of collection. */
type Gc = (options?: { type: string; execution: string; flavor: string }) => void;

let gc: Gc | undefined;
/** The heap in use after this thread's last full collection (bytes). */
let usedAfterCollect = 0;
/** The collection that also gives V8's pooled pages back (V8's gc extension: type, execution, flavor). */
const LAST_RESORT = { type: 'major', execution: 'sync', flavor: 'last-resort' };

/** Growth of the heap in use since the last full collection that makes collectIfGrown collect.
 *  A thread that boots Linux ends with 15 MiB of old space in use, 6 of it garbage that V8 left
 *  alone (the thread then allocates too little to reach its next limit): measured in the
 *  daemon's VM thread, 16 s after `create` of the 1 GiB Linux test guest. */
const GROWTH_BYTES = 4 * 1024 * 1024;

export function collectGarbage(): void {
  if (!gc) {
    setFlagsFromString('--expose-gc');
    gc = runInNewContext('gc') as Gc;
  }
  gc();
  gc(LAST_RESORT);
  usedAfterCollect = getHeapStatistics().used_heap_size;
}

/** When the heap in use grew by GROWTH_BYTES since the last full collection: two collections,
 *  the first frees the garbage, the second gives the pages it emptied back to the system (after
 *  one, the booted VM thread's old space stayed at 17 MiB committed for 9 in use; after two, 11:
 *  measured). Called when the guest waits (a pause of 20-40 ms costs it nothing then); true
 *  when it collected. */
export function collectIfGrown(): boolean {
  if (getHeapStatistics().used_heap_size - usedAfterCollect < GROWTH_BYTES) return false;
  collectGarbage();
  collectGarbage();
  return true;
}
