import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigErrors } from '../../src/config/errors.js';
import { loadVmDefinition, parseVmDefinition, serializeVmDefinition } from '../../src/config/vm-definition.js';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'vmctl-config-'));
  writeFileSync(join(dir, 'k.elf'), 'x');
  writeFileSync(join(dir, 'disk.img'), Buffer.alloc(4096));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function errorsOf(text: string): string[] {
  try {
    parseVmDefinition(text, 'vm.yaml', dir);
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigErrors);
    return (e as ConfigErrors).errors.map((x) => x.message);
  }
  throw new Error('expected errors');
}

describe('VM definition', () => {
  it('accepts a full definition and resolves relative paths against the file\'s folder', () => {
    const d = parseVmDefinition(
      'name: a1\ncpus: 2\nmemory: 64M\nboot:\n  firmware: builtin\n  kernel: ./k.elf\n  cmdline: "console=ttyS0"\n' +
      'disks:\n  - path: disk.img\n    readonly: true\n  - path: new.img\n    size: 1GiB\n    name: data\nshutdown:\n  console: "poweroff\\n"\n  timeout: 5s\n',
      'vm.yaml', dir);
    expect(d).toEqual({
      name: 'a1', cpus: 2, cpuShares: 100, cpuCap: 100, memoryBytes: 64 * 1024 * 1024, memoryMinBytes: 64 * 1024 * 1024, memoryMinGiven: false,
      balloon: { enabled: true, explicit: false, deflateOnOom: true, statsIntervalMs: 5000, freePageReporting: true },
      boot: { firmware: { kind: 'builtin' }, kernel: join(dir, 'k.elf'), initrd: undefined, cmdline: 'console=ttyS0' },
      disks: [
        { path: join(dir, 'disk.img'), sizeBytes: undefined, readonly: true, name: 'disk0' },
        { path: join(dir, 'new.img'), sizeBytes: 1024 ** 3, readonly: false, name: 'data' },
      ],
      shutdown: { console: 'poweroff\n', timeoutMs: 5000 },
      network: { explicit: false, nics: [{ mode: 'user', forwards: [], restrict: false }] },
    });
  });

  it('round-trips through the stored form', () => {
    const d = parseVmDefinition('name: rt\nmemory: 32MiB\nboot:\n  kernel: k.elf\nshutdown:\n  console: "halt\\n"\n', 'vm.yaml', dir);
    const f = join(dir, 'stored.yaml');
    writeFileSync(f, serializeVmDefinition(d));
    expect(loadVmDefinition(f)).toEqual(d);
  });

  it('reports an unknown key with its line and column, and suggests the key meant', () => {
    expect(errorsOf('name: a\nboot:\n  kernel: k.elf\n  kernal: k.elf\n')).toEqual([
      'vm.yaml:4:3: unknown key "boot.kernal"; did you mean "boot.kernel"? (expected one of firmware, kernel, initrd, cmdline)',
    ]);
    expect(errorsOf('name: a\nmemroy: 1G\nboot:\n  kernel: k.elf\n')).toEqual([
      'vm.yaml:2:1: unknown key "memroy"; did you mean "memory"? (expected one of name, cpus, memory, boot, disks, network, balloon, shutdown)',
    ]);
    expect(errorsOf('name: a\nboot:\n  kernel: k.elf\ndisks:\n  - path: disk.img\n    readOnly: true\n')).toEqual([
      'vm.yaml:6:5: unknown key "disks[0].readOnly"; did you mean "disks[0].readonly"? (expected one of path, size, readonly, name)',
    ]);
    // A key written at the wrong level is pointed to where it belongs.
    expect(errorsOf('name: a\nkernel: k.elf\nboot:\n  kernel: k.elf\n')).toEqual([
      'vm.yaml:2:1: unknown key "kernel"; did you mean "boot.kernel"? (expected one of name, cpus, memory, boot, disks, network, balloon, shutdown)',
    ]);
    // Nothing close: no guess.
    expect(errorsOf('name: a\ncolour: red\nboot:\n  kernel: k.elf\n')).toEqual([
      'vm.yaml:2:1: unknown key "colour"; expected one of name, cpus, memory, boot, disks, network, balloon, shutdown',
    ]);
  });

  it('reads cpus and memory in either form, with one message for the form written', () => {
    const d = parseVmDefinition('name: a\ncpus: {count: 3}\nmemory:\n  size: 64MiB\nboot:\n  kernel: k.elf\n', 'vm.yaml', dir);
    expect([d.cpus, d.memoryBytes]).toEqual([3, 64 * 1024 * 1024]);
    // A mapping is checked as a mapping, a scalar as a scalar; another kind names both forms.
    expect(errorsOf('name: a\ncpus: {count: 9}\nboot:\n  kernel: k.elf\n')).toEqual(['vm.yaml:2:15: cpus.count: found 9; expected a whole number from 1 to 8']);
    expect(errorsOf('name: a\ncpus: {}\nboot:\n  kernel: k.elf\n')).toEqual(['vm.yaml:2:7: missing key "cpus.count"; expected a whole number from 1 to 8']);
    expect(errorsOf('name: a\ncpus: {cuont: 2}\nboot:\n  kernel: k.elf\n')).toEqual([
      'vm.yaml:2:7: missing key "cpus.count"; expected a whole number from 1 to 8',
      'vm.yaml:2:8: unknown key "cpus.cuont"; did you mean "cpus.count"? (expected one of count, shares, cap)',
    ]);
    expect(errorsOf('name: a\ncpus: [2]\nboot:\n  kernel: k.elf\n')).toEqual(['vm.yaml:2:7: cpus: found a list; expected a whole number from 1 to 8, or a mapping with keys count, shares, cap']);
    expect(errorsOf('name: a\nmemory: {size: 3KiB}\nboot:\n  kernel: k.elf\n')).toEqual(['vm.yaml:2:16: memory.size: "3KiB" is out of range; expected from 1MiB to 16GiB']);
    expect(errorsOf('name: a\nmemory: [1GiB]\nboot:\n  kernel: k.elf\n')[0]).toBe('vm.yaml:2:9: memory: found a list; expected a size like 128MiB (units B, KiB, MiB, GiB), or a mapping with keys size, min');
  });

  it('memory.min: the balloon target\'s floor, 64MiB (or the size when smaller) unless given; never above the size', () => {
    const d = parseVmDefinition('name: a\nmemory: {size: 1GiB, min: 256MiB}\nboot:\n  kernel: k.elf\n', 'vm.yaml', dir);
    expect([d.memoryBytes, d.memoryMinBytes, d.memoryMinGiven]).toEqual([1024 ** 3, 256 * 1024 ** 2, true]);
    expect(parseVmDefinition('name: a\nmemory: 1GiB\nboot:\n  kernel: k.elf\n', 'vm.yaml', dir).memoryMinBytes).toBe(64 * 1024 ** 2);
    expect(parseVmDefinition('name: a\nmemory: 16MiB\nboot:\n  kernel: k.elf\n', 'vm.yaml', dir).memoryMinBytes).toBe(16 * 1024 ** 2);
    expect(errorsOf('name: a\nmemory: {size: 1GiB, min: 2GiB}\nboot:\n  kernel: k.elf\n')).toEqual([
      'vm.yaml:2:22: memory.min: 2GiB is more than memory.size (1GiB); expected at most 1GiB',
    ]);
    expect(errorsOf('name: a\nmemory: {size: 1GiB, min: 1000}\nboot:\n  kernel: k.elf\n')[0]).toMatch(/^vm\.yaml:2:27: memory\.min: 1000 is out of range/);
    const f = join(dir, 'min.yaml');
    writeFileSync(f, serializeVmDefinition(d));
    expect(loadVmDefinition(f)).toEqual(d);
  });

  it('balloon: on by default where a virtio slot is left; settings read and stored', () => {
    const d = parseVmDefinition('name: a\nboot:\n  kernel: k.elf\nballoon:\n  deflateOnOom: false\n  statsInterval: 2s\n  freePageReporting: false\n', 'vm.yaml', dir);
    expect(d.balloon).toEqual({ enabled: true, explicit: true, deflateOnOom: false, statsIntervalMs: 2000, freePageReporting: false });
    const f = join(dir, 'balloon.yaml');
    writeFileSync(f, serializeVmDefinition(d));
    expect(loadVmDefinition(f)).toEqual(d);
    const off = parseVmDefinition('name: a\nboot:\n  kernel: k.elf\nballoon: {enabled: false}\n', 'vm.yaml', dir);
    expect(off.balloon.enabled).toBe(false);
    writeFileSync(f, serializeVmDefinition(off));
    expect(loadVmDefinition(f).balloon.enabled).toBe(false);
    expect(errorsOf('name: a\nboot:\n  kernel: k.elf\nballoon: {statsInterval: often}\n')).toEqual([
      'vm.yaml:4:26: balloon.statsInterval: found "often"; expected a duration like 30s, 500ms or 5m',
    ]);
  });

  it('balloon and the 8 virtio slots: the default one is left out with a warning, one asked for is an error at its key', () => {
    const disks = (n: number): string => Array.from({ length: n }, (_, i) => `  - path: d${i}.img\n    size: 1MiB\n`).join('');
    const seven = parseVmDefinition(`name: a\nboot:\n  kernel: k.elf\ndisks:\n${disks(7)}`, 'vm.yaml', dir);
    // Disks, then the balloon, then the default NIC where a slot is left (src/board/virtio-slots.ts).
    expect([seven.balloon.enabled, seven.warnings]).toEqual([true, [
      'no NIC: the 7 disks and the balloon take all 8 virtio slots, so the default NIC (user-mode NAT) is left out; give fewer disks for a network, or network: none to say so',
    ]]);
    // A file with 8 disks validated before balloons existed: it still does, without one.
    const eight = parseVmDefinition(`name: a\nboot:\n  kernel: k.elf\ndisks:\n${disks(8)}`, 'vm.yaml', dir);
    expect(eight.balloon.enabled).toBe(false);
    expect(eight.warnings).toEqual([
      'no memory balloon: the board\'s 8 virtio slots are all taken by 8 disks (give balloon: {enabled: false} to say so, or use fewer disks)',
      'no NIC: the 8 disks take all 8 virtio slots, so the default NIC (user-mode NAT) is left out; give fewer disks for a network, or network: none to say so',
    ]);
    const f = join(dir, 'eight.yaml');
    writeFileSync(f, serializeVmDefinition(eight));
    expect(loadVmDefinition(f).warnings).toEqual(eight.warnings);
    expect(errorsOf(`name: a\nboot:\n  kernel: k.elf\nballoon:\n  enabled: true\ndisks:\n${disks(8)}`)).toEqual([
      'vm.yaml:5:12: balloon.enabled: no virtio slot is left for the balloon: the board\'s 8 virtio slots are all taken by 8 disks; expected at most 7 disks and NICs with a balloon, or balloon.enabled: false',
    ]);
    expect(errorsOf(`name: a\nboot:\n  kernel: k.elf\nballoon: {statsInterval: 1s}\ndisks:\n${disks(8)}`)[0]).toMatch(/^vm\.yaml:4:10: balloon: no virtio slot is left/);
    expect(parseVmDefinition(`name: a\nboot:\n  kernel: k.elf\nballoon: {enabled: false}\nnetwork: none\ndisks:\n${disks(8)}`, 'vm.yaml', dir).warnings ?? []).toEqual([]);
  });

  it('reads CPU shares and cap (issue 12), and refuses what is out of range', () => {
    const d = parseVmDefinition('name: a\ncpus: {count: 2, shares: 2048, cap: 25%}\nboot:\n  kernel: k.elf\n', 'vm.yaml', dir);
    expect([d.cpus, d.cpuShares, d.cpuCap]).toEqual([2, 2048, 25]);
    const plain = parseVmDefinition('name: a\ncpus: {count: 2, cap: 50}\nboot:\n  kernel: k.elf\n', 'vm.yaml', dir);
    expect([plain.cpuShares, plain.cpuCap]).toEqual([100, 50]);
    expect(errorsOf('name: a\ncpus: {count: 2, shares: 0}\nboot:\n  kernel: k.elf\n')).toEqual(['vm.yaml:2:26: cpus.shares: found 0; expected a whole number from 1 to 10000']);
    expect(errorsOf('name: a\ncpus: {count: 2, cap: 150%}\nboot:\n  kernel: k.elf\n')).toEqual(['vm.yaml:2:23: cpus.cap: found "150%"; expected a percentage from 1% to 100%, like 50%']);
    expect(errorsOf('name: a\ncpus: {count: 2, cap: half}\nboot:\n  kernel: k.elf\n')).toEqual(['vm.yaml:2:23: cpus.cap: found "half"; expected a percentage from 1% to 100%, like 50%']);
    // The stored form keeps them (and stays `cpus: N` without them).
    expect(serializeVmDefinition(d)).toContain('cpus:\n  count: 2\n  shares: 2048\n  cap: 25%\n');
    expect(parseVmDefinition(serializeVmDefinition(d), 'vm.yaml', dir, { skipFileChecks: true })).toEqual(d);
    expect(serializeVmDefinition(plain.cpuCap === 50 ? { ...plain, cpuCap: 100 } : plain)).toContain('cpus: 2\n');
  });

  it('reports wrong types naming the key, the value and what was expected', () => {
    expect(errorsOf('name: a\ncpus: two\nboot:\n  kernel: k.elf\n')).toEqual(['vm.yaml:2:7: cpus: found "two"; expected a whole number from 1 to 8']);
    expect(errorsOf('name: a\ncpus: 9\nboot:\n  kernel: k.elf\n')).toEqual(['vm.yaml:2:7: cpus: found 9; expected a whole number from 1 to 8']);
    expect(errorsOf('name: a\nboot: k.elf\n')).toEqual(['vm.yaml:2:7: boot: found "k.elf"; expected a mapping with keys firmware, kernel, initrd, cmdline']);
    expect(errorsOf('name: a\nboot:\n  kernel: k.elf\ndisks:\n  - path: disk.img\n    readonly: yes\n')).toEqual(['vm.yaml:6:15: disks[0].readonly: found "yes"; expected true or false']);
  });

  it('reports bad sizes', () => {
    expect(errorsOf('name: a\nmemory: 12 parsecs\nboot:\n  kernel: k.elf\n')[0]).toMatch(/^vm\.yaml:2:9: memory: found "12 parsecs"; expected a size like 128MiB/);
    expect(errorsOf('name: a\nmemory: 64GiB\nboot:\n  kernel: k.elf\n')[0]).toMatch(/^vm\.yaml:2:9: memory: "64GiB" is out of range/);
    // A number without a unit counts bytes: 256 is far too little, and 256MiB is named as the likely meaning.
    expect(errorsOf('name: a\nmemory: 256\nboot:\n  kernel: k.elf\n')[0]).toBe('vm.yaml:2:9: memory: 256 is out of range; expected from 1MiB to 16GiB (a number without a unit counts bytes: did you mean 256MiB?)');
    expect(errorsOf('name: a\nboot:\n  kernel: k.elf\nshutdown:\n  timeout: 30\n')[0]).toMatch(/^vm\.yaml:5:12: shutdown\.timeout: 30 has no unit; did you mean 30s\?/);
    expect(errorsOf('name: a\nmemory: 2047KiB\nboot:\n  kernel: k.elf\n')[0]).toMatch(/^vm\.yaml:2:9: memory: "2047KiB" is not a multiple of 4KiB/);
    expect(errorsOf('name: a\nboot:\n  kernel: k.elf\ndisks:\n  - path: n.img\n    size: 1000B\n')[0]).toMatch(/^vm\.yaml:6:11: disks\[0\]\.size: "1000B" is not a multiple of 512 bytes/);
    // Spelled as sizes, but out of range: say so rather than "expected a size like 128MiB".
    expect(errorsOf('name: a\nmemory: 99999999999999999999999GiB\nboot:\n  kernel: k.elf\n')).toEqual(['vm.yaml:2:9: memory: "99999999999999999999999GiB" is out of range; expected from 1MiB to 16GiB']);
    expect(errorsOf('name: a\nboot:\n  kernel: k.elf\ndisks:\n  - path: n.img\n    size: 99999TiB\n')).toEqual(['vm.yaml:6:11: disks[0].size: "99999TiB" is too large; expected a size like 1GiB (less than 8192TiB)']);
    expect(errorsOf('name: a\nboot:\n  kernel: k.elf\ndisks:\n  - path: n.img\n    size: 0\n')).toEqual(['vm.yaml:6:11: disks[0].size: 0 is empty; expected a size like 1GiB, at least 512 bytes']);
  });

  it('reports missing files with the resolved path', () => {
    expect(errorsOf('name: a\nboot:\n  kernel: ./nope.elf\n')).toEqual([`vm.yaml:3:11: boot.kernel: file "${join(dir, 'nope.elf')}" does not exist`]);
    expect(errorsOf('name: a\nboot:\n  kernel: k.elf\n  initrd: rd.gz\n')).toEqual([`vm.yaml:4:11: boot.initrd: file "${join(dir, 'rd.gz')}" does not exist`]);
    expect(errorsOf('name: a\nboot:\n  firmware: fw.bin\n')).toEqual([`vm.yaml:3:13: boot.firmware: file "${join(dir, 'fw.bin')}" does not exist`]);
    expect(errorsOf('name: a\nboot:\n  kernel: k.elf\ndisks:\n  - path: gone.img\n')[0]).toMatch(/^vm\.yaml:5:11: disks\[0\]\.path: file ".*gone\.img" does not exist; give disks\[0\]\.size/);
  });

  it('reports missing required keys and a bad name', () => {
    expect(errorsOf('cpus: 1\nboot:\n  kernel: k.elf\n')).toEqual(['vm.yaml:1:1: missing key "name"; expected a VM name like "demo" (or pass --name)']);
    expect(errorsOf('name: a\n')).toEqual(['vm.yaml:1:1: missing key "boot"; expected a mapping with at least boot.kernel (or boot.firmware)']);
    expect(errorsOf('name: -x\nboot:\n  kernel: k.elf\n')[0]).toMatch(/^vm\.yaml:1:7: name: found "-x"; expected letters/);
  });

  it('reports YAML syntax errors and duplicate keys with their position', () => {
    expect(errorsOf('name: a\nboot: [1, 2\n')[0]).toMatch(/^vm\.yaml:\d+:\d+: YAML syntax: /);
    expect(errorsOf('name: a\nname: b\nboot:\n  kernel: k.elf\n')[0]).toMatch(/^vm\.yaml:2:1: YAML syntax: Map keys must be unique/);
    expect(errorsOf('name: a\nboot: {kernel: k.elf, "kernel": k.elf}\n')).toEqual(['vm.yaml:2:23: YAML syntax: Map keys must be unique ("kernel" is given twice, first at 2:8; expected each key once)']);
  });

  it('lists every problem in source order', () => {
    const errs = errorsOf('name: a\ncpus: 0\nmemory: lots\nboot:\n  kernel: k.elf\nextra: 1\n');
    expect(errs.map((e) => e.split(':').slice(1, 3).join(':'))).toEqual(['2:7', '3:9', '6:1']);
  });

  it('allows at most 8 disks (the board\'s virtio slots)', () => {
    const disks = Array.from({ length: 9 }, (_, i) => `  - path: d${i}.img\n    size: 1MiB\n`).join('');
    expect(errorsOf(`name: a\nboot:\n  kernel: k.elf\ndisks:\n${disks}`)).toEqual(['vm.yaml:21:5: disks: 9 disks; the board has 8 virtio slots, so at most 8']);
  });

  it('uses --name instead of the file\'s name', () => {
    expect(parseVmDefinition('boot:\n  kernel: k.elf\n', 'vm.yaml', dir, { nameOverride: 'other' }).name).toBe('other');
  });

  it('names the top level when the file holds a list or a scalar instead of a mapping', () => {
    expect(errorsOf('- a\n- b\n')).toEqual(['vm.yaml:1:1: the top level: found a list; expected a mapping with keys name, cpus, memory, boot, disks, network, balloon, shutdown']);
    expect(errorsOf('hello\n')).toEqual(['vm.yaml:1:1: the top level: found "hello"; expected a mapping with keys name, cpus, memory, boot, disks, network, balloon, shutdown']);
    expect(errorsOf('name: a\nboot:\n  kernel: k.elf\n? [a, b]\n: c\n')).toEqual(['vm.yaml:4:3: the top level: key a list is not a plain name; expected one of name, cpus, memory, boot, disks, network, balloon, shutdown']);
    expect(errorsOf('name: a\nboot:\n  kernel: k.elf\n---\nname: b\n')).toEqual(['vm.yaml:4:1: YAML syntax: the file holds more than one YAML document (a second ---); expected one VM definition per file']);
  });

  it('resolves aliases and YAML merge keys (own keys win), and reports an alias without an anchor', () => {
    const d = parseVmDefinition(
      'name: a\nmemory: &m 32MiB\nboot:\n  kernel: k.elf\n  cmdline: *m\ndisks:\n' +
      '  - &d {path: d0.img, size: 1MiB, readonly: false}\n  - <<: *d\n    path: d1.img\n  - {<<: [*d], path: d2.img, size: 2MiB, name: big}\n',
      'vm.yaml', dir);
    expect(d.memoryBytes).toBe(32 * 1024 * 1024);
    expect(d.boot.cmdline).toBe('32MiB');
    expect(d.disks).toEqual([
      { path: join(dir, 'd0.img'), sizeBytes: 1024 * 1024, readonly: false, name: 'disk0' },
      { path: join(dir, 'd1.img'), sizeBytes: 1024 * 1024, readonly: false, name: 'disk1' },
      { path: join(dir, 'd2.img'), sizeBytes: 2 * 1024 * 1024, readonly: false, name: 'big' },
    ]);
    // A merged key is checked like a written one, at the place it is written.
    expect(errorsOf('name: a\nboot:\n  kernel: k.elf\ndisks:\n  - &d {path: d0.img, size: 1MiB, readonly: maybe}\n  - {<<: *d, path: d1.img}\n'))
      .toEqual(['vm.yaml:5:45: disks[0].readonly: found "maybe"; expected true or false', 'vm.yaml:5:45: disks[1].readonly: found "maybe"; expected true or false']);
    expect(errorsOf('name: a\nboot:\n  kernel: k.elf\n  cmdline: *nope\n')).toEqual(['vm.yaml:4:12: alias *nope refers to no anchor; expected &nope on a value above it']);
    expect(errorsOf('name: a\nboot:\n  kernel: k.elf\ndisks:\n  - {<<: 5, path: d0.img, size: 1MiB}\n'))
      .toEqual(['vm.yaml:5:10: merge key "<<": found 5; expected an alias of a mapping (<<: *name) or a list of them']);
  });

  it('refuses bytes that are not UTF-8 with their line and column, instead of reading them as U+FFFD', () => {
    const f = join(dir, 'latin1.yaml');
    writeFileSync(f, Buffer.concat([Buffer.from('name: a\nboot:\n  kernel: k.elf\n  cmdline: "caf\u00e9 '), Buffer.from([0xe9, 0x22, 0x0a])]));
    expect(() => loadVmDefinition(f)).toThrow(`${f}:4:18: byte 0xe9 (file offset 48) is not UTF-8; expected a UTF-8 text file`);
  });

  it('refuses an empty kernel or firmware file (it would boot whatever RAM holds)', () => {
    writeFileSync(join(dir, 'empty.bin'), '');
    expect(errorsOf('name: a\nboot:\n  kernel: empty.bin\n')).toEqual([`vm.yaml:3:11: boot.kernel: "${join(dir, 'empty.bin')}" is empty (0 bytes); expected a kernel (ELF, Linux Image or raw binary)`]);
    expect(errorsOf('name: a\nboot:\n  firmware: empty.bin\n')).toEqual([`vm.yaml:3:13: boot.firmware: "${join(dir, 'empty.bin')}" is empty (0 bytes); expected a firmware binary (ELF or raw)`]);
  });

  it('sees one image under two names (a symlink) as the same disk, and refuses a writable disk that is a boot image', () => {
    symlinkSync('disk.img', join(dir, 'disk-link.img'));
    expect(errorsOf('name: a\nboot:\n  kernel: k.elf\ndisks:\n  - path: disk.img\n  - path: disk-link.img\n')).toEqual([
      `vm.yaml:6:11: disks[1].path: "${join(dir, 'disk-link.img')}" ("${join(dir, 'disk.img')}") is already attached as another disk`]);
    expect(errorsOf('name: a\nboot:\n  kernel: k.elf\ndisks:\n  - path: k.elf\n')).toEqual([
      `vm.yaml:5:11: disks[0].path: "${join(dir, 'k.elf')}" is also boot.kernel; the guest would write over it; expected another file, or readonly: true`]);
    expect(parseVmDefinition('name: a\nboot:\n  kernel: k.elf\ndisks:\n  - {path: k.elf, readonly: true}\n', 'vm.yaml', dir).disks[0].readonly).toBe(true);
  });

  it('reads a name YAML would take for a number as the name written', () => {
    expect(parseVmDefinition('name: 0042\nboot:\n  kernel: k.elf\n', 'vm.yaml', dir).name).toBe('0042');
  });
});

describe('boot images, loaded as the board will (validate/create refuse what start would)', () => {
  const HELLO = join(__dirname, '../../fixtures/demo/hello.elf'); // linked at 0x80000000
  /** A 64-byte ELF header: class (1 = 32-bit, 2 = 64-bit) and e_machine (243 = RISC-V, 62 = x86-64). */
  const elfHeader = (cls: number, machine: number): Buffer => {
    const b = Buffer.alloc(64);
    b.set([0x7f, 0x45, 0x4c, 0x46, cls, 1, 1]);
    b.writeUInt16LE(2, 16);
    b.writeUInt16LE(machine, 18);
    return b;
  };
  beforeAll(() => {
    writeFileSync(join(dir, 'elf32.elf'), elfHeader(1, 243));
    writeFileSync(join(dir, 'x86.elf'), elfHeader(2, 62));
    writeFileSync(join(dir, 'fw300k.bin'), Buffer.alloc(300 * 1024, 0x13));
    writeFileSync(join(dir, 'big.bin'), Buffer.alloc(5 * 1024 * 1024, 0x13));
    writeFileSync(join(dir, 'rd.bin'), Buffer.alloc(3 * 1024 * 1024, 1));
  });

  it('refuses a 32-bit or non-RISC-V ELF at boot.kernel', () => {
    expect(errorsOf('name: a\nboot:\n  kernel: elf32.elf\n')).toEqual([`vm.yaml:3:11: boot.kernel: ${join(dir, 'elf32.elf')}: not a 64-bit ELF (EI_CLASS != ELFCLASS64)`]);
    expect(errorsOf('name: a\nboot:\n  kernel: x86.elf\n')).toEqual([`vm.yaml:3:11: boot.kernel: ${join(dir, 'x86.elf')}: not a RISC-V ELF (e_machine 62)`]);
  });

  it('refuses an image larger than memory, and a kernel that would load over the firmware', () => {
    expect(errorsOf('name: a\nmemory: 4MiB\nboot:\n  kernel: big.bin\n')).toEqual([
      `vm.yaml:4:11: boot.kernel: "${join(dir, 'big.bin')}" is 5MiB, more than the 4MiB of memory; expected a larger memory: or a smaller image`]);
    expect(errorsOf(`name: a\nmemory: 16MiB\nboot:\n  firmware: fw300k.bin\n  kernel: ${HELLO}\n`)).toEqual([
      `vm.yaml:5:11: boot.kernel: "${HELLO}" loads at 0x80000000..0x800002d5, over the firmware at 0x80000000..0x8004b000; expected a kernel linked at or above 0x80200000`]);
    // The same kernel after the builtin SBI (which takes no RAM) is fine.
    expect(parseVmDefinition(`name: a\nmemory: 16MiB\nboot:\n  firmware: builtin\n  kernel: ${HELLO}\n`, 'vm.yaml', dir).boot.kernel).toBe(HELLO);
  });

  it('refuses an initrd, device tree or cmdline that does not fit, naming the memory that would', () => {
    expect(errorsOf(`name: a\nmemory: 4MiB\nboot:\n  kernel: ${HELLO}\n  initrd: rd.bin\n`)).toEqual([
      `vm.yaml:5:11: boot.initrd: "${join(dir, 'rd.bin')}" is 3MiB; loaded at 0x80200000 it needs RAM up to 0x80500000, but the 4MiB of memory end at 0x80400000; expected more memory: or a smaller initrd`]);
    const [m] = errorsOf(`name: a\nmemory: 2MiB\nboot:\n  kernel: ${HELLO}\n`);
    expect(m).toMatch(/^vm\.yaml:2:9: memory: no room for the device tree \(\d+ bytes, 0 of them the cmdline\): it goes at a 2MiB boundary below the end of the 2MiB of memory \(0x80200000\) and above the kernel \(which ends at 0x800002d5\); expected memory: of at least 3MiB$/);
    // The tree goes in the last 2MiB block; 100KiB past the boundary hold it only without the cmdline.
    const [c] = errorsOf(`name: a\nmemory: 2148KiB\nboot:\n  kernel: ${HELLO}\n  cmdline: "${'x'.repeat(200_000)}"\n`);
    expect(c).toMatch(/^vm\.yaml:5:12: boot\.cmdline: no room for the device tree \(\d+ bytes, 200000 of them the cmdline\).*; expected a shorter cmdline or memory: of at least 3MiB$/);
    // What the messages suggest works.
    expect(parseVmDefinition(`name: a\nmemory: 3MiB\nboot:\n  kernel: ${HELLO}\n`, 'vm.yaml', dir).memoryBytes).toBe(3 * 1024 * 1024);
    expect(parseVmDefinition(`name: a\nmemory: 3MiB\nboot:\n  kernel: ${HELLO}\n  cmdline: "${'x'.repeat(200_000)}"\n`, 'vm.yaml', dir).memoryBytes).toBe(3 * 1024 * 1024);
  });
});
