// V8 flags the daemon sets for itself when it starts, before its first VM thread: V8 reads them
// when an isolate is made, so they hold for every VM, hart and definition thread the daemon starts
// afterwards, whether the daemon was started by the CLI or by a user (`vmctl daemon run`).
//
// --no-concurrent-recompilation: V8 optimizes a hot function (Maglev, TurboFan) on the thread that
// runs it instead of handing the job to its background compiler threads. Those threads allocate
// the compilers' working memory (zones of 32 KiB blocks) with malloc, in whichever arena glibc
// gives them, and glibc keeps what they free; after a Linux boot the daemon held 28 MiB more of
// malloc than an idle one (Node 20's V8: 12). Compiled on the VM's own thread the same work leaves
// 11-13 MiB. Measured on Node 24.22 with the 1 GiB Linux test guest, daemon RSS minus an idle
// daemon's 2 s after the shell answered: 74-86 MiB -> 63-66.5 MiB (7 runs). Boot CPU seconds
// (`npm run bench -- --only boot --no-qemu`, 5 interleaved runs twice, medians): 1 hart 2.20-2.43
// -> 1.97-2.07, 4 harts 4.82-5.94 -> 4.15-5.97: no slower, as the hand-off to another thread
// is gone and a VM's thread has the hot code to run anyway (docs/guest-ram.md (d)).
// The flag only decides where a compilation runs: the code V8 produces is the same.

import { setFlagsFromString } from 'node:v8';

export const DAEMON_V8_FLAGS: readonly string[] = ['--no-concurrent-recompilation'];

/** Sets DAEMON_V8_FLAGS in this process; threads started afterwards have them. */
export function applyDaemonV8Flags(): void {
  for (const f of DAEMON_V8_FLAGS) setFlagsFromString(f);
}
