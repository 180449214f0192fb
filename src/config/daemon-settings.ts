// Daemon settings: VMCTL_HOME/config.yaml. Every key is optional and declared once below (see
// src/config/schema.ts): validation, defaults, the file written on first start, the JSON Schema
// (`vmctl schema config`) and the README's table come from the declaration.

import { existsSync } from 'node:fs';
import { ConfigErrors } from './errors.js';
import { readYamlFile, SchemaReader } from './yaml-schema.js';
import { boolean, number, object, readDocument, ReadContext, size, type ObjectValue } from './schema.js';
import { annotatedYaml } from './schema-docs.js';

export interface DaemonSettings {
  /** serial.log is rotated to serial.log.1 when it grows past this. */
  readonly serialLogMaxBytes: number;
  /** The daemon's vmd.log is rotated to vmd.log.1 when it grows past this. */
  readonly daemonLogMaxBytes: number;
  /** Console output of the current boot kept in memory for `wait --for-console` / `start --wait-for`. */
  readonly consoleHistoryBytes: number;
  /** Host memory vmctl may use for guests; undefined: what this process may use (hostMemoryBytes). */
  readonly hostMemoryBytes: number | undefined;
  /** Running VMs may be configured with up to hostMemory × this in all. */
  readonly overcommit: number;
  /** The daemon's balloon policy (src/daemon/memory.ts). */
  readonly autoBalloon: boolean;
}

const MiB = 1024 * 1024;

export const SETTINGS_SCHEMA = object({
  serialLogMaxSize: size({ min: 4096, default: 4 * MiB, example: '4MiB', description: 'Size at which a VM\'s serial.log is rotated to serial.log.1' }),
  daemonLogMaxSize: size({ min: 4096, default: 4 * MiB, example: '4MiB', description: 'Size at which the daemon\'s vmd.log is rotated to vmd.log.1' }),
  consoleHistorySize: size({ min: 4096, default: 1 * MiB, example: '1MiB', description: 'Console output of the current boot kept in memory (wait --for-console, start --wait-for)' }),
  host: object({
    memory: size({
      min: 64 * MiB, example: '16GiB', defaultText: 'the cgroup memory limit, else physical memory',
      description: 'Host memory vmctl may use for guests: start is refused past memory × overcommit, and VMs wait for memory past it',
    }),
    overcommit: number({
      min: 1, max: 100, default: 1.5, example: 1.5,
      description: 'How much more memory running VMs may be configured with, in all, than host.memory',
    }),
    autoBalloon: boolean({
      default: true, example: true,
      description: 'When the VMs\' resident memory nears host.memory, inflate the balloons of the VMs with the most free memory (never below memory.min), and deflate them when it is gone',
    }),
  }, { nullIsAbsent: true, description: 'The host\'s memory and how vmctl shares it between VMs' }),
}, { description: 'vmctl daemon settings (VMCTL_HOME/config.yaml); every key is optional' });

type SettingsFile = ObjectValue<typeof SETTINGS_SCHEMA.fields>;
function toSettings(v: SettingsFile): DaemonSettings {
  return {
    serialLogMaxBytes: v.serialLogMaxSize, daemonLogMaxBytes: v.daemonLogMaxSize, consoleHistoryBytes: v.consoleHistorySize,
    hostMemoryBytes: v.host.memory, overcommit: v.host.overcommit, autoBalloon: v.host.autoBalloon,
  };
}

/** Reads config.yaml text; an empty file means every default. Throws ConfigErrors. */
export function parseDaemonSettings(text: string, file: string): DaemonSettings {
  const r = new SchemaReader(file, text);
  if (r.errors.length > 0) throw new ConfigErrors(r.errors);
  const v = readDocument(SETTINGS_SCHEMA, new ReadContext(r, '/'), true);
  if (!v || r.errors.length > 0) throw new ConfigErrors(r.errors);
  return toSettings(v);
}

export const DEFAULT_SETTINGS: DaemonSettings = parseDaemonSettings('', 'config.yaml');

/** Written to VMCTL_HOME/config.yaml on the daemon's first start. */
export const DEFAULT_SETTINGS_TEXT = annotatedYaml(SETTINGS_SCHEMA, {
  header: ['vmctl daemon settings. Every key is optional; `vmctl schema config` prints the JSON Schema.'],
});

export function loadDaemonSettings(file: string): DaemonSettings {
  if (!existsSync(file)) return DEFAULT_SETTINGS;
  return parseDaemonSettings(readYamlFile(file), file);
}
