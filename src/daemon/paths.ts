// The state directory (VMCTL_HOME, default ~/.vmctl) and the files in it:
//   vmd.pid  vmd.log (+ vmd.log.1)  vmd.stderr.log  config.yaml  vmd.sock (or vmd.sock.path)
//   vms/NAME/{vm.yaml,state.json,serial.log}

import { chmodSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';

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

/** Creates VMCTL_HOME (mode 0700: VM consoles and the control socket are private). */
export function ensureHome(p: HomePaths): void {
  mkdirSync(p.home, { recursive: true, mode: 0o700 });
  chmodSync(p.home, 0o700);
  mkdirSync(p.vmsDir, { recursive: true, mode: 0o700 });
}

export function socketFits(path: string): boolean {
  return Buffer.byteLength(path) <= MAX_SOCKET_PATH_BYTES;
}

/** Where a client should connect: the usual place, or the recorded short path. */
export function clientSocketPath(p: HomePaths): string {
  if (socketFits(p.defaultSocket)) return p.defaultSocket;
  if (existsSync(p.socketPathFile)) return readFileSync(p.socketPathFile, 'utf8').trim();
  return p.defaultSocket;
}

export function vmDir(p: HomePaths, name: string): string {
  return join(p.vmsDir, name);
}
