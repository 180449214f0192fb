// Small helpers shared by the command groups.

import { dirname, resolve } from 'node:path';
import { ConfigErrors } from '../config/errors.js';
import { quote } from '../config/quote.js';
import { parseDuration } from '../config/units.js';
import { parseVmDefinition, VM_NAME_RE, type VmDefinition } from '../config/vm-definition.js';
import { readYamlFile } from '../config/yaml-schema.js';
import type { ProtocolClient } from '../protocol/client.js';
import type { EventMessage } from '../protocol/messages.js';
import { CliError, EXIT } from './exit-codes.js';

/** Parses a --timeout-style option; usage error (exit 2) when malformed. */
export function durationOption(text: string | undefined, option: string): number | undefined {
  if (text === undefined) return undefined;
  const ms = parseDuration(text);
  if (ms === null) throw new CliError(EXIT.usage, `${option}: ${quote(text)} is not a duration; expected something like 500ms, 30s or 5m`);
  // setTimeout holds at most 2^31-1 ms (about 24.8 days); longer would fire at once.
  return Math.min(ms, 2 ** 31 - 1);
}

/** Loads and validates a VM file locally, so config errors never need a daemon. */
export function loadDefinitionOrExit(file: string, nameOverride?: string): { def: VmDefinition; abs: string; text: string } {
  // An option has no line and column: say which option (the schema would print "--name:1:1:").
  if (nameOverride !== undefined && !VM_NAME_RE.test(nameOverride)) {
    throw new CliError(EXIT.usage, `--name: ${quote(nameOverride)} is not a valid VM name; expected letters, digits, ".", "_" or "-" (1..63 characters, starting with a letter or digit)`);
  }
  const abs = resolve(file);
  try {
    // Read once: the daemon gets exactly the text that was checked here.
    const text = readYamlFile(abs, file);
    const def = parseVmDefinition(text, file, dirname(abs), { nameOverride });
    return { def, abs, text };
  } catch (e) {
    if (e instanceof ConfigErrors) throw new CliError(EXIT.usage, e.message, true);
    throw e;
  }
}

/** True for the events that say the VM is being (or was) deleted: its stop on the way to being
 *  deleted (a state event with reason "delete"), and the `deleted` event itself. */
export function isDeletion(e: EventMessage): boolean {
  return e.event === 'deleted' || (e.event === 'state' && e.data.reason === 'delete');
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
