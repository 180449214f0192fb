// vmctl: the command line. One module per command group under commands/, registered here.

import { Command, CommanderError } from 'commander';
import { ConfigErrors } from '../config/errors.js';
import { HomeError } from '../daemon/paths.js';
import { ProtocolFailure } from '../protocol/messages.js';
import { register as registerConsole } from './commands/console.js';
import { register as registerDaemon } from './commands/daemon.js';
import { register as registerDisk } from './commands/disk.js';
import { register as registerEdit } from './commands/edit.js';
import { register as registerExec } from './commands/exec.js';
import { register as registerInspect } from './commands/inspect.js';
import { register as registerLifecycle } from './commands/lifecycle.js';
import { register as registerLogs } from './commands/logs.js';
import { register as registerRun } from './commands/run.js';
import { register as registerSchema } from './commands/schema.js';
import { register as registerSet } from './commands/set.js';
import { register as registerValidate } from './commands/validate.js';
import { CliError, EXIT, exitCodeForClass } from './exit-codes.js';
import { err } from './output.js';
import { VERSION } from './version.js';

const GROUPS: ((program: Command) => void)[] = [
  registerLifecycle,
  registerSet,
  registerInspect,
  registerConsole,
  registerLogs,
  registerExec,
  registerRun,
  registerValidate,
  registerEdit,
  registerSchema,
  registerDisk,
  registerDaemon,
];

function buildProgram(): Command {
  const program = new Command('vmctl')
    .description('Manage emulated RISC-V virtual machines')
    .version(VERSION)
    .showHelpAfterError('(run vmctl --help for usage)')
    .addHelpText('after', `
Exit codes: 0 ok, 1 failed, 2 usage or config error, 3 daemon unreachable, 4 no such VM,
            5 wrong state for this command or not enough host memory, 124 timeout; run: the guest's own code;
            exec: the guest command's status (255: no shell answered on the console).
State lives in $VMCTL_HOME (default ~/.vmctl).`);
  program.exitOverride();
  program.configureOutput({ outputError: (s, write) => write(err.red(s)) });
  for (const g of GROUPS) g(program);
  // Subcommands inherit exitOverride only when set on each.
  const walk = (c: Command): void => {
    c.exitOverride();
    c.commands.forEach(walk);
  };
  walk(program);
  return program;
}

function exit(code: number): void {
  // Let stdout/stderr drain before leaving (pipes to a CI log).
  process.stdout.write('', () => process.stderr.write('', () => process.exit(code)));
}

async function main(): Promise<void> {
  // `vmctl logs x | head`: a reader that goes away is not an error.
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(EXIT.ok);
  });
  const program = buildProgram();
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
      process.stderr.write(e.plain ? `${e.message}\n` : `${err.red('vmctl:')} ${e.message}\n`);
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
