// The daemon process: one per VMCTL_HOME. Holds the pid-file lock, listens on the control socket,
// hosts every VM, and shuts down cleanly on SIGTERM/SIGINT or `vmctl daemon stop`.

import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, truncateSync, unlinkSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { DEFAULT_SETTINGS, DEFAULT_SETTINGS_TEXT, loadDaemonSettings } from '../config/daemon-settings.js';
import { PROTOCOL_VERSION, type DaemonStatus } from '../protocol/messages.js';
import { writeFileAtomic } from './atomic.js';
import { ensureHome, homePaths, socketFits, type HomePaths } from './paths.js';
import { Registry } from './registry.js';
import { RotatingLog } from './rotating-log.js';
import { Connection } from './server.js';
import type { InstanceEnv, VmEvent, VmInstance } from './vm-instance.js';
import { HostMemory } from './host-memory.js';
import { BalloonPolicy } from './balloon-policy.js';

/** How often the balloon policy looks at the host's memory. */
const POLICY_EVERY_MS = 1000;

export interface DaemonOptions {
  readonly home: string;
  /** dist/vm-worker.js */
  readonly workerPath: string;
  readonly version: string;
  /** Also copy log lines to stderr (foreground `vmctl daemon run`; a detached daemon's stderr is
   *  vmd.stderr.log, which is not rotated, so it gets none). */
  readonly echoToStderr: boolean;
}

export class AlreadyRunning extends Error {}

/** Is a process with this pid alive? (EPERM: alive but not ours.) */
export function pidAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
  // A killed daemon whose parent has not reaped it yet is a zombie: signal 0 still succeeds, but
  // it is dead (proc(5): state "Z" in /proc/PID/stat).
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return true; // no procfs: trust kill(0)
  }
}

export function readPid(p: HomePaths): number | null {
  try {
    const n = Number.parseInt(readFileSync(p.pidFile, 'utf8').trim(), 10);
    return Number.isInteger(n) ? n : null;
  } catch {
    return null;
  }
}

/** How long a start-up mutex may be held before it counts as left behind by a crashed starter. */
const STARTUP_MUTEX_STALE_MS = 5000;

/**
 * Takes vmd.pid. Several daemons may start at once (two CLI commands auto-starting in parallel),
 * so the check "is the recorded daemon alive? if not, take over" runs under a mutex: mkdir is
 * atomic, so only one starter at a time holds VMCTL_HOME/vmd.lock. The pid file is complete
 * before the mutex is released, so the next starter sees a live daemon.
 */
function takePidLock(p: HomePaths, log: (m: string) => void): void {
  const mutex = join(p.home, 'vmd.lock');
  const deadline = Date.now() + 2 * STARTUP_MUTEX_STALE_MS;
  for (;;) {
    try {
      mkdirSync(mutex, { mode: 0o700 });
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      try {
        if (Date.now() - statSync(mutex).mtimeMs > STARTUP_MUTEX_STALE_MS) rmSync(mutex, { recursive: true, force: true });
      } catch { /* released meanwhile */ }
      if (Date.now() > deadline) throw new AlreadyRunning(`could not take ${mutex}`);
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10); // a short synchronous nap
    }
  }
  try {
    const pid = readPid(p);
    if (pid !== null && pid !== process.pid && pidAlive(pid)) throw new AlreadyRunning(`a daemon is already running for ${p.home} (pid ${pid})`);
    if (pid !== null) log(`removing stale pid file (pid ${pid} is gone)`);
    writeFileAtomic(p.pidFile, `${process.pid}\n`);
  } finally {
    rmSync(mutex, { recursive: true, force: true });
  }
}

export async function runDaemon(opts: DaemonOptions): Promise<void> {
  const paths = homePaths(opts.home);
  ensureHome(paths);
  // vmd.log is written by the daemon itself, not inherited as stderr: a file that is some
  // process's stderr can never be rotated (the process keeps writing to the moved file), and
  // Node cannot dup2 a new file over fd 2. It is rotated at config.yaml's daemonLogMaxSize,
  // applied once config.yaml has been read.
  // Opened at the first line: a daemon that loses the start-up race never touches it.
  const daemonLog: { file: RotatingLog | null; limit: number } = { file: null, limit: DEFAULT_SETTINGS.daemonLogMaxBytes };
  const log = (msg: string): void => {
    const line = `${new Date().toISOString()} [${process.pid}] ${msg}\n`;
    try {
      daemonLog.file ??= new RotatingLog(paths.logFile, daemonLog.limit);
      daemonLog.file.appendRecord(line);
    } catch { /* the log is best effort */ }
    if (opts.echoToStderr) process.stderr.write(line);
  };

  takePidLock(paths, log);
  const releaseLock = (): void => {
    if (readPid(paths) === process.pid) try { unlinkSync(paths.pidFile); } catch { /* gone */ }
  };
  foldEarlierStderr(paths, log);

  let server: Server | null = null;
  let socketPath = paths.defaultSocket;
  let shortDir: string | null = null;
  try {
    if (!existsSync(paths.settingsFile)) writeFileAtomic(paths.settingsFile, DEFAULT_SETTINGS_TEXT);
    const settings = loadDaemonSettings(paths.settingsFile);
    daemonLog.limit = settings.daemonLogMaxBytes;
    daemonLog.file?.setLimit(daemonLog.limit);

    if (!socketFits(paths.defaultSocket)) {
      // unix(7): sun_path holds 107 bytes. Use a private short folder and record where it is.
      if (existsSync(paths.socketPathFile)) {
        const old = readFileSync(paths.socketPathFile, 'utf8').trim();
        if (old.startsWith(tmpdir()) && old.includes('vmctl-')) rmSync(dirname(old), { recursive: true, force: true });
      }
      shortDir = mkdtempSync(join(tmpdir(), 'vmctl-'));
      chmodSync(shortDir, 0o700);
      socketPath = join(shortDir, 'vmd.sock');
      writeFileAtomic(paths.socketPathFile, `${socketPath}\n`);
      log(`${paths.defaultSocket} is longer than ${107} bytes; listening on ${socketPath}`);
    } else if (existsSync(paths.socketPathFile)) {
      unlinkSync(paths.socketPathFile);
    }
    // We hold the pid lock, so a socket file left here belongs to a dead daemon.
    if (existsSync(socketPath)) {
      log(`removing stale socket ${socketPath}`);
      unlinkSync(socketPath);
    }

    const memory = new HostMemory(settings, log);
    let registry: Registry | null = null;
    const vms = (): Iterable<VmInstance> => registry?.vms.values() ?? [];
    const policy = settings.autoBalloon ? new BalloonPolicy(memory, vms, log) : null;
    const workerEnv: InstanceEnv = {
      home: paths.home,
      workerPath: opts.workerPath,
      serialLogMaxBytes: settings.serialLogMaxBytes,
      consoleHistoryBytes: settings.consoleHistoryBytes,
      log,
      memory,
      committed: (except) => [...vms()].filter((v) => v !== except && v.active).map((v) => ({ name: v.name, bytes: v.def.memoryBytes })),
      memoryShort: () => { policy?.step(); },
    };
    // The policy looks at the host every second (it costs nothing while memory is plentiful).
    const policyTimer = policy ? setInterval(() => policy.step(), POLICY_EVERY_MS) : null;
    policyTimer?.unref();
    const connections = new Set<Connection>();
    const wire = (vm: VmInstance): void => {
      vm.listener = (e: VmEvent) => {
        for (const c of connections) {
          const sub = c.subscriptions.get(vm.name);
          if (!sub) continue;
          if (e.event === 'console' && !sub.console) continue;
          c.event(e.event, vm.name, e.data as Record<string, unknown>);
        }
      };
    };

    registry = new Registry(paths, workerEnv, (vm) => wire(vm));
    registry.load();

    const startedAt = Date.now();
    let shuttingDown = false;

    const status = (): DaemonStatus => ({
      pid: process.pid,
      version: opts.version,
      protocol: PROTOCOL_VERSION,
      home: paths.home,
      socket: socketPath,
      uptimeSeconds: Math.round((Date.now() - startedAt) / 1000),
      vms: registry.vms.size,
      runningVms: [...registry.vms.values()].filter((v) => v.active).length,
    });

    let resolveDone!: () => void;
    const done = new Promise<void>((r) => { resolveDone = r; });

    const shutdown = async (why: string): Promise<void> => {
      if (shuttingDown) return;
      shuttingDown = true;
      log(`shutting down (${why})`);
      if (policyTimer) clearInterval(policyTimer);
      server?.close();
      // A clean daemon stop powers VMs off (disks flushed); they show `stopped`, not `aborted`.
      await Promise.all([...registry.vms.values()].filter((v) => v.active).map((v) => v.powerOff().catch(() => {})));
      for (const vm of [...registry.vms.values()]) if (vm.persisted.ephemeral) registry.delete(vm);
      for (const c of connections) c.close();
      try { unlinkSync(socketPath); } catch { /* gone */ }
      if (shortDir) rmSync(shortDir, { recursive: true, force: true });
      releaseLock();
      log('stopped');
      daemonLog.file?.close();
      daemonLog.file = null;
      resolveDone();
    };

    const ctx = {
      registry,
      version: opts.version,
      status,
      shutdown: () => void shutdown('requested by a client'),
      throttle: (names: readonly string[], on: boolean) => {
        for (const n of names) registry.vms.get(n)?.throttle(on);
      },
      vmDeleted: (name: string) => {
        for (const c of connections) {
          if (c.subscriptions.delete(name)) c.event('deleted', name, {});
        }
      },
      log,
    };

    server = createServer((sock) => {
      if (shuttingDown) {
        sock.destroy();
        return;
      }
      const conn = new Connection(sock, ctx, (c) => {
        connections.delete(c);
        // A `vmctl run` client that went away (Ctrl-C, killed CI job) takes its VM with it.
        for (const name of c.ephemeral) {
          const vm = registry.vms.get(name);
          if (!vm) continue;
          vm.powerOff().then(() => {
            if (registry.vms.get(name) === vm) {
              registry.delete(vm);
              ctx.vmDeleted(name);
            }
          }).catch((e) => log(`vm ${name}: cleanup failed: ${(e as Error).message}`));
        }
      });
      connections.add(conn);
    });

    await new Promise<void>((resolve, reject) => {
      server!.once('error', reject);
      server!.listen(socketPath, () => resolve());
    });
    chmodSync(socketPath, 0o600);
    log(`vmd ${opts.version} listening on ${socketPath} (home ${paths.home}, ${registry.vms.size} VMs)`);

    process.on('SIGTERM', () => void shutdown('SIGTERM'));
    process.on('SIGINT', () => void shutdown('SIGINT'));
    process.on('SIGHUP', () => { /* detached daemons outlive their terminal */ });
    process.on('uncaughtException', (e) => log(`uncaught exception (continuing): ${e.stack ?? e.message}`));
    process.on('unhandledRejection', (e) => log(`unhandled rejection (continuing): ${(e as Error)?.stack ?? String(e)}`));

    await done;
  } catch (e) {
    // Also in vmd.log: a detached daemon's stderr is only read when it fails to come up.
    log(`cannot start: ${(e as Error).message}`);
    releaseLock();
    if (shortDir) rmSync(shortDir, { recursive: true, force: true });
    throw e;
  }
}

/** At most this much of an earlier daemon's stderr is copied into vmd.log (the end of it). */
const STDERR_FOLD_MAX_BYTES = 16 * 1024;

/**
 * vmd.stderr.log holds what detached daemons printed outside their log: a crash before the log
 * was open, Node's own fatal errors, a lost start-up race. It cannot be rotated while a daemon
 * has it as stderr, so each daemon that takes the pid lock (no other daemon of this home runs
 * then) copies its end into vmd.log, where it is rotated with everything else, and empties it.
 */
function foldEarlierStderr(p: HomePaths, log: (m: string) => void): void {
  let text: Buffer;
  try {
    text = readFileSync(p.stderrFile);
  } catch {
    return;
  }
  if (text.length === 0) return;
  const dropped = Math.max(0, text.length - STDERR_FOLD_MAX_BYTES);
  const kept = text.subarray(dropped).toString('utf8').replace(/\n$/, '');
  if (kept.trim() !== '') {
    log(`output of an earlier daemon process on stderr (${p.stderrFile}${dropped ? `, last ${kept.length} of ${text.length} bytes` : ''}):\n` +
      kept.split('\n').map((l) => `  | ${l}`).join('\n'));
  }
  try { truncateSync(p.stderrFile, 0); } catch { /* best effort */ }
}
