// console, wait: the VM's serial console, live.

import type { Command } from 'commander';
import { isActiveState, REACHABLE_VM_STATES, type EventMessage, type VmState } from '../../protocol/messages.js';
import type { ProtocolClient } from '../../protocol/client.js';
import { b64, durationOption, isDeletion, unb64, vmEnded, writeHeld } from '../cli-helpers.js';
import { compilePattern, ConsoleText } from '../console-match.js';
import { connectDaemon } from '../daemon-link.js';
import { CliError, EXIT } from '../exit-codes.js';
import { err } from '../output.js';

/** Ctrl-] (0x1d), as telnet and virsh console use. */
const DETACH = 0x1d;
/** Piped: after stdin ends, the console ends once the guest has printed nothing for this long. */
const DEFAULT_QUIET_FOR = '3s';

/** When a piped console ends (after stdin has ended). */
interface PipedRules {
  /** --until: output after stdin ended matched it (its source, for messages). */
  readonly until: { re: RegExp; src: string } | null;
  /** --quiet-for in ms; null: not applied. */
  readonly quietMs: number | null;
  readonly quietText: string;
  /** --timeout in ms, from the start. */
  readonly timeoutMs: number | undefined;
  readonly timeoutText: string | undefined;
}

export function register(program: Command): void {
  program
    .command('console <NAME>')
    .description('attach to the serial console (Ctrl-] detaches on a terminal; piped: for scripts)')
    .option('--until <REGEX>', 'piped: end (exit 0) when output after stdin ended matches; exit 1 if it ends otherwise')
    .option('--quiet-for <DUR>', `piped: end when the guest has printed nothing this long after stdin ended (default ${DEFAULT_QUIET_FOR}; with --until only when given; 0 = never)`)
    .option('--timeout <DUR>', 'piped: end after this long in all (exit 124); 0 = no limit')
    .addHelpText('after', `
On a terminal, every key goes to the guest until Ctrl-] detaches; the VM keeps running.
With stdin not a terminal (a pipe, a file, /dev/null), stdin is typed to the guest and its output
goes to stdout. After stdin has ended, the console ends at the first of:
  - the VM stops: exit 0 (1 with --until, which then did not match); a reboot, reset or
    restart is not a stop: the console goes on with the new boot
  - --until REGEX matches output printed after stdin ended: exit 0
  - the guest printed nothing for --quiet-for: exit 0 (1 with --until)
  - --timeout, counted from the start: exit 124
Example: printf 'sleep 2; echo "do""ne"\\n' | vmctl console NAME --until done --timeout 30s
(write the marker so that the echo of the typed line does not contain it).`)
    .action(async (name: string, o: { until?: string; quietFor?: string; timeout?: string }) => {
      const scripted = o.until !== undefined || o.quietFor !== undefined || o.timeout !== undefined;
      if (process.stdin.isTTY && scripted) {
        throw new CliError(EXIT.usage, '--until, --quiet-for and --timeout are for scripts (stdin not a terminal); on a terminal the console runs until Ctrl-] detaches');
      }
      const quietText = o.quietFor ?? DEFAULT_QUIET_FOR;
      const quietMs = durationOption(quietText, '--quiet-for')!;
      const rules: PipedRules = {
        until: o.until !== undefined ? { re: compilePattern(o.until, '--until'), src: o.until } : null,
        // With --until the match decides; the default quiet time would cut off a slow command.
        quietMs: quietMs === 0 || (o.until !== undefined && o.quietFor === undefined) ? null : quietMs,
        quietText,
        timeoutMs: durationOption(o.timeout, '--timeout'),
        timeoutText: o.timeout,
      };
      const c = await connectDaemon();
      const sub = await c.request<{ state: VmState }>('vm.subscribe', { name, console: true });
      if (sub.state !== 'running' && sub.state !== 'paused' && sub.state !== 'starting') {
        c.close();
        throw new CliError(EXIT.wrongState, `VM ${name} is ${sub.state}; start it first`);
      }
      const code = process.stdin.isTTY ? await interactive(c, name) : await piped(c, name, rules);
      c.close();
      process.exitCode = code;
    });

  program
    .command('wait <NAME>')
    .description('wait for console output (of the current boot) or a state')
    .option('--for-console <REGEX>', 'wait until the console output of the current boot matches')
    .option('--state <STATE>', `wait until the VM is in this state (${REACHABLE_VM_STATES.join(', ')})`)
    .option('--timeout <DUR>', 'give up after this long (exit 124); 0 = no limit')
    .action(async (name: string, o: { forConsole?: string; state?: string; timeout?: string }) => {
      if ((o.forConsole === undefined) === (o.state === undefined)) throw new CliError(EXIT.usage, 'give exactly one of --for-console REGEX or --state STATE');
      if (o.state !== undefined && !(REACHABLE_VM_STATES as readonly string[]).includes(o.state)) throw new CliError(EXIT.usage, `--state: ${JSON.stringify(o.state)} is not a state a VM can reach; expected one of ${REACHABLE_VM_STATES.join(', ')}`);
      const timeoutMs = durationOption(o.timeout, '--timeout');
      const re = o.forConsole !== undefined ? compilePattern(o.forConsole, '--for-console') : null;
      const c = await connectDaemon();
      const code = await new Promise<number>((resolve, reject) => {
        const timer = timeoutMs ? setTimeout(() => {
          process.stderr.write(`${err.red('timeout:')} ${name} did not ${re ? `print /${o.forConsole}/` : `reach state ${o.state}`} within ${o.timeout}\n`);
          resolve(EXIT.timeout);
        }, timeoutMs) : null;
        const finish = (code: number, msg?: string) => {
          if (timer) clearTimeout(timer);
          if (msg) process.stderr.write(`${msg}\n`);
          resolve(code);
        };
        const text = new ConsoleText();
        let bootId = -1;
        let wasActive = false;
        c.onEvent((e: EventMessage) => {
          if (e.vm !== name) return;
          if (isDeletion(e)) return finish(EXIT.noSuchVm, `VM ${name} was deleted`);
          const eb = e.data.bootId as number;
          if (eb > bootId) {
            // A new boot: matches count from it.
            bootId = eb;
            text.reset();
          }
          if (e.event === 'state') {
            const s = e.data.state as VmState;
            // The `stopped` between the two boots of a restart or reset is not where the VM rests.
            if (o.state === s && e.data.restarting !== true) return finish(EXIT.ok);
            if (s === 'running' || s === 'starting') wasActive = true;
            if (re && wasActive && vmEnded(e)) return finish(EXIT.failed, `VM ${name} stopped (${s}) before its console matched /${o.forConsole}/`);
          } else if (e.event === 'console' && re) {
            text.push(unb64(e.data.data as string));
            if (text.test(re)) finish(EXIT.ok);
          }
        });
        c.onClose(() => finish(EXIT.unreachable, 'the daemon closed the connection'));
        c.request<{ state: VmState; bootId: number; history: string }>('vm.subscribe', { name, console: re !== null, history: re !== null }).then((sub) => {
          if (sub.bootId >= bootId) {
            bootId = sub.bootId;
            text.reset();
            if (re) text.push(unb64(sub.history));
          }
          wasActive = isActiveState(sub.state);
          if (o.state !== undefined && sub.state === o.state) return finish(EXIT.ok);
          if (re && text.test(re)) return finish(EXIT.ok);
        }, (e) => {
          if (timer) clearTimeout(timer);
          reject(e);
        });
      });
      c.close();
      process.exitCode = code;
    });
}

/** Raw terminal: every key goes to the guest, Ctrl-] detaches, the VM keeps running. */
async function interactive(c: ProtocolClient, name: string): Promise<number> {
  process.stderr.write(err.dim(`Connected to ${name}'s console. Press Ctrl-] to detach.\r\n`));
  const stdin = process.stdin;
  stdin.setRawMode(true);
  stdin.resume();
  return new Promise<number>((resolve) => {
    let finished = false;
    const done = (code: number, msg: string) => {
      if (finished) return;
      finished = true;
      stdin.setRawMode(false);
      stdin.pause();
      process.stderr.write(err.dim(`\r\n${msg}\r\n`));
      resolve(code);
    };
    stdin.on('data', (b: Buffer) => {
      const i = b.indexOf(DETACH);
      const send = i >= 0 ? b.subarray(0, i) : b;
      if (send.length > 0) c.request('vm.consoleInput', { name, data: b64(send) }).catch(() => {});
      if (i >= 0) done(EXIT.ok, `Detached from ${name}; it keeps running.`);
    });
    c.onEvent((e) => {
      if (e.vm !== name) return;
      if (e.event === 'console') writeHeld(c, unb64(e.data.data as string));
      else if (isDeletion(e)) done(EXIT.noSuchVm, `VM ${name} was deleted.`);
      else if (vmEnded(e)) done(EXIT.ok, `VM ${name} is ${String(e.data.state)}.`);
    });
    c.onClose(() => done(EXIT.unreachable, 'The daemon closed the connection.'));
  });
}

/** Pipes: stdin to the guest, guest output to stdout; after stdin has ended, ends by `rules`, or
 *  when the VM stops (at any time). */
async function piped(c: ProtocolClient, name: string, rules: PipedRules): Promise<number> {
  return new Promise<number>((resolve) => {
    let finished = false;
    let stdinEnded = false;
    let lastOutput = Date.now();
    let pending: Promise<unknown> = Promise.resolve();
    let quietTimer: NodeJS.Timeout | undefined;
    let timeoutTimer: NodeJS.Timeout | undefined;
    const text = new ConsoleText();
    const done = (code: number, msg?: string) => {
      if (finished) return;
      finished = true;
      clearTimeout(quietTimer);
      clearTimeout(timeoutTimer);
      process.stdin.pause();
      if (msg) process.stderr.write(`${code === EXIT.ok ? err.dim('vmctl console:') : err.red('vmctl console:')} ${msg}\n`);
      resolve(code);
    };
    const unmatched = rules.until ? ` before output after stdin ended matched --until /${rules.until.src}/` : '';
    if (rules.timeoutMs) timeoutTimer = setTimeout(() => done(EXIT.timeout, `timed out after ${rules.timeoutText}${unmatched}`), rules.timeoutMs);
    // Quiet: nothing printed for quietMs since the input was delivered or the last output.
    const checkQuiet = () => {
      const left = lastOutput + rules.quietMs! - Date.now();
      if (left > 0) quietTimer = setTimeout(checkQuiet, left);
      else if (rules.until) done(EXIT.failed, `the guest was quiet for ${rules.quietText}${unmatched}`);
      else done(EXIT.ok);
    };
    c.onEvent((e) => {
      if (e.vm !== name) return;
      if (e.event === 'console') {
        lastOutput = Date.now();
        const bytes = unb64(e.data.data as string);
        writeHeld(c, bytes);
        if (rules.until && stdinEnded) {
          text.push(bytes);
          if (text.test(rules.until.re)) done(EXIT.ok);
        }
      } else if (isDeletion(e)) {
        // Its stop on the way to being deleted comes first: say what really happened.
        done(EXIT.noSuchVm, `VM ${name} was deleted${unmatched}`);
      } else if (vmEnded(e)) {
        if (rules.until) done(EXIT.failed, `VM ${name} is ${String(e.data.state)}${unmatched}`);
        else done(EXIT.ok);
      }
    });
    c.onClose(() => done(EXIT.unreachable, 'the daemon closed the connection'));
    process.stdin.on('data', (b: Buffer) => {
      // Requests on one connection are answered in order, so input arrives in order.
      pending = c.request('vm.consoleInput', { name, data: b64(b) });
      pending.catch((e: Error) => done(EXIT.wrongState, e.message));
    });
    process.stdin.on('end', () => {
      stdinEnded = true;
      void pending.then(() => {
        // The input is delivered: from now on, quiet counts.
        lastOutput = Math.max(lastOutput, Date.now());
        if (rules.quietMs !== null && !finished) checkQuiet();
      }, () => { /* reported by the data handler */ });
    });
  });
}
