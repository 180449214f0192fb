// Daemon settings: VMCTL_HOME/config.yaml. Every key is optional; later issues add keys here.

import { existsSync } from 'node:fs';
import { isScalar, type Node } from 'yaml';
import { ConfigErrors } from './errors.js';
import { describe, readYamlFile, SchemaReader } from './yaml-schema.js';
import { formatSize, parseSize } from './units.js';

export interface DaemonSettings {
  /** serial.log is rotated to serial.log.1 when it grows past this. */
  readonly serialLogMaxBytes: number;
  /** The daemon's vmd.log is rotated to vmd.log.1 when it grows past this. */
  readonly daemonLogMaxBytes: number;
  /** Console output of the current boot kept in memory for `wait --for-console` / `start --wait-for`. */
  readonly consoleHistoryBytes: number;
}

export const DEFAULT_SETTINGS: DaemonSettings = {
  serialLogMaxBytes: 4 * 1024 * 1024,
  daemonLogMaxBytes: 4 * 1024 * 1024,
  consoleHistoryBytes: 1024 * 1024,
};

const KEYS = ['serialLogMaxSize', 'daemonLogMaxSize', 'consoleHistorySize'] as const;

export const DEFAULT_SETTINGS_TEXT = `# vmctl daemon settings. Every key is optional.
# serialLogMaxSize: size at which a VM's serial.log is rotated to serial.log.1
serialLogMaxSize: ${formatSize(DEFAULT_SETTINGS.serialLogMaxBytes)}
# daemonLogMaxSize: size at which the daemon's vmd.log is rotated to vmd.log.1
daemonLogMaxSize: ${formatSize(DEFAULT_SETTINGS.daemonLogMaxBytes)}
# consoleHistorySize: console output of the current boot kept in memory (wait --for-console)
consoleHistorySize: ${formatSize(DEFAULT_SETTINGS.consoleHistoryBytes)}
`;

export function loadDaemonSettings(file: string): DaemonSettings {
  if (!existsSync(file)) return DEFAULT_SETTINGS;
  const r = new SchemaReader(file, readYamlFile(file));
  if (r.errors.length > 0) throw new ConfigErrors(r.errors);
  const root = r.doc.contents;
  if (root === null || (isScalar(root) && root.value === null)) return DEFAULT_SETTINGS;
  const m = r.mapping(root, '', KEYS);
  if (!m) throw new ConfigErrors(r.errors);
  const size = (key: string, min: number, dflt: number): number => {
    const p = m.get(key);
    if (!p) return dflt;
    const v = isScalar(p.value) ? p.value.value : null;
    const n = typeof v === 'string' || typeof v === 'number' ? parseSize(v) : null;
    if (n === null || n < min) {
      r.fail(p.value as Node, `${key}: found ${describe(p.value)}; expected a size of at least ${formatSize(min)}`, p.key);
      return dflt;
    }
    return n;
  };
  const s: DaemonSettings = {
    serialLogMaxBytes: size('serialLogMaxSize', 4096, DEFAULT_SETTINGS.serialLogMaxBytes),
    daemonLogMaxBytes: size('daemonLogMaxSize', 4096, DEFAULT_SETTINGS.daemonLogMaxBytes),
    consoleHistoryBytes: size('consoleHistorySize', 4096, DEFAULT_SETTINGS.consoleHistoryBytes),
  };
  if (r.errors.length > 0) throw new ConfigErrors(r.errors);
  return s;
}
