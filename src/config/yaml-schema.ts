// A small strict-schema walker over a `yaml` Document: every node keeps its source range, so every
// complaint can say FILE:LINE:COL, the key, the value found and what was expected.

import { readFileSync } from 'node:fs';
import { LineCounter, Pair, isAlias, isMap, isScalar, isSeq, parseDocument, visit, type Document, type Node, type YAMLMap } from 'yaml';
import { ConfigError, ConfigErrors } from './errors.js';

/**
 * Reads a YAML file as UTF-8 text (YAML 1.2 5.2: the encoding of a file without a BOM is UTF-8).
 * Bytes that are not UTF-8 would otherwise turn silently into U+FFFD inside a path or a cmdline;
 * they are refused with the position of the first one. Throws ConfigErrors (file errors too).
 */
export function readYamlFile(file: string, displayFile = file): string {
  let bytes: Buffer;
  try {
    bytes = readFileSync(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const what = code === 'ENOENT' ? 'file not found' : code === 'EISDIR' ? 'is a folder; expected a YAML file' : `cannot read file (${code ?? String(e)})`;
    throw new ConfigErrors([new ConfigError({ file: displayFile, line: 1, col: 1 }, what)]);
  }
  const text = bytes.toString('utf8');
  if (!text.includes('\uFFFD')) return text;
  // Walk the decoded text alongside the bytes to find a U+FFFD that the file did not spell out.
  let off = 0;
  let line = 1;
  let col = 1;
  for (const ch of text) {
    const n = Buffer.byteLength(ch);
    if (ch === '\uFFFD' && !(bytes[off] === 0xef && bytes[off + 1] === 0xbf && bytes[off + 2] === 0xbd)) {
      throw new ConfigErrors([new ConfigError({ file: displayFile, line, col },
        `byte 0x${bytes[off].toString(16).padStart(2, '0')} (file offset ${off}) is not UTF-8; expected a UTF-8 text file`)]);
    }
    off += n; // every U+FFFD before the bad byte was spelled out in the file (3 bytes)
    if (ch === '\n') { line++; col = 1; } else col++;
  }
  return text;
}

export class SchemaReader {
  readonly errors: ConfigError[] = [];
  private readonly lines = new LineCounter();
  readonly doc: Document.Parsed;

  constructor(readonly file: string, readonly text: string) {
    // merge: YAML 1.1 merge keys (`<<: *defaults`), which people use to share settings between
    // list items (disks) as they do in CI files; explicit keys win over merged ones.
    this.doc = parseDocument(text, { lineCounter: this.lines, prettyErrors: true, uniqueKeys: true, merge: true });
    for (const e of this.doc.errors) {
      const pos = e.linePos?.[0] ?? { line: 1, col: 1 };
      // The yaml package appends a code excerpt after the first line; keep only the sentence.
      let msg = e.message.split('\n')[0].replace(/ at line \d+, column \d+:?$/, '');
      // The parser does not say which key; it points at the second one.
      // Library advice ("use YAML.parseAllDocuments()") means nothing to the person writing the file.
      if (e.code === 'MULTIPLE_DOCS') msg = 'the file holds more than one YAML document (a second ---); expected one VM definition per file';
      if (e.code === 'DUPLICATE_KEY') {
        const key = /^[^:,{}\n]*/.exec(text.slice(e.pos[0]))![0].trim().replace(/^(["'])(.*)\1$/, '$2');
        if (key !== '') msg += ` ("${key}" is given twice; expected each key once)`;
      }
      this.errors.push(new ConfigError({ file, line: pos.line, col: pos.col }, `YAML syntax: ${msg}`));
    }
    // The parser accepts `*name` without a matching `&name` (only converting to JS would fail).
    if (this.errors.length === 0) {
      visit(this.doc, {
        Alias: (_, alias) => {
          if (alias.resolve(this.doc) === undefined) this.fail(alias, `alias *${alias.source} refers to no anchor; expected &${alias.source} on a value above it`);
        },
      });
    }
  }

  posOf(node: Node | null | undefined, fallback?: Node | null): { file: string; line: number; col: number } {
    const range = node?.range ?? fallback?.range;
    if (!range) return { file: this.file, line: 1, col: 1 };
    const p = this.lines.linePos(range[0]);
    return { file: this.file, line: p.line, col: p.col };
  }

  fail(node: Node | null | undefined, message: string, fallback?: Node | null): void {
    this.errors.push(new ConfigError(this.posOf(node, fallback), message));
  }

  /** The node an alias (`*name`) stands for; any other node as it is. */
  resolve(node: unknown): Node | null {
    if (isAlias(node)) return (node.resolve(this.doc) as Node | undefined) ?? null;
    return (node ?? null) as Node | null;
  }

  /**
   * Checks that `node` is a mapping whose keys are all in `allowed`; returns key -> pair, with
   * aliases in values already resolved and merge keys (`<<`) expanded.
   */
  mapping(node: unknown, where: string, allowed: readonly string[], parentKey?: Node | null): Map<string, Pair<Node, Node | null>> | null {
    const out = new Map<string, Pair<Node, Node | null>>();
    const map = this.resolve(node);
    const label = where === '' ? 'the top level' : where;
    if (!isMap(map)) {
      this.fail(map, `${label}: found ${describe(map)}; expected a mapping with keys ${allowed.join(', ')}`, parentKey);
      return null;
    }
    for (const pair of this.pairs(map, new Set())) {
      const key = pair.key;
      if (!isScalar(key) || typeof key.value !== 'string') {
        this.fail(key, `${label}: key ${describe(key)} is not a plain name; expected one of ${allowed.join(', ')}`, node as Node);
        continue;
      }
      if (!allowed.includes(key.value)) {
        const full = where === '' ? key.value : `${where}.${key.value}`;
        this.fail(key, `unknown key "${full}"; expected one of ${allowed.join(', ')}`);
        continue;
      }
      // Explicit keys come first in pairs(), so a merged key never replaces one written here.
      if (!out.has(key.value)) out.set(key.value, new Pair(key, this.resolve(pair.value)));
    }
    return out;
  }

  /** A mapping's own pairs, then those merged in by `<<` (YAML 1.1 merge: own keys win, then
   *  earlier sources over later ones). `seen` stops a mapping that merges itself. */
  private pairs(map: YAMLMap<unknown, unknown>, seen: Set<unknown>): Pair<Node, Node | null>[] {
    seen.add(map);
    const own: Pair<Node, Node | null>[] = [];
    const merged: Pair<Node, Node | null>[] = [];
    for (const pair of map.items as Pair<Node, Node | null>[]) {
      const key = pair.key;
      if (!(isScalar(key) && typeof key.value === 'symbol' && key.source === '<<')) {
        own.push(pair);
        continue;
      }
      const src = this.resolve(pair.value);
      const sources = isSeq(src) ? src.items.map((i) => this.resolve(i)) : [src];
      for (const m of sources) {
        if (!isMap(m)) {
          this.fail(m, `merge key "<<": found ${describe(m)}; expected an alias of a mapping (<<: *name) or a list of them`, key);
        } else if (!seen.has(m)) merged.push(...this.pairs(m, seen));
      }
    }
    return [...own, ...merged];
  }
}

/** A short description of a node's value for messages: `"abc"`, `12`, `a mapping`. */
export function describe(node: unknown): string {
  if (node === null || node === undefined) return 'nothing';
  if (isScalar(node)) {
    const v = node.value;
    if (v === null) return 'null';
    if (typeof v === 'string') return JSON.stringify(v);
    return String(v);
  }
  if (isAlias(node)) return `the alias *${node.source}`;
  if (isMap(node)) return 'a mapping';
  if (isSeq(node)) return 'a list';
  return 'an unsupported value';
}
