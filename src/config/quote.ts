// Values in messages. An error says what it found, but a value can be anything a user or a peer
// sent (a 10 MB name, a 900 KB protocol id): messages quote at most QUOTE_MAX_CHARS characters of
// it and say how long it really was, so that no message is larger than a screen.

/** Characters of a value a message quotes. */
export const QUOTE_MAX_CHARS = 80;

/** `"value"` (JSON-quoted), or `"the first part"… (123456 bytes)` when it is longer than `max`. */
export function quote(value: string, max = QUOTE_MAX_CHARS): string {
  if (value.length <= max) return JSON.stringify(value);
  let end = max;
  // Do not split a surrogate pair: the cut would quote half a character.
  const c = value.charCodeAt(end - 1);
  if (c >= 0xd800 && c <= 0xdbff) end--;
  return `${JSON.stringify(value.slice(0, end))}… (${Buffer.byteLength(value)} bytes)`;
}

/** Longest path Linux opens (PATH_MAX); a path is quoted whole up to this length. */
const PATH_MAX = 4096;

/** A file path in a message: whole, unless it is longer than any path the host can open. */
export function quotePath(path: string): string {
  return quote(path, PATH_MAX);
}
