// `vmctl logs --since`: a duration back from now, or a local date/time; anything else is a usage error.

import { describe, expect, it } from 'vitest';
import { sinceOption } from '../../src/cli/commands/logs.js';
import { CliError } from '../../src/cli/exit-codes.js';

const NOW = new Date(2025, 11, 7, 15, 30, 0).getTime(); // 2025-12-07 15:30 local

describe('logs --since', () => {
  it('takes durations back from now', () => {
    expect(sinceOption('10m', NOW)).toBe(NOW - 600_000);
    expect(sinceOption('1h30m', NOW)).toBe(NOW - 5_400_000);
    expect(sinceOption('500ms', NOW)).toBe(NOW - 500);
  });

  it('takes local dates and times, and times with a zone', () => {
    expect(sinceOption('2025-12-07', NOW)).toBe(new Date(2025, 11, 7).getTime());
    expect(sinceOption('2025-12-07T10:00', NOW)).toBe(new Date(2025, 11, 7, 10, 0).getTime());
    expect(sinceOption('2025-12-07 9:05:30', NOW)).toBe(new Date(2025, 11, 7, 9, 5, 30).getTime());
    expect(sinceOption('2025-12-07T10:00:00Z', NOW)).toBe(Date.UTC(2025, 11, 7, 10));
    expect(sinceOption('2025-12-07T10:00:00+01:00', NOW)).toBe(Date.UTC(2025, 11, 7, 9));
    expect(sinceOption('10:00', NOW)).toBe(new Date(2025, 11, 7, 10, 0).getTime());
    expect(sinceOption('09:15:30', NOW)).toBe(new Date(2025, 11, 7, 9, 15, 30).getTime());
  });

  it('refuses what is neither, naming both forms', () => {
    for (const bad of ['5', 'yesterday', '25:00', '10:61', '2025-13-40', '2025-12-07T', '10m ago', '']) {
      let e: unknown;
      try {
        sinceOption(bad, NOW);
      } catch (x) {
        e = x;
      }
      expect(e, bad).toBeInstanceOf(CliError);
      expect((e as CliError).exitCode).toBe(2);
      expect((e as CliError).message).toContain(`--since: ${JSON.stringify(bad)} is neither a duration (like 10m or 2h) nor a time`);
    }
  });
});
