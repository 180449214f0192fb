// On a terminal (a pseudo-terminal from util-linux `script`): colour unless NO_COLOR, and the
// raw-mode console with Ctrl-] to detach.

import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DEMO, haveScript, onTty as onTtyIn, VmctlHome } from './harness.js';

const h = new VmctlHome();
afterAll(() => h.cleanup());
const onTty = (args: string[], keys: string[] = [], env: NodeJS.ProcessEnv = {}, cwd?: string) => onTtyIn(h, args, keys, env, cwd);

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

describe.skipIf(!haveScript)('logs on a terminal', () => {
  it('shows sequences that would make the terminal answer or change state as text, keeps colours; --raw and pipes get the bytes', async () => {
    // The echo guest repeats the line: its console (and serial log) then holds the sequences.
    const line = 'dsr \x1b[6n title \x1b]0;pwned\x07 da \x1b[c alt \x1b[?1049h colour \x1b[31mRED\x1b[0m end\n';
    const typed = await h.run(['console', 'echo', '--until', 'colour .*end', '--timeout', '60s'], { input: line });
    expect(typed.code, typed.stderr).toBe(0);

    const piped = await h.run(['logs', 'echo']);
    expect(piped.stdout).toContain(`echo: ${line}`); // byte-exact when piped

    const tty = await onTty(['logs', 'echo', '--boot', '-1'], [], { NO_COLOR: '1' });
    expect(tty.code).toBe(0);
    expect(tty.out).toContain('echo: dsr ^[[6n title ^[]0;pwned^G da ^[[c alt ^[[?1049h colour \x1b[31mRED\x1b[0m end');
    expect(tty.out).not.toContain('\x1b[6n');
    expect(tty.out).not.toContain('\x1b]0;');
    expect(tty.out).not.toContain('\x1b[?1049h');
    expect(tty.out).toMatch(/^-- boot 1, started \d{4}-\d\d-\d\d \d\d:\d\d:\d\d --\r?\n/m);

    const raw = await onTty(['logs', 'echo', '--raw'], [], { NO_COLOR: '1' });
    expect(raw.out).toContain('dsr \x1b[6n title \x1b]0;pwned\x07');
    expect(raw.out).not.toContain('-- boot');
  });

  it('console --until on a terminal is a usage error (it is for scripts)', async () => {
    const r = await onTty(['console', 'echo', '--until', 'x'], [], { NO_COLOR: '1' });
    expect(r.code).toBe(2);
    expect(r.out).toContain('--until, --quiet-for and --timeout are for scripts');
  });
});
