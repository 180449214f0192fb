// A full collection of this thread's JavaScript heap, on request. Node offers gc() only with the
// --expose-gc flag; setting the flag at run time makes it available to contexts created after, so
// one small context is made to fetch it. Used where memory is known to have just become garbage
// and no allocation would soon make V8 collect it: a VM thread whose machine closed (its guest
// RAM), a daemon that has just become idle.

import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

let gc: (() => void) | undefined;

export function collectGarbage(): void {
  if (!gc) {
    setFlagsFromString('--expose-gc');
    gc = runInNewContext('gc') as () => void;
  }
  gc();
}
