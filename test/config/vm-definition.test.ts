import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
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
      name: 'a1', cpus: 2, memoryBytes: 64 * 1024 * 1024,
      boot: { firmware: { kind: 'builtin' }, kernel: join(dir, 'k.elf'), initrd: undefined, cmdline: 'console=ttyS0' },
      disks: [
        { path: join(dir, 'disk.img'), sizeBytes: undefined, readonly: true, name: 'disk0' },
        { path: join(dir, 'new.img'), sizeBytes: 1024 ** 3, readonly: false, name: 'data' },
      ],
      shutdown: { console: 'poweroff\n', timeoutMs: 5000 },
    });
  });

  it('round-trips through the stored form', () => {
    const d = parseVmDefinition('name: rt\nmemory: 32MiB\nboot:\n  kernel: k.elf\nshutdown:\n  console: "halt\\n"\n', 'vm.yaml', dir);
    const f = join(dir, 'stored.yaml');
    writeFileSync(f, serializeVmDefinition(d));
    expect(loadVmDefinition(f)).toEqual(d);
  });

  it('reports an unknown key with its line and column', () => {
    expect(errorsOf('name: a\nboot:\n  kernel: k.elf\n  kernal: k.elf\n')).toEqual([
      'vm.yaml:4:3: unknown key "boot.kernal"; expected one of firmware, kernel, initrd, cmdline',
    ]);
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
    expect(errorsOf('name: a\nmemory: 2047KiB\nboot:\n  kernel: k.elf\n')[0]).toMatch(/^vm\.yaml:2:9: memory: "2047KiB" is not a multiple of 4KiB/);
    expect(errorsOf('name: a\nboot:\n  kernel: k.elf\ndisks:\n  - path: n.img\n    size: 1000B\n')[0]).toMatch(/^vm\.yaml:6:11: disks\[0\]\.size: "1000B" is not a multiple of 512 bytes/);
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
    expect(errorsOf('- a\n- b\n')).toEqual(['vm.yaml:1:1: the top level: found a list; expected a mapping with keys name, cpus, memory, boot, disks, shutdown']);
    expect(errorsOf('hello\n')).toEqual(['vm.yaml:1:1: the top level: found "hello"; expected a mapping with keys name, cpus, memory, boot, disks, shutdown']);
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

  it('reads a name YAML would take for a number as the name written', () => {
    expect(parseVmDefinition('name: 0042\nboot:\n  kernel: k.elf\n', 'vm.yaml', dir).name).toBe('0042');
  });
});
