// The files derived from the key declarations are up to date, and the published JSON Schemas work
// with a standard validator (ajv, draft-07): every fixture VM file and the example pass, wrong
// files fail, and the schema and vmctl agree on the shape of a file.

import { Ajv } from 'ajv';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseDocument } from 'yaml';
import { describe, expect, it } from 'vitest';
import { generatedFiles } from '../../scripts/schema-files.js';
import { ConfigErrors } from '../../src/config/errors.js';
import { parseDaemonSettings } from '../../src/config/daemon-settings.js';
import { SCHEMAS } from '../../src/config/schemas.js';
import { parseVmDefinition } from '../../src/config/vm-definition.js';
import { ROOT } from '../e2e/harness.js';

const read = (f: string): string => readFileSync(join(ROOT, f), 'utf8');
const toJs = (text: string): unknown => parseDocument(text, { merge: true }).toJS();

// strict: an unknown keyword (one draft-07 lacks) or a misplaced one is an error, not ignored.
// (strictRequired would also want `then: {required: [kernel]}` to repeat kernel's properties.)
const ajv = new Ajv({ strict: true, strictRequired: false, allowUnionTypes: true, allErrors: true });
const vmSchema = JSON.parse(read(SCHEMAS.vm.file));
const configSchema = JSON.parse(read(SCHEMAS.config.file));
const validateVm = ajv.compile(vmSchema);
const validateConfig = ajv.compile(configSchema);

describe('generated files', () => {
  it('schemas/, vm-config.example.yaml and the README tables match the declarations (else: npm run schemas)', () => {
    for (const [file, text] of generatedFiles(read('README.md'))) {
      expect(read(file), `${file} is out of date: run npm run schemas`).toBe(text);
    }
  });

  it('the example starts with the YAML language server\'s schema line, pointing at the schema file', () => {
    expect(read('vm-config.example.yaml').split('\n')[0]).toBe('# yaml-language-server: $schema=./schemas/vm.schema.json');
  });
});

describe('published JSON Schemas (draft-07, checked with ajv)', () => {
  it('are draft-07 schemas', () => {
    for (const s of [vmSchema, configSchema]) {
      expect(s.$schema).toBe('http://json-schema.org/draft-07/schema#');
      expect(ajv.validateSchema(s), JSON.stringify(ajv.errors)).toBe(true);
    }
  });

  it('accept every fixture VM file and the example', () => {
    const files = ['vm-config.example.yaml', ...readdirSync(join(ROOT, 'fixtures', 'demo')).filter((f) => f.endsWith('.yaml')).map((f) => `fixtures/demo/${f}`)];
    expect(files.length).toBeGreaterThan(5);
    for (const f of files) expect(validateVm(toJs(read(f))), `${f}: ${JSON.stringify(validateVm.errors)}`).toBe(true);
  });

  it('refuse a wrong file, naming the key', () => {
    expect(validateVm(toJs('name: a\nmemroy: 1GiB\nboot:\n  kernel: k\n'))).toBe(false);
    expect(validateVm.errors).toContainEqual(expect.objectContaining({ keyword: 'additionalProperties', params: { additionalProperty: 'memroy' } }));
    expect(validateConfig(toJs('serialLogMaxSize: lots\n'))).toBe(false);
    expect(validateConfig.errors).toContainEqual(expect.objectContaining({ instancePath: '/serialLogMaxSize', keyword: 'pattern' }));
  });

  // The same verdict from the schema and from vmctl's own reading (shape only: files are not looked at).
  const vmAccepts = (text: string): boolean => {
    try {
      parseVmDefinition(text, 'vm.yaml', '/nonexistent', { skipFileChecks: true });
      return true;
    } catch (e) {
      if (e instanceof ConfigErrors) return false;
      throw e;
    }
  };
  const valid = [
    'name: a\nboot:\n  kernel: k\n',
    'name: 42\ncpus: {count: 2}\nmemory: {size: 1GiB}\nboot:\n  firmware: builtin\n  kernel: k\ndisks:\nshutdown:\n',
    'name: a\nmemory: 1073741824\nboot:\n  firmware: ./fw.bin\n',
    'name: a\nboot: {kernel: k, cmdline: ""}\ndisks:\n  - {path: a.img, size: 1MiB, readonly: false, name: d-1}\nshutdown: {console: "x\\n", timeout: 1500ms}\n',
    'name: a\nboot:\n  kernel: k\nshutdown: {timeout: 0}\n',
    'name: a\nboot:\n  kernel: k\ndisks:\n  - &d {path: a.img, size: 1MiB}\n  - {<<: *d, path: b.img}\nshutdown: {timeout: 1m30s}\n',
  ];
  const invalid = [
    'name: a\ncolour: red\nboot:\n  kernel: k\n',
    'name: a\ncpus: 9\nboot:\n  kernel: k\n',
    'name: a\ncpus: [1]\nboot:\n  kernel: k\n',
    'name: a\ncpus: {count: 2, shares: 0}\nboot:\n  kernel: k\n',
    'name: a\ncpus: {count: 2, cap: 101%}\nboot:\n  kernel: k\n',
    'name: a\ncpus: {}\nboot:\n  kernel: k\n',
    'name: a\nmemory: 12 parsecs\nboot:\n  kernel: k\n',
    'name: a\nmemory: 1000000\nboot:\n  kernel: k\n',
    'name: a\nmemory: 512\nboot:\n  kernel: k\n',
    'name: -x\nboot:\n  kernel: k\n',
    'cpus: 1\nboot:\n  kernel: k\n',
    'name: a\n',
    'name: a\nboot:\n  firmware: none\n',
    'name: a\nboot:\n  firmware: builtin\n  cmdline: x\n',
    'name: a\nboot:\n  kernel: ""\n',
    'name: a\nboot:\n  kernel: k\n  cmdline: 42\n',
    'name: a\nboot:\n  kernel: k\ndisks:\n  - size: 1MiB\n',
    'name: a\nboot:\n  kernel: k\ndisks:\n  - {path: a.img, readonly: "yes"}\n',
    'name: a\nboot:\n  kernel: k\ndisks:\n  - {path: a.img, name: "a b"}\n',
    `name: a\nboot:\n  kernel: k\ndisks:\n${'  - {path: a.img}\n'.repeat(9)}`,
    'name: a\nboot:\n  kernel: k\nshutdown:\n  console: ""\n',
    'name: a\nboot:\n  kernel: k\nshutdown:\n  timeout: forever\n',
    // A duration needs its unit (1.5 could be seconds or minutes); only 0 reads the same in all.
    'name: a\nboot:\n  kernel: k\nshutdown:\n  timeout: 1.5\n',
    'name: a\nboot:\n  kernel: k\nshutdown:\n  timeout: "30"\n',
  ];
  it.each(valid)('both accept %j', (text) => {
    expect(vmAccepts(text)).toBe(true);
    expect(validateVm(toJs(text)), JSON.stringify(validateVm.errors)).toBe(true);
  });
  it.each(invalid)('both refuse %j', (text) => {
    expect(vmAccepts(text)).toBe(false);
    expect(validateVm(toJs(text))).toBe(false);
  });
  // What JSON Schema cannot say: the range of a size written with a unit, and that disk names are
  // unique. Editors accept these; vmctl validate refuses them. (If the schema learns to, move them up.)
  it.each([
    'name: a\nmemory: 64GiB\nboot:\n  kernel: k\n',
    'name: a\nmemory: 2047KiB\nboot:\n  kernel: k\n',
    'name: a\nboot:\n  kernel: k\ndisks:\n  - {path: a.img, size: 1000B}\n',
    'name: a\nboot:\n  kernel: k\ndisks:\n  - {path: a.img, name: x}\n  - {path: b.img, name: x}\n',
  ])('only vmctl refuses %j', (text) => {
    expect(vmAccepts(text)).toBe(false);
    expect(validateVm(toJs(text))).toBe(true);
  });

  it('config.yaml: the written default file and the schema agree', () => {
    for (const text of ['', 'serialLogMaxSize: 64KiB\n', 'consoleHistorySize: 8192\n']) {
      expect(() => parseDaemonSettings(text, 'config.yaml')).not.toThrow();
      expect(validateConfig(toJs(text) ?? {})).toBe(true);
    }
    for (const text of ['serialLogMaxSise: 1MiB\n', 'daemonLogMaxSize: 100\n', 'consoleHistorySize: [1]\n']) {
      expect(() => parseDaemonSettings(text, 'config.yaml')).toThrow(ConfigErrors);
      expect(validateConfig(toJs(text))).toBe(false);
    }
  });
});
