// Finding and, when needed, starting the daemon for this VMCTL_HOME.

import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, unlinkSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pidAlive, readPid } from '../daemon/daemon.js';
import { clientSocketPath, ensureHome, homePaths, vmctlHome, type HomePaths } from '../daemon/paths.js';
import { ProtocolClient } from '../protocol/client.js';
import { CliError, EXIT } from './exit-codes.js';

/** dist/cli.js (this bundle) and the worker bundle next to it. */
export const cliBundle = fileURLToPath(import.meta.url);
export const workerBundle = join(dirname(cliBundle), 'vm-worker.js');

export function currentHome(): HomePaths {
  return homePaths(vmctlHome());
}

/** Connects to a running daemon; null when none answers. */
export async function tryConnect(p: HomePaths): Promise<ProtocolClient | null> {
  const sock = clientSocketPath(p);
  if (!existsSync(sock)) return null;
  try {
    return await ProtocolClient.connect(sock);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ECONNREFUSED' || code === 'ENOTSOCK') return null;
    throw new CliError(EXIT.unreachable, `cannot talk to the daemon at ${sock}: ${(e as Error).message}`);
  }
}

/** Starts `vmctl daemon run` fully detached: own session, stdio to vmd.log, not waited for. */
export function spawnDetachedDaemon(p: HomePaths): ChildProcess {
  ensureHome(p);
  const fd = openSync(p.logFile, 'a', 0o600);
  const child = spawn(process.execPath, [cliBundle, 'daemon', 'run'], {
    detached: true,
    stdio: ['ignore', fd, fd],
    env: { ...process.env, VMCTL_HOME: p.home, VMCTL_DAEMON_DETACHED: '1' },
    cwd: p.home,
  });
  child.unref();
  closeSync(fd);
  return child;
}

/** Removes a pid file whose process is gone (the daemon itself also does this on start). */
export function cleanStalePid(p: HomePaths): void {
  const pid = readPid(p);
  if (pid !== null && !pidAlive(pid)) {
    try { unlinkSync(p.pidFile); } catch { /* raced */ }
  }
}

/** Waits until a daemon answers on the socket. */
export async function waitForDaemon(p: HomePaths, timeoutMs: number, child?: ChildProcess): Promise<ProtocolClient | null> {
  const deadline = Date.now() + timeoutMs;
  let delay = 20;
  // Exit code 2: the daemon refused its configuration; no point in waiting. (Exit 1 may just mean
  // another daemon won the race to start, so keep trying to connect then.)
  let refused = false;
  child?.once('exit', (code) => { refused = code === 2; });
  while (Date.now() < deadline && !refused) {
    const c = await tryConnect(p);
    if (c) return c;
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 2, 200);
  }
  return null;
}

/** Connects, starting the daemon first when none runs (unless VMCTL_NO_AUTOSTART is set). */
export async function connectDaemon(opts: { autostart?: boolean } = {}): Promise<ProtocolClient> {
  const p = currentHome();
  const c = await tryConnect(p);
  if (c) return c;
  const autostart = (opts.autostart ?? true) && !process.env.VMCTL_NO_AUTOSTART;
  if (!autostart) throw new CliError(EXIT.unreachable, `no daemon is running for ${p.home} (start one with: vmctl daemon start)`);
  cleanStalePid(p);
  // Even when a pid file names a live process, start one: if a daemon really runs (or is just
  // coming up) the new one sees the pid lock and exits; this way a hung pid file never blocks us.
  const child = spawnDetachedDaemon(p);
  const c2 = await waitForDaemon(p, 10_000, child);
  if (!c2) throw new CliError(EXIT.unreachable, `the daemon for ${p.home} did not come up; see ${p.logFile}`);
  return c2;
}
