// On a terminal (a pseudo-terminal from util-linux `script`): colour unless NO_COLOR, and the
// raw-mode console with Ctrl-] to detach.

import { spawn, spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BIN, DEMO, sleep, VmctlHome } from './harness.js';

const haveScript = spawnSync('script', ['--version']).status === 0;
const h = new VmctlHome();
afterAll(() => h.cleanup());

/** Runs vmctl on a pseudo-terminal; `keys` are typed with pauses in between. */
async function onTty(args: string[], keys: string[] = [], env: NodeJS.ProcessEnv = {}, cwd?: string): Promise<{ code: number | null; out: string }> {
  const cmd = [process.execPath, BIN, ...args].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
  const e = h.env(env);
  if (!('NO_COLOR' in env)) delete e.NO_COLOR;
  const child = spawn('script', ['-qec', cmd, '/dev/null'], { env: { ...e, TERM: 'xterm-256color' }, stdio: ['pipe', 'pipe', 'pipe'], cwd });
  let out = '';
  child.stdout.on('data', (b: Buffer) => { out += b.toString(); });
  child.stderr.on('data', (b: Buffer) => { out += b.toString(); });
  const done = new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
  for (const k of keys) {
    await sleep(700);
    child.stdin.write(k);
  }
  const code = await done;
  child.stdin.destroy();
  return { code, out };
}

describe.skipIf(!haveScript)('on a terminal', () => {
  it('dtb writes NAME.dtb, and never replaces an existing one it was not told to', async () => {
    expect((await h.run(['create', '-f', join(DEMO, 'demo.yaml'), '--name', 'dtbvm'])).code).toBe(0);
    const r = await onTty(['dtb', 'dtbvm'], [], { NO_COLOR: '1' }, h.home);
    expect(r.code, r.out).toBe(0);
    expect(r.out).toMatch(/Wrote \d+ bytes of device tree to dtbvm\.dtb/);
    expect(readFileSync(join(h.home, 'dtbvm.dtb')).readUInt32BE(0)).toBe(0xd00dfeed);
    writeFileSync(join(h.home, 'dtbvm.dtb'), 'my own tree source\n');
    const again = await onTty(['dtb', 'dtbvm'], [], { NO_COLOR: '1' }, h.home);
    expect(again.code).toBe(1);
    expect(again.out).toContain('dtbvm.dtb already exists; not replacing it (choose a file with -o FILE, or -o - for stdout)');
    expect(readFileSync(join(h.home, 'dtbvm.dtb'), 'utf8')).toBe('my own tree source\n');
    expect((await h.run(['delete', 'dtbvm'])).code).toBe(0);
  });

  it('colours the table, unless NO_COLOR is set', async () => {
    expect((await h.run(['create', '-f', join(DEMO, 'echo.yaml')])).code).toBe(0);
    const coloured = await onTty(['list']);
    expect(coloured.code).toBe(0);
    expect(coloured.out).toMatch(/\x1b\[1mNAME/);
    const plain = await onTty(['list'], [], { NO_COLOR: '1' });
    expect(plain.out).toContain('NAME');
    expect(plain.out).not.toMatch(/\x1b\[/);
  });

  it('console: raw keys go to the guest, Ctrl-] detaches and the VM keeps running', async () => {
    expect((await h.run(['start', 'echo', '--wait-for', 'ready', '--timeout', '60s'])).code).toBe(0);
    // Enter on a raw terminal is \r, which the echo guest takes as the end of a line.
    const r = await onTty(['console', 'echo'], ['hi there\r', '\x1d'], { NO_COLOR: '1' });
    expect(r.code).toBe(0);
    expect(r.out).toContain("Connected to echo's console");
    expect(r.out).toContain('echo: hi there');
    expect(r.out).toContain('Detached from echo; it keeps running.');
    expect(JSON.parse((await h.run(['info', 'echo', '--json'])).stdout).state).toBe('running');
  });
});
