// The VM life cycle through the real CLI, daemon and machine, with the guests in fixtures/demo.

import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { alive, BIN, DEMO, haveScript, onTty, sleep, until, VmctlHome, waitForOutput } from './harness.js';

const h = new VmctlHome();
afterAll(() => h.cleanup());
const yaml = (name: string) => join(DEMO, `${name}.yaml`);

async function ok(args: string[], input?: string): Promise<string> {
  const r = await h.run(args, { input });
  if (r.code !== 0) throw new Error(`vmctl ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}
async function info(name: string): Promise<Record<string, any>> {
  return JSON.parse(await ok(['info', name, '--json']));
}
async function logText(name: string): Promise<string> {
  return ok(['logs', name]);
}
function tickCount(text: string): number {
  const m = [...text.matchAll(/tick (\d+)/g)];
  return m.length ? Number(m[m.length - 1][1]) : 0;
}

beforeAll(async () => {
  await ok(['daemon', 'start']);
});

describe('life cycle', () => {
  it('create, start, list, info, pause, resume, stop, delete', async () => {
    expect(await ok(['create', '-f', yaml('loop')])).toContain('Created VM loop');
    expect((await info('loop')).state).toBe('stopped');
    expect(await ok(['start', 'loop'])).toContain('Started VM loop');

    const list = JSON.parse(await ok(['list', '--json']));
    expect(list).toEqual([expect.objectContaining({ name: 'loop', state: 'running', cpus: 1, memoryBytes: 16 * 1024 * 1024, uptimeSeconds: expect.any(Number) })]);
    expect(await ok(['list', '-q'])).toBe('loop\n');
    const table = await ok(['list']);
    expect(table).toMatch(/^NAME\s+STATE\s+CPUS\s+MEMORY\s+UPTIME\n/);
    expect(table).toMatch(/\nloop\s+running\s+1\s+16MiB\s+\S+/);
    expect(table).not.toMatch(/\x1b\[/); // no colour without a TTY

    await until(async () => tickCount(await logText('loop')) >= 2, 20_000, 'ticks');
    const i = await info('loop');
    expect(i).toMatchObject({ name: 'loop', state: 'running', bootId: 1, kernel: join(DEMO, 'loop.elf'), firmware: 'none', ephemeral: false });

    expect(await ok(['pause', 'loop'])).toContain('Paused');
    expect((await info('loop')).state).toBe('paused');
    const frozen = tickCount(await logText('loop'));
    await sleep(400);
    expect(tickCount(await logText('loop'))).toBe(frozen); // a paused guest does not run
    expect(await ok(['resume', 'loop'])).toContain('Resumed');
    await until(async () => tickCount(await logText('loop')) > frozen, 20_000, 'ticks after resume');

    const st = await h.run(['start', 'loop']);
    expect(st.code).toBe(5);
    expect(st.stderr).toContain('is running');
    const del = await h.run(['delete', 'loop']);
    expect(del.code).toBe(5);

    expect(await ok(['stop', 'loop'])).toContain('Powered off VM loop');
    expect((await info('loop')).state).toBe('stopped');
    expect(await ok(['stop', 'loop'])).toContain('was not running');
    expect((await h.run(['pause', 'loop'])).code).toBe(5);
    expect(await ok(['delete', 'loop'])).toContain('Deleted VM loop');
    expect((await h.run(['info', 'loop'])).code).toBe(4);
    expect(existsSync(join(h.home, 'vms', 'loop'))).toBe(false);
  });

  it('start --wait-for: 0 on a match, 1 when the guest stops first, 124 at the timeout', async () => {
    await ok(['create', '-f', yaml('echo')]);
    const r = await h.run(['start', 'echo', '--wait-for', 'guest ready', '--timeout', '60s']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('matched /guest ready/');

    await ok(['create', '-f', yaml('fail')]);
    const f = await h.run(['start', 'fail', '--wait-for', 'never printed', '--timeout', '60s']);
    expect(f.code).toBe(1);
    expect(f.stderr).toContain('stopped');
    expect((await info('fail')).lastPower).toMatchObject({ kind: 'poweroff', code: 3, failed: true, source: 'test-finisher' });

    await ok(['create', '-f', yaml('loop'), '--name', 'slow']);
    const t = await h.run(['start', 'slow', '--wait-for', 'tick 100000', '--timeout', '500ms']);
    expect(t.code).toBe(124);
    await ok(['delete', '--force', 'slow']);
    await ok(['delete', 'fail']);
  });

  it('console: piped input reaches the guest and its output comes back', async () => {
    const r = await h.run(['console', 'echo', '--until', 'echo: second line', '--timeout', '60s'], { input: 'hello there\nsecond line\n' });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('echo: hello there');
    expect(r.stdout).toContain('echo: second line');
    // Console output lands in the serial log too.
    expect(await logText('echo')).toContain('echo: second line');
  });

  it('console ends when the VM stops, even with stdin still open', async () => {
    const child = h.spawn(['console', 'echo']);
    child.stdin!.write('are you there\n');
    await waitForOutput(child, /echo: are you there/, 30_000);
    const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
    await ok(['stop', 'echo', '--force']);
    expect(await exited).toBe(0);
    child.stdin!.destroy();
    expect((await info('echo')).state).toBe('stopped');
    const r = await h.run(['console', 'echo']);
    expect(r.code).toBe(5); // nothing to attach to
  });

  it('wait --for-console counts from the current boot; wait --state', async () => {
    await ok(['start', 'echo']);
    const w = await h.run(['wait', 'echo', '--for-console', 'guest ready', '--timeout', '60s']);
    expect(w.code).toBe(0);
    // "powering off" was printed by the previous boot only.
    const old = await h.run(['wait', 'echo', '--for-console', 'powering off', '--timeout', '500ms']);
    expect(old.code).toBe(124);
    expect((await h.run(['wait', 'echo', '--state', 'running', '--timeout', '5s'])).code).toBe(0);
    const waiter = h.run(['wait', 'echo', '--state', 'stopped', '--timeout', '60s']);
    await sleep(200);
    await ok(['console', 'echo'], 'poweroff\n');
    expect((await waiter).code).toBe(0);
    expect((await h.run(['wait', 'echo', '--state', 'bogus'])).code).toBe(2);
  });

  it('stop types shutdown.console and waits for the guest', async () => {
    await ok(['start', 'echo', '--wait-for', 'ready', '--timeout', '60s']);
    const r = await h.run(['stop', 'echo', '--json']);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ path: 'guest-poweroff', state: 'stopped', lastPower: { kind: 'poweroff', code: 0 } });
    expect(await logText('echo')).toMatch(/echo: poweroff\npowering off\n$/);
    // A paused guest is resumed first, so it can read the command.
    await ok(['start', 'echo', '--wait-for', 'ready', '--timeout', '60s']);
    await ok(['pause', 'echo']);
    const p = await h.run(['stop', 'echo', '--json']);
    expect(JSON.parse(p.stdout)).toMatchObject({ path: 'guest-poweroff', state: 'stopped' });
  });

  it('stop powers off when the guest ignores shutdown.console past --timeout', async () => {
    const f = join(h.home, 'deaf.yaml');
    writeFileSync(f, `name: deaf\nmemory: 16MiB\nboot:\n  kernel: ${join(DEMO, 'loop.elf')}\nshutdown:\n  console: "poweroff\\n"\n`);
    await ok(['create', '-f', f]);
    await ok(['start', 'deaf', '--wait-for', 'tick 1', '--timeout', '60s']);
    const r = await h.run(['stop', 'deaf', '--timeout', '500ms']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('did not power off in time after the shutdown command; powered off');
    expect((await info('deaf')).state).toBe('stopped');
    await ok(['delete', 'deaf']);
  });

  it('stop --force ends a guest that spins with interrupts off, within a second', async () => {
    await ok(['create', '-f', yaml('spin')]);
    await ok(['start', 'spin', '--wait-for', 'spinning', '--timeout', '60s']);
    const r = await h.run(['stop', 'spin', '--force']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('Powered off');
    expect((await info('spin')).state).toBe('stopped');
    expect(h.transitionMs('spin', 'running -> stopping', 'stopping -> stopped')).toBeLessThan(1000);
    await ok(['delete', 'spin']);
  });

  it('a guest that traps forever leaves the daemon responsive and is powered off on request', async () => {
    await ok(['create', '-f', yaml('fault')]);
    await ok(['start', 'fault', '--wait-for', 'about to fault', '--timeout', '60s']);
    for (let i = 0; i < 3; i++) {
      expect(JSON.parse(await ok(['info', 'fault', '--json'])).state).toBe('running');
      await sleep(100);
    }
    expect(await ok(['stop', 'fault'])).toContain('Powered off');
    expect((await info('fault')).state).toBe('stopped');
    await ok(['delete', 'fault']);
  });

  it('logs prints the serial log; logs -f follows new output', async () => {
    await ok(['create', '-f', yaml('loop'), '--name', 'follow']);
    const child = h.spawn(['logs', 'follow', '-f']);
    await sleep(300);
    await ok(['start', 'follow']);
    const text = await waitForOutput(child, /tick 3\n/, 30_000);
    expect(text).toContain('loop guest: ticking forever');
    child.kill('SIGINT');
    await ok(['delete', '--force', 'follow']);
  });

  it('runs two VMs at once, independently', async () => {
    const two = join(h.home, 'two.yaml');
    writeFileSync(two, `name: twin\ncpus: 2\nmemory: 32MiB\nboot:\n  kernel: ${join(DEMO, 'loop.elf')}\n`);
    await ok(['create', '-f', two]);
    await ok(['create', '-f', two, '--name', 'twin2']);
    await ok(['start', 'twin']);
    await ok(['start', 'twin2']);
    await until(async () => tickCount(await logText('twin')) >= 3 && tickCount(await logText('twin2')) >= 3, 30_000, 'both ticking');
    const list = JSON.parse(await ok(['list', '--json']));
    expect(list.filter((v: any) => v.name.startsWith('twin')).map((v: any) => [v.name, v.state, v.cpus])).toEqual([['twin', 'running', 2], ['twin2', 'running', 2]]);
    await ok(['stop', 'twin']);
    const n = tickCount(await logText('twin2'));
    await until(async () => tickCount(await logText('twin2')) > n, 20_000, 'twin2 still ticking');
    expect((await info('twin')).state).toBe('stopped');
    expect((await info('twin2')).state).toBe('running');
    await ok(['delete', '--force', 'twin2']);
    await ok(['delete', 'twin']);
  });

  it('delete removes disk images vmctl created, never pre-existing ones', async () => {
    const pre = join(h.home, 'pre.img');
    writeFileSync(pre, Buffer.alloc(64 * 1024, 7));
    const created = join(h.home, 'new.img');
    const f = join(h.home, 'disks.yaml');
    writeFileSync(f, `name: disky\nmemory: 16MiB\nboot:\n  kernel: ${join(DEMO, 'hello.elf')}\ndisks:\n  - path: pre.img\n  - path: new.img\n    size: 8MiB\n`);
    await ok(['create', '-f', f]);
    expect(statSync(created).size).toBe(8 * 1024 * 1024);
    const i = await info('disky');
    // A VM that does not run has no request counts.
    const NO_IO = { reads: null, writes: null, readBytes: null, writtenBytes: null, flushes: null };
    // Sizes as the files are now, also for the image that existed before create.
    expect(i.disks).toEqual([
      { name: 'disk0', path: pre, readonly: false, virtualBytes: 64 * 1024, allocatedBytes: statSync(pre).blocks * 512, createdByVmctl: false, ...NO_IO },
      { name: 'disk1', path: created, readonly: false, virtualBytes: 8 * 1024 * 1024, allocatedBytes: 0, createdByVmctl: true, ...NO_IO },
    ]);
    expect(statSync(pre).blocks).toBeGreaterThan(0);
    expect(await ok(['info', 'disky'])).toMatch(new RegExp(`Disk disk0: +${pre} \\(64KiB virtual, \\d+KiB allocated\\)\nDisk disk1: +${created} \\(8MiB virtual, 0B allocated\\) \\(created by vmctl\\)`));
    // The new image holds no data yet: deleting it loses nothing, so no --delete-disks is needed.
    await ok(['delete', 'disky']);
    expect(existsSync(created)).toBe(false);
    expect(readFileSync(pre)).toEqual(Buffer.alloc(64 * 1024, 7));
  });

  it('warns about a size mismatch, and one image is used by one running VM at a time', async () => {
    const img = join(h.home, 'shared.img');
    writeFileSync(img, Buffer.alloc(64 * 1024));
    const f = join(h.home, 'shared.yaml');
    writeFileSync(f, `name: sharer\nmemory: 16MiB\nboot:\n  kernel: ${join(DEMO, 'loop.elf')}\ndisks:\n  - path: shared.img\n    size: 1MiB\n`);
    const c = await h.run(['create', '-f', f]);
    expect(c.code).toBe(0);
    expect(c.stderr).toContain('already exists with 64KiB, not the 1MiB in the definition');
    await ok(['create', '-f', f, '--name', 'sharer2']);
    await ok(['start', 'sharer']);
    expect(existsSync(`${img}.lock`)).toBe(true);
    const second = await h.run(['start', 'sharer2']);
    expect(second.code).toBe(5);
    expect(second.stderr).toContain('sharer');
    expect((await info('sharer2')).state).toBe('stopped');
    await ok(['stop', 'sharer']);
    expect(existsSync(`${img}.lock`)).toBe(false);
    await ok(['start', 'sharer2']);
    await ok(['delete', '--force', 'sharer2']);
    await ok(['delete', 'sharer']);
    expect(statSync(img).size).toBe(64 * 1024); // pre-existing: kept
  });

  it('a machine that cannot be built (kernel gone since create) fails to start; the VM stays stopped', async () => {
    const k = join(h.home, 'gone.elf');
    writeFileSync(k, readFileSync(join(DEMO, 'hello.elf')));
    const f = join(h.home, 'gone.yaml');
    writeFileSync(f, 'name: gone\nmemory: 16MiB\nboot:\n  kernel: gone.elf\n');
    await ok(['create', '-f', f]);
    rmSync(k);
    const r = await h.run(['start', 'gone']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('VM gone failed to start');
    const i = await info('gone');
    expect(i.state).toBe('stopped');
    expect(i.lastError).toContain('gone.elf');
    expect((await h.run(['daemon', 'status'])).code).toBe(0);
    await ok(['delete', 'gone']);
  });

  it('a kernel emptied since create fails to start, saying so (it used to boot zeros and spin)', async () => {
    const k = join(h.home, 'emptied.elf');
    writeFileSync(k, readFileSync(join(DEMO, 'hello.elf')));
    const f = join(h.home, 'emptied.yaml');
    writeFileSync(f, 'name: emptied\nmemory: 16MiB\nboot:\n  kernel: emptied.elf\n');
    await ok(['create', '-f', f]);
    writeFileSync(k, '');
    const r = await h.run(['start', 'emptied']);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toContain(`VM emptied failed to start: cannot build the machine: ${k}: the file is empty (0 bytes)`);
    expect((await info('emptied')).state).toBe('stopped');
    await ok(['delete', 'emptied']);
  });

  it('dtb writes the device tree', async () => {
    await ok(['create', '-f', yaml('demo')]);
    const out = join(h.home, 'demo.dtb');
    await ok(['dtb', 'demo', '-o', out]);
    const b = readFileSync(out);
    expect(b.readUInt32BE(0)).toBe(0xd00dfeed); // FDT magic (Devicetree spec 5.2)
    // Without -o and with stdout not a terminal (`vmctl dtb demo > board.dtb`): the tree itself on
    // stdout (it used to print "Wrote ... to demo.dtb" there and write, or replace, ./demo.dtb).
    const piped = spawnSync(process.execPath, [BIN, 'dtb', 'demo'], { env: h.env(), cwd: h.home });
    expect(piped.status).toBe(0);
    // The same tree, but for /chosen/rng-seed: 32 fresh random bytes in every tree, as QEMU 7.2
    // writes (so that two boots or two clones never seed their generators alike).
    expect(piped.stdout.length).toBe(b.length);
    const seedAt = (t: Buffer): number => t.indexOf(Buffer.from('rng-seed\0'));
    expect(seedAt(b)).toBeGreaterThan(0);
    const differing = [...b].flatMap((x, i) => (x === piped.stdout[i] ? [] : [i]));
    expect(differing.length).toBeGreaterThan(0);
    const dtsOf = (t: Buffer): string => {
      const f = join(h.home, 'x.dtb');
      writeFileSync(f, t);
      const r = spawnSync('dtc', ['-I', 'dtb', '-O', 'dts', f], { encoding: 'utf8' });
      return r.status === 0 ? r.stdout.replace(/rng-seed = <[^>]*>;/, 'rng-seed = <masked>;') : '';
    };
    expect(dtsOf(piped.stdout)).toBe(dtsOf(b));
    const dtc = spawnSync('dtc', ['-I', 'dtb', '-O', 'dts', out], { encoding: 'utf8' });
    if (dtc.status === 0) {
      expect(dtc.stdout).toMatch(/rng-seed = <(0x[0-9a-f]+ ){7}0x[0-9a-f]+>;/);
      // The VM's own settings are in it: 16 MiB of RAM at 0x80000000, one hart.
      expect(dtc.stdout).toContain('compatible = "riscv-virtio";');
      expect(dtc.stdout).toMatch(/memory@80000000 \{[^}]*reg = <0x00 0x80000000 0x00 0x1000000>;/);
      expect(dtc.stdout.match(/cpu@\d+ \{/g)).toHaveLength(1);
    }
    await ok(['delete', 'demo']);
  });
});

describe('reboots and daemon restarts', () => {
  it('a guest reset reboots a long-lived VM (a new boot)', async () => {
    await ok(['start', 'echo', '--wait-for', 'ready', '--timeout', '60s']);
    const before = (await info('echo')).bootId;
    await ok(['console', 'echo'], 'reboot\n');
    await until(async () => (await info('echo')).bootId === before + 1, 20_000, 'a new boot');
    expect((await h.run(['wait', 'echo', '--for-console', 'guest ready', '--timeout', '60s'])).code).toBe(0);
    expect((await h.run(['wait', 'echo', '--state', 'running', '--timeout', '60s'])).code).toBe(0);
    expect((await info('echo')).lastPower).toMatchObject({ kind: 'reset', source: 'test-finisher' });
  });

  it('a clean daemon stop powers VMs off: they show stopped, not aborted', async () => {
    expect((await info('echo')).state).toBe('running');
    await ok(['daemon', 'stop']);
    expect((await info('echo')).state).toBe('stopped'); // auto-started again
  });
});

describe('daemon crash', () => {
  it('after SIGKILL of the daemon and a restart, every VM is listed and running ones show aborted', async () => {
    await ok(['create', '-f', yaml('loop'), '--name', 'victim']);
    await ok(['create', '-f', yaml('demo'), '--name', 'bystander']);
    await ok(['start', 'victim', '--wait-for', 'tick 1', '--timeout', '60s']);
    const pid = h.pid()!;
    process.kill(pid, 'SIGKILL');
    await until(() => !alive(pid), 10_000, 'daemon death');
    const list = JSON.parse(await ok(['list', '--json'])); // auto-starts a new daemon
    expect(h.pid()).not.toBe(pid);
    const states = Object.fromEntries(list.map((v: any) => [v.name, v.state]));
    expect(states.victim).toBe('aborted');
    expect(states.bystander).toBe('stopped');
    expect(states.echo).toBe('stopped');
    expect((await info('victim')).lastError).toContain('daemon ended');
    expect(await ok(['list'])).toMatch(/victim\s+aborted/);
    // An aborted VM can be started again.
    await ok(['start', 'victim', '--wait-for', 'tick 1', '--timeout', '60s']);
    expect((await info('victim')).bootId).toBe(2);
    await ok(['delete', '--force', 'victim']);
  });
});

describe('a console flood', () => {
  it('keeps the daemon responsive, rotates the log, and `logs` returns several MiB intact (and ends at Ctrl-C)', async () => {
    await ok(['create', '-f', yaml('flood')]);
    await ok(['start', 'flood']);
    const dir = join(h.home, 'vms', 'flood');
    // The default serialLogMaxSize is 4MiB: wait for the first rotation.
    await until(() => existsSync(join(dir, 'serial.log.1')), 60_000, 'a rotated serial.log');
    expect((await info('flood')).state).toBe('running');
    await ok(['stop', 'flood', '--force']);
    const size = statSync(join(dir, 'serial.log.1')).size + statSync(join(dir, 'serial.log')).size;
    const r = await h.run(['logs', 'flood']);
    expect(r.code).toBe(0);
    expect(Buffer.byteLength(r.stdout)).toBe(size);
    expect(size).toBeGreaterThan(4 * 1024 * 1024);
    // Consecutive numbering across the rotation point: nothing lost or reordered in between.
    const nums = [...r.stdout.matchAll(/line (\d+)\n/g)].map((m) => Number(m[1]));
    for (let i = 1; i < nums.length; i++) if (nums[i] !== nums[i - 1] + 1) throw new Error(`line ${nums[i - 1]} followed by ${nums[i]}`);
    if (haveScript) {
      // `logs -f` on a terminal, Ctrl-C while those MiB are still being printed: it ends with 0
      // once they are out, as a Ctrl-C while following does (it was killed, 130, before).
      const t = await onTty(h, ['logs', 'flood', '-f'], [{ waitFor: /line \d+/, send: '\x03' }]);
      expect(t.code, t.out.slice(-300)).toBe(0);
    }
    await ok(['delete', 'flood']);
  });
});

describe('serial log rotation', () => {
  it('rotates serial.log at the configured size', async () => {
    const r = new VmctlHome();
    try {
      await r.run(['daemon', 'start']);
      await r.run(['daemon', 'stop']);
      writeFileSync(join(r.home, 'config.yaml'), 'serialLogMaxSize: 4KiB\n');
      expect((await r.run(['create', '-f', yaml('echo')])).code).toBe(0);
      expect((await r.run(['start', 'echo', '--wait-for', 'ready', '--timeout', '60s'])).code).toBe(0);
      const lines = Array.from({ length: 400 }, (_, i) => `line-${String(i).padStart(4, '0')}\n`).join('');
      await r.run(['console', 'echo', '--until', 'echo: line-0399', '--timeout', '60s'], { input: lines });
      await until(async () => (await r.run(['logs', 'echo'])).stdout.includes('echo: line-0399'), 30_000, 'all lines echoed');
      const dir = join(r.home, 'vms', 'echo');
      expect(statSync(join(dir, 'serial.log')).size).toBeLessThanOrEqual(4096);
      expect(statSync(join(dir, 'serial.log.1')).size).toBe(4096);
      expect((await r.run(['stop', 'echo', '--force'])).code).toBe(0);
    } finally {
      await r.cleanup();
    }
  });
});
