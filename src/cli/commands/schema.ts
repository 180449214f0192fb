// schema: print the JSON Schema of a VM definition or of config.yaml (for editors and scripts).

import type { Command } from 'commander';
import { SCHEMAS, schemaText, type SchemaName } from '../../config/schemas.js';
import { CliError, EXIT } from '../exit-codes.js';

export function register(program: Command): void {
  program
    .command('schema [WHICH]')
    .description('print the JSON Schema (draft-07) of a VM definition (vm, the default) or of config.yaml (config)')
    .action((which: string | undefined) => {
      const name = which ?? 'vm';
      if (!Object.prototype.hasOwnProperty.call(SCHEMAS, name)) {
        throw new CliError(EXIT.usage, `schema: ${JSON.stringify(name)} is not a schema; expected ${Object.keys(SCHEMAS).join(' or ')}`);
      }
      process.stdout.write(schemaText(name as SchemaName));
    });
}
