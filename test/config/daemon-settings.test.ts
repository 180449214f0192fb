import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DEFAULT_SETTINGS, DEFAULT_SETTINGS_TEXT, loadDaemonSettings } from '../../src/config/daemon-settings.js';
import { ConfigErrors } from '../../src/config/errors.js';

const dir = mkdtempSync(join(tmpdir(), 'vmctl-settings-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
function file(text: string): string {
  const f = join(dir, `config-${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(f, text);
  return f;
}

describe('daemon settings (config.yaml)', () => {
  it('defaults when missing or empty, and the written default file reads back as the defaults', () => {
    expect(loadDaemonSettings(join(dir, 'absent.yaml'))).toEqual(DEFAULT_SETTINGS);
    expect(loadDaemonSettings(file(''))).toEqual(DEFAULT_SETTINGS);
    expect(loadDaemonSettings(file(DEFAULT_SETTINGS_TEXT))).toEqual(DEFAULT_SETTINGS);
  });
  it('reads sizes', () => {
    expect(loadDaemonSettings(file('serialLogMaxSize: 64KiB\nconsoleHistorySize: 1M\n'))).toEqual({ serialLogMaxBytes: 65536, daemonLogMaxBytes: DEFAULT_SETTINGS.daemonLogMaxBytes, consoleHistoryBytes: 1024 * 1024 });
    expect(loadDaemonSettings(file('daemonLogMaxSize: 8KiB\n'))).toEqual({ ...DEFAULT_SETTINGS, daemonLogMaxBytes: 8192 });
  });
  it('rejects unknown keys and bad sizes with FILE:LINE:COL', () => {
    const f = file('serialLogMaxSize: 1KiB\nconsoleHistorySise: 1M\n');
    try {
      loadDaemonSettings(f);
      throw new Error('expected an error');
    } catch (e) {
      expect(e).toBeInstanceOf(ConfigErrors);
      expect((e as ConfigErrors).errors.map((x) => x.message)).toEqual([
        `${f}:1:19: serialLogMaxSize: "1KiB" is too small; expected a size of at least 4KiB`,
        `${f}:2:1: unknown key "consoleHistorySise"; did you mean "consoleHistorySize"? (expected one of serialLogMaxSize, daemonLogMaxSize, consoleHistorySize)`,
      ]);
    }
  });
});
