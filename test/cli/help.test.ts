// Every command's help, as `vmctl CMD --help` prints it (the same command tree, built in-process):
// no option text ending in a dangling colon, no empty default, usage errors naming the command's
// own help. The e2e tests (test/e2e/answers.test.ts) check a few through the real binary.

import type { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { buildProgram, helpHint } from '../../src/cli/program.js';

function all(c: Command): Command[] {
  return [c, ...c.commands.flatMap(all)];
}
const commands = all(buildProgram()).filter((c) => c.name() !== 'help');

describe('help texts', () => {
  it('cover every command', () => {
    const names = commands.map((c) => c.name());
    for (const n of ['create', 'start', 'stop', 'restart', 'reset', 'pause', 'resume', 'delete', 'list', 'info', 'dtb', 'console', 'exec', 'logs', 'wait', 'run', 'validate', 'disk', 'daemon']) {
      expect(names).toContain(n);
    }
  });

  it.each(commands.map((c) => [c.name(), c] as const))('%s: no dangling colon, no empty default', (_name, c) => {
    const help = c.helpInformation();
    expect(help).not.toContain('(default: "")');
    // The options block (wrapped lines joined): no description ends in a colon.
    const at = help.indexOf('Options:');
    if (at < 0) return;
    const options = help.slice(at).split('\n\n')[0].replace(/\n {10,}/g, ' ');
    for (const line of options.split('\n').slice(1)) expect(line.trimEnd()).not.toMatch(/:$/);
  });

  it('usage errors name the command\'s own help', () => {
    const start = commands.find((c) => c.name() === 'start')!;
    const diskCreate = commands.find((c) => c.name() === 'create' && c.parent?.name() === 'disk')!;
    expect(helpHint(start)).toBe('(run vmctl start --help for usage)');
    expect(helpHint(diskCreate)).toBe('(run vmctl disk create --help for usage)');
  });
});
