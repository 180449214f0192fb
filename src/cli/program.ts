// The vmctl command tree: one module per command group under commands/, registered here. Built
// by main.ts for a run, and by tests that read every command's help.

import { Command } from 'commander';
import { register as registerConsole } from './commands/console.js';
import { register as registerStats } from './commands/stats.js';
import { register as registerDaemon } from './commands/daemon.js';
import { register as registerDisk } from './commands/disk.js';
import { register as registerEdit } from './commands/edit.js';
import { register as registerExec } from './commands/exec.js';
import { register as registerInspect } from './commands/inspect.js';
import { register as registerLifecycle } from './commands/lifecycle.js';
import { register as registerLogs } from './commands/logs.js';
import { register as registerPort } from './commands/port.js';
import { register as registerRun } from './commands/run.js';
import { register as registerSchema } from './commands/schema.js';
import { register as registerSnapshot } from './commands/snapshot.js';
import { register as registerSsh } from './commands/ssh.js';
import { register as registerSet } from './commands/set.js';
import { register as registerValidate } from './commands/validate.js';
import { err } from './output.js';
import { VERSION } from './version.js';

const GROUPS: ((program: Command) => void)[] = [
  registerLifecycle,
  registerSnapshot,
  registerSet,
  registerInspect,
  registerStats,
  registerConsole,
  registerLogs,
  registerExec,
  registerPort,
  registerSsh,
  registerRun,
  registerValidate,
  registerEdit,
  registerSchema,
  registerDisk,
  registerDaemon,
];

/** "vmctl disk create" for a command. */
function commandPath(c: Command): string {
  const names: string[] = [];
  for (let x: Command | null = c; x; x = x.parent) names.unshift(x.name());
  return names.join(' ');
}

/** What a usage error of `c` ends with: its own help. */
export const helpHint = (c: Command): string => `(run ${commandPath(c)} --help for usage)`;

/** The program; `onAction` learns which command's action is about to run. */
export function buildProgram(onAction: (c: Command) => void = () => {}): Command {
  const program = new Command('vmctl')
    .description('Manage emulated RISC-V virtual machines')
    .version(VERSION)
    .addHelpText('after', `
Exit codes: 0 ok, 1 failed, 2 usage or config error, 3 daemon unreachable, 4 no such VM,
            5 wrong state for this command or not enough host memory, 124 timeout; run: the guest's own code;
            exec: the guest command's status (255: no shell answered on the console);
            ssh: the remote command's status (255: ssh failed or no ssh server answered).
State lives in $VMCTL_HOME (default ~/.vmctl).`);
  program.exitOverride();
  program.configureOutput({ outputError: (s, write) => write(err.red(s)) });
  for (const g of GROUPS) g(program);
  // Subcommands inherit exitOverride only when set on each; each usage error names the help of
  // the command it is about (`vmctl start --help`), not the top level's.
  const walk = (c: Command): void => {
    c.exitOverride();
    c.showHelpAfterError(helpHint(c));
    c.commands.forEach(walk);
  };
  walk(program);
  program.hook('preAction', (_root, action) => onAction(action));
  return program;
}
