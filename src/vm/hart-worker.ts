// A hart thread (bundled as dist/hart-worker.js): one hart of a VM whose harts run in parallel,
// started by the VM's worker (src/vm/worker.ts) through startHartThreads. It runs the hart until
// the machine stops (src/board/smp.ts); an exception ends the thread and the VM's worker reports
// the VM aborted.

import { workerData } from 'node:worker_threads';
import { HartThread, type HartThreadInit } from '../board/smp.js';

const init = workerData as HartThreadInit;
new HartThread(init).run();
init.port.close();
