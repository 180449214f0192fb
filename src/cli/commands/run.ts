// run: an ephemeral VM for CI. Console to stdout; ends at guest power-off/reset, --until,
// --fail-on or the timeout; exit code is the guest's own.

import type { Command } from 'commander';
import type { EventMessage, PowerInfo, VmInfo } from '../../protocol/messages.js';
import { ProtocolFailure } from '../../protocol/messages.js';
import { b64, durationOption, loadDefinitionOrExit, unb64, writeHeld } from '../cli-helpers.js';
import { compilePattern, ConsoleText } from '../console-match.js';
import { connectDaemon } from '../daemon-link.js';
import { EXIT } from '../exit-codes.js';
import { err } from '../output.js';

type EndReason = 'poweroff' | 'reset' | 'until' | 'fail-on' | 'timeout' | 'aborted' | 'interrupted';

interface Summary {
  reason: EndReason;
  exitCode: number;
  guestCode: number | null;
  guestFailed: boolean | null;
  powerSource: string | null;
  expectMatched: boolean | null;
  durationSeconds: number;
  vm: string;
}

export function register(program: Command): void {
  program
    .command('run')
    .description('boot a throw-away VM, stream its console, exit with the guest\'s code (for CI)')
    .requiredOption('-f, --file <FILE>', 'VM definition')
    .option('--name <NAME>', 'use this name instead of the one in the file (a run suffix is added)')
    .option('--timeout <DUR>', 'end the run after this long (exit 124); 0 = no limit', '10m')
    .option('--expect <REGEX>', 'exit 1 unless the console matched this')
    .option('--fail-on <REGEX>', 'end with exit 1 as soon as the console matches this')
    .option('--until <REGEX>', 'end with success as soon as the console matches this')
    .option('--json', 'print a summary object on stderr at the end')
    .action(async (o: { file: string; name?: string; timeout: string; expect?: string; failOn?: string; until?: string; json?: boolean }) => {
      const timeoutMs = durationOption(o.timeout, '--timeout')!; // 0: no limit
      const expect = o.expect !== undefined ? compilePattern(o.expect, '--expect') : null;
      const failOn = o.failOn !== undefined ? compilePattern(o.failOn, '--fail-on') : null;
      const until = o.until !== undefined ? compilePattern(o.until, '--until') : null;
      const { def, abs, text } = loadDefinitionOrExit(o.file, o.name);
      const suffix = `-run-${process.pid.toString(36)}${Math.random().toString(36).slice(2, 6)}`;
      const name = `${def.name.slice(0, 63 - suffix.length)}${suffix}`;
      const started = Date.now();

      const c = await connectDaemon();
      // Ephemeral: the daemon removes it if this client goes away.
      const created = await c.request<VmInfo & { warnings: string[] }>('vm.create', { file: abs, text, name, ephemeral: true });
      for (const w of created.warnings ?? []) process.stderr.write(`${err.yellow('warning:')} ${w}\n`);
      const sub = await c.request<{ bootId: number }>('vm.subscribe', { name, console: true });
      const consoleText = new ConsoleText();
      let expectMatched = false;
      let power: PowerInfo | null = null;

      const end = await new Promise<EndReason>((resolve, reject) => {
        let over = false;
        const finish = (r: EndReason) => {
          if (over) return;
          over = true;
          clearTimeout(timer);
          resolve(r);
        };
        const timer = timeoutMs ? setTimeout(() => finish('timeout'), timeoutMs) : undefined;
        process.once('SIGINT', () => finish('interrupted'));
        process.once('SIGTERM', () => finish('interrupted'));
        c.onEvent((e: EventMessage) => {
          if (e.vm !== name || over) return;
          if ((e.data.bootId as number) <= sub.bootId) return;
          if (e.event === 'console') {
            const bytes = unb64(e.data.data as string);
            writeHeld(c, bytes);
            consoleText.push(bytes);
            if (expect && !expectMatched && consoleText.test(expect)) expectMatched = true;
            if (failOn && consoleText.test(failOn)) return finish('fail-on');
            if (until && consoleText.test(until)) return finish('until');
          } else if (e.event === 'power') {
            power = e.data as unknown as PowerInfo;
          } else if (e.event === 'state') {
            if (e.data.state === 'aborted') finish('aborted');
            else if (e.data.state === 'stopped') finish(power?.kind === 'reset' ? 'reset' : power ? 'poweroff' : 'aborted');
          }
        });
        c.onClose(() => finish('aborted'));
        c.request('vm.start', { name }).then(() => {
          // stdin (when piped) goes to the guest once it runs, so CI can script simple interactions.
          if (!process.stdin.isTTY && !over) {
            process.stdin.on('data', (b: Buffer) => { c.request('vm.consoleInput', { name, data: b64(b) }).catch(() => {}); });
            process.stdin.on('error', () => {});
          }
        }, (e) => {
          over = true;
          clearTimeout(timer);
          reject(e);
        });
      }).catch(async (e) => {
        await c.request('vm.delete', { name, force: true, disks: 'delete' }).catch(() => {});
        throw e;
      });
      process.stdin.pause();

      // Tear down: power off if still running, then remove the VM.
      let info: VmInfo | null = null;
      try {
        await c.request('vm.stop', { name, force: true });
        info = await c.request<VmInfo>('vm.info', { name });
        await c.request('vm.delete', { name, force: true, disks: 'delete' }); // a run VM goes with the images it created
      } catch (e) {
        if (!(e instanceof ProtocolFailure)) throw e;
      }
      c.close();

      const p = power as PowerInfo | null;
      let code: number;
      switch (end) {
        case 'poweroff':
          // A guest failure reported with code 0 is still a failure.
          code = ((p?.code ?? 0) & 0xff) || (p?.failed ? EXIT.failed : 0);
          if (code === 0 && expect && !expectMatched) code = EXIT.failed;
          break;
        case 'reset':
        case 'until':
          code = expect && !expectMatched ? EXIT.failed : EXIT.ok;
          break;
        case 'fail-on':
          code = EXIT.failed;
          break;
        case 'timeout':
          code = EXIT.timeout;
          break;
        case 'interrupted':
          code = 130;
          break;
        default:
          code = EXIT.failed;
      }
      const messages: Record<EndReason, string> = {
        poweroff: `guest powered off with code ${p?.code ?? '?'}${p?.failed ? ' (failure)' : ''}`,
        reset: 'guest reset (a reboot ends the run)',
        until: `console matched --until /${o.until}/`,
        'fail-on': `console matched --fail-on /${o.failOn}/`,
        timeout: `timed out after ${o.timeout}`,
        aborted: `the VM ended unexpectedly${info?.lastError ? `: ${info.lastError.split('\n')[0]}` : ''}`,
        interrupted: 'interrupted',
      };
      if (expect && !expectMatched && (end === 'poweroff' || end === 'reset' || end === 'until')) {
        process.stderr.write(`${err.red('vmctl run:')} --expect /${o.expect}/ never matched\n`);
      }
      if (o.json) {
        const s: Summary = {
          reason: end, exitCode: code, guestCode: p?.code ?? null, guestFailed: p?.failed ?? null,
          powerSource: p?.source ?? null, expectMatched: expect ? expectMatched : null,
          durationSeconds: Math.round((Date.now() - started) / 10) / 100, vm: name,
        };
        process.stderr.write(`${JSON.stringify(s)}\n`);
      } else if (code !== 0 || end !== 'poweroff') {
        process.stderr.write(`${code === 0 ? err.dim('vmctl run:') : err.red('vmctl run:')} ${messages[end]}; exit ${code}\n`);
      }
      process.exitCode = code;
    });
}
