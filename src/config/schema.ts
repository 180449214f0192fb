// The declaration mechanism for vmctl's YAML files. Every key is declared once, with its type,
// range or pattern, unit, default, a one-line description and an example; from that one
// declaration come
//   - validation: `read` walks the YAML nodes (src/config/yaml-schema.ts keeps their source
//     ranges), so every complaint says FILE:LINE:COL, the key, the value found and what was
//     expected, and every problem of a file is reported at once;
//   - defaults, filled in where a key is absent;
//   - the JSON Schema (draft-07) for editors, the README's key tables and the commented example
//     files (src/config/schema-docs.ts).
//
// A spec reads one YAML node. Scalars: integer, size, duration, string, boolean, path, keyword-or-
// path. Containers: object (a mapping with declared keys; unknown keys are refused with a
// suggestion), list, and shapes: a key that takes several forms (`cpus: 2` or `cpus: {count: 2}`)
// branches on the kind of YAML node the user wrote, so the message is about that form alone.
//
// Adding a key is one line in the declaration (src/config/vm-schema.ts, daemon-settings.ts) and
// one where the typed value is turned into the definition the rest of vmctl uses.

import { isAbsolute, resolve } from 'node:path';
import { isMap, isScalar, isSeq, Pair, type Node } from 'yaml';
import { quote } from './quote.js';
import { closest } from './suggest.js';
import { durationProblem, formatSize, looksLikeSize, mebibyteHint, parseDuration, parseSize } from './units.js';
import { describe, type SchemaReader } from './yaml-schema.js';

/** A JSON Schema (draft-07) fragment. */
export type JsonSchema = { [keyword: string]: unknown };

/** What every key declares besides its type. */
export interface KeyOptions<T> {
  /** One line: the README table, the JSON Schema `description`, the example file's comment. */
  readonly description: string;
  /** More paragraphs for the example file's comments (not in the table). */
  readonly details?: readonly string[];
  /** A value as a user would write it (README, JSON Schema `examples`, the example file). */
  readonly example?: unknown;
  readonly required?: boolean;
  /** Completes `missing key "x"; expected …` (default: what the type accepts). */
  readonly missing?: string;
  /** The value when the key is absent; a function gets the index in the enclosing list. */
  readonly default?: T | ((at: { index: number }) => T);
  /** The default as the docs show it, when `default` is a function (or to say more). */
  readonly defaultText?: string;
  /** `key:` with no value (null) counts as absent, as `disks:` does. */
  readonly nullIsAbsent?: boolean;
}

/** Whether a key's value is always there once read (required or defaulted) or may be absent. */
type Presence = 'present' | 'optional';
type PresenceOf<O> = O extends { required: true } ? 'present' : O extends { default: unknown } ? 'present' : 'optional';

/** Where a node sits: its path in messages (`disks[0].size`), the key node that names it (the
 *  fallback position) and, inside a list, its index. */
export interface Where {
  readonly path: string;
  readonly key: Node | null;
  readonly index: number;
}
export const ROOT: Where = { path: '', key: null, index: 0 };

/**
 * The state of one read: the reader (errors, positions, aliases and merge keys), the folder that
 * relative paths resolve against, where each key was found (for the second, non-shape checks),
 * which paths were refused, and values given from outside the file (`create --name`).
 */
export class ReadContext {
  /** path -> the pair that set it, for the checks that come after the shape (FILE:LINE:COL). */
  readonly at = new Map<string, Pair<Node, Node | null>>();
  private readonly invalid: string[] = [];

  /** Every key the schema declares anywhere, for suggestions across levels (set by readDocument). */
  allKeys: readonly DeclaredKey[] = [];

  constructor(
    readonly r: SchemaReader,
    readonly baseDir: string,
    readonly given: ReadonlyMap<string, unknown> = new Map(),
  ) {}

  fail(node: Node | null | undefined, where: Where, message: string): undefined {
    this.r.fail(node, message, where.key);
    this.invalid.push(where.path);
    return undefined;
  }

  /** True when nothing at `path` or below it was refused: its value can be trusted. */
  ok(path: string): boolean {
    return !this.invalid.some((p) => p === path || p.startsWith(`${path}.`) || p.startsWith(`${path}[`));
  }
}

export type NodeKind = 'scalar' | 'map' | 'seq';
export function nodeKind(node: Node | null): NodeKind {
  return isMap(node) ? 'map' : isSeq(node) ? 'seq' : 'scalar';
}

/** A scalar's value; null for nothing; a marker for a mapping or a list. */
const NOT_SCALAR = Symbol('not a scalar');
function scalarValue(node: Node | null): unknown {
  if (isScalar(node)) return node.value;
  return node === null || node === undefined ? null : NOT_SCALAR;
}
export function isNull(node: Node | null): boolean {
  return node === null || (isScalar(node) && node.value === null);
}

/** `1024` -> "1KiB", `512` -> "512 bytes": sizes in messages. */
function sizeText(n: number): string {
  return n < 1024 ? `${n} bytes` : formatSize(n);
}

/** A declared key (or list item) of type T. */
export abstract class Spec<T, P extends Presence = Presence> {
  /** Phantom: whether the value is always there (type-level only). */
  declare readonly presence: P;
  /** A noun phrase for messages: `expected a whole number from 1 to 8`. */
  abstract readonly expected: string;
  /** Short text for the README table's "accepts" column. */
  abstract readonly accepts: string;

  constructor(readonly options: KeyOptions<T>) {}

  /** The usual complaint: `cpus: found "two"; expected a whole number from 1 to 8`. */
  protected refuse(node: Node | null, where: Where, ctx: ReadContext): undefined {
    return ctx.fail(node, where, `${where.path}: found ${describe(node)}; expected ${this.expected}`);
  }

  /** Reads `node`; reports problems to `ctx` and returns undefined for a refused value. */
  abstract read(node: Node | null, where: Where, ctx: ReadContext): T | undefined;

  /** The JSON Schema of the value, without the documentation keywords (see `jsonSchema`). */
  protected abstract schema(): JsonSchema;

  /** A value as YAML text, for the docs' default column. */
  show(value: T): string {
    return JSON.stringify(value);
  }

  jsonSchema(): JsonSchema {
    const o = this.options;
    const s: JsonSchema = { description: o.description, ...this.schema() };
    if (o.default !== undefined && typeof o.default !== 'function') s.default = this.jsonDefault(o.default as T);
    if (o.example !== undefined) s.examples = [o.example];
    return s;
  }

  /** The default as a JSON value a user could write (a size as "128MiB", not bytes). */
  jsonDefault(value: T): unknown {
    return value;
  }

  defaultFor(index: number): T | undefined {
    const d = this.options.default;
    return typeof d === 'function' ? (d as (at: { index: number }) => T)({ index }) : d;
  }

  defaultText(): string | undefined {
    const o = this.options;
    if (o.defaultText !== undefined) return o.defaultText;
    if (o.default === undefined || typeof o.default === 'function') return undefined;
    return this.show(o.default as T);
  }
}

export type ValueOf<S> = S extends Spec<infer T, infer P> ? (P extends 'present' ? T : T | undefined) : never;
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Fields = Record<string, Spec<any, Presence>>;
export type ObjectValue<F extends Fields> = { -readonly [K in keyof F]: ValueOf<F[K]> };

// ---- scalars ----

export interface IntegerOptions extends KeyOptions<number> { readonly min: number; readonly max: number }
export class IntegerSpec<P extends Presence> extends Spec<number, P> {
  declare readonly options: IntegerOptions;
  get expected(): string { return `a whole number from ${this.options.min} to ${this.options.max}`; }
  get accepts(): string { return `whole number, ${this.options.min}..${this.options.max}`; }
  read(node: Node | null, where: Where, ctx: ReadContext): number | undefined {
    const v = scalarValue(node);
    const { min, max } = this.options;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) return this.refuse(node, where, ctx);
    return v;
  }
  protected schema(): JsonSchema {
    return { type: 'integer', minimum: this.options.min, maximum: this.options.max };
  }
  override show(v: number): string { return String(v); }
}

export interface NumberOptions extends KeyOptions<number> { readonly min: number; readonly max: number }
/** A number, fractions allowed (a ratio: `overcommit: 1.5`, `host.cpus: 0.5`). */
export class NumberSpec<P extends Presence> extends Spec<number, P> {
  declare readonly options: NumberOptions;
  get expected(): string { return `a number from ${this.options.min} to ${this.options.max}`; }
  get accepts(): string { return `number, ${this.options.min}..${this.options.max}`; }
  read(node: Node | null, where: Where, ctx: ReadContext): number | undefined {
    const v = scalarValue(node);
    const { min, max } = this.options;
    if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max) return this.refuse(node, where, ctx);
    return v;
  }
  protected schema(): JsonSchema {
    return { type: 'number', minimum: this.options.min, maximum: this.options.max };
  }
  override show(v: number): string { return String(v); }
}

/** A percentage from 1% to 100%: `50%` or `50`; the value is the number (50). */
const PERCENT_PATTERN = '^\\s*(100(\\.0+)?|[1-9][0-9]?(\\.[0-9]+)?)\\s*%\\s*$';
export class PercentSpec<P extends Presence> extends Spec<number, P> {
  readonly expected = 'a percentage from 1% to 100%, like 50%';
  readonly accepts = 'percentage, 1%..100%';
  read(node: Node | null, where: Where, ctx: ReadContext): number | undefined {
    const v = scalarValue(node);
    const n = typeof v === 'number' ? v : typeof v === 'string' && new RegExp(PERCENT_PATTERN).test(v) ? parseFloat(v) : NaN;
    if (!(n >= 1 && n <= 100)) return this.refuse(node, where, ctx);
    return n;
  }
  protected schema(): JsonSchema {
    return { type: ['string', 'number'], pattern: PERCENT_PATTERN, minimum: 1, maximum: 100 };
  }
  override show(v: number): string { return `${v}%`; }
  override jsonDefault(v: number): unknown { return `${v}%`; }
}

// A size: 128MiB, 1G, 4096 (bytes). Units are binary and case-insensitive (src/config/units.ts).
const SIZE_PATTERN = '^\\s*[0-9]+\\s*([BbKkMmGgTt]|[KkMmGgTt][Bb]|[KkMmGgTt][Ii][Bb])?\\s*$';
/** parseSize counts exactly up to 2^53 bytes (8192TiB). */
const SIZE_LIMIT = 2 ** 53;

export interface SizeOptions extends KeyOptions<number> {
  /** Bytes. */
  readonly min: number;
  /** Bytes; without it, anything parseSize can count (less than 8192TiB). */
  readonly max?: number;
  readonly multipleOf?: number;
  /** How messages name the multiple (default "4KiB"). */
  readonly multipleText?: string;
}
export class SizeSpec<P extends Presence> extends Spec<number, P> {
  declare readonly options: SizeOptions;
  private get like(): string { return typeof this.options.example === 'string' ? this.options.example : '1GiB'; }
  get expected(): string { return `a size like ${this.like} (units B, KiB, MiB, GiB)`; }
  get accepts(): string {
    const { min, max, multipleOf, multipleText } = this.options;
    const range = max !== undefined ? `${formatSize(min)}..${formatSize(max)}` : `at least ${sizeText(min)}`;
    return `size, ${range}${multipleOf ? `, a multiple of ${multipleText ?? formatSize(multipleOf)}` : ''}`;
  }
  read(node: Node | null, where: Where, ctx: ReadContext): number | undefined {
    const v = scalarValue(node);
    const { min, max, multipleOf, multipleText } = this.options;
    const p = where.path;
    const d = describe(node);
    // A number without a unit counts bytes: `memory: 256` is out of range, and 256MiB was meant.
    const hint = max !== undefined && (typeof v === 'string' || typeof v === 'number') ? mebibyteHint(v, min, max) : null;
    const outOfRange = (): undefined => ctx.fail(node, where, `${p}: ${d} is out of range; expected from ${formatSize(min)} to ${formatSize(max!)}` +
      `${hint ? ` (a number without a unit counts bytes: did you mean ${hint}?)` : ''}`);
    const n = typeof v === 'string' || typeof v === 'number' ? parseSize(v) : null;
    if (n === null) {
      // Spelled as a size but too large to count exactly: the complaint is the range, not the spelling.
      if ((typeof v === 'string' || typeof v === 'number') && looksLikeSize(v)) {
        return max !== undefined ? outOfRange() : ctx.fail(node, where, `${p}: ${d} is too large; expected a size like ${this.like} (less than ${formatSize(SIZE_LIMIT)})`);
      }
      return this.refuse(node, where, ctx);
    }
    if (max !== undefined && (n < min || n > max)) return outOfRange();
    if (n === 0) return ctx.fail(node, where, `${p}: ${d} is empty; expected a size like ${this.like}, at least ${sizeText(min)}`);
    if (n < min) return ctx.fail(node, where, `${p}: ${d} is too small; expected a size of at least ${sizeText(min)}`);
    if (multipleOf && n % multipleOf !== 0) return ctx.fail(node, where, `${p}: ${d} is not a multiple of ${multipleText ?? formatSize(multipleOf)}`);
    return n;
  }
  protected schema(): JsonSchema {
    const { min, max, multipleOf } = this.options;
    // The range applies to a size written as a number of bytes; JSON Schema cannot compare "1GiB".
    return { type: ['string', 'integer'], pattern: SIZE_PATTERN, minimum: min, ...(max !== undefined ? { maximum: max } : {}), ...(multipleOf ? { multipleOf } : {}) };
  }
  override show(v: number): string { return formatSize(v); }
  override jsonDefault(v: number): unknown { return formatSize(v); }
}

// A duration: 500ms, 30s, 5m, 1h, 1m30s, or 0 (no limit). A number without a unit is refused,
// naming its likely meaning (`timeout: 5`: did you mean 5s?), as on the command line. The value
// is milliseconds.
const DURATION_PATTERN = '^\\s*(0+(\\.0+)?|([0-9]+(\\.[0-9]+)?(ms|s|m|h))+)\\s*$';
export class DurationSpec<P extends Presence> extends Spec<number, P> {
  readonly expected = 'a duration like 30s, 500ms or 5m';
  readonly accepts = 'duration (500ms, 30s, 5m, 1h; a unit is required; 0 = no limit)';
  read(node: Node | null, where: Where, ctx: ReadContext): number | undefined {
    const v = scalarValue(node);
    const ms = typeof v === 'string' || typeof v === 'number' ? parseDuration(v) : null;
    if (ms !== null) return ms;
    if ((typeof v === 'string' || typeof v === 'number') && /^\s*\d+(\.\d+)?\s*$/.test(String(v))) {
      return ctx.fail(node, where, `${where.path}: ${describe(node)} ${durationProblem(v)}`);
    }
    return this.refuse(node, where, ctx);
  }
  protected schema(): JsonSchema {
    // A number is only 0 (no limit); any other duration is text with its unit.
    return { type: ['string', 'integer'], pattern: DURATION_PATTERN, minimum: 0, maximum: 0 };
  }
  override show(ms: number): string { return formatDuration(ms); }
  override jsonDefault(ms: number): unknown { return formatDuration(ms); }
}

/** Milliseconds as the shortest duration text that reads back exactly: 30000 -> "30s". */
export function formatDuration(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`;
}

export interface StringOptions extends KeyOptions<string> {
  /** Completes `found X; expected …`. */
  readonly expectedText: string;
  readonly pattern?: RegExp;
  readonly minLength?: number;
  /** A plain scalar YAML reads as a number (`name: 42`) is taken as written. */
  readonly numbersAsText?: boolean;
}
export class StringSpec<P extends Presence> extends Spec<string, P> {
  declare readonly options: StringOptions;
  get expected(): string { return this.options.expectedText; }
  get accepts(): string { return this.options.pattern ? `text: ${this.options.expectedText}` : 'text'; }
  read(node: Node | null, where: Where, ctx: ReadContext): string | undefined {
    const { pattern, minLength, numbersAsText } = this.options;
    const v = numbersAsText && isScalar(node) && node.type === 'PLAIN' && typeof node.value === 'number' ? node.source : scalarValue(node);
    if (typeof v !== 'string' || v.length < (minLength ?? 0) || (pattern && !pattern.test(v))) {
      return this.refuse(node, where, ctx);
    }
    return v;
  }
  protected schema(): JsonSchema {
    const { pattern, minLength, numbersAsText } = this.options;
    return {
      // A number is valid where it is taken as written; the pattern applies to strings only.
      type: numbersAsText ? ['string', 'number'] : 'string',
      ...(pattern ? { pattern: pattern.source } : {}),
      ...(minLength ? { minLength } : {}),
    };
  }
}

export class BooleanSpec<P extends Presence> extends Spec<boolean, P> {
  readonly expected = 'true or false';
  readonly accepts = 'true or false';
  read(node: Node | null, where: Where, ctx: ReadContext): boolean | undefined {
    const v = scalarValue(node);
    if (typeof v !== 'boolean') return this.refuse(node, where, ctx);
    return v;
  }
  protected schema(): JsonSchema {
    return { type: 'boolean' };
  }
  override show(v: boolean): string { return String(v); }
}

/** A file path; a relative one is resolved against the file's folder (ReadContext.baseDir). */
export class PathSpec<P extends Presence> extends Spec<string, P> {
  readonly expected = 'a file path';
  readonly accepts = 'file path (relative to the YAML file)';
  read(node: Node | null, where: Where, ctx: ReadContext): string | undefined {
    const v = scalarValue(node);
    if (typeof v !== 'string' || v === '') return this.refuse(node, where, ctx);
    return resolvePath(ctx.baseDir, v);
  }
  protected schema(): JsonSchema {
    return { type: 'string', minLength: 1 };
  }
}
function resolvePath(baseDir: string, p: string): string {
  return isAbsolute(p) ? p : resolve(baseDir, p);
}

/** One of a few keywords, or else a file path: `firmware: none | builtin | ./fw_jump.bin`. */
export type KeywordOrPath<K extends string> = { readonly kind: K } | { readonly kind: 'file'; readonly path: string };
export interface KeywordOrPathOptions<K extends string> extends KeyOptions<KeywordOrPath<K>> {
  readonly keywords: readonly K[];
  /** What a path stands for: "a path to a firmware binary". */
  readonly pathText: string;
}
export class KeywordOrPathSpec<K extends string, P extends Presence> extends Spec<KeywordOrPath<K>, P> {
  declare readonly options: KeywordOrPathOptions<K>;
  get expected(): string { return `${this.options.keywords.join(', ')} or ${this.options.pathText}`; }
  get accepts(): string { return `${this.options.keywords.join(', ')}, or a file path`; }
  read(node: Node | null, where: Where, ctx: ReadContext): KeywordOrPath<K> | undefined {
    const v = scalarValue(node);
    if (typeof v !== 'string' || v === '') return this.refuse(node, where, ctx);
    if ((this.options.keywords as readonly string[]).includes(v)) return { kind: v as K };
    return { kind: 'file', path: resolvePath(ctx.baseDir, v) };
  }
  protected schema(): JsonSchema {
    // anyOf lets editors offer the keywords while any other non-empty text is a path.
    return { type: 'string', anyOf: [{ enum: [...this.options.keywords] }, { minLength: 1 }] };
  }
  override show(v: KeywordOrPath<K>): string { return 'path' in v ? v.path : v.kind; }
  override jsonDefault(v: KeywordOrPath<K>): unknown { return this.show(v); }
}

// ---- containers ----

/** A check across the keys of one mapping (a key required by another's value). */
export interface ObjectRule {
  /** Returns the key to blame and what is wrong, or null. Runs only when `ok(key)` for what it reads.
   *  `pathOf` gives a key's full path for the message (`network[1].name`). */
  check(value: Record<string, unknown>, ok: (key: string) => boolean, present: (key: string) => boolean, pathOf: (key: string) => string): { key: string; message: string } | null;
  /** The same rule in JSON Schema (added under allOf), where JSON Schema can say it. */
  readonly jsonSchema?: JsonSchema;
  /** For the docs: when the rule applies. */
  readonly text: string;
}

export interface ObjectOptions<F extends Fields> extends KeyOptions<ObjectValue<F>> {
  readonly rules?: readonly ObjectRule[];
}
export class ObjectSpec<F extends Fields, P extends Presence> extends Spec<ObjectValue<F>, P> {
  declare readonly options: ObjectOptions<F>;
  readonly keys: readonly string[];

  constructor(readonly fields: F, options: ObjectOptions<F>) {
    super(options);
    this.keys = Object.keys(fields);
  }

  get expected(): string { return `a mapping with keys ${this.keys.join(', ')}`; }
  get accepts(): string { return `mapping: ${this.keys.join(', ')}`; }

  read(node: Node | null, where: Where, ctx: ReadContext): ObjectValue<F> | undefined {
    const label = where.path === '' ? 'the top level' : where.path;
    const map = ctx.r.resolve(node);
    if (!isMap(map)) return ctx.fail(map, where, `${label}: found ${describe(map)}; expected ${this.expected}`);
    const join = (k: string): string => (where.path === '' ? k : `${where.path}.${k}`);
    const pairs = new Map<string, Pair<Node, Node | null>>();
    for (const pair of ctx.r.pairsOf(map)) {
      const key = pair.key;
      if (!isScalar(key) || typeof key.value !== 'string') {
        ctx.r.fail(key, `${label}: key ${describe(key)} is not a plain name; expected one of ${this.keys.join(', ')}`, map);
        continue;
      }
      if (!Object.prototype.hasOwnProperty.call(this.fields, key.value)) {
        ctx.r.fail(key, this.unknownKey(key.value, join(key.value), where, ctx));
        continue;
      }
      // Own keys come before merged ones (SchemaReader.pairsOf), so a merged key never replaces one written here.
      if (!pairs.has(key.value)) pairs.set(key.value, new Pair(key, ctx.r.resolve(pair.value)));
    }
    return this.fill(pairs, map, where, ctx);
  }

  /** The value from the pairs found (none for an empty file): defaults, required keys, rules. */
  fill(pairs: ReadonlyMap<string, Pair<Node, Node | null>>, map: Node | null, where: Where, ctx: ReadContext): ObjectValue<F> {
    const join = (k: string): string => (where.path === '' ? k : `${where.path}.${k}`);
    const out: Record<string, unknown> = {};
    const present = (k: string): boolean => pairs.has(k) && !(this.fields[k].options.nullIsAbsent && isNull(pairs.get(k)!.value));
    for (const k of this.keys) {
      const spec = this.fields[k];
      const path = join(k);
      const pair = pairs.get(k);
      if (pair) ctx.at.set(path, pair);
      const given = ctx.given.has(path);
      if (present(k)) {
        const v = spec.read(pair!.value, { path, key: pair!.key, index: where.index }, ctx);
        out[k] = given ? ctx.given.get(path) : v ?? spec.defaultFor(where.index);
      } else if (given) {
        out[k] = ctx.given.get(path);
      } else if (spec.options.required) {
        ctx.fail(map, { path, key: where.key, index: where.index }, `missing key "${path}"; expected ${spec.options.missing ?? spec.expected}`);
        out[k] = spec.defaultFor(where.index);
      } else {
        out[k] = spec.defaultFor(where.index);
      }
    }
    for (const rule of this.options.rules ?? []) {
      const problem = rule.check(out, (k) => ctx.ok(join(k)), present, join);
      // At the key it blames when that key is written, else at the mapping (a missing key).
      const blamed = pairs.get(problem?.key ?? '');
      if (problem) ctx.fail(blamed ? blamed.key : map, { path: join(problem.key), key: where.key, index: where.index }, problem.message);
    }
    return out as ObjectValue<F>;
  }

  /** The docs show a mapping's defaults at its keys. */
  override defaultText(): string | undefined {
    return this.options.defaultText;
  }

  /** Absent or refused, a mapping still has its keys' defaults, so later checks can read it. */
  override defaultFor(index: number): ObjectValue<F> {
    const own = super.defaultFor(index);
    if (own !== undefined) return own;
    const out: Record<string, unknown> = {};
    for (const k of this.keys) out[k] = this.fields[k].defaultFor(index);
    return out as ObjectValue<F>;
  }

  private unknownKey(typed: string, full: string, where: Where, ctx: ReadContext): string {
    const expected = `expected one of ${this.keys.join(', ')}`;
    const near = closest(typed, this.keys);
    if (near !== undefined) return `unknown key ${quote(full)}; did you mean "${where.path === '' ? near : `${where.path}.${near}`}"? (${expected})`;
    // A key written at the wrong level: `kernel:` at the top instead of under `boot:`.
    const elsewhere = ctx.allKeys.filter((k) => k.key === typed);
    if (elsewhere.length === 1) return `unknown key ${quote(full)}; did you mean "${elsewhere[0].path}"? (${expected})`;
    return `unknown key ${quote(full)}; ${expected}`;
  }

  protected schema(): JsonSchema {
    const properties: Record<string, JsonSchema> = {};
    for (const k of this.keys) {
      const s = this.fields[k].jsonSchema();
      // `disks:` with nothing is allowed where null counts as absent.
      properties[k] = this.fields[k].options.nullIsAbsent ? { anyOf: [s, { type: 'null' }] } : s;
    }
    const required = this.keys.filter((k) => this.fields[k].options.required);
    const rules = (this.options.rules ?? []).filter((r) => r.jsonSchema !== undefined);
    return {
      type: 'object',
      properties,
      ...(required.length ? { required } : {}),
      additionalProperties: false,
      ...(rules.length ? { allOf: rules.map((r) => r.jsonSchema) } : {}),
    };
  }
  override jsonDefault(): unknown { return undefined; }
}

export interface ListOptions<T> extends KeyOptions<T[]> {
  /** Completes `found X; expected …`: "a list of disks (- path: ...)". */
  readonly expectedText: string;
  readonly maxItems?: number;
  /** What the items are called and why there is a maximum: `9 disks; the board has 8 virtio slots, so at most 8`. */
  readonly itemsText?: string;
  readonly maxReason?: string;
}
export class ListSpec<T, P extends Presence> extends Spec<T[], P> {
  declare readonly options: ListOptions<T>;
  constructor(readonly item: Spec<T>, options: ListOptions<T>) {
    super(options);
  }
  get expected(): string { return this.options.expectedText; }
  get accepts(): string { return `list${this.options.maxItems !== undefined ? `, at most ${this.options.maxItems}` : ''}`; }
  read(node: Node | null, where: Where, ctx: ReadContext): T[] | undefined {
    const seq = ctx.r.resolve(node);
    if (!isSeq(seq)) return this.refuse(seq, where, ctx);
    const items = seq.items as Node[];
    const { maxItems, itemsText, maxReason } = this.options;
    if (maxItems !== undefined && items.length > maxItems) {
      ctx.fail(items[maxItems], where, `${where.path}: ${items.length} ${itemsText ?? 'items'}; ${maxReason ? `${maxReason}, so ` : ''}at most ${maxItems}`);
    }
    const out: T[] = [];
    items.forEach((raw, i) => {
      const item = ctx.r.resolve(raw);
      const path = `${where.path}[${i}]`;
      ctx.at.set(path, new Pair(where.key as Node, item));
      const v = this.item.read(item, { path, key: where.key, index: i }, ctx);
      if (v !== undefined) out.push(v);
    });
    return out;
  }
  protected schema(): JsonSchema {
    return { type: 'array', items: this.item.jsonSchema(), ...(this.options.maxItems !== undefined ? { maxItems: this.options.maxItems } : {}) };
  }
  override show(v: T[]): string { return v.length === 0 ? '[]' : JSON.stringify(v); }
}

export interface DictOptions<T> extends KeyOptions<Map<string, T>> {
  /** What a key must look like, and how messages say it. */
  readonly keyPattern: RegExp;
  readonly keyText: string;
  /** How the docs name a key in paths: `networks.NAME.subnet`. */
  readonly keyName: string;
}
/**
 * A mapping whose keys the user chooses (names), each with a value of one declared shape:
 * `networks: { lab: { subnet: ..., nat: ... } }`. Read as a Map, in the file's order.
 */
export class DictSpec<T, P extends Presence> extends Spec<Map<string, T>, P> {
  declare readonly options: DictOptions<T>;
  constructor(readonly item: Spec<T>, options: DictOptions<T>) {
    super(options);
  }
  get expected(): string { return `a mapping of ${this.options.keyText} to ${this.item.expected}`; }
  get accepts(): string { return `mapping: ${this.options.keyName} -> ${this.item.accepts}`; }
  read(node: Node | null, where: Where, ctx: ReadContext): Map<string, T> | undefined {
    const map = ctx.r.resolve(node);
    if (!isMap(map)) return this.refuse(map, where, ctx);
    const out = new Map<string, T>();
    for (const pair of ctx.r.pairsOf(map)) {
      const key = pair.key;
      const name = isScalar(key) && (typeof key.value === 'string' || typeof key.value === 'number') ? String(key.value) : undefined;
      if (name === undefined || !this.options.keyPattern.test(name)) {
        ctx.fail(key, where, `${where.path}: key ${describe(key)} is not ${this.options.keyText}`);
        continue;
      }
      if (out.has(name)) continue; // merged keys never replace written ones (SchemaReader.pairsOf)
      const path = `${where.path}.${name}`;
      const value = ctx.r.resolve(pair.value);
      ctx.at.set(path, new Pair(key, value));
      const at = { path, key, index: where.index };
      // `lab:` with nothing: the item's defaults (a mapping's keys all take theirs).
      const v = isNull(value) && this.item instanceof ObjectSpec ? this.item.fill(new Map(), value, at, ctx) as T : this.item.read(value, at, ctx);
      if (v !== undefined) out.set(name, v);
    }
    return out;
  }
  protected schema(): JsonSchema {
    return { type: 'object', patternProperties: { [this.options.keyPattern.source]: this.item.jsonSchema() }, additionalProperties: false };
  }
  override show(v: Map<string, T>): string { return v.size === 0 ? '{}' : JSON.stringify(Object.fromEntries(v)); }
  override jsonDefault(v: Map<string, T>): unknown { return Object.fromEntries(v); }
}

/**
 * A key that takes several forms, one per kind of YAML node: `cpus: 2` (a scalar) or
 * `cpus: {count: 2}` (a mapping). The node's kind picks the form, so the message is about the
 * form the user wrote, not a list of every alternative that failed; a kind no form takes gets one
 * message naming the forms. `normalize` turns each form's value into the one value vmctl uses.
 */
export interface ShapesOptions<T> extends KeyOptions<T> {
  readonly normalize: (value: unknown, kind: NodeKind) => T;
}
export class ShapesSpec<T, P extends Presence> extends Spec<T, P> {
  declare readonly options: ShapesOptions<T>;
  constructor(readonly forms: Partial<Record<NodeKind, Spec<unknown>>>, options: ShapesOptions<T>) {
    super(options);
  }
  private get list(): Spec<unknown>[] {
    return (['scalar', 'map', 'seq'] as const).map((k) => this.forms[k]).filter((s): s is Spec<unknown> => s !== undefined);
  }
  get expected(): string { return this.list.map((s) => s.expected).join(', or '); }
  get accepts(): string { return this.list.map((s) => s.accepts).join('; or '); }
  read(node: Node | null, where: Where, ctx: ReadContext): T | undefined {
    const n = ctx.r.resolve(node);
    const kind = nodeKind(n);
    const form = this.forms[kind];
    if (!form) return this.refuse(n, where, ctx);
    const v = form.read(n, where, ctx);
    return v === undefined ? undefined : this.options.normalize(v, kind);

  }
  protected schema(): JsonSchema {
    return { anyOf: this.list.map((s) => s.jsonSchema()) };
  }
  override show(v: T): string {
    const scalar = this.forms.scalar;
    return scalar ? scalar.show(v) : JSON.stringify(v);
  }
  override jsonDefault(v: T): unknown {
    const scalar = this.forms.scalar;
    return scalar ? scalar.jsonDefault(v) : v;
  }
}

// ---- builders: the declaration reads as a list of keys ----

export const integer = <const O extends IntegerOptions>(o: O) => new IntegerSpec<PresenceOf<O>>(o);
export const percent = <const O extends KeyOptions<number>>(o: O) => new PercentSpec<PresenceOf<O>>(o);
export const number = <const O extends NumberOptions>(o: O) => new NumberSpec<PresenceOf<O>>(o);
export const size = <const O extends SizeOptions>(o: O) => new SizeSpec<PresenceOf<O>>(o);
export const duration = <const O extends KeyOptions<number>>(o: O) => new DurationSpec<PresenceOf<O>>(o);
export const string = <const O extends StringOptions>(o: O) => new StringSpec<PresenceOf<O>>(o);
export const boolean = <const O extends KeyOptions<boolean>>(o: O) => new BooleanSpec<PresenceOf<O>>(o);
export const path = <const O extends KeyOptions<string>>(o: O) => new PathSpec<PresenceOf<O>>(o);
export const keywordOrPath = <K extends string, const O extends KeywordOrPathOptions<K>>(o: O & { keywords: readonly K[] }) => new KeywordOrPathSpec<K, PresenceOf<O>>(o);
/** A mapping always has a value: when absent, its keys' defaults. */
export const object = <F extends Fields>(fields: F, o: ObjectOptions<F>) => new ObjectSpec<F, 'present'>(fields, o);
export const list = <T, const O extends ListOptions<T>>(item: Spec<T>, o: O) => new ListSpec<T, PresenceOf<O>>(item, o);
export const dict = <T, const O extends DictOptions<T>>(item: Spec<T>, o: O) => new DictSpec<T, PresenceOf<O>>(item, o);
export const shapes = <T, const O extends KeyOptions<T>>(forms: Partial<Record<NodeKind, Spec<unknown>>>, normalize: (value: unknown, kind: NodeKind) => T, o: O) =>
  new ShapesSpec<T, PresenceOf<O>>(forms, { ...o, normalize });

// ---- walking the declaration (docs, suggestions) ----

/** One declared key with its path as the docs write it (`disks[].size`). */
export interface DeclaredKey {
  readonly path: string;
  readonly key: string;
  readonly spec: Spec<unknown>;
  /** Depth below the top level (0 for `name`). */
  readonly depth: number;
}

/** Every key of `root`, depth first, in declaration order; a shape's mapping form lists its keys under the key. */
export function declaredKeys(root: ObjectSpec<Fields, Presence>): DeclaredKey[] {
  const out: DeclaredKey[] = [];
  const walk = (spec: Spec<unknown>, prefix: string, depth: number): void => {
    if (spec instanceof ObjectSpec) {
      for (const k of spec.keys) {
        const s = spec.fields[k] as Spec<unknown>;
        const p = prefix === '' ? k : `${prefix}.${k}`;
        out.push({ path: p, key: k, spec: s, depth });
        walk(s, p, depth + 1);
      }
    } else if (spec instanceof ListSpec) {
      walk(spec.item, `${prefix}[]`, depth);
    } else if (spec instanceof DictSpec) {
      walk(spec.item, `${prefix}.${spec.options.keyName}`, depth);
    } else if (spec instanceof ShapesSpec) {
      for (const form of Object.values(spec.forms)) if (form) walk(form, prefix, depth);
    }
  };
  walk(root as Spec<unknown>, '', 0);
  return out;
}

const keysOf = new WeakMap<object, DeclaredKey[]>();

/** Reads a whole document against `root` (the top-level mapping). */
export function readDocument<F extends Fields>(root: ObjectSpec<F, Presence>, ctx: ReadContext, emptyOk: boolean): ObjectValue<F> | undefined {
  if (!keysOf.has(root)) keysOf.set(root, declaredKeys(root));
  ctx.allKeys = keysOf.get(root)!;
  const node = ctx.r.doc.contents as Node | null;
  if (isNull(node)) {
    if (emptyOk) return root.fill(new Map(), node, ROOT, ctx);
    ctx.r.fail(node, `the file is empty; expected ${root.expected}`);
    return undefined;
  }
  return root.read(node, ROOT, ctx);
}
