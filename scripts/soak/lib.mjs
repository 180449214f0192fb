// Shared by the soak scenarios (npm run soak, npm run soak:long): a private VMCTL_HOME, the real
// `vmctl` CLI, and a protocol connection to the daemon for what is done many times a minute.
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));
export const BIN = join(ROOT, 'bin', 'vmctl');
export const DEMO = join(ROOT, 'fixtures', 'demo');

/** `--name value` options of this script, with defaults. */
export function options(defaults) {
  const o = { ...defaults };
  const a = process.argv.slice(2);
  for (let i = 0; i < a.length; i++) {
    const k = a[i].replace(/^--/, '');
    if (!(k in o)) throw new Error(`unknown option ${a[i]}; expected ${Object.keys(o).map((x) => `--${x}`).join(', ')}`);
    o[k] = typeof defaults[k] === 'number' ? Number(a[++i]) : a[++i];
  }
  return o;
}

export function newHome(prefix) {
  return mkdtempSync(join(tmpdir(), `vmctl-${prefix}-`));
}

/** Runs vmctl to completion; rejects on a non-zero exit unless `allowFail`. */
export function vmctl(home, args, { input = '', allowFail = false } = {}) {
  return new Promise((resolveP, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, VMCTL_HOME: home, NO_COLOR: '1' } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b) => { stdout += b; });
    child.stderr.on('data', (b) => { stderr += b; });
    child.on('close', (code) => {
      if (code !== 0 && !allowFail) reject(new Error(`vmctl ${args.join(' ')} exited ${code}: ${stderr}`));
      else resolveP({ code, stdout, stderr });
    });
    child.stdin.end(input);
  });
}

/** One protocol connection (newline-delimited JSON, src/protocol/messages.ts). */
export async function protocol(home) {
  const sock = connect(join(home, 'vmd.sock'));
  let buf = '';
  let nextId = 1;
  const pending = new Map();
  const listeners = [];
  let greeted;
  const greeting = new Promise((r) => { greeted = r; });
  sock.on('data', (b) => {
    buf += b;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const m = JSON.parse(buf.slice(0, i));
      buf = buf.slice(i + 1);
      if (m.hello) greeted();
      else if (m.event) for (const l of listeners) l(m);
      else if (pending.has(m.id)) {
        const p = pending.get(m.id);
        pending.delete(m.id);
        if (m.error) p.reject(new Error(`${m.error.class}: ${m.error.message}`));
        else p.resolve(m.result);
      }
    }
  });
  const request = (method, params = {}) => new Promise((res, rej) => {
    const id = nextId++;
    pending.set(id, { resolve: res, reject: rej });
    sock.write(`${JSON.stringify({ id, method, params })}\n`);
  });
  await greeting;
  await request('hello', { protocol: 1 });
  return { request, onEvent: (l) => listeners.push(l), close: () => sock.destroy() };
}

export const MiB = 1024 * 1024;
export const mb = (bytes) => (bytes / MiB).toFixed(1);
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
