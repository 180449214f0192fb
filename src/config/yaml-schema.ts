// Reading a YAML file for the schema (src/config/schema.ts): the `yaml` Document keeps every
// node's source range, so every complaint can say FILE:LINE:COL; aliases and merge keys are
// resolved here.

import { FileRefused, readRegular } from '../host/regular-file.js';
import { Composer, CST, Lexer, LineCounter, Parser, isAlias, isMap, isScalar, isSeq, parseDocument, visit, type Alias, type Document, type Node, type Pair, type YAMLMap } from 'yaml';
import { ConfigError, ConfigErrors } from './errors.js';
import { quote, QUOTE_MAX_CHARS } from './quote.js';
import { formatSize } from './units.js';

/**
 * Reads a YAML file as UTF-8 text (YAML 1.2 5.2: the encoding of a file without a BOM is UTF-8).
 * Bytes that are not UTF-8 would otherwise turn silently into U+FFFD inside a path or a cmdline;
 * they are refused with the position of the first one. Throws ConfigErrors (file errors too).
 */
export function readYamlFile(file: string, displayFile = file): string {
  let bytes: Buffer;
  try {
    // Never blocks or reads without end (src/host/regular-file.ts): a FIFO or /dev/zero is refused,
    // naming what it is, and no more than the size limit is ever read.
    bytes = readRegular(file, { maxBytes: YAML_LIMITS.bytes, tooLarge: (size) => tooLarge(size, YAML_LIMITS.bytes) });
  } catch (e) {
    if (!(e instanceof FileRefused)) throw e;
    const what = e.code === 'NOT_FOUND' ? 'file not found'
      : e.code === 'NOT_REGULAR' ? e.reason.replace(/expected a regular file$/, 'expected a YAML file') : e.reason;
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

/**
 * Limits on a vmctl YAML file (a VM definition or config.yaml), so that no file, however made, can
 * make reading it slow or deep: a real definition is a few KiB, a few dozen keys, 3 levels deep.
 * They are checked before the document is built (the file's size at once; keys, list items and
 * flow nesting while the parser reads; all nesting on the parser's tokens), so a file over a limit
 * is refused quickly and the `yaml` package's recursive composer never sees deep nesting.
 */
export const YAML_LIMITS = {
  bytes: 256 * 1024,
  /** Keys and list items, together. */
  entries: 10_000,
  /** Nested mappings and lists. */
  depth: 32,
} as const;
export type YamlLimits = { readonly [K in keyof typeof YAML_LIMITS]: number };

const LIMIT_NOTE = 'the limit for a vmctl YAML file';

function tooLarge(bytes: number, limit: number): string {
  return `the file is ${bytes} bytes, more than ${formatSize(limit)} (${LIMIT_NOTE}); expected a smaller file`;
}

export class SchemaReader {
  readonly errors: ConfigError[] = [];
  private readonly lines = new LineCounter();
  readonly doc: Document.Parsed;
  /** Each alias and the node it stands for (the last anchor of that name before it). */
  private readonly aliases = new Map<Alias, Node | undefined>();

  constructor(readonly file: string, readonly text: string, limits: YamlLimits = YAML_LIMITS) {
    const tokens = this.tokens(limits);
    if (!tokens) {
      this.doc = parseDocument('');
      return;
    }
    // merge: YAML 1.1 merge keys (`<<: *defaults`), which people use to share settings between
    // list items (disks) as they do in CI files; explicit keys win over merged ones.
    // uniqueKeys is off: the package compares each key with every earlier one (quadratic; 40,000
    // keys took 40 s); duplicateKeys() below does it with one set per mapping.
    const docs = [...new Composer({ merge: true, uniqueKeys: false }).compose(tokens, true, text.length)];
    this.doc = docs[0];
    for (const e of this.doc.errors) {
      const pos = this.lines.linePos(e.pos[0]);
      // Keep only the sentence (a pretty error would add the position and an excerpt).
      const msg = e.message.split('\n')[0].replace(/ at line \d+, column \d+:?$/, '');
      this.errors.push(new ConfigError({ file, line: pos.line, col: pos.col }, `YAML syntax: ${msg}`));
    }
    if (docs.length > 1) {
      // Library advice ("use YAML.parseAllDocuments()") means nothing to the person writing the file.
      this.failAt(docs[1].range[0], 'YAML syntax: the file holds more than one YAML document (a second ---); expected one VM definition per file');
    }
    if (this.errors.length === 0) this.duplicateKeys();
    if (this.errors.length === 0) this.resolveAliases();
  }

  /**
   * Parses the text into CST tokens, refusing it on the way when it is over a limit; null then.
   * The lexer's tokens are counted as they come, so a file with far too many entries or a deep
   * `[[[[` is refused before the rest is parsed; block nesting (indentation) is measured on the
   * tokens before any document is built.
   */
  private tokens(limits: YamlLimits): CST.Token[] | null {
    const bytes = Buffer.byteLength(this.text);
    if (bytes > limits.bytes) {
      this.lines.addNewLine(0);
      this.failAt(0, tooLarge(bytes, limits.bytes));
      return null;
    }
    const parser = new Parser(this.lines.addNewLine);
    this.lines.addNewLine(0); // what Parser.parse() does first: line 1 starts at offset 0
    const tokens: CST.Token[] = [];
    const flow: string[] = []; // open flow collections, innermost last
    let entries = 0;
    let scalarNext = false;
    for (const lexeme of new Lexer().lex(this.text)) {
      // A scalar's text follows its marker; it is data, whatever characters it holds.
      const type: CST.TokenType | null = scalarNext ? 'scalar' : CST.tokenType(lexeme);
      scalarNext = type === 'scalar' && !scalarNext;
      switch (type) {
        case 'seq-item-ind': case 'map-value-ind': entries++; break;
        case 'comma': if (flow[flow.length - 1] === '[') entries++; break;
        case 'flow-seq-start': case 'flow-map-start':
          if (lexeme === '[') entries++;
          flow.push(lexeme);
          if (flow.length > limits.depth) return this.tooDeep(parser.offset, limits);
          break;
        case 'flow-seq-end': case 'flow-map-end': flow.pop(); break;
      }
      if (entries > limits.entries) {
        this.failAt(parser.offset, `more than ${limits.entries} keys and list items (${LIMIT_NOTE}); expected a smaller file`);
        return null;
      }
      for (const t of parser.next(lexeme)) tokens.push(t);
    }
    for (const t of parser.end()) tokens.push(t);
    // Block nesting, and flow nesting inside it: a walk with its own stack (no recursion).
    const stack: [CST.Token, number][] = tokens.map((t) => [t, 0]);
    while (stack.length > 0) {
      const [t, depth] = stack.pop()!;
      if (t.type === 'document') {
        if (t.value) stack.push([t.value, depth]);
      } else if (t.type === 'block-map' || t.type === 'block-seq' || t.type === 'flow-collection') {
        if (depth + 1 > limits.depth) return this.tooDeep(t.offset, limits);
        for (const item of t.items) {
          if ('key' in item && item.key) stack.push([item.key, depth + 1]);
          if (item.value) stack.push([item.value, depth + 1]);
        }
      }
    }
    return tokens;
  }

  private tooDeep(offset: number, limits: YamlLimits): null {
    this.failAt(offset, `nesting deeper than ${limits.depth} levels of mappings and lists (${LIMIT_NOTE}); expected a flatter file`);
    return null;
  }

  private failAt(offset: number, message: string): void {
    const p = this.lines.linePos(offset);
    this.errors.push(new ConfigError({ file: this.file, line: p.line, col: p.col }, message));
  }

  /** A key given twice in one mapping, found with one set per mapping (linear in the keys). */
  private duplicateKeys(): void {
    visit(this.doc, {
      Map: (_, map) => {
        const seen = new Map<unknown, Node>();
        for (const pair of map.items as Pair<Node, Node | null>[]) {
          const key = pair.key;
          if (!isScalar(key)) continue; // a list or mapping as a key is refused by the schema
          const first = seen.get(key.value);
          if (first === undefined) {
            seen.set(key.value, key);
            continue;
          }
          const at = this.posOf(first);
          const name = typeof key.value === 'symbol' ? key.source : String(key.value);
          this.fail(key, `YAML syntax: Map keys must be unique ("${name}" is given twice, first at ${at.line}:${at.col}; expected each key once)`);
        }
      },
    });
  }

  /** Resolves every alias in one pass, in document order: an alias stands for the last node
   *  anchored with its name before it (YAML 1.2 3.2.2.2). The package's Alias.resolve walks the
   *  whole document for each alias, which is quadratic in a file full of aliases. */
  private resolveAliases(): void {
    const anchors = new Map<string, Node>();
    visit(this.doc, {
      Node: (_, node) => {
        if (isAlias(node)) {
          const target = anchors.get(node.source);
          this.aliases.set(node, target);
          // The parser accepts `*name` without a matching `&name` (only converting to JS would fail).
          if (target === undefined) this.fail(node, `alias *${quoteName(node.source)} refers to no anchor; expected &${quoteName(node.source)} on a value above it`);
        } else if (node.anchor) anchors.set(node.anchor, node);
      },
    });
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
    if (isAlias(node)) return this.aliases.get(node) ?? null;
    return (node ?? null) as Node | null;
  }

  /** A mapping's own pairs, then those merged in by `<<` (YAML 1.1 merge: own keys win, then
   *  earlier sources over later ones). `seen` stops a mapping that merges itself. */
  pairsOf(map: YAMLMap<unknown, unknown>, seen = new Set<unknown>()): Pair<Node, Node | null>[] {
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
        } else if (!seen.has(m)) merged.push(...this.pairsOf(m, seen));
      }
    }
    return [...own, ...merged];
  }
}

/** An anchor name as written (unquoted), cut like any quoted value. */
function quoteName(name: string): string {
  return name.length <= QUOTE_MAX_CHARS ? name : quote(name);
}

/** A short description of a node's value for messages: `"abc"`, `12`, `a mapping`. */
export function describe(node: unknown): string {
  if (node === null || node === undefined) return 'nothing';
  if (isScalar(node)) {
    const v = node.value;
    if (v === null) return 'null';
    if (typeof v === 'string') return quote(v);
    return String(v);
  }
  if (isAlias(node)) return `the alias *${quoteName(node.source)}`;
  if (isMap(node)) return 'a mapping';
  if (isSeq(node)) return 'a list';
  return 'an unsupported value';
}
