// What the key declarations (src/config/schema.ts) give besides validation: the JSON Schema for
// editors and scripts (draft-07, the draft the YAML language server validates), the README's key
// tables, and commented YAML files (vm-config.example.yaml, the daemon's first config.yaml).

import { stringify } from 'yaml';
import { declaredKeys, DictSpec, ListSpec, ObjectSpec, ShapesSpec, type Fields, type JsonSchema, type Spec } from './schema.js';

type AnyObject = ObjectSpec<Fields, 'present' | 'optional'>;

export const JSON_SCHEMA_DRAFT = 'http://json-schema.org/draft-07/schema#';

/** The JSON Schema of a whole file. */
export function jsonSchema(root: AnyObject, title: string): JsonSchema {
  return { $schema: JSON_SCHEMA_DRAFT, title, ...root.jsonSchema() };
}

/** The README table of every key: | key | accepts | default | description |. */
export function keyTable(root: AnyObject): string {
  const rows = ['| key | accepts | default | description |', '|---|---|---|---|'];
  const cell = (s: string): string => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');
  for (const k of declaredKeys(root)) {
    const o = k.spec.options;
    const dflt = o.required ? 'required' : k.spec.defaultText() ?? '—';
    const rules = k.spec instanceof ObjectSpec ? (k.spec.options.rules ?? []).map((r) => r.text) : [];
    const description = rules.length ? `${o.description} (${rules.join('; ')})` : o.description;
    rows.push(`| \`${k.path}\` | ${cell(k.spec.accepts)} | ${dflt === '—' ? dflt : `\`${cell(dflt)}\``} | ${cell(description)} |`);
  }
  return `${rows.join('\n')}\n`;
}

/** A scalar as YAML text; a list or mapping in flow style (`{ host: 2222, guest: 22 }`). */
function yamlScalar(v: unknown): string {
  return stringify(v, { lineWidth: 0, blockQuote: false, collectionStyle: typeof v === 'object' && v !== null ? 'flow' : 'any' }).trimEnd();
}

/** Word-wraps comment text to lines of at most `width` characters, each `prefix# `, then `first`
 *  on the first line and `hang` on the others. */
function comment(text: string, prefix: string, hang = '', first = '', width = 100): string[] {
  const out: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/).filter((w) => w !== '')) {
    const lead = out.length === 0 ? first : hang;
    if (line !== '' && prefix.length + 2 + lead.length + line.length + 1 + word.length > width) {
      out.push(`${prefix}# ${lead}${line}`);
      line = word;
    } else line = line === '' ? word : `${line} ${word}`;
  }
  if (line !== '') out.push(`${prefix}# ${out.length === 0 ? first : hang}${line}`);
  return out;
}

/** The comment lines that document one key; `withKey` (list items) names the key first. */
function keyComment(key: string, spec: Spec<unknown>, indent: string, withKey: boolean): string[] {
  const o = spec.options;
  const dflt = spec.defaultText();
  const facts = [`Accepts: ${spec.accepts}.`, o.required ? 'Required.' : dflt !== undefined ? `Default: ${dflt}.` : 'Optional.'];
  const rules = spec instanceof ObjectSpec ? (spec.options.rules ?? []).map((r) => `${r.text[0].toUpperCase()}${r.text.slice(1)}.`) : [];
  const hang = withKey ? '  ' : '';
  const paragraphs = [`${o.description}.`, [...facts, ...rules].join(' '), ...(o.details ?? [])];
  return paragraphs.flatMap((p, i) => (i === 0 && withKey ? comment(`${key}: ${p}`, indent, hang) : comment(p, indent, hang, i === 0 ? '' : hang)));
}

export interface AnnotatedOptions {
  /** Comment lines at the top (without "# "). */
  readonly header: readonly string[];
  /** The values to write, as a user writes them; a key left out is written commented out with
   *  its example. Without values, every key is written with its default (or commented out). */
  readonly values?: Record<string, unknown>;
}

/**
 * A YAML file that documents every key in comments above it. Keys of list items are documented
 * above the list; a key without a value is shown commented out with its example.
 */
export function annotatedYaml(root: AnyObject, opts: AnnotatedOptions): string {
  const out: string[] = opts.header.flatMap((h) => comment(h, ''));
  const defaults = (spec: Spec<unknown>): unknown => {
    const d = spec.defaultFor(0);
    return d === undefined || spec instanceof ObjectSpec || spec instanceof ListSpec || spec instanceof DictSpec ? undefined : yamlScalarValue(spec, d);
  };
  const writeObject = (spec: AnyObject, values: Record<string, unknown> | undefined, indent: string, topLevel: boolean): void => {
    for (const key of spec.keys) {
      const s = spec.fields[key] as Spec<unknown>;
      const v = values ? values[key] : defaults(s);
      if (topLevel) out.push('');
      out.push(...keyComment(key, s, indent, false));
      const obj = s instanceof ObjectSpec ? s : null;
      // A key with several forms written in its list form is documented as that list.
      const listSpec = s instanceof ListSpec ? s : s instanceof ShapesSpec && Array.isArray(v) && s.forms.seq instanceof ListSpec ? s.forms.seq : null;
      if (obj && v !== undefined) {
        out.push(`${indent}${key}:`);
        writeObject(obj, v as Record<string, unknown>, `${indent}  `, false);
      } else if (listSpec && v !== undefined) {
        out.push(`${indent}${key}:`);
        const item = listSpec.item;
        if (item instanceof ObjectSpec) for (const k of item.keys) out.push(...keyComment(k, item.fields[k] as Spec<unknown>, `${indent}  `, true));
        for (const element of v as Record<string, unknown>[]) {
          const lines = Object.entries(element).map(([k, x]) => `${k}: ${yamlScalar(x)}`);
          lines.forEach((l, i) => out.push(`${indent}  ${i === 0 ? '- ' : '  '}${l}`));
        }
      } else if (v !== undefined) {
        out.push(`${indent}${key}: ${yamlScalar(v)}`);
      } else {
        const ex = obj || s instanceof ShapesSpec && typeof s.options.example === 'object' ? undefined : s.options.example;
        if (ex !== undefined) out.push(`${indent}# ${key}: ${yamlScalar(ex)}`);
      }
    }
  };
  writeObject(root, opts.values, '', true);
  return `${out.join('\n')}\n`;
}

/** A default as the user would write it (a size as "4MiB", not bytes). */
function yamlScalarValue(spec: Spec<unknown>, v: unknown): unknown {
  const shown = spec.show(v);
  return typeof v === 'string' ? v : typeof v === 'number' && /^[0-9]+$/.test(shown) ? v : typeof v === 'boolean' ? v : shown;
}
