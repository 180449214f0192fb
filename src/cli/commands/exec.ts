// exec: run one command in the guest's shell over the serial console (console-exec.ts), print its
// output and end with its exit status, as `ssh HOST COMMAND` does.

import type { Command } from 'commander';
import { isActiveState, type EventMessage, type VmState } from '../../protocol/messages.js';
import { b64, durationOption, isDeletion, unb64, writeHeld } from '../cli-helpers.js';
import { ExecOutput, MAX_TYPED_LINE, newNonce, typedLine } from '../console-exec.js';
import { connectDaemon } from '../daemon-link.js';
import { CliError, EXIT } from '../exit-codes.js';
import { err } from '../output.js';

/** exec's own failure when the console gives no answer or no status (as ssh's 255). */
export const EXEC_NO_SHELL = 255;
const DEFAULT_SHELL_TIMEOUT = '10s';

export function register(program: Command): void {
  program
    .command('exec <NAME> <COMMAND...>')
    .description("run a command in the shell on the VM's serial console; exit with its status")
    .option('--shell-timeout <DUR>', `how long a shell on the console may take to answer (default ${DEFAULT_SHELL_TIMEOUT}; 0 = no limit)`)
    .option('--timeout <DUR>', 'give up after this long in all (exit 124; the command may still be running in the guest); 0 = no limit')
    .addHelpText('after', `
Put -- before the command when it has options: vmctl exec NAME -- ls -l /
The words are joined with spaces and run by the guest's shell, as ssh does: pipes, redirections
and variables are the guest's ('dmesg | tail -3' as one word, or quoted). The command runs in a
subshell with stdin from /dev/null; stdout and stderr both arrive on stdout (one console).
It needs a shell waiting at its prompt on the console (the Linux test guest with vmctl=shell on
its kernel command line); run one exec at a time per VM.
Exit status: the command's own (0-255); 255 when no shell answered within --shell-timeout or the VM
stopped before the command ended; 124 at --timeout; 2, 3, 4, 5 as for any command (usage, no
daemon, no such VM, VM not running).`)
    .action(async (name: string, words: string[], o: { shellTimeout?: string; timeout?: string }) => {
      const command = words.join(' ');
      if (command.trim() === '') throw new CliError(EXIT.usage, 'exec: the command is empty');
      const shellTimeoutText = o.shellTimeout ?? DEFAULT_SHELL_TIMEOUT;
      const shellTimeoutMs = durationOption(shellTimeoutText, '--shell-timeout')!;
      const timeoutMs = durationOption(o.timeout, '--timeout');
      const nonce = newNonce();
      const line = typedLine(command, nonce);
      if (line.length > MAX_TYPED_LINE) {
        throw new CliError(EXIT.usage, `exec: the command is too long to type on a console: ${line.length} bytes as typed, at most ${MAX_TYPED_LINE} (a shell's line editor cuts longer lines); put it in a script in the guest`);
      }

      const c = await connectDaemon();
      const sub = await c.request<{ state: VmState }>('vm.subscribe', { name, console: true });
      if (sub.state !== 'running') {
        c.close();
        throw new CliError(EXIT.wrongState, `VM ${name} is ${sub.state}; exec needs a running VM with a shell on its console`);
      }
      const parser = new ExecOutput(nonce);
      const code = await new Promise<number>((resolve) => {
        let finished = false;
        const done = (code: number, msg?: string) => {
          if (finished) return;
          finished = true;
          clearTimeout(shellTimer);
          clearTimeout(timer);
          if (msg) process.stderr.write(`${err.red('vmctl exec:')} ${msg}\n`);
          resolve(code);
        };
        const shellTimer = shellTimeoutMs ? setTimeout(() => {
          if (parser.started) return;
          const shown = lastLine(parser.consoleBefore());
          done(EXEC_NO_SHELL, `no shell answered on VM ${name}'s console within ${shellTimeoutText}; exec needs a shell at its prompt there ` +
            `(is the guest still booting, or busy with another command? the typed line runs once a shell reads it)` +
            (shown ? `; the console's last line: ${JSON.stringify(shown)}` : '; the console printed nothing'));
        }, shellTimeoutMs) : undefined;
        const timer = timeoutMs ? setTimeout(() => done(EXIT.timeout, `timed out after ${o.timeout}${parser.started ? '; the command may still be running in the guest' : ''}`), timeoutMs) : undefined;
        c.onEvent((e: EventMessage) => {
          if (e.vm !== name || finished) return;
          if (e.event === 'console') {
            const out = parser.push(unb64(e.data.data as string));
            if (out.length > 0) writeHeld(c, out);
            if (parser.done) {
              if (parser.status === null) done(EXEC_NO_SHELL, 'the command ended, but its exit status could not be read from the console');
              else done(parser.status);
            }
          } else if ((e.event === 'state' && (!isActiveState(e.data.state as string) || e.data.state === 'stopping')) || e.event === 'deleted') {
            const what = isDeletion(e) ? 'was deleted' : `is ${String(e.data.state)}`;
            done(EXEC_NO_SHELL, `VM ${name} ${what}; ${parser.started ? 'the command did not finish' : 'no shell answered'}`);
          }
        });
        c.onClose(() => done(EXIT.unreachable, 'the daemon closed the connection'));
        c.request('vm.consoleInput', { name, data: b64(line) }).catch((e: Error) => done(EXIT.wrongState, e.message));
      });
      c.close();
      process.exitCode = code;
    });
}

/** The last non-empty line of console text, without control characters, for a message. */
function lastLine(text: string): string {
  const lines = text.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '').split(/\r?\n|\r/).map((l) => l.replace(/[\x00-\x1f\x7f]/g, '').trim()).filter((l) => l !== '');
  const l = lines[lines.length - 1] ?? '';
  return l.length > 120 ? `${l.slice(0, 117)}...` : l;
}
