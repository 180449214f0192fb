import { describe, expect, it } from 'vitest';
import { durationProblem, formatSize, looksLikeSize, mebibyteHint, parseDuration, parseSize } from '../../src/config/units.js';

describe('sizes', () => {
  it('reads binary units, with and without the i', () => {
    expect(parseSize('128MiB')).toBe(128 * 1024 * 1024);
    expect(parseSize('128M')).toBe(128 * 1024 * 1024);
    expect(parseSize('1GiB')).toBe(1024 ** 3);
    expect(parseSize('1g')).toBe(1024 ** 3);
    expect(parseSize('4KiB')).toBe(4096);
    expect(parseSize('512B')).toBe(512);
    expect(parseSize('4096')).toBe(4096);
    expect(parseSize(4096)).toBe(4096);
  });
  it('rejects what is not a size', () => {
    for (const bad of ['', 'MiB', '12 parsecs', '1.5GiB', '-1M', '1XiB', '0x10']) expect(parseSize(bad), bad).toBeNull();
    expect(parseSize(-5)).toBeNull();
    expect(parseSize(1.5)).toBeNull();
  });
  it('tells a size too large to count from what is not a size at all', () => {
    expect(parseSize('99999999TiB')).toBeNull();
    expect(looksLikeSize('99999999TiB')).toBe(true);
    expect(looksLikeSize('99999999999999999999999GiB')).toBe(true);
    for (const bad of ['', 'MiB', '12 parsecs', '1.5GiB', '-1M', '1XiB', '0x10', '16GiB+1']) expect(looksLikeSize(bad), bad).toBe(false);
  });
  it('formats the shortest exact binary unit', () => {
    expect(formatSize(128 * 1024 * 1024)).toBe('128MiB');
    expect(formatSize(1536 * 1024 * 1024)).toBe('1536MiB');
    expect(formatSize(1000)).toBe('1000B');
    expect(parseSize(formatSize(3 * 1024 ** 3))).toBe(3 * 1024 ** 3);
  });
});

describe('durations', () => {
  it('reads ms, s, m, h, and 0 without a unit', () => {
    expect(parseDuration('500ms')).toBe(500);
    expect(parseDuration('30s')).toBe(30_000);
    expect(parseDuration('5m')).toBe(300_000);
    expect(parseDuration('1h')).toBe(3_600_000);
    expect(parseDuration('1m30s')).toBe(90_000);
    expect(parseDuration('0.5s')).toBe(500);
    expect(parseDuration('0')).toBe(0);
    expect(parseDuration(0)).toBe(0);
  });
  it('rejects what is not a duration', () => {
    for (const bad of ['', 'soon', '5 minutes', '10x', 's', '5m junk']) expect(parseDuration(bad), bad).toBeNull();
  });
  it('refuses a number without a unit (5 could be seconds or minutes), naming the likely meaning', () => {
    for (const bare of ['2', '5', '2.5', ' 30 ']) expect(parseDuration(bare), bare).toBeNull();
    expect(parseDuration(30)).toBeNull();
    expect(durationProblem('5')).toMatch(/^has no unit; did you mean 5s\?/);
    expect(durationProblem(30)).toMatch(/^has no unit; did you mean 30s\?/);
    expect(durationProblem('soon')).toMatch(/^is not a duration; expected something like 30s/);
  });
});

describe('a size without a unit', () => {
  it('is hinted as MiB when bytes are out of range and MiB are not', () => {
    expect(mebibyteHint('256', 1024 ** 2, 16 * 1024 ** 3)).toBe('256MiB');
    expect(mebibyteHint(256, 1024 ** 2, 16 * 1024 ** 3)).toBe('256MiB');
    expect(mebibyteHint('268435456', 1024 ** 2, 16 * 1024 ** 3)).toBeNull(); // fine as bytes
    expect(mebibyteHint('99999999', 1024 ** 2, 16 * 1024 ** 3)).toBeNull(); // too large either way
    expect(mebibyteHint('256KiB', 1024 ** 2, 16 * 1024 ** 3)).toBeNull(); // has a unit
  });
});
