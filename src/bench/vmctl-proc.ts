// Small helpers of the memory benchmarks (src/bench/memory.ts, memory-overcommit.ts): a process's
// resident memory, waiting for a condition, and running the real `bin/vmctl` in a VMCTL_HOME.

import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';

const BIN = resolve('bin/vmctl');

/** A process's resident memory (VmRSS), bytes. */
export function rssOf(pid: number): number {
  return Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) * 1024;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, Math.max(0, ms)));

export async function until<T>(f: () => Promise<T | null> | T | null, ms: number, what: string): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== null) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(250);
  }
}

/** Runs a command; its exit code and what it printed (stdout and stderr together). */
export function spawnOut(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; out: string }> {
  return new Promise((res) => {
    let out = '';
    const c = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    c.stdout.on('data', (b: Buffer) => { out += b.toString(); });
    c.stderr.on('data', (b: Buffer) => { out += b.toString(); });
    c.on('close', (code) => res({ code, out }));
  });
}

/** `vmctl ARGS` in `home`: its exit code and output. */
export function vmctlIn(home: string, args: string[]): Promise<{ code: number | null; out: string }> {
  return spawnOut(process.execPath, [BIN, ...args], { ...process.env, VMCTL_HOME: home, NO_COLOR: '1' });
}

/** `vmctl ARGS` in `home` that must succeed: its output. */
export async function vmctlOk(home: string, args: string[]): Promise<string> {
  const r = await vmctlIn(home, args);
  if (r.code !== 0) throw new Error(`vmctl ${args.join(' ')}: exit ${r.code}: ${r.out}`);
  return r.out;
}
