// Terminal output: colour only on a TTY and never with NO_COLOR (https://no-color.org), spinners
// only on a TTY, JSON untouched by either.

import { Chalk, type ChalkInstance } from 'chalk';
import Table from 'cli-table3';
import ora, { type Ora } from 'ora';
import { createInterface } from 'node:readline/promises';

function colorLevel(stream: NodeJS.WriteStream): 0 | 1 | 2 | 3 {
  const noColor = process.env.NO_COLOR;
  if (noColor !== undefined && noColor !== '') return 0;
  if (!stream.isTTY) return 0;
  const depth = typeof stream.getColorDepth === 'function' ? stream.getColorDepth() : 4;
  return depth >= 24 ? 3 : depth >= 8 ? 2 : 1;
}

/** Colours for stdout and stderr, each decided by its own stream. */
export const out: ChalkInstance = new Chalk({ level: colorLevel(process.stdout) });
export const err: ChalkInstance = new Chalk({ level: colorLevel(process.stderr) });

export interface Spinner {
  text(t: string): void;
  stop(): void;
}

/** An ora spinner on stderr when it is a TTY; otherwise nothing (the final line is printed by the caller). */
export function spinner(text: string, enabled = true): Spinner {
  // A terminal that reports no width (a pty nobody sized, e.g. under `script`): ora divides by the
  // width to count the lines it must clear, and with 0 it writes "up, clear line" without end.
  if (!enabled || !process.stderr.isTTY || !(process.stderr.columns > 0)) {
    return { text() {}, stop() {} };
  }
  const s: Ora = ora({ text, stream: process.stderr, color: 'cyan', isEnabled: true, discardStdin: false }).start();
  return {
    text: (t) => { s.text = t; },
    stop: () => { s.stop(); },
  };
}

/** Asks a yes/no question on the terminal (stderr); true only for an answer starting with y. */
export async function confirm(question: string): Promise<boolean> {
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    const answer = await rl.question(question);
    return /^\s*y/i.test(answer);
  } finally {
    rl.close();
  }
}

/** A borderless table (columns two spaces apart, bold headings), as `list` prints it. */
export function columns(head: readonly string[], rows: readonly string[][]): string {
  const table = new Table({
    head: head.map((h) => out.bold(h)),
    style: { head: [], border: [], 'padding-left': 0, 'padding-right': 0 },
    chars: { top: '', 'top-mid': '', 'top-left': '', 'top-right': '', bottom: '', 'bottom-mid': '', 'bottom-left': '', 'bottom-right': '', left: '', 'left-mid': '', mid: '', 'mid-mid': '', right: '', 'right-mid': '', middle: '  ' },
  });
  for (const r of rows) table.push(r);
  return `${table.toString().split('\n').map((l) => l.trimEnd()).join('\n')}\n`;
}

export function printJson(v: unknown): void {
  process.stdout.write(`${JSON.stringify(v, null, 2)}\n`);
}

export function stateColor(state: string): string {
  switch (state) {
    case 'running': return out.green(state);
    case 'paused': return out.yellow(state);
    case 'aborted': return out.red(state);
    case 'starting':
    case 'stopping': return out.cyan(state);
    case 'saved': return out.blue(state);
    default: return out.dim(state);
  }
}
