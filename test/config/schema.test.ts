// The declaration mechanism on its own: a small declared file read through the real YAML reader.

import { describe, expect, it } from 'vitest';
import { ConfigErrors } from '../../src/config/errors.js';
import { boolean, declaredKeys, duration, integer, list, object, readDocument, ReadContext, shapes, size, string } from '../../src/config/schema.js';
import { closest, editDistance } from '../../src/config/suggest.js';
import { SchemaReader } from '../../src/config/yaml-schema.js';

const SCHEMA = object({
  title: string({ expectedText: 'a title', required: true, description: 'Title' }),
  level: shapes({ scalar: integer({ min: 0, max: 9, description: 'Level' }), map: object({ value: integer({ min: 0, max: 9, required: true, description: 'Level' }) }, { description: 'Level settings' }) },
    (v) => (typeof v === 'number' ? v : (v as { value: number }).value), { default: 5, description: 'Level' }),
  items: list(object({
    id: string({ expectedText: 'an id', default: ({ index }) => `item${index}`, description: 'Id' }),
    big: boolean({ default: false, description: 'Big' }),
    room: size({ min: 512, description: 'Room' }),
  }, { description: 'An item' }), { expectedText: 'a list of items', nullIsAbsent: true, default: [], maxItems: 2, itemsText: 'items', description: 'Items' }),
  wait: duration({ default: 1500, description: 'Wait' }),
}, { description: 'Test file' });

function read(text: string, emptyOk = false): { value: unknown; errors: string[] } {
  const r = new SchemaReader('t.yaml', text);
  if (r.errors.length) return { value: undefined, errors: r.errors.map((e) => e.message) };
  const value = readDocument(SCHEMA, new ReadContext(r, '/base'), emptyOk);
  return { value, errors: new ConfigErrors(r.errors).errors.map((e) => e.message) };
}

describe('declared schema', () => {
  it('fills defaults (also per list index) and converts units', () => {
    expect(read('title: x\nitems:\n  - room: 1KiB\n  - {id: b, big: true}\n')).toEqual({
      value: { title: 'x', level: 5, items: [{ id: 'item0', big: false, room: 1024 }, { id: 'b', big: true, room: undefined }], wait: 1500 },
      errors: [],
    });
    expect(read('title: x\nlevel: {value: 2}\nitems:\nwait: 2m\n').value).toEqual({ title: 'x', level: 2, items: [], wait: 120_000 });
    expect(read('', true)).toEqual({ value: { title: undefined, level: 5, items: [], wait: 1500 }, errors: ['t.yaml:1:1: missing key "title"; expected a title'] });
  });

  it('reports every problem with its position, in source order', () => {
    expect(read('level: 10\nitems:\n  - {room: 0, extra: 1}\n  - room: 100\n  - {}\nwait: soon\n').errors).toEqual([
      't.yaml:1:1: missing key "title"; expected a title',
      't.yaml:1:8: level: found 10; expected a whole number from 0 to 9',
      't.yaml:3:12: items[0].room: 0 is empty; expected a size like 1GiB, at least 512 bytes',
      't.yaml:3:15: unknown key "items[0].extra"; expected one of id, big, room',
      't.yaml:4:11: items[1].room: 100 is too small; expected a size of at least 512 bytes',
      't.yaml:5:5: items: 3 items; at most 2',
      't.yaml:6:7: wait: found "soon"; expected a duration like 30s, 500ms or 5m',
    ]);
    expect(read('').errors).toEqual(['t.yaml:1:1: the file is empty; expected a mapping with keys title, level, items, wait']);
  });

  it('branches a two-form key on the node kind', () => {
    expect(read('title: x\nlevel: [1]\n').errors).toEqual(['t.yaml:2:8: level: found a list; expected a whole number from 0 to 9, or a mapping with keys value']);
    expect(read('title: x\nlevel: {valeu: 1}\n').errors).toEqual([
      't.yaml:2:8: missing key "level.value"; expected a whole number from 0 to 9',
      't.yaml:2:9: unknown key "level.valeu"; did you mean "level.value"? (expected one of value)',
    ]);
  });

  it('derives a JSON Schema from the same declaration', () => {
    const s = SCHEMA.jsonSchema();
    expect(s).toMatchObject({
      type: 'object', required: ['title'], additionalProperties: false,
      properties: {
        level: { default: 5, anyOf: [{ type: 'integer', minimum: 0, maximum: 9 }, { type: 'object', required: ['value'] }] },
        items: { anyOf: [{ type: 'array', maxItems: 2 }, { type: 'null' }] },
        wait: { default: '1500ms' },
      },
    });
    expect(declaredKeys(SCHEMA).map((k) => k.path)).toEqual(['title', 'level', 'level.value', 'items', 'items[].id', 'items[].big', 'items[].room', 'wait']);
  });
});

describe('suggestions', () => {
  it('counts a swap of neighbours as one edit and ignores case', () => {
    expect(editDistance('memroy', 'memory')).toBe(1);
    expect(editDistance('readOnly', 'readonly')).toBe(0);
    expect(editDistance('kitten', 'sitting')).toBe(3);
    expect(editDistance('abcdefgh', 'z', 2)).toBe(3);
  });
  it('suggests only a close name', () => {
    expect(closest('memroy', ['name', 'memory'])).toBe('memory');
    expect(closest('cpu', ['cpus', 'boot'])).toBe('cpus');
    expect(closest('colour', ['name', 'cpus', 'memory', 'boot', 'disks', 'shutdown'])).toBeUndefined();
  });
});
