// Sizes and durations as people write them in VM files and on the command line.
// Sizes are binary (KiB = 1024 B); a bare K/M/G is read as binary too, as most VM tools do.

const SIZE_UNITS: Record<string, number> = {
  B: 1,
  K: 1024, KB: 1024, KIB: 1024,
  M: 1024 ** 2, MB: 1024 ** 2, MIB: 1024 ** 2,
  G: 1024 ** 3, GB: 1024 ** 3, GIB: 1024 ** 3,
  T: 1024 ** 4, TB: 1024 ** 4, TIB: 1024 ** 4,
};

/** Parses "128MiB", "1G", "4096", "512B". Returns null when the text is not a size. */
export function parseSize(text: string | number): number | null {
  if (typeof text === 'number') return Number.isSafeInteger(text) && text >= 0 ? text : null;
  const m = /^\s*(\d+)\s*([A-Za-z]*)\s*$/.exec(text);
  if (!m) return null;
  const unit = m[2] === '' ? 'B' : m[2].toUpperCase();
  const mult = SIZE_UNITS[unit];
  if (mult === undefined) return null;
  const n = Number(m[1]) * mult;
  return Number.isSafeInteger(n) ? n : null;
}

/** True when `text` is spelled as a size ("128MiB", "99999999TiB") even if parseSize refuses it
 *  for being too large to count exactly: then the complaint is the range, not the spelling. */
export function looksLikeSize(text: string | number): boolean {
  if (typeof text === 'number') return Number.isInteger(text) && text >= 0;
  const m = /^\s*\d+\s*([A-Za-z]*)\s*$/.exec(text);
  return m !== null && SIZE_UNITS[m[1] === '' ? 'B' : m[1].toUpperCase()] !== undefined;
}

/** The shortest exact binary spelling: 134217728 -> "128MiB", 1000 -> "1000B". */
export function formatSize(bytes: number): string {
  for (const [unit, mult] of [['TiB', 1024 ** 4], ['GiB', 1024 ** 3], ['MiB', 1024 ** 2], ['KiB', 1024]] as const) {
    if (bytes >= mult && bytes % mult === 0) return `${bytes / mult}${unit}`;
  }
  return `${bytes}B`;
}

/** A human-friendly approximate size for tables: 1.5GiB, 128MiB. */
export function humanSize(bytes: number): string {
  for (const [unit, mult] of [['TiB', 1024 ** 4], ['GiB', 1024 ** 3], ['MiB', 1024 ** 2], ['KiB', 1024]] as const) {
    if (bytes >= mult) {
      const v = bytes / mult;
      return `${Number.isInteger(v) ? v : v.toFixed(1)}${unit}`;
    }
  }
  return `${bytes}B`;
}

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/**
 * Parses "500ms", "30s", "5m", "1h", "1m30s" and "0" into milliseconds; null when the text is not
 * a duration. A number without a unit is refused (only 0 reads the same in every unit): `--timeout 5`
 * or `timeout: 5` could mean seconds or minutes, so the user is asked to say (see durationProblem).
 */
export function parseDuration(text: string | number): number | null {
  if (typeof text === 'number') return text === 0 ? 0 : null;
  const s = text.trim();
  if (/^0+(\.0+)?$/.test(s)) return 0;
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h)/gy;
  let total = 0;
  let pos = 0;
  let m: RegExpExecArray | null;
  while ((m = re.exec(s)) !== null) {
    total += Number(m[1]) * DURATION_UNITS[m[2]];
    pos = re.lastIndex;
  }
  if (pos === 0 || pos !== s.length) return null;
  return total;
}

/** Why parseDuration refused `text`, to follow the value in a message ("5" has no unit; did you
 *  mean 5s?). Used by the CLI options and the VM file alike. */
export function durationProblem(text: string | number): string {
  const s = String(text).trim();
  if (/^\d+(\.\d+)?$/.test(s)) return `has no unit; did you mean ${s}s? (a duration is written with ms, s, m or h; 0 means no limit)`;
  return 'is not a duration; expected something like 30s, 500ms or 5m (0 means no limit)';
}

/** A bare number where a size in MiB was likely meant (`memory: 256`): "256MiB" when that lies
 *  in [min, max] and the number itself, read as bytes, does not. */
export function mebibyteHint(text: string | number, min: number, max: number): string | null {
  const s = String(text).trim();
  if (!/^\d+$/.test(s)) return null;
  const n = Number(s);
  if (n >= min && n <= max) return null;
  return n * 1024 ** 2 >= min && n * 1024 ** 2 <= max ? `${s}MiB` : null;
}

/** "1h 2m 3s" style for tables. */
export function humanDuration(seconds: number): string {
  const s = Math.floor(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  const h = Math.floor(s / 3600);
  if (h < 48) return `${h}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
  return `${Math.floor(h / 24)}d${h % 24}h`;
}
