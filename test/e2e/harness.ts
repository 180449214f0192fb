// Runs the built `vmctl` (bin/vmctl -> dist/cli.js) against a real daemon in a temporary VMCTL_HOME.

import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));
export const BIN = join(ROOT, 'bin', 'vmctl');
export const DEMO = join(ROOT, 'fixtures', 'demo');
/** The Linux test guest built by fixtures/linux/build.sh, when it is there (tests skip without it). */
export const LINUX = [process.env.VMCTL_LINUX_DIR, join(homedir(), '.cache', 'vmctl', 'linux', 'out'), '/tmp/linux-guest/out']
  .find((d) => d && existsSync(join(d, 'Image')) && existsSync(join(d, 'initramfs.cpio.gz')));

export interface Result { code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }

export class VmctlHome {
  readonly home: string;

  constructor(home?: string) {
    this.home = home ?? mkdtempSync(join(tmpdir(), 'vmctl-e2e-'));
  }

  env(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
    const env: NodeJS.ProcessEnv = { ...process.env, VMCTL_HOME: this.home, NO_COLOR: '1', ...extra };
    delete env.FORCE_COLOR;
    return env;
  }

  /** Spawns vmctl; the caller reads its streams. */
  spawn(args: string[], extra: NodeJS.ProcessEnv = {}): ChildProcess {
    return spawn(process.execPath, [BIN, ...args], { env: this.env(extra), stdio: ['pipe', 'pipe', 'pipe'] });
  }

  /** Runs vmctl to completion (stdin: `input`, then EOF). */
  run(args: string[], opts: { input?: string; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<Result> {
    const child = this.spawn(args, opts.env);
    return collect(child, opts.input ?? '', opts.timeoutMs ?? 60_000);
  }

  pid(): number | null {
    const f = join(this.home, 'vmd.pid');
    if (!existsSync(f)) return null;
    return Number.parseInt(readFileSync(f, 'utf8'), 10);
  }

  /** Milliseconds between two state-change lines of a VM in vmd.log (the daemon's own clock). */
  transitionMs(vm: string, from: string, to: string): number {
    const lines = readFileSync(join(this.home, 'vmd.log'), 'utf8').split('\n');
    const at = (s: string) => {
      const l = lines.filter((x) => x.includes(`vm ${vm}: ${s}`)).pop();
      if (!l) throw new Error(`no "${s}" for ${vm} in vmd.log`);
      return Date.parse(l.slice(0, 24));
    };
    return at(to) - at(from);
  }

  /** Stops the daemon (and makes sure it is gone), then removes the folder. */
  async cleanup(): Promise<void> {
    const pid = this.pid();
    await this.run(['daemon', 'stop'], { timeoutMs: 20_000 }).catch(() => {});
    if (pid && alive(pid)) process.kill(pid, 'SIGKILL');
    rmSync(this.home, { recursive: true, force: true });
  }
}

export function collect(child: ChildProcess, input: string, timeoutMs: number): Promise<Result> {
  return new Promise((resolveP, reject) => {
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (b: Buffer) => { stdout += b.toString(); });
    child.stderr!.on('data', (b: Buffer) => { stderr += b.toString(); });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`vmctl did not finish in ${timeoutMs} ms\nstdout: ${stdout}\nstderr: ${stderr}`));
    }, timeoutMs);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolveP({ code, signal, stdout, stderr });
    });
    child.stdin!.on('error', () => {});
    child.stdin!.end(input);
  });
}

/** Is the process alive? A zombie (killed, not yet reaped by its adoptive parent) is not. */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat[stat.lastIndexOf(')') + 2] !== 'Z';
  } catch {
    return false;
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Polls until `fn` returns a truthy value. */
export async function until<T>(fn: () => Promise<T> | T, timeoutMs = 20_000, what = 'condition'): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/** Reads a child's stdout until it matches `re`. */
export function waitForOutput(child: ChildProcess, re: RegExp, timeoutMs = 20_000): Promise<string> {
  return new Promise((resolveP, reject) => {
    let text = '';
    const timer = setTimeout(() => reject(new Error(`no match for ${re} in ${timeoutMs} ms; got: ${text}`)), timeoutMs);
    const on = (b: Buffer) => {
      text += b.toString();
      if (re.test(text)) {
        clearTimeout(timer);
        child.stdout!.off('data', on);
        resolveP(text);
      }
    };
    child.stdout!.on('data', on);
  });
}
