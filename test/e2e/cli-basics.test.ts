// vmctl without guests: config errors, usage errors, exit codes, the daemon's life cycle.

import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { alive, DEMO, ROOT, sleep, until, VmctlHome } from './harness.js';

const homes: VmctlHome[] = [];
function newHome(path?: string): VmctlHome {
  const h = new VmctlHome(path);
  homes.push(h);
  return h;
}
afterAll(async () => {
  for (const h of homes) await h.cleanup();
});

describe('vmctl validate / create: config errors as FILE:LINE:COL, exit 2', () => {
  const h = newHome();
  const file = (name: string, text: string): string => {
    const f = join(h.home, name);
    writeFileSync(f, text);
    return f;
  };
  const kernel = join(DEMO, 'hello.elf');
  // Boot images the board would refuse at start (they used to be created, then fail `start` with exit 1).
  const elf32 = Buffer.alloc(64);
  elf32.set([0x7f, 0x45, 0x4c, 0x46, 1, 1, 1]);
  writeFileSync(join(h.home, 'elf32.elf'), elf32);
  writeFileSync(join(h.home, 'fw.bin'), Buffer.alloc(300 * 1024, 0x13));
  writeFileSync(join(h.home, 'rd.bin'), Buffer.alloc(3 * 1024 * 1024, 1));
  writeFileSync(join(h.home, 'empty.elf'), '');

  it('accepts the example file and the demo', async () => {
    const r = await h.run(['validate', '-f', 'vm-config.example.yaml']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('ok (VM example: 1 cpu, 128MiB, 1 disk, 2 NICs)');
    expect((await h.run(['validate', '-f', join(DEMO, 'demo.yaml')])).code).toBe(0);
    const j = await h.run(['validate', '-f', join(DEMO, 'echo.yaml'), '--json']);
    expect(JSON.parse(j.stdout)).toEqual({
      name: 'echo', cpus: 1, memoryBytes: 16 * 1024 * 1024, memoryMinBytes: 16 * 1024 * 1024,
      balloon: { deflateOnOom: true, statsIntervalSeconds: 5, freePageReporting: true },
      boot: { firmware: 'none', kernel: join(DEMO, 'echo.elf'), initrd: null, cmdline: '' },
      disks: [], shutdown: { console: 'poweroff\n', timeoutSeconds: 10 },
      network: [{ mode: 'user', forwards: [], restrict: false, mac: null }],
    });
  });

  it.each([
    ['unknown key', `name: a\nboot:\n  kernel: ${kernel}\nmemroy: 1G\n`, /:4:1: unknown key "memroy"; did you mean "memory"\? \(expected one of name, cpus, memory, boot, disks, network, balloon, shutdown\)$/],
    ['wrong type', `name: a\ncpus: [1]\nboot:\n  kernel: ${kernel}\n`, /:2:7: cpus: found a list; expected a whole number from 1 to 8, or a mapping with keys count$/],
    ['cpus.count out of range', `name: a\ncpus:\n  count: 9\nboot:\n  kernel: ${kernel}\n`, /:3:10: cpus\.count: found 9; expected a whole number from 1 to 8$/],
    ['a duplicate key', `name: a\nboot:\n  kernel: ${kernel}\nname: b\n`, /:4:1: YAML syntax: Map keys must be unique \("name" is given twice, first at 1:1; expected each key once\)$/],
    // issue 11: the parser used to recurse into this and say "Maximum call stack size exceeded".
    ['10,000 levels of nesting', `name: a\nboot: ${'['.repeat(10_000)}${']'.repeat(10_000)}\n`, /:2:39: nesting deeper than 32 levels of mappings and lists \(the limit for a vmctl YAML file\); expected a flatter file$/],
    ['too many keys', `name: a\n${Array.from({ length: 10_001 }, (_, i) => `k${i}: 1\n`).join('')}`, /:10001:6: more than 10000 keys and list items \(the limit for a vmctl YAML file\); expected a smaller file$/],
    ['a file over the size limit', `name: a\ncmdline: "${'x'.repeat(300_000)}"\n`, /:1:1: the file is 300020 bytes, more than 256KiB \(the limit for a vmctl YAML file\); expected a smaller file$/],
    ['bad size', `name: a\nmemory: 128 MB please\nboot:\n  kernel: ${kernel}\n`, /:2:9: memory: found "128 MB please"; expected a size like 128MiB/],
    ['missing kernel file', 'name: a\nboot:\n  kernel: ./no-such.elf\n', /:3:11: boot.kernel: file ".*no-such\.elf" does not exist$/],
    ['bad duration', `name: a\nboot:\n  kernel: ${kernel}\nshutdown:\n  timeout: forever\n`, /:5:12: shutdown.timeout: found "forever"; expected a duration like 30s/],
    ['YAML syntax', 'name: a\nboot: {kernel: x\n', /:\d+:\d+: YAML syntax: /],
    ['a list instead of a mapping', '- name: a\n', /:1:1: the top level: found a list; expected a mapping with keys name, /],
    ['an alias without anchor', `name: a\nboot:\n  kernel: ${kernel}\n  cmdline: *args\n`, /:4:12: alias \*args refers to no anchor; expected &args on a value above it$/],
    ['an empty kernel', `name: a\nboot:\n  kernel: ${join(h.home, 'empty.elf')}\n`, /:3:11: boot.kernel: ".*empty\.elf" is empty \(0 bytes\); expected a kernel/],
    ['a 32-bit ELF kernel', `name: a\nboot:\n  kernel: ${join(h.home, 'elf32.elf')}\n`, /:3:11: boot.kernel: .*elf32\.elf: not a 64-bit ELF \(EI_CLASS != ELFCLASS64\)$/],
    ['a kernel over the firmware', `name: a\nboot:\n  firmware: ${join(h.home, 'fw.bin')}\n  kernel: ${kernel}\n`, /:4:11: boot.kernel: ".*hello\.elf" loads at 0x80000000\.\.0x[0-9a-f]+, over the firmware at 0x80000000\.\.0x8004b000; expected a kernel linked at or above 0x80200000$/],
    ['an initrd that does not fit', `name: a\nmemory: 4MiB\nboot:\n  kernel: ${kernel}\n  initrd: ${join(h.home, 'rd.bin')}\n`, /:5:11: boot.initrd: ".*rd\.bin" is 3MiB; loaded at 0x80200000 it needs RAM up to 0x80500000, but the 4MiB of memory end at 0x80400000; expected more memory: or a smaller initrd$/],
  ])('%s', async (_what, text, re) => {
    const f = file('bad.yaml', text);
    const r = await h.run(['validate', '-f', f]);
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split('\n')[0].startsWith(`${f}:`)).toBe(true);
    expect(r.stderr.trim()).toMatch(re);
    // create refuses the same file with the same message, and registers nothing.
    const c = await h.run(['create', '-f', f]);
    expect(c.code).toBe(2);
    expect(c.stderr.trim()).toMatch(re);
    expect(JSON.parse((await h.run(['list', '--json'])).stdout).map((v: { name: string }) => v.name)).not.toContain('a');
  });

  it('a bad --name is reported as the option, with its value (not as "--name:1:1:")', async () => {
    const f = file('named.yaml', `name: fine\nboot:\n  kernel: ${kernel}\n`);
    for (const cmd of ['create', 'run']) {
      const r = await h.run([cmd, '-f', f, '--name', 'bad name']);
      expect(r.code).toBe(2);
      expect(r.stderr).toBe(`vmctl: --name: "bad name" is not a valid VM name; expected letters, digits, ".", "_" or "-" (1..63 characters, starting with a letter or digit)\n(run vmctl ${cmd} --help for usage)\n`);
    }
  });

  it('names every problem of a file, in order', async () => {
    const f = file('many.yaml', 'name: "bad name"\ncpus: 0\nmemory: 3GB\ncolour: red\nboot:\n  kernel: nope\n');
    const r = await h.run(['validate', '-f', f]);
    expect(r.code).toBe(2);
    const lines = r.stderr.trim().split('\n');
    expect(lines.map((l) => l.slice(f.length + 1).split(':').slice(0, 2).join(':'))).toEqual(['1:7', '2:7', '4:1', '6:11']);
  });

  it('makes relative paths absolute on create', async () => {
    const dir = join(h.home, 'proj');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'k.elf'), readFileSync(kernel));
    writeFileSync(join(dir, 'vm.yaml'), 'name: rel\nboot:\n  kernel: k.elf\n');
    expect((await h.run(['create', '-f', join(dir, 'vm.yaml')])).code).toBe(0);
    const info = JSON.parse((await h.run(['info', 'rel', '--json'])).stdout);
    expect(info.kernel).toBe(join(dir, 'k.elf'));
    expect(readFileSync(join(h.home, 'vms', 'rel', 'vm.yaml'), 'utf8')).toContain(`kernel: ${join(dir, 'k.elf')}`);
    // The name is taken: exit 5 (wrong state), as for starting a running VM.
    const dup = await h.run(['create', '-f', join(dir, 'vm.yaml')]);
    expect(dup.code).toBe(5);
    expect(dup.stderr).toContain('already exists');
  });
});

describe('vmctl schema', () => {
  const h = newHome();
  it('prints the JSON Schema of a VM file (default) or of config.yaml, as schemas/ holds them', async () => {
    for (const [args, file] of [[[], 'vm'], [['vm'], 'vm'], [['config'], 'config']] as const) {
      const r = await h.run(['schema', ...args]);
      expect(r.code).toBe(0);
      expect(r.stdout).toBe(readFileSync(join(ROOT, 'schemas', `${file}.schema.json`), 'utf8'));
      expect(JSON.parse(r.stdout).$schema).toBe('http://json-schema.org/draft-07/schema#');
    }
    const bad = await h.run(['schema', 'vmm']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toBe('vmctl: schema: "vmm" is not a schema; expected vm or config\n(run vmctl schema --help for usage)\n');
    // No daemon is needed (or started) for it.
    expect(existsSync(join(h.home, 'vmd.pid'))).toBe(false);
  });
});

describe('exit codes', () => {
  const h = newHome();
  it('usage errors exit 2', async () => {
    expect((await h.run(['frobnicate'])).code).toBe(2);
    expect((await h.run(['start'])).code).toBe(2);
    expect((await h.run(['list', '--bogus'])).code).toBe(2);
    expect((await h.run(['wait', 'x'])).code).toBe(2);
    expect((await h.run(['start', 'x', '--timeout', 'soon'])).code).toBe(2);
    expect((await h.run(['--help'])).code).toBe(0);
  });
  it('an unknown VM exits 4', async () => {
    for (const cmd of [['info', 'ghost'], ['start', 'ghost'], ['stop', 'ghost'], ['delete', 'ghost'], ['logs', 'ghost']]) {
      const r = await h.run(cmd);
      expect(r.code, cmd.join(' ')).toBe(4);
      expect(r.stderr).toContain('no VM named "ghost"');
    }
  });
  it('no daemon and no auto-start exits 3', async () => {
    const h2 = newHome();
    const r = await h2.run(['list'], { env: { VMCTL_NO_AUTOSTART: '1' } });
    expect(r.code).toBe(3);
    expect(r.stderr).toContain('no daemon is running');
    const s = await h2.run(['daemon', 'status']);
    expect(s.code).toBe(3);
  });
});

describe('the daemon', () => {
  it('is started by any command, detached, with a private home, and stops on request', async () => {
    const h = newHome();
    const r = await h.run(['list', '--json']);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual([]);
    const pid = h.pid()!;
    expect(alive(pid)).toBe(true);
    expect(statSync(h.home).mode & 0o777).toBe(0o700);
    expect(statSync(join(h.home, 'vmd.sock')).mode & 0o777).toBe(0o600);
    expect(existsSync(join(h.home, 'config.yaml'))).toBe(true);
    expect(readFileSync(join(h.home, 'vmd.log'), 'utf8')).toContain('listening on');
    // Its own session: not in our process group (a CI step does not wait for it).
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    expect(Number(fields[3])).toBe(pid); // session id == its pid (setsid)

    const st = await h.run(['daemon', 'status', '--json']);
    expect(st.code).toBe(0);
    expect(JSON.parse(st.stdout)).toMatchObject({ running: true, pid, protocol: 1, home: h.home });
    expect((await h.run(['daemon', 'start'])).stdout).toContain('already running');

    const stop = await h.run(['daemon', 'stop']);
    expect(stop.code).toBe(0);
    expect(alive(pid)).toBe(false);
    expect(existsSync(join(h.home, 'vmd.sock'))).toBe(false);
    expect(existsSync(join(h.home, 'vmd.pid'))).toBe(false);
    expect((await h.run(['daemon', 'status'])).code).toBe(3);
  });

  it('replaces a stale pid file and socket', async () => {
    const h = newHome();
    mkdirSync(h.home, { recursive: true });
    writeFileSync(join(h.home, 'vmd.pid'), '999999\n');
    writeFileSync(join(h.home, 'vmd.sock'), 'not a socket');
    const r = await h.run(['daemon', 'start']);
    expect(r.code).toBe(0);
    expect(h.pid()).not.toBe(999999);
    expect((await h.run(['list'])).code).toBe(0);
    expect(readFileSync(join(h.home, 'vmd.log'), 'utf8')).toMatch(/removing stale pid file|removing stale socket/);
  });

  it('uses a short socket path when VMCTL_HOME is too long for a Unix socket', async () => {
    const base = newHome();
    const long = join(base.home, 'x'.repeat(60), 'y'.repeat(60));
    const h = newHome(long);
    const r = await h.run(['daemon', 'start']);
    expect(r.code).toBe(0);
    const recorded = readFileSync(join(long, 'vmd.sock.path'), 'utf8').trim();
    expect(Buffer.byteLength(recorded)).toBeLessThanOrEqual(107);
    expect(statSync(recorded).isSocket()).toBe(true);
    expect(statSync(join(recorded, '..')).mode & 0o777).toBe(0o700);
    expect((await h.run(['list'])).code).toBe(0);
    const st = JSON.parse((await h.run(['daemon', 'status', '--json'])).stdout);
    expect(st.socket).toBe(recorded);
    await h.run(['daemon', 'stop']);
    expect(existsSync(recorded)).toBe(false);
  });

  it('refuses a bad config.yaml with FILE:LINE:COL and exit 2 (daemon run, daemon start and auto-start alike)', async () => {
    const h = newHome();
    mkdirSync(h.home, { recursive: true });
    writeFileSync(join(h.home, 'config.yaml'), 'serialLogMaxSize: 4KiB\nserialLogMaxSise: 1MiB\n');
    const r = await h.run(['daemon', 'run'], { timeoutMs: 10_000 });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`${join(h.home, 'config.yaml')}:2:1: unknown key "serialLogMaxSise"`);
    expect(readFileSync(join(h.home, 'vmd.log'), 'utf8')).toContain('config.yaml:2:1: unknown key');
    // Auto-start and `daemon start` report the file's own errors, all of them and complete (the
    // quoted daemon output used to lose its start when vmd.stderr.log had been folded meanwhile).
    writeFileSync(join(h.home, 'config.yaml'), 'bogus: 1\nserialLogMaxSize: 1\n');
    for (const args of [['list'], ['daemon', 'start']]) {
      const l = await h.run(args);
      expect(l.code, l.stderr).toBe(2);
      expect(l.stderr).toContain(`${join(h.home, 'config.yaml')}:1:1: unknown key "bogus"; expected one of serialLogMaxSize, daemonLogMaxSize, consoleHistorySize, networks, host\n`);
      expect(l.stderr).toContain(`${join(h.home, 'config.yaml')}:2:19: serialLogMaxSize: 1 is too small; expected a size of at least 4KiB`);
    }
    expect(existsSync(join(h.home, 'vmd.pid'))).toBe(false);
  });

  it('refuses a VMCTL_HOME that cannot be a state directory: exit 2 naming it, no stack trace, no hang', async () => {
    const base = newHome();
    mkdirSync(base.home, { recursive: true });
    const file = join(base.home, 'a-file');
    writeFileSync(file, 'keep me\n');
    // /proc/...: Node's recursive mkdir retried ENOENT there forever (100% CPU, never returned).
    for (const [home, why] of [[file, 'is a file'], [join(file, 'sub'), 'is a file'], ['/proc/vmctl-e2e-home', 'ENOENT']]) {
      for (const args of [['list'], ['daemon', 'start'], ['daemon', 'run']]) {
        const r = await new VmctlHome(home).run(args, { timeoutMs: 15_000 });
        expect(r.code, `${home} ${args.join(' ')}: ${r.stderr}`).toBe(2);
        expect(r.stderr).toContain(`vmctl: the state directory ${home} (VMCTL_HOME) cannot be used: `);
        expect(r.stderr).toContain(why);
        expect(r.stderr).not.toMatch(/internal error|\n\s+at /);
      }
    }
    expect(readFileSync(file, 'utf8')).toBe('keep me\n');
  });

  it('keeps a stored VM it cannot load: create with its name is refused and wipes nothing', async () => {
    const h = newHome();
    const f = join(h.home, 'keep.yaml');
    writeFileSync(f, `name: keep\nmemory: 16MiB\nboot:\n  kernel: ${join(DEMO, 'hello.elf')}\n`);
    expect((await h.run(['create', '-f', f])).code).toBe(0);
    expect((await h.run(['daemon', 'stop'])).code).toBe(0);
    const dir = join(h.home, 'vms', 'keep');
    writeFileSync(join(dir, 'serial.log'), 'the only copy of last boot\'s console\n');
    writeFileSync(join(dir, 'vm.yaml'), `${readFileSync(join(dir, 'vm.yaml'), 'utf8')}damage: [\n`);
    const before = ['vm.yaml', 'state.json', 'serial.log'].map((n) => readFileSync(join(dir, n), 'utf8'));
    expect(JSON.parse((await h.run(['list', '--json'])).stdout)).toEqual([]);
    const c = await h.run(['create', '-f', f]);
    expect(c.code, c.stderr).toBe(5);
    expect(c.stderr).toContain(`a VM named "keep" is stored in ${dir} but could not be loaded (${dir}/vm.yaml:`);
    expect(c.stderr).toContain('repair or remove that folder, or choose another name (--name)');
    expect(['vm.yaml', 'state.json', 'serial.log'].map((n) => readFileSync(join(dir, n), 'utf8'))).toEqual(before);
    expect((await h.run(['create', '-f', f, '--name', 'keep2'])).code).toBe(0);
  });

  it('starts exactly one daemon when several commands auto-start it at once', async () => {
    const h = newHome();
    const results = await Promise.all(Array.from({ length: 5 }, () => h.run(['list', '--json'])));
    for (const r of results) expect(r.code, r.stderr).toBe(0);
    const pid = h.pid()!;
    expect(alive(pid)).toBe(true);
    await sleep(300);
    const listening = readFileSync(join(h.home, 'vmd.log'), 'utf8').split('\n').filter((l) => l.includes('listening on'));
    expect(listening).toHaveLength(1);
    expect(listening[0]).toContain(`[${pid}]`);
    expect(existsSync(join(h.home, 'vmd.lock'))).toBe(false);
  });

  it('lets only one daemon run per home', async () => {
    const h = newHome();
    await h.run(['daemon', 'start']);
    const pid = h.pid();
    const second = await h.run(['daemon', 'run'], { timeoutMs: 10_000 });
    expect(second.code).toBe(5); // a second daemon for the home: wrong state, as a second boot is
    expect(second.stderr).toContain('already running');
    await sleep(100);
    expect(h.pid()).toBe(pid);
    await until(async () => (await h.run(['daemon', 'status'])).code === 0);
  });
});
