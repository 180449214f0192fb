// console, logs, wait: the VM's serial console, live and on disk.

import type { Command } from 'commander';
import { VM_STATES, type EventMessage, type VmState } from '../../protocol/messages.js';
import type { ProtocolClient } from '../../protocol/client.js';
import { b64, durationOption, unb64 } from '../cli-helpers.js';
import { compilePattern, ConsoleText } from '../console-match.js';
import { connectDaemon } from '../daemon-link.js';
import { CliError, EXIT } from '../exit-codes.js';
import { err } from '../output.js';

/** Ctrl-] (0x1d), as telnet and virsh console use. */
const DETACH = 0x1d;
/** After stdin EOF, keep copying guest output until it has been quiet this long (its reply to the input). */
const DRAIN_QUIET_MS = 300;
const DRAIN_MAX_MS = 3000;

export function register(program: Command): void {
  program
    .command('console <NAME>')
    .description('attach to the serial console (Ctrl-] detaches on a terminal)')
    .action(async (name: string) => {
      const c = await connectDaemon();
      const sub = await c.request<{ state: VmState }>('vm.subscribe', { name, console: true });
      if (sub.state !== 'running' && sub.state !== 'paused' && sub.state !== 'starting') {
        c.close();
        throw new CliError(EXIT.wrongState, `VM ${name} is ${sub.state}; start it first`);
      }
      const code = process.stdin.isTTY ? await interactive(c, name) : await piped(c, name);
      c.close();
      process.exitCode = code;
    });

  program
    .command('logs <NAME>')
    .description("print the VM's serial log")
    .option('-f, --follow', 'keep printing new output')
    .action(async (name: string, o: { follow?: boolean }) => {
      const c = await connectDaemon();
      if (o.follow) {
        c.onEvent((e: EventMessage) => {
          if (e.vm !== name) return;
          if (e.event === 'console') writeHeld(c, unb64(e.data.data as string));
        });
      }
      const r = await c.request<{ data: string }>('vm.log', { name, ...(o.follow ? { follow: true } : {}) });
      process.stdout.write(unb64(r.data));
      if (!o.follow) {
        c.close();
        return;
      }
      await new Promise<void>((resolve) => {
        c.onEvent((e) => {
          if (e.vm === name && e.event === 'deleted') resolve();
        });
        c.onClose(() => resolve());
        process.once('SIGINT', () => resolve());
      });
      c.close();
    });

  program
    .command('wait <NAME>')
    .description('wait for console output (of the current boot) or a state')
    .option('--for-console <REGEX>', 'wait until the console output of the current boot matches')
    .option('--state <STATE>', `wait until the VM is in this state (${VM_STATES.join(', ')})`)
    .option('--timeout <DUR>', 'give up after this long (exit 124)')
    .action(async (name: string, o: { forConsole?: string; state?: string; timeout?: string }) => {
      if ((o.forConsole === undefined) === (o.state === undefined)) throw new CliError(EXIT.usage, 'give exactly one of --for-console REGEX or --state STATE');
      if (o.state !== undefined && !(VM_STATES as readonly string[]).includes(o.state)) throw new CliError(EXIT.usage, `--state: ${JSON.stringify(o.state)} is not a state; expected one of ${VM_STATES.join(', ')}`);
      const timeoutMs = durationOption(o.timeout, '--timeout');
      const re = o.forConsole !== undefined ? compilePattern(o.forConsole, '--for-console') : null;
      const c = await connectDaemon();
      const code = await new Promise<number>((resolve, reject) => {
        const timer = timeoutMs !== undefined ? setTimeout(() => {
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
          if (e.event === 'deleted') return finish(EXIT.noSuchVm, `VM ${name} was deleted`);
          const eb = e.data.bootId as number;
          if (eb > bootId) {
            // A new boot: matches count from it.
            bootId = eb;
            text.reset();
          }
          if (e.event === 'state') {
            const s = e.data.state as VmState;
            if (o.state === s) return finish(EXIT.ok);
            if (s === 'running' || s === 'starting') wasActive = true;
            if (re && wasActive && (s === 'stopped' || s === 'aborted')) return finish(EXIT.failed, `VM ${name} stopped (${s}) before its console matched /${o.forConsole}/`);
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
          wasActive = sub.state === 'running' || sub.state === 'paused' || sub.state === 'starting' || sub.state === 'stopping';
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
      else if (e.event === 'state' && (e.data.state === 'stopped' || e.data.state === 'aborted')) done(EXIT.ok, `VM ${name} is ${String(e.data.state)}.`);
      else if (e.event === 'deleted') done(EXIT.ok, `VM ${name} was deleted.`);
    });
    c.onClose(() => done(EXIT.unreachable, 'The daemon closed the connection.'));
  });
}

/** Pipes: stdin to the guest, guest output to stdout; ends at stdin EOF (input delivered) or when the VM stops. */
async function piped(c: ProtocolClient, name: string): Promise<number> {
  return new Promise<number>((resolve) => {
    let finished = false;
    let lastOutput = Date.now();
    let pending: Promise<unknown> = Promise.resolve();
    const done = (code: number) => {
      if (finished) return;
      finished = true;
      process.stdin.pause();
      resolve(code);
    };
    c.onEvent((e) => {
      if (e.vm !== name) return;
      if (e.event === 'console') {
        lastOutput = Date.now();
        writeHeld(c, unb64(e.data.data as string));
      } else if (e.event === 'state' && (e.data.state === 'stopped' || e.data.state === 'aborted')) done(EXIT.ok);
      else if (e.event === 'deleted') done(EXIT.ok);
    });
    c.onClose(() => done(EXIT.unreachable));
    process.stdin.on('data', (b: Buffer) => {
      // Requests on one connection are answered in order, so input arrives in order.
      pending = c.request('vm.consoleInput', { name, data: b64(b) });
      pending.catch(() => done(EXIT.wrongState));
    });
    process.stdin.on('end', () => {
      void pending.then(async () => {
        // The input is delivered; give the guest a moment to answer it.
        const start = Date.now();
        lastOutput = Math.max(lastOutput, start);
        while (!finished && Date.now() - lastOutput < DRAIN_QUIET_MS && Date.now() - start < DRAIN_MAX_MS) {
          await new Promise((r) => setTimeout(r, 50));
        }
        done(EXIT.ok);
      }, () => done(EXIT.wrongState));
    });
  });
}

/** Writes guest output; while stdout is full, stops reading the daemon (bounded memory here). */
function writeHeld(c: ProtocolClient, bytes: Buffer): void {
  if (!process.stdout.write(bytes)) {
    c.pause();
    process.stdout.once('drain', () => c.resume());
  }
}
