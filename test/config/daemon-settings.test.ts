import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DEFAULT_SETTINGS, DEFAULT_SETTINGS_TEXT, loadDaemonSettings } from '../../src/config/daemon-settings.js';
import { ConfigErrors } from '../../src/config/errors.js';
import { cgroupCpuLimit, hostCpus } from '../../src/config/host-cpus.js';

const dir = mkdtempSync(join(tmpdir(), 'vmctl-settings-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
function file(text: string): string {
  const f = join(dir, `config-${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(f, text);
  return f;
}

describe('daemon settings (config.yaml)', () => {
  it('defaults when missing or empty, and the written default file reads back as the defaults', () => {
    expect(loadDaemonSettings(join(dir, 'absent.yaml'))).toEqual(DEFAULT_SETTINGS);
    expect(loadDaemonSettings(file(''))).toEqual(DEFAULT_SETTINGS);
    expect(loadDaemonSettings(file(DEFAULT_SETTINGS_TEXT))).toEqual(DEFAULT_SETTINGS);
  });
  it('reads sizes', () => {
    expect(loadDaemonSettings(file('serialLogMaxSize: 64KiB\nconsoleHistorySize: 1M\n'))).toEqual({ ...DEFAULT_SETTINGS, serialLogMaxBytes: 65536, consoleHistoryBytes: 1024 * 1024 });
    expect(loadDaemonSettings(file('daemonLogMaxSize: 8KiB\n'))).toEqual({ ...DEFAULT_SETTINGS, daemonLogMaxBytes: 8192 });
  });
  it('rejects unknown keys and bad sizes with FILE:LINE:COL', () => {
    const f = file('serialLogMaxSize: 1KiB\nconsoleHistorySise: 1M\n');
    try {
      loadDaemonSettings(f);
      throw new Error('expected an error');
    } catch (e) {
      expect(e).toBeInstanceOf(ConfigErrors);
      expect((e as ConfigErrors).errors.map((x) => x.message)).toEqual([
        `${f}:1:19: serialLogMaxSize: "1KiB" is too small; expected a size of at least 4KiB`,
        `${f}:2:1: unknown key "consoleHistorySise"; did you mean "consoleHistorySize"? (expected one of serialLogMaxSize, daemonLogMaxSize, consoleHistorySize, networks, host)`,
      ]);
    }
  });
  it('reads host memory, overcommit and autoBalloon; refuses bad ones at FILE:LINE:COL', () => {
    const s = loadDaemonSettings(file('host:\n  memory: 2GiB\n  overcommit: 2\n  autoBalloon: false\n'));
    expect([s.hostMemoryBytes, s.overcommit, s.autoBalloon]).toEqual([2 * 1024 ** 3, 2, false]);
    const f = file('host:\n  memory: 1MiB\n  overcommit: 0.5\n');
    expect(() => loadDaemonSettings(f)).toThrow(ConfigErrors);
    try { loadDaemonSettings(f); } catch (e) {
      const msgs = (e as ConfigErrors).errors.map((x) => x.message);
      expect(msgs).toHaveLength(2);
      expect(msgs[0]).toMatch(new RegExp(`^${f.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:2:11: host\\.memory: "1MiB" is too small`));
      expect(msgs[1]).toMatch(/:3:15: host\.overcommit: .*0\.5/);
    }
  });
  it('reads switch networks: subnet and nat by name; a name with nothing takes the defaults', () => {
    const s = loadDaemonSettings(file('networks:\n  lab: { subnet: 192.168.7.0/24, nat: true }\n  quiet:\n'));
    expect(s.networks).toEqual(new Map([
      ['lab', { network: (192 << 24 | 168 << 16 | 7 << 8) >>> 0, prefix: 24, nat: true }],
      ['quiet', { network: (10 << 24 | 3 << 8) >>> 0, prefix: 24, nat: false }],
    ]));
  });
  it('refuses subnets with host bits, prefixes with no room, bad names, at FILE:LINE:COL', () => {
    const errors = (text: string): string[] => {
      try {
        loadDaemonSettings(file(text));
      } catch (e) {
        return (e as ConfigErrors).errors.map((x) => x.message.replace(/^.*?:(\d+:\d+:)/, '$1'));
      }
      throw new Error('expected errors');
    };
    expect(errors('networks:\n  lab: { subnet: 10.0.3.5/24 }\n  b: { subnet: 10.0.0.0/30 }\n')).toEqual([
      '2:18: networks.lab.subnet: 10.0.3.5/24 has host bits set; expected the network address 10.0.3.0/24',
      '3:16: networks.b.subnet: prefix /30 is out of range; expected /8 to /27 (room for the gateway, DNS and DHCP addresses)',
    ]);
    expect(errors('networks:\n  "a b": {}\n  lab: { subnet: lab, nate: true }\n')).toEqual([
      '2:3: networks: key "a b" is not a network name (letters, digits, ".", "_" or "-", 1..63)',
      '3:18: networks.lab.subnet: found "lab"; expected an IPv4 network like 10.0.3.0/24',
      '3:23: unknown key "networks.lab.nate"; did you mean "networks.lab.nat"? (expected one of subnet, nat)',
    ]);
  });
});

describe('host.cpus (issue 12)', () => {
  it('is read from config.yaml, and defaults to the cores this process may use', () => {
    expect(loadDaemonSettings(file('host:\n  cpus: 3\n')).hostCpus).toBe(3);
    expect(DEFAULT_SETTINGS.hostCpus).toBe(hostCpus());
    expect(hostCpus()).toBeGreaterThan(0);
    expect(hostCpus()).toBeLessThanOrEqual(availableParallelism());
    const f = file('host:\n  cpus: 0\n');
    expect(() => loadDaemonSettings(f)).toThrow(`${f}:2:9: host.cpus: found 0; expected a number from 0.01 to 1024`);
    expect(loadDaemonSettings(file('host:\n  cpus: 0.5\n')).hostCpus).toBe(0.5);
  });

  it('shares the one host key with memory, overcommit and autoBalloon; an empty host: is every default', () => {
    const s = loadDaemonSettings(file('host:\n  cpus: 1.5\n  memory: 2GiB\n  overcommit: 2\n  autoBalloon: false\n'));
    expect(s).toEqual({ ...DEFAULT_SETTINGS, hostCpus: 1.5, hostMemoryBytes: 2 * 1024 ** 3, overcommit: 2, autoBalloon: false });
    expect(loadDaemonSettings(file('host:\n'))).toEqual(DEFAULT_SETTINGS);
    const f = file('host:\n  cpus: 2\n  memroy: 2GiB\n');
    expect(() => loadDaemonSettings(f)).toThrow(`${f}:3:3: unknown key "host.memroy"; did you mean "host.memory"? (expected one of cpus, memory, overcommit, autoBalloon)`);
  });

  it('honours a cgroup CPU limit (v2 cpu.max, v1 cfs quota), the tightest on the path to the root', () => {
    const root = mkdtempSync(join(tmpdir(), 'vmctl-cgroup-'));
    try {
      mkdirSync(join(root, 'a/b'), { recursive: true });
      writeFileSync(join(root, 'cpu.max'), 'max 100000\n');
      writeFileSync(join(root, 'a/cpu.max'), '150000 100000\n');
      writeFileSync(join(root, 'a/b/cpu.max'), '300000 100000\n');
      expect(cgroupCpuLimit(root, '0::/a/b\n')).toBe(1.5);
      expect(cgroupCpuLimit(root, '0::/\n')).toBe(Infinity);
      mkdirSync(join(root, 'cpu/c'), { recursive: true });
      writeFileSync(join(root, 'cpu/c/cpu.cfs_quota_us'), '50000\n');
      writeFileSync(join(root, 'cpu/c/cpu.cfs_period_us'), '100000\n');
      writeFileSync(join(root, 'cpu/cpu.cfs_quota_us'), '-1\n');
      writeFileSync(join(root, 'cpu/cpu.cfs_period_us'), '100000\n');
      expect(cgroupCpuLimit(root, '4:memory:/x\n2:cpu,cpuacct:/c\n')).toBe(0.5);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});
