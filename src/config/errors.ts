// Errors in VM definitions and settings files. Each carries where it came from, so the CLI can
// print `FILE:LINE:COL: message` and exit with code 2.

export interface SourcePos {
  readonly file: string;
  /** 1-based. */
  readonly line: number;
  /** 1-based. */
  readonly col: number;
}

export class ConfigError extends Error {
  constructor(readonly pos: SourcePos, readonly detail: string) {
    super(`${pos.file}:${pos.line}:${pos.col}: ${detail}`);
    this.name = 'ConfigError';
  }
}

/** How many problems a message lists; a file with thousands (a generated file with every key
 *  misspelt) would otherwise print thousands of lines. `errors` keeps them all. */
export const MAX_LISTED_ERRORS = 100;

/** A file that holds several problems reports them all; `message` lists them one per line. */
export class ConfigErrors extends Error {
  readonly errors: readonly ConfigError[];

  constructor(errors: readonly ConfigError[]) {
    const sorted = [...errors].sort((a, b) => a.pos.line - b.pos.line || a.pos.col - b.pos.col);
    const listed = sorted.slice(0, MAX_LISTED_ERRORS).map((e) => e.message);
    if (sorted.length > MAX_LISTED_ERRORS) listed.push(`… and ${sorted.length - MAX_LISTED_ERRORS} more problems (${sorted.length} in all)`);
    super(listed.join('\n'));
    this.errors = sorted;
    this.name = 'ConfigErrors';
  }
}
