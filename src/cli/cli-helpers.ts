// Small helpers shared by the command groups.

import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { ConfigErrors } from '../config/errors.js';
import { parseDuration } from '../config/units.js';
import { loadVmDefinition, VM_NAME_RE, type VmDefinition } from '../config/vm-definition.js';
import type { ProtocolClient } from '../protocol/client.js';
import { CliError, EXIT } from './exit-codes.js';

/** Parses a --timeout-style option; usage error (exit 2) when malformed. */
export function durationOption(text: string | undefined, option: string): number | undefined {
  if (text === undefined) return undefined;
  const ms = parseDuration(text);
  if (ms === null) throw new CliError(EXIT.usage, `${option}: ${JSON.stringify(text)} is not a duration; expected something like 500ms, 30s or 5m`);
  // setTimeout holds at most 2^31-1 ms (about 24.8 days); longer would fire at once.
  return Math.min(ms, 2 ** 31 - 1);
}

/** Loads and validates a VM file locally, so config errors never need a daemon. */
export function loadDefinitionOrExit(file: string, nameOverride?: string): { def: VmDefinition; abs: string; text: string } {
  // An option has no line and column: say which option (the schema would print "--name:1:1:").
  if (nameOverride !== undefined && !VM_NAME_RE.test(nameOverride)) {
    throw new CliError(EXIT.usage, `--name: ${JSON.stringify(nameOverride)} is not a valid VM name; expected letters, digits, ".", "_" or "-" (1..63 characters, starting with a letter or digit)`);
  }
  const abs = resolve(file);
  try {
    const def = loadVmDefinition(file, { nameOverride });
    return { def, abs, text: readFileSync(abs, 'utf8') };
  } catch (e) {
    if (e instanceof ConfigErrors) throw new CliError(EXIT.usage, e.message, true);
    throw e;
  }
}

export function b64(bytes: Uint8Array | string): string {
  return Buffer.from(bytes).toString('base64');
}

export function unb64(s: string): Buffer {
  return Buffer.from(s, 'base64');
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Writes guest output to stdout; while stdout is full, stops reading the daemon, so that a slow
 *  reader holds the guest back (Connection.send) instead of output piling up in memory here. */
export function writeHeld(c: ProtocolClient, bytes: Uint8Array): void {
  if (!process.stdout.write(bytes)) {
    c.pause();
    process.stdout.once('drain', () => c.resume());
  }
}
