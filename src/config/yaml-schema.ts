// A small strict-schema walker over a `yaml` Document: every node keeps its source range, so every
// complaint can say FILE:LINE:COL, the key, the value found and what was expected.

import { LineCounter, isMap, isScalar, isSeq, parseDocument, type Document, type Node, type Pair, type YAMLMap } from 'yaml';
import { ConfigError } from './errors.js';

export class SchemaReader {
  readonly errors: ConfigError[] = [];
  private readonly lines = new LineCounter();
  readonly doc: Document.Parsed;

  constructor(readonly file: string, readonly text: string) {
    this.doc = parseDocument(text, { lineCounter: this.lines, prettyErrors: true, uniqueKeys: true });
    for (const e of this.doc.errors) {
      const pos = e.linePos?.[0] ?? { line: 1, col: 1 };
      // The yaml package appends a code excerpt after the first line; keep only the sentence.
      const msg = e.message.split('\n')[0].replace(/ at line \d+, column \d+:?$/, '');
      this.errors.push(new ConfigError({ file, line: pos.line, col: pos.col }, `YAML syntax: ${msg}`));
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

  /** Checks that `node` is a mapping whose keys are all in `allowed`; returns key -> pair. */
  mapping(node: unknown, where: string, allowed: readonly string[], parentKey?: Node | null): Map<string, Pair<Node, Node | null>> | null {
    const out = new Map<string, Pair<Node, Node | null>>();
    if (!isMap(node)) {
      this.fail(node as Node, `${where}: found ${describe(node)}; expected a mapping with keys ${allowed.join(', ')}`, parentKey);
      return null;
    }
    for (const pair of (node as YAMLMap<Node, Node | null>).items) {
      const key = pair.key;
      if (!isScalar(key) || typeof key.value !== 'string') {
        this.fail(key, `${where}: key ${describe(key)} is not a plain name; expected one of ${allowed.join(', ')}`, node as Node);
        continue;
      }
      if (!allowed.includes(key.value)) {
        const full = where === '' ? key.value : `${where}.${key.value}`;
        this.fail(key, `unknown key "${full}"; expected one of ${allowed.join(', ')}`);
        continue;
      }
      out.set(key.value, pair);
    }
    return out;
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
  if (isMap(node)) return 'a mapping';
  if (isSeq(node)) return 'a list';
  return 'an unsupported value';
}
