// A full collection of this thread's JavaScript heap, on request. Node offers gc() only with the
// --expose-gc flag; setting the flag at run time makes it available to contexts created after, so
// one small context is made to fetch it. Used where memory is known to have just become garbage
// and no allocation would soon make V8 collect it: a VM thread whose machine closed (its guest
// RAM), a daemon that has just become idle, and a VM thread whose heap grew while its guest
// worked and whose guest now waits (collectIfGrown).

import { getHeapStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

let gc: (() => void) | undefined;
/** The heap in use after this thread's last full collection (bytes). */
let usedAfterCollect = 0;

/** Growth of the heap in use since the last full collection that makes collectIfGrown collect.
 *  A thread that boots Linux ends with 15 MiB of old space in use, 6 of it garbage that V8 left
 *  alone (the thread then allocates too little to reach its next limit): measured in the
 *  daemon's VM thread, 16 s after `create` of the 1 GiB Linux test guest. */
const GROWTH_BYTES = 4 * 1024 * 1024;

export function collectGarbage(): void {
  if (!gc) {
    setFlagsFromString('--expose-gc');
    gc = runInNewContext('gc') as () => void;
  }
  gc();
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
