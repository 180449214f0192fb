// "Did you mean …?" for misspelt keys: the closest known name by edit distance.

/**
 * Optimal string alignment distance (Levenshtein plus the transposition of two neighbours, the
 * commonest typing slip: "memroy"), compared case-insensitively. Gives up (returns limit + 1) as
 * soon as the distance must exceed `limit`, so a long unknown key costs little.
 */
export function editDistance(a: string, b: string, limit = Infinity): number {
  const s = a.toLowerCase();
  const t = b.toLowerCase();
  if (Math.abs(s.length - t.length) > limit) return limit + 1;
  let prev2: number[] = [];
  let prev = Array.from({ length: t.length + 1 }, (_, j) => j);
  for (let i = 1; i <= s.length; i++) {
    const row = [i];
    let best = i;
    for (let j = 1; j <= t.length; j++) {
      const cost = s[i - 1] === t[j - 1] ? 0 : 1;
      let d = Math.min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + cost);
      if (i > 1 && j > 1 && s[i - 1] === t[j - 2] && s[i - 2] === t[j - 1]) d = Math.min(d, prev2[j - 2] + 1);
      row.push(d);
      best = Math.min(best, d);
    }
    if (best > limit) return limit + 1;
    prev2 = prev;
    prev = row;
  }
  return prev[t.length];
}

/** The known name closest to `typed`, when it is close enough to be a slip (one edit for short
 *  names, up to three for long ones); undefined otherwise. Ties go to the first declared. */
export function closest(typed: string, known: readonly string[]): string | undefined {
  const limit = typed.length <= 4 ? 1 : typed.length <= 8 ? 2 : 3;
  let best: string | undefined;
  let bestD = limit + 1;
  for (const k of known) {
    const d = editDistance(typed, k, limit);
    if (d < bestD) {
      best = k;
      bestD = d;
    }
  }
  return best;
}
