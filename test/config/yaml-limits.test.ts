// Reading YAML within limits: size, entries and nesting are refused before the document is built,
// duplicate keys and aliases are found in linear time.

import { describe, expect, it } from 'vitest';
import { ConfigError, ConfigErrors } from '../../src/config/errors.js';
import { SchemaReader, YAML_LIMITS, type YamlLimits } from '../../src/config/yaml-schema.js';

function errorsOf(text: string, limits: YamlLimits = YAML_LIMITS): string[] {
  return new ConfigErrors(new SchemaReader('f.yaml', text, limits).errors).errors.map((e) => e.message);
}

describe('YAML limits', () => {
  it('refuses deep flow nesting at the level that passes the limit, before the parser recurses', () => {
    const deep = `name: a\nboot: ${'['.repeat(10_000)}${']'.repeat(10_000)}\n`;
    // Column of the 33rd "[": "boot: " is 6 characters.
    expect(errorsOf(deep)).toEqual(['f.yaml:2:39: nesting deeper than 32 levels of mappings and lists (the limit for a vmctl YAML file); expected a flatter file']);
    expect(errorsOf(`a: ${'{b: '.repeat(40)}1${'}'.repeat(40)}\n`)[0]).toMatch(/^f\.yaml:1:\d+: nesting deeper than 32 levels/);
  });

  it('refuses deep block nesting (indentation) too', () => {
    const lines = Array.from({ length: 40 }, (_, i) => `${' '.repeat(i)}k${i}:\n`).join('');
    expect(errorsOf(lines)).toEqual(['f.yaml:33:33: nesting deeper than 32 levels of mappings and lists (the limit for a vmctl YAML file); expected a flatter file']);
    const list = Array.from({ length: 40 }, (_, i) => `${'  '.repeat(i)}- \n`).join('');
    expect(errorsOf(list)[0]).toMatch(/^f\.yaml:\d+:\d+: nesting deeper than 32 levels/);
    // 32 levels are fine.
    expect(errorsOf(Array.from({ length: 32 }, (_, i) => `${' '.repeat(i)}k${i}:\n`).join(''))).toEqual([]);
  });

  it('refuses too many keys and list items where the count passes the limit', () => {
    const keys = (n: number): string => Array.from({ length: n }, (_, i) => `k${i}: ${i}\n`).join('');
    expect(errorsOf(keys(10_000))).toEqual([]);
    expect(errorsOf(keys(10_001))).toEqual(['f.yaml:10001:7: more than 10000 keys and list items (the limit for a vmctl YAML file); expected a smaller file']);
    expect(errorsOf(`a: [${'1, '.repeat(10_000)}1]\n`)[0]).toMatch(/^f\.yaml:1:\d+: more than 10000 keys and list items/);
    // Characters inside scalars are data, not structure.
    expect(errorsOf(`a: "${'- : , [ { '.repeat(8_000)}"\nb: |\n  ${'- - : [ '.repeat(8_000)}\n`)).toEqual([]);
  });

  it('refuses a file over the size limit before parsing it', () => {
    const text = `a: "${'x'.repeat(YAML_LIMITS.bytes)}"\n`;
    expect(errorsOf(text)).toEqual([`f.yaml:1:1: the file is ${YAML_LIMITS.bytes + 6} bytes, more than 256KiB (the limit for a vmctl YAML file); expected a smaller file`]);
  });

  it('names a duplicate key and where it was first given', () => {
    expect(errorsOf('a: 1\nb:\n  c: 1\n  "c": 2\na: 3\n')).toEqual([
      'f.yaml:4:3: YAML syntax: Map keys must be unique ("c" is given twice, first at 3:3; expected each key once)',
      'f.yaml:5:1: YAML syntax: Map keys must be unique ("a" is given twice, first at 1:1; expected each key once)',
    ]);
    // 1 and "1" are different keys, as in the package's own check.
    expect(errorsOf('1: a\n"1": b\n')).toEqual([]);
  });

  it('resolves each alias to the last anchor of its name before it', () => {
    const r = new SchemaReader('f.yaml', 'a: &x 1\nb: *x\nc: &x 2\nd: *x\n');
    const items = (r.doc.contents as unknown as { items: { value: unknown }[] }).items;
    expect([1, 3].map((i) => (r.resolve(items[i].value) as unknown as { value: number }).value)).toEqual([1, 2]);
    expect(errorsOf('a: *nope\n')).toEqual(['f.yaml:1:4: alias *nope refers to no anchor; expected &nope on a value above it']);
  });

  it('reads a file at the limits in linear time (no quadratic key or alias checks)', () => {
    const limits = { ...YAML_LIMITS, entries: 100_000, bytes: 4 * 1024 * 1024 };
    const time = (text: string): number => {
      const t = performance.now();
      expect(errorsOf(text, limits)).toEqual([]);
      return performance.now() - t;
    };
    // No timing assertion (the machine may be loaded), but a guard: the quadratic checks took
    // about 90 s for 60,000 keys (the package's uniqueKeys) and minutes for 30,000 aliases.
    time(Array.from({ length: 60_000 }, (_, i) => `k${i}: ${i}\n`).join(''));
    time(`base: &b 1\nlist:\n${'  - *b\n'.repeat(30_000)}`);
  }, 45_000);
});

describe('many problems', () => {
  it('lists the first 100 in the message and counts the rest', () => {
    const errors = Array.from({ length: 250 }, (_, i) => new ConfigError({ file: 'f.yaml', line: 250 - i, col: 1 }, `problem ${250 - i}`));
    const e = new ConfigErrors(errors);
    const lines = e.message.split('\n');
    expect(lines.length).toBe(101);
    expect(lines[0]).toBe('f.yaml:1:1: problem 1');
    expect(lines[99]).toBe('f.yaml:100:1: problem 100');
    expect(lines[100]).toBe('… and 150 more problems (250 in all)');
    expect(e.errors.length).toBe(250);
  });
});
