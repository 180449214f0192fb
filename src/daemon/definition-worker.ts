// A thread of the daemon's definition pool (definition-pool.ts), bundled as
// dist/definition-worker.js: it validates VM definitions sent over the socket (`vm.create`), which
// means parsing YAML of up to a protocol line and loading the boot images as the board would.
// That can take long for a hostile file; here it only occupies this thread, never the daemon's.

import { readlinkSync } from 'node:fs';
import { setPriority } from 'node:os';
import { dirname } from 'node:path';
import { parentPort } from 'node:worker_threads';
import { ConfigErrors } from '../config/errors.js';
import { parseVmDefinition } from '../config/vm-definition.js';
import type { DefinitionReply, DefinitionRequest } from './definition-pool.js';

const port = parentPort;
if (!port) throw new Error('definition-worker must run as a worker thread');

// Validation is background work: the daemon's main thread (which answers clients) and the VMs
// come first. On Linux a thread has a nice value of its own; /proc/thread-self names this
// thread's id (elsewhere this is skipped: the thread runs at the daemon's priority).
try {
  setPriority(Number(readlinkSync('/proc/thread-self').split('/').pop()), 19);
} catch { /* not Linux, or not allowed */ }

port.on('message', (req: DefinitionRequest) => {
  let reply: DefinitionReply;
  try {
    const def = parseVmDefinition(req.text, req.file, dirname(req.file), req.opts);
    reply = { id: req.id, ok: true, def };
  } catch (e) {
    reply = e instanceof ConfigErrors
      ? { id: req.id, ok: false, configError: e.message }
      : { id: req.id, ok: false, internal: (e as Error)?.stack ?? String(e) };
  }
  port.postMessage(reply);
});
