// CPU shares and caps, live figures and the event stream (issue 12), through the real CLI and
// daemon. The timing of the host is not asserted (it is shared); only that a cap is never
// exceeded (generously: a loaded host gives less, never more) and what the user sees.
import { readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ROOT, sleep, until, VmctlHome, waitForOutput } from './harness.js';

const HOG = resolve(ROOT, 'fixtures/firmware-tests/cpuhog.elf');
const h = new VmctlHome();
afterAll(() => h.cleanup());

function hog(name: string, cpus = '1'): string {
  const f = join(h.home, `${name}.yaml`);
  writeFileSync(f, `name: ${name}\ncpus: ${cpus}\nmemory: 16MiB\nboot:\n  kernel: ${HOG}\n`);
  return f;
}
async function info(name: string): Promise<Record<string, any>> {
  const r = await h.run(['info', name, '--json']);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout);
}

const FIGURES = ['name', 'state', 'cpus', 'cpuShares', 'cpuCap', 'cpuPercent', 'hartCpuPercent', 'mips', 'hartMips', 'heldBack', 'uptimeSeconds', 'memory', 'disks', 'timestamp'];

describe('vmctl set', () => {
  it('changes a stopped VM\'s harts, shares and cap, saved in its definition; bad values change nothing', async () => {
    expect((await h.run(['create', '-f', hog('setme')])).code).toBe(0);
    const r = await h.run(['set', 'setme', '--cpus', '2', '--cpu-shares', '300', '--cpu-cap', '50%']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('VM setme: 2 cpu, shares 300, cap 50%\n');
    expect(await info('setme')).toMatchObject({ cpus: 2, cpuShares: 300, cpuCap: 50 });
    expect(readFileSync(join(h.home, 'vms', 'setme', 'vm.yaml'), 'utf8')).toContain('cpus:\n  count: 2\n  shares: 300\n  cap: 50%\n');
    for (const [args, message] of [
      [['--cpu-shares', '0'], 'vmctl: --cpu-shares: found 0; expected a whole number from 1 to 10000\n'],
      [['--cpu-cap', '150%'], 'vmctl: --cpu-cap: found "150%"; expected a percentage from 1% to 100%, like 50%\n'],
      [['--cpus', '9'], 'vmctl: --cpus: found 9; expected a whole number from 1 to 8\n'],
      [[], 'vmctl: nothing to set; give --cpu-shares, --cpu-cap, --cpus or --memory-target\n'],
    ] as const) {
      const bad = await h.run(['set', 'setme', ...args]);
      expect(bad.code).toBe(2);
      expect(bad.stderr).toBe(`${message}(run vmctl set --help for usage)\n`);
    }
    // One set command for CPU and memory: a memory target needs a running VM, and then nothing
    // of the request is applied.
    const both = await h.run(['set', 'setme', '--cpu-shares', '5', '--memory-target', '16MiB']);
    expect(both.code).toBe(5);
    expect(both.stderr).toBe('vmctl: VM setme is stopped; the memory target moves the balloon of a running VM\n');
    expect(await info('setme')).toMatchObject({ cpus: 2, cpuShares: 300, cpuCap: 50 });
    expect((await h.run(['set', 'nosuch', '--cpu-shares', '5'])).code).toBe(4);
    expect((await h.run(['delete', 'setme'])).code).toBe(0);
  });
});

describe('a running VM', () => {
  it('stats, info --json and the event stream show its figures, its cap and changes made by set', async () => {
    const events = h.spawn(['events', '--json']);
    let seen = '';
    events.stdout!.on('data', (b: Buffer) => { seen += b.toString(); });
    const event = (re: RegExp) => until(() => re.test(seen), 60_000, `an event matching ${re}`);
    await sleep(1500); // subscribed
    expect((await h.run(['create', '-f', hog('busy', '{count: 2, cap: 10%}')])).code).toBe(0);
    expect((await h.run(['start', 'busy'])).code).toBe(0);
    await event(/"event":"state","vm":"busy","data":\{"state":"running"/);

    // Figures come once the VM has run a while: two harts, each held to 10 % of a core.
    const v = (await until(async () => { const i = await info('busy'); return i.mips !== null && i.cpuPercent > 0 ? i : null; }, 60_000, 'figures'))!;
    expect(v.hartCpuPercent).toHaveLength(2);
    expect(v.hartMips).toHaveLength(2);
    await sleep(3000);
    const capped = await info('busy');
    for (const p of capped.hartCpuPercent) expect(p).toBeLessThanOrEqual(15);
    expect(capped.cpuPercent).toBeLessThanOrEqual(30);

    const one = await h.run(['stats', 'busy', '--json']);
    expect(one.code, one.stderr).toBe(0);
    const lines = one.stdout.trim().split('\n');
    expect(lines).toHaveLength(1);
    const s = JSON.parse(lines[0]);
    expect(Object.keys(s)).toEqual(FIGURES);
    expect(s).toMatchObject({ name: 'busy', state: 'running', cpus: 2, cpuShares: 100, cpuCap: 10 });
    const table = await h.run(['stats']);
    expect(table.stdout).toMatch(/^NAME +STATE +CPU% +PER HART +MIPS +SHARES +CAP +HELD +UPTIME +CONFIGURED +RESIDENT +TARGET +ACTUAL +GUEST FREE +AVAILABLE +FAULTS MAJ\/MIN +SWAP IN\/OUT\nbusy +running /);

    // --watch: NDJSON, a line per VM and round
    const watch = h.spawn(['stats', '--json', '--watch', '300ms']);
    const text = await waitForOutput(watch, /("name":"busy".*\n.*){3}/s, 30_000);
    watch.kill();
    for (const l of text.trim().split('\n')) expect(Object.keys(JSON.parse(l))).toEqual(FIGURES);

    // a new cap applies at once, and the scheduler reports it
    expect((await h.run(['set', 'busy', '--cpu-cap', '20%', '--cpu-shares', '700'])).code).toBe(0);
    await event(/"event":"sched","vm":"busy","data":\{"kind":"settings","shares":700,"cap":20\}/);
    expect(await info('busy')).toMatchObject({ cpuShares: 700, cpuCap: 20 });
    expect((await h.run(['set', 'busy', '--cpus', '3'])).code).toBe(5);

    expect((await h.run(['stats', 'nosuch'])).code).toBe(4);
    expect((await h.run(['stop', 'busy', '--force'])).code).toBe(0);
    await event(/"event":"state","vm":"busy","data":\{"state":"stopped"/);
    events.kill();
    expect(await info('busy')).toMatchObject({ state: 'stopped', cpuPercent: null, mips: null });
  }, 240_000);
});
