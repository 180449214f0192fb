// Small helpers shared by the command groups.

import { dirname, resolve } from 'node:path';
import { ConfigErrors } from '../config/errors.js';
import { quote } from '../config/quote.js';
import { durationProblem, parseDuration } from '../config/units.js';
import { parseVmDefinition, VM_NAME_RE, type VmDefinition } from '../config/vm-definition.js';
import { readYamlFile } from '../config/yaml-schema.js';
import type { ProtocolClient } from '../protocol/client.js';
import { isActiveState, type EventMessage, type StopPath } from '../protocol/messages.js';
import { CliError, EXIT } from './exit-codes.js';

/**
 * Parses a --timeout-style option: milliseconds, 0 for "no limit"; usage error (exit 2) when
 * malformed or without a unit (`--timeout 5` names 5s as the likely meaning).
 */
export function durationOption(text: string | undefined, option: string): number | undefined {
  if (text === undefined) return undefined;
  const ms = parseDuration(text);
  if (ms === null) throw new CliError(EXIT.usage, `${option}: ${quote(text)} ${durationProblem(text)}`);
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

/** What a stop did, in words (`stop`, `restart`, `daemon stop`). */
export function stopText(name: string, path: StopPath, state: string): string {
  switch (path) {
    case 'already-stopped': return `VM ${name} was not running (state ${state})`;
    case 'guest-poweroff': return `Typed the shutdown command; VM ${name} powered off by itself`;
    case 'timeout-poweroff': return `VM ${name} did not power off in time after the shutdown command; powered off`;
    case 'poweroff': return `Powered off VM ${name}`;
    case 'discarded-state': return `Discarded the saved state of VM ${name}; it is stopped`;
  }
}

/** True for the event that ends a VM's run for its watchers (console, wait, start --wait-for): it
 *  stopped, aborted or was saved, and no new boot follows (a reset or `vmctl restart` keeps them attached). */
export function vmEnded(e: EventMessage): boolean {
  return e.event === 'state' && !isActiveState(e.data.state as string) && e.data.restarting !== true;
}

/** "1 cpu", "2 cpus". */
export function cpusText(n: number): string {
  return `${n} cpu${n === 1 ? '' : 's'}`;
}
