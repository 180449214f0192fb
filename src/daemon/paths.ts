// The state directory (VMCTL_HOME, default ~/.vmctl) and the files in it:
//   vmd.pid  vmd.log (+ vmd.log.1)  vmd.stderr.log  config.yaml  vmd.sock (or vmd.sock.path)
//   vms/NAME/{vm.yaml,state.json,serial.log}

import { chmodSync, existsSync, mkdirSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { readRegular } from '../host/regular-file.js';

/** sockaddr_un.sun_path is 108 bytes on Linux, one of them the terminating NUL (unix(7)). */
export const MAX_SOCKET_PATH_BYTES = 107;

export interface HomePaths {
  readonly home: string;
  readonly pidFile: string;
  /** The daemon's log, written by the daemon itself and rotated (rotating-log.ts). */
  readonly logFile: string;
  /** A detached daemon's stdout/stderr: what it prints before its log is open (a crash at
   *  start-up, Node's own fatal errors). Folded into vmd.log by the next daemon that starts. */
  readonly stderrFile: string;
  readonly settingsFile: string;
  /** The socket's usual place. */
  readonly defaultSocket: string;
  /** Holds the real socket path when the usual place is too long for a Unix socket. */
  readonly socketPathFile: string;
  readonly vmsDir: string;
}

export function vmctlHome(env: NodeJS.ProcessEnv = process.env): string {
  const h = env.VMCTL_HOME;
  return resolve(h && h !== '' ? h : join(homedir(), '.vmctl'));
}

export function homePaths(home: string): HomePaths {
  return {
    home,
    pidFile: join(home, 'vmd.pid'),
    logFile: join(home, 'vmd.log'),
    stderrFile: join(home, 'vmd.stderr.log'),
    settingsFile: join(home, 'config.yaml'),
    defaultSocket: join(home, 'vmd.sock'),
    socketPathFile: join(home, 'vmd.sock.path'),
    vmsDir: join(home, 'vms'),
  };
}

/** VMCTL_HOME cannot be used as the state directory (the CLI exits 2: a configuration error). */
export class HomeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'HomeError';
  }
}

/** Creates VMCTL_HOME (mode 0700: VM consoles and the control socket are private). */
export function ensureHome(p: HomePaths): void {
  try {
    makeDirs(p.home);
    if (!statSync(p.home).isDirectory()) throw Object.assign(new Error('not a folder'), { code: 'ENOTDIR' });
    chmodSync(p.home, 0o700);
    makeDirs(p.vmsDir);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === 'ENOTDIR' || code === 'EEXIST' ? 'it, or a folder above it, is a file'
      : code === 'EACCES' || code === 'EPERM' ? `permission denied (${(e as NodeJS.ErrnoException).syscall ?? 'access'} ${(e as NodeJS.ErrnoException).path ?? p.home})`
      : code === 'EROFS' ? 'it is on a read-only file system'
      : (e as Error).message;
    throw new HomeError(`the state directory ${p.home} (VMCTL_HOME) cannot be used: ${why}; expected a folder this user owns and can write, or a path where one can be created`);
  }
}

/**
 * mkdir -p, one level at a time. Node's recursive mkdirSync never returns for a path under a
 * file system that refuses new folders with ENOENT (e.g. /proc/x: it retries forever).
 */
function makeDirs(dir: string): void {
  const missing: string[] = [];
  for (let d = dir; !existsSync(d); d = dirname(d)) {
    missing.push(d);
    if (dirname(d) === d) break;
  }
  for (const d of missing.reverse()) mkdirSync(d, { mode: 0o700 });
}

export function socketFits(path: string): boolean {
  return Buffer.byteLength(path) <= MAX_SOCKET_PATH_BYTES;
}

/** Where a client should connect: the usual place, or the recorded short path. */
export function clientSocketPath(p: HomePaths): string {
  if (socketFits(p.defaultSocket)) return p.defaultSocket;
  return readSocketPathFile(p) ?? p.defaultSocket;
}

/** The socket path recorded in vmd.sock.path, or null when there is none (or it is not a file). */
export function readSocketPathFile(p: HomePaths): string | null {
  try {
    return readRegular(p.socketPathFile, { maxBytes: 4096 }).toString('utf8').trim();
  } catch {
    return null;
  }
}

export function vmDir(p: HomePaths, name: string): string {
  return join(p.vmsDir, name);
}
