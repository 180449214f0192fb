// Matching regular expressions against a VM's console stream (--wait-for, --expect, --until, ...).

import { CliError, EXIT } from './exit-codes.js';

/** The matching window: output older than this is forgotten (patterns match within one window). */
const WINDOW_CHARS = 256 * 1024;

export function compilePattern(src: string, option: string): RegExp {
  try {
    return new RegExp(src, 'm');
  } catch (e) {
    // V8 says "Invalid regular expression: /SRC/m: WHY"; the pattern is named once, by us.
    const why = (e as Error).message.replace(/^Invalid regular expression: \/.*\/[a-z]*: /s, '');
    throw new CliError(EXIT.usage, `${option}: invalid regular expression ${JSON.stringify(src)}: ${why.charAt(0).toLowerCase()}${why.slice(1)}`);
  }
}

/** Accumulates console text (UTF-8 decoded across chunk borders) and tests patterns against it. */
export class ConsoleText {
  private readonly decoder = new TextDecoder('utf-8');
  private text = '';

  push(bytes: Uint8Array): void {
    const chunk = this.decoder.decode(bytes, { stream: true });
    this.text += chunk;
    // Keep the whole new chunk (plus context): a chunk larger than the window must still be tested.
    if (this.text.length > WINDOW_CHARS) this.text = this.text.slice(Math.max(0, this.text.length - chunk.length - WINDOW_CHARS / 2));
  }

  test(re: RegExp): boolean {
    return re.test(this.text);
  }

  reset(): void {
    this.text = '';
  }
}
