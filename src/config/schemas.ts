// The JSON Schemas vmctl publishes (`vmctl schema [vm|config]`, schemas/ in the repository), each
// derived from its file's declaration.

import { SETTINGS_SCHEMA } from './daemon-settings.js';
import { jsonSchema } from './schema-docs.js';
import { VM_SCHEMA } from './vm-schema.js';

export const SCHEMAS = {
  vm: { spec: VM_SCHEMA, title: 'vmctl VM definition', file: 'schemas/vm.schema.json' },
  config: { spec: SETTINGS_SCHEMA, title: 'vmctl daemon settings (VMCTL_HOME/config.yaml)', file: 'schemas/config.schema.json' },
} as const;
export type SchemaName = keyof typeof SCHEMAS;

/** The schema as the file in schemas/ holds it. */
export function schemaText(name: SchemaName): string {
  const s = SCHEMAS[name];
  return `${JSON.stringify(jsonSchema(s.spec, s.title), null, 2)}\n`;
}
