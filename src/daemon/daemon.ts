// The daemon process: one per VMCTL_HOME. Holds the pid-file lock, listens on the control socket,
// hosts every VM, and shuts down cleanly on SIGTERM/SIGINT or `vmctl daemon stop`: running VMs are
// stopped as `vmctl stop` stops them (shutdown.console, then power-off after the timeout).

import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, truncateSync, unlinkSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { DEFAULT_SETTINGS, DEFAULT_SETTINGS_TEXT, loadDaemonSettings } from '../config/daemon-settings.js';
import { PROTOCOL_VERSION, type DaemonStatus, type StopReport } from '../protocol/messages.js';
import { writeFileAtomic } from './atomic.js';
import { readRegular, readRegularTail } from '../host/regular-file.js';
import { ensureHome, homePaths, readSocketPathFile, socketFits, type HomePaths } from './paths.js';
import { DefinitionPool } from './definition-pool.js';
import { Registry } from './registry.js';
import { VmThreads } from './vm-threads.js';
import { collectGarbage } from '../vm/collect-garbage.js';
import { Scheduler } from './scheduler.js';
import { hostCpus } from '../config/host-cpus.js';
import { RotatingLog } from './rotating-log.js';
import { Connection } from './server.js';
import { SwitchHub } from './switches.js';
import type { InstanceEnv, VmEvent, VmInstance } from './vm-instance.js';
import { HostMemory } from './host-memory.js';
import { BalloonPolicy } from './balloon-policy.js';

/** How often the balloon policy looks at the host's memory. */
const POLICY_EVERY_MS = 1000;

export interface DaemonOptions {
  readonly home: string;
  /** dist/vm-worker.js */
  readonly workerPath: string;
  /** dist/hart-worker.js, what a VM's worker runs for each further hart (default: next to it). */
  readonly hartWorkerPath?: string;
  /** dist/definition-worker.js: validates VM definitions sent by clients (definition-pool.ts). */
  readonly definitionWorkerPath: string;
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
    // A pid file is a number and a newline; anything else (a FIFO, a huge file) is no pid.
    const n = Number.parseInt(readRegular(p.pidFile, { maxBytes: 64 }).toString('utf8').trim(), 10);
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
      const old = readSocketPathFile(paths);
      if (old !== null && old.startsWith(tmpdir()) && old.includes('vmctl-')) rmSync(dirname(old), { recursive: true, force: true });
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

    const switches = new SwitchHub(settings.networks, log);
    /** VMs whose worker thread could not be ended (see VmInstance.powerOff). */
    const lostWorkers = new Set<string>();
    // When the last idle VM thread has ended and no VM runs, the daemon is idle: its heap is
    // collected then (an idle daemon allocates too little for V8 to do it), and V8 gives the
    // garbage's pages back.
    const threads = new VmThreads(opts.workerPath, () => {
      if (![...registry.vms.values()].some((v) => v.active)) collectGarbage();
    });
    // The CPU scheduler: its events go to the VM's subscribers and the log.
    const scheduler = new Scheduler(settings.hostCpus, (e) => {
      log(`vm ${e.vm}: scheduler: ${Object.entries(e.data).map(([k, v]) => `${k} ${String(v)}`).join(', ')}`);
      registry.vms.get(e.vm)?.listener({ event: 'sched', data: e.data });
    }, hostCpus());
    log(`host cores for VMs: ${Number(settings.hostCpus.toFixed(2))}`);
    const memory = new HostMemory(settings, log);
    // Called only once the registry below exists (a VM starts, the policy's timer).
    const vms = (): Iterable<VmInstance> => registry.vms.values();
    const policy = settings.autoBalloon ? new BalloonPolicy(memory, vms, log) : null;
    const workerEnv: InstanceEnv = {
      scheduler,
      home: paths.home,
      version: opts.version,
      switches,
      threads,
      hartWorkerPath: opts.hartWorkerPath,
      serialLogMaxBytes: settings.serialLogMaxBytes,
      consoleHistoryBytes: settings.consoleHistoryBytes,
      log,
      workerLost: (vm: string) => { lostWorkers.add(vm); },
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
          const sub = c.subscriptions.get(vm.name) ?? c.allEvents;
          if (!sub) continue;
          if (e.event === 'console' && !sub.console) continue;
          c.event(e.event, vm.name, e.data as Record<string, unknown>);
        }
      };
    };

    const definitions = new DefinitionPool(opts.definitionWorkerPath, log);
    const registry = new Registry(paths, workerEnv, definitions, (vm) => wire(vm));
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
      install: dirname(opts.workerPath),
      node: process.version,
      memory: (({ rss, heapUsed, heapTotal, external, arrayBuffers }) => ({ rss, heapUsed, heapTotal, external, arrayBuffers }))(process.memoryUsage()),
      idleVmThreads: threads.idleCount,
    });

    let resolveDone!: () => void;
    const done = new Promise<void>((r) => { resolveDone = r; });

    let stopping: Promise<StopReport[]> | null = null;
    /**
     * Phase 1: stop the running VMs, all at once, each as `vmctl stop` would (or powered off at
     * once with `force`; a second request with force, or a second signal, powers off those still
     * waiting for their guest). Phase 2, once the client that asked has its reply: close the
     * connections and the socket, release the pid file, end.
     */
    const shutdown = (why: string, opts: { force: boolean; timeoutSeconds?: number }): Promise<StopReport[]> => {
      if (stopping) {
        if (opts.force) {
          log(`shutdown (${why}): powering off the VMs still running`);
          for (const v of registry.vms.values()) void v.powerOff().catch(() => {});
        }
        return stopping;
      }
      shuttingDown = true;
      log(`shutting down (${why}${opts.force ? ', powering VMs off' : ''})`);
      if (policyTimer) clearInterval(policyTimer);
      step('closing the socket', () => server?.close());
      step('ending the definition threads', () => definitions.close());
      const running = [...registry.vms.values()].filter((v) => v.active);
      stopping = Promise.all(running.map(async (v): Promise<StopReport> => {
        let path: StopReport['path'];
        try {
          path = await v.stop(opts.force, v.stopTimeoutMs(opts.timeoutSeconds));
        } catch (e) {
          log(`vm ${v.name}: stop failed (${(e as Error).message}); powering off`);
          await v.powerOff().catch(() => {});
          path = 'poweroff';
        }
        log(`vm ${v.name}: stopped for the daemon's shutdown (${path})`);
        return { name: v.name, path };
      })).then((reports) => {
        setImmediate(finish);
        return reports;
      });
      return stopping;
    };
    /** Once the socket is closed the daemon must end: every step runs whatever the one before did
     *  (a half-stopped daemon, socket closed but pid file kept, would block every later command). */
    const step = (what: string, f: () => void): void => {
      try { f(); } catch (e) { log(`shutting down: ${what} failed: ${(e as Error).message}`); }
    };
    const finish = (): void => {
      try {
        step('closing the switch networks', () => switches.closeAll());
        step('ending the idle VM threads', () => threads.close());
        step('stopping the CPU scheduler', () => scheduler.stop());
        for (const vm of [...registry.vms.values()]) if (vm.persisted.ephemeral) step(`removing the run VM ${vm.name}`, () => registry.delete(vm));
        for (const c of connections) step('closing a connection', () => c.close());
        try { unlinkSync(socketPath); } catch { /* gone */ }
        if (shortDir) step('removing the socket folder', () => rmSync(shortDir!, { recursive: true, force: true }));
      } finally {
        releaseLock();
        log(lostWorkers.size > 0 ? `stopped (the worker threads of ${[...lostWorkers].join(', ')} could not be ended; killing the process)` : 'stopped');
        daemonLog.file?.close();
        daemonLog.file = null;
        resolveDone();
      }
    };

    const ctx = {
      registry,
      version: opts.version,
      install: dirname(opts.workerPath),
      status,
      shutdown: (o: { force: boolean; timeoutSeconds?: number }) => shutdown('requested by a client', o),
      get shuttingDown() { return shuttingDown; },
      throttle: (names: readonly string[], on: boolean) => {
        for (const n of names) registry.vms.get(n)?.throttle(on);
      },
      vmDeleted: (name: string) => {
        for (const c of connections) {
          if (c.subscriptions.delete(name) || c.allEvents) c.event('deleted', name, {});
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
          vm.powerOff('delete').then(() => {
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

    // As a service manager stops it: the same clean stop as `vmctl daemon stop`; a second
    // signal powers off what is still waiting for its guest.
    for (const sig of ['SIGTERM', 'SIGINT'] as const) process.on(sig, () => void shutdown(sig, { force: stopping !== null }));
    process.on('SIGHUP', () => { /* detached daemons outlive their terminal */ });
    process.on('uncaughtException', (e) => log(`uncaught exception (continuing): ${e.stack ?? e.message}`));
    process.on('unhandledRejection', (e) => log(`unhandled rejection (continuing): ${(e as Error)?.stack ?? String(e)}`));

    await done;
    if (lostWorkers.size > 0) {
      // A thread blocked in a system call keeps the process from exiting (process.exit waits for
      // it), and a daemon that closed its socket but lives on would be half alive. Everything is
      // cleaned up (pid file, socket, log) at this point, so end the process the one way that works.
      process.kill(process.pid, 'SIGKILL');
    }
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
  let tail: Buffer;
  let size: number;
  try {
    size = statSync(p.stderrFile).size;
    tail = readRegularTail(p.stderrFile, STDERR_FOLD_MAX_BYTES);
  } catch {
    return;
  }
  if (tail.length === 0) return;
  const kept = tail.toString('utf8').replace(/\n$/, '');
  if (kept.trim() !== '') {
    log(`output of an earlier daemon process on stderr (${p.stderrFile}${size > tail.length ? `, last ${tail.length} of ${size} bytes` : ''}):\n` +
      kept.split('\n').map((l) => `  | ${l}`).join('\n'));
  }
  try { truncateSync(p.stderrFile, 0); } catch { /* best effort */ }
}
