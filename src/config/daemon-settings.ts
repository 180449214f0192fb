// Daemon settings: VMCTL_HOME/config.yaml. Every key is optional and declared once below (see
// src/config/schema.ts): validation, defaults, the file written on first start, the JSON Schema
// (`vmctl schema config`) and the README's table come from the declaration.

import { existsSync } from 'node:fs';
import { ConfigErrors } from './errors.js';
import { readYamlFile, SchemaReader } from './yaml-schema.js';
import { number, object, readDocument, ReadContext, size, type ObjectValue } from './schema.js';
import { hostCpus } from './host-cpus.js';
import { annotatedYaml } from './schema-docs.js';

export interface DaemonSettings {
  /** serial.log is rotated to serial.log.1 when it grows past this. */
  readonly serialLogMaxBytes: number;
  /** The daemon's vmd.log is rotated to vmd.log.1 when it grows past this. */
  readonly daemonLogMaxBytes: number;
  /** Console output of the current boot kept in memory for `wait --for-console` / `start --wait-for`. */
  readonly consoleHistoryBytes: number;
  /** Host cores vmctl may use for all VMs' harts (host.cpus; may be a fraction by default). */
  readonly hostCpus: number;
}

const MiB = 1024 * 1024;

export const SETTINGS_SCHEMA = object({
  serialLogMaxSize: size({ min: 4096, default: 4 * MiB, example: '4MiB', description: 'Size at which a VM\'s serial.log is rotated to serial.log.1' }),
  daemonLogMaxSize: size({ min: 4096, default: 4 * MiB, example: '4MiB', description: 'Size at which the daemon\'s vmd.log is rotated to vmd.log.1' }),
  consoleHistorySize: size({ min: 4096, default: 1 * MiB, example: '1MiB', description: 'Console output of the current boot kept in memory (wait --for-console, start --wait-for)' }),
  host: object({
    cpus: number({
      min: 0.01, max: 1024, example: 2, defaultText: 'the cores this process may use',
      description: 'Host cores vmctl may use for the harts of all VMs together (fractions allowed, as 0.5)',
      details: ['Default: the cores this process may use, honouring a cgroup CPU limit (a container\'s --cpus). When more harts want to run, the daemon shares these cores among VMs by their cpus.shares and caps.'],
    }),
  }, { description: 'What vmctl may use of the host' }),
}, { description: 'vmctl daemon settings (VMCTL_HOME/config.yaml); every key is optional' });

type SettingsFile = ObjectValue<typeof SETTINGS_SCHEMA.fields>;
function toSettings(v: SettingsFile): DaemonSettings {
  return {
    serialLogMaxBytes: v.serialLogMaxSize, daemonLogMaxBytes: v.daemonLogMaxSize, consoleHistoryBytes: v.consoleHistorySize,
    hostCpus: v.host.cpus ?? hostCpus(),
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
