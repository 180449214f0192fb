// Finding and, when needed, starting the daemon for this VMCTL_HOME.

import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, fstatSync, readSync, unlinkSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadDaemonSettings } from '../config/daemon-settings.js';
import { pidAlive, readPid } from '../daemon/daemon.js';
import { clientSocketPath, ensureHome, HomeError, homePaths, vmctlHome, type HomePaths } from '../daemon/paths.js';
import { FileRefused, openRegular } from '../host/regular-file.js';
import { ProtocolClient } from '../protocol/client.js';
import { CliError, EXIT } from './exit-codes.js';
import { err } from './output.js';

/** dist/cli.js (this bundle) and the worker bundle next to it. */
export const cliBundle = fileURLToPath(import.meta.url);
export const workerBundle = join(dirname(cliBundle), 'vm-worker.js');
export const definitionWorkerBundle = join(dirname(cliBundle), 'definition-worker.js');

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

/**
 * glibc malloc settings for the daemon process. Each VM runs in a worker thread, and every thread
 * that allocates gets a malloc arena of its own (up to 8 per core) whose freed memory glibc keeps
 * rather than giving back; its mmap threshold also grows with each large block freed, moving
 * later blocks into those arenas. So the daemon's RSS climbed with every round of VMs started and
 * stopped (idle after 15 VMs: 102, 151, 178, ... 203 MB over 8 rounds, with the JavaScript heap
 * flat at 8 MB: not a leak, memory the allocator kept). With two arenas and fixed thresholds of
 * 128 KiB (blocks above it are mmap'd and unmapped when freed; free memory above it at the top of
 * a heap is trimmed) the same rounds idle at 101-107 MB. glibc reads these when the process
 * starts, so they are set for the daemon here; a variable the user set wins.
 */
export const DAEMON_MALLOC_ENV: Readonly<Record<string, string>> = {
  MALLOC_ARENA_MAX: '2',
  MALLOC_MMAP_THRESHOLD_: '131072',
  MALLOC_TRIM_THRESHOLD_: '131072',
};

/** A daemon being started: its process, and where its output starts in vmd.stderr.log. */
export interface SpawnedDaemon {
  readonly child: ChildProcess;
  readonly stderrOffset: number;
}

/**
 * Starts `vmctl daemon run` fully detached: own session, not waited for. It writes vmd.log itself;
 * its stdout and stderr go to vmd.stderr.log, so that a crash before its log is open (or Node's
 * own fatal errors) is still recorded somewhere.
 */
export function spawnDetachedDaemon(p: HomePaths): SpawnedDaemon {
  ensureHome(p);
  let fd: number;
  try {
    fd = openRegular(p.stderrFile, 'append').fd;
  } catch (e) {
    if (e instanceof FileRefused) throw new HomeError(`the state directory ${p.home} (VMCTL_HOME) cannot be used: ${e.message}`);
    throw e;
  }
  try {
    const stderrOffset = fstatSync(fd).size;
    const child = spawn(process.execPath, [cliBundle, 'daemon', 'run'], {
      detached: true,
      stdio: ['ignore', fd, fd],
      env: { ...DAEMON_MALLOC_ENV, ...process.env, VMCTL_HOME: p.home, VMCTL_DAEMON_DETACHED: '1' },
      cwd: p.home,
    });
    child.unref();
    return { child, stderrOffset };
  } finally {
    closeSync(fd);
  }
}

/** At most this much of a failed daemon's output is quoted in the error. */
const QUOTED_OUTPUT_BYTES = 4096;

/** What a daemon that did not come up printed (its end), or '' when nothing. */
function outputSince(p: HomePaths, offset: number): string {
  let fd: number;
  try {
    fd = openRegular(p.stderrFile, 'read').fd;
  } catch {
    return '';
  }
  try {
    const size = fstatSync(fd).size;
    // The file may have been emptied meanwhile (a daemon that did start folds it into vmd.log).
    const from = Math.max(offset <= size ? offset : 0, size - QUOTED_OUTPUT_BYTES);
    const buf = Buffer.alloc(size - from);
    readSync(fd, buf, 0, buf.length, from);
    return buf.toString('utf8').trim();
  } finally {
    closeSync(fd);
  }
}

/** Starts a detached daemon and connects to it; the error quotes what the daemon printed. */
export async function startDaemon(p: HomePaths): Promise<ProtocolClient> {
  // A broken config.yaml is the user's to fix: say where (FILE:LINE:COL, exit 2, as for a VM
  // file) rather than "the daemon did not come up" (exit 3) with its output quoted second-hand.
  loadDaemonSettings(p.settingsFile);
  const d = spawnDetachedDaemon(p);
  const c = await waitForDaemon(p, 10_000, d.child);
  if (c) return c;
  const output = outputSince(p, d.stderrOffset);
  throw new CliError(EXIT.unreachable, `the daemon for ${p.home} did not come up; see ${p.logFile}` +
    (output ? `\nit printed (${p.stderrFile}):\n${output}` : ''));
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
  let exitCode: number | null | undefined;
  child?.once('exit', (code) => { exitCode = code; });
  while (Date.now() < deadline) {
    const c = await tryConnect(p);
    if (c) return c;
    if (exitCode !== undefined) {
      // Exit code 2: the daemon refused its configuration; no point in waiting. Exit 1 may just
      // mean another daemon won the race to start: it has recorded its pid by then, so keep
      // waiting only while that daemon lives. Anything else: our daemon died.
      const pid = readPid(p);
      if (exitCode !== 1 || pid === null || !pidAlive(pid)) return await tryConnect(p);
    }
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 2, 200);
  }
  return null;
}

/**
 * What to tell the user when the daemon answering for this VMCTL_HOME runs another vmctl's code
 * (another checkout, or an install since deleted or rebuilt elsewhere), or null when it runs ours.
 * Such a daemon serves requests with its own code — it may not know this CLI's options, or no
 * longer find its own worker files — so the user is told once per command how to switch.
 */
export function foreignDaemonWarning(greeting: ProtocolClient['greeting'], home: string, ownInstall = dirname(cliBundle)): string | null {
  const theirs = greeting?.install;
  if (!greeting || theirs === undefined || theirs === ownInstall) return null;
  const gone = !existsSync(join(theirs, 'vm-worker.js'));
  return `the daemon for ${home} (pid ${greeting.pid}, vmctl ${greeting.version}${greeting.node ? ` on Node ${greeting.node}` : ''}) ` +
    `runs the code in ${theirs}${gone ? ', which no longer exists' : ''}, not this vmctl's (${ownInstall}); ` +
    `"vmctl daemon stop" ends it (its VMs stop too), and the next command starts this vmctl's daemon`;
}

/** Prints foreignDaemonWarning's text on stderr, if any. */
export function warnIfForeign(c: ProtocolClient, home: string): void {
  const w = foreignDaemonWarning(c.greeting, home);
  if (w) process.stderr.write(`${err.yellow('warning:')} ${w}\n`);
}

/** Connects, starting the daemon first when none runs (unless VMCTL_NO_AUTOSTART is set). */
export async function connectDaemon(opts: { autostart?: boolean } = {}): Promise<ProtocolClient> {
  const p = currentHome();
  const c = await tryConnect(p);
  if (c) {
    warnIfForeign(c, p.home);
    return c;
  }
  const autostart = (opts.autostart ?? true) && !process.env.VMCTL_NO_AUTOSTART;
  if (!autostart) throw new CliError(EXIT.unreachable, `no daemon is running for ${p.home} (start one with: vmctl daemon start)`);
  cleanStalePid(p);
  // Even when a pid file names a live process, start one: if a daemon really runs (or is just
  // coming up) the new one sees the pid lock and exits; this way a hung pid file never blocks us.
  return startDaemon(p);
}
