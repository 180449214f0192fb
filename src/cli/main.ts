// vmctl: the command line (the command tree is in program.ts): runs it, maps errors to exit codes.

import { type Command, CommanderError } from 'commander';
import { ConfigErrors } from '../config/errors.js';
import { HomeError } from '../daemon/paths.js';
import { ProtocolFailure } from '../protocol/messages.js';
import { CliError, EXIT, exitCodeForClass } from './exit-codes.js';
import { err } from './output.js';
import { buildProgram, helpHint } from './program.js';

/** The command whose action runs (set before it runs): usage errors point to its own help. */
let running: Command | null = null;

function exit(code: number): void {
  // Let stdout/stderr drain before leaving (pipes to a CI log).
  process.stdout.write('', () => process.stderr.write('', () => process.exit(code)));
}

async function main(): Promise<void> {
  // `vmctl logs x | head`: a reader that goes away is not an error.
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(EXIT.ok);
  });
  const program = buildProgram((c) => { running = c; });
  try {
    await program.parseAsync(process.argv);
    const code = process.exitCode;
    exit(typeof code === 'number' ? code : 0);
  } catch (e) {
    if (e instanceof CommanderError) {
      // Help and --version end with 0; every other commander complaint is a usage error.
      exit(e.exitCode === 0 ? 0 : EXIT.usage);
      return;
    }
    if (e instanceof CliError) {
      // A usage error (an option, an argument) points to the command's help; a config error does
      // not (FILE:LINE:COL lines, plain or listed after the message: the file is what to fix).
      const hint = e.exitCode === EXIT.usage && !e.plain && !e.message.includes('\n') && running ? `\n${helpHint(running)}` : '';
      process.stderr.write(e.plain ? `${e.message}\n` : `${err.red('vmctl:')} ${e.message}${hint}\n`);
      exit(e.exitCode);
      return;
    }
    if (e instanceof ConfigErrors) {
      // e.g. a bad VMCTL_HOME/config.yaml when the daemon starts
      process.stderr.write(`${e.message}\n`);
      exit(EXIT.usage);
      return;
    }
    if (e instanceof HomeError) {
      process.stderr.write(`${err.red('vmctl:')} ${e.message}\n`);
      exit(EXIT.usage);
      return;
    }
    if (e instanceof ProtocolFailure) {
      process.stderr.write(e.errorClass === 'ConfigError' ? `${e.message}\n` : `${err.red('vmctl:')} ${e.message}\n`);
      exit(exitCodeForClass(e.errorClass));
      return;
    }
    process.stderr.write(`${err.red('vmctl: internal error:')} ${(e as Error)?.stack ?? String(e)}\n`);
    exit(EXIT.failed);
  }
}

void main();
